"""Samplers: resumable training order and duplicate-free evaluation shards."""
import pytest

from utils.distributed import ResumableDistributedSampler, ShardSampler


def test_resume_mid_epoch_continues_the_same_order():
    full = list(ResumableDistributedSampler(50, batch_size=4, seed=3, rank=0, world_size=1))
    assert len(full) == 48 and len(set(full)) == 48
    resumed = ResumableDistributedSampler(50, batch_size=4, seed=3, rank=0, world_size=1)
    resumed.set_position(epoch=0, start_batch=5)
    assert list(resumed) == full[20:] and len(resumed) == 28


def test_epochs_differ_and_seed_reproduces():
    a = ResumableDistributedSampler(40, 4, seed=0, rank=0, world_size=1)
    b = ResumableDistributedSampler(40, 4, seed=0, rank=0, world_size=1)
    a.set_position(1, 0)
    assert list(a) != list(b)
    b.set_position(1, 0)
    assert list(a) == list(b)


def test_ranks_partition_the_epoch():
    shards = [list(ResumableDistributedSampler(23, 2, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 6 for s in shards)
    flat = [i for s in shards for i in s]
    assert len(set(flat)) == 18


def test_too_small_dataset_is_an_error():
    with pytest.raises(ValueError, match="smaller than one global batch"):
        ResumableDistributedSampler(5, 4, seed=0, rank=0, world_size=2)


def test_shards_cover_without_duplicates():
    shards = [list(ShardSampler(11, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))


def test_threads_follow_config_then_environment_then_cores(monkeypatch):
    from utils import distributed

    for var in ("OMP_NUM_THREADS", distributed.THREADS_ENV, distributed._LAUNCHER_SET_OMP, "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(distributed, "available_cores", lambda: 16)
    assert distributed.choose_num_threads(None, loader_workers=2)[0] == 14
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes on this node: 4 cores each, 2 for loaders
    assert distributed.choose_num_threads(None, loader_workers=2)[0] == 2
    monkeypatch.setattr(distributed, "available_cores", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert distributed.choose_num_threads(None, loader_workers=2)[0] == 1  # the demo on a 2-core machine
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert distributed.choose_num_threads(None, loader_workers=0)[0] == 1  # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert distributed.choose_num_threads(None, 2) == (3, "$OMP_NUM_THREADS")
    monkeypatch.setenv(distributed.THREADS_ENV, "5")
    assert distributed.choose_num_threads(None, 2) == (5, f"${distributed.THREADS_ENV}")
    assert distributed.choose_num_threads(7, 2) == (7, "config num_threads")
    monkeypatch.delenv(distributed.THREADS_ENV)
    monkeypatch.setenv(distributed._LAUNCHER_SET_OMP, "1")  # the launcher's placeholder is not a choice
    assert distributed.choose_num_threads(None, 0)[0] == 1 and "cores" in distributed.choose_num_threads(None, 0)[1]


def test_exit_with_parent_ends_a_helper_when_its_parent_is_killed(tmp_path):
    import os
    import subprocess
    import sys
    import time

    # parent -> helper (the helper watches the parent's pid, as an evaluation pool worker does)
    script = (
        "import os, subprocess, sys, time\n"
        "helper = subprocess.Popen([sys.executable, '-c', 'import sys, time; sys.path.insert(0, sys.argv[2]); "
        "from utils.distributed import exit_with_parent; exit_with_parent(int(sys.argv[1]), 0.1); time.sleep(60)', "
        "str(os.getpid()), os.getcwd()], start_new_session=True)\n"
        "print(helper.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    helper_pid = int(parent.stdout.readline())
    time.sleep(1.0)
    from utils.distributed import _alive
    assert _alive(helper_pid)
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while _alive(helper_pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(helper_pid)
