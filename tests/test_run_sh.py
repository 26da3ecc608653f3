"""run.sh, the README's entry point, as a user meets it: one-line errors with meaningful exit
statuses, no port collisions, Ctrl-C that saves, demo data that is complete or absent."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from tests.entry_points import group_processes, one_error_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def db_root(pascal_db):
    return str(pascal_db.db_root)


def env_for(**extra):
    """The environment of a run.sh under test: this Python, one process, no launch variables
    of the caller's (nor SLURM's, when the tests run inside a SLURM job)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env = {**env, "PYTHON": sys.executable, "NGPUS": "1", **extra}
    for var in ("RUN_MODE", "TRAINED_MODEL", "CHECKPOINT", "CONFIG", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "DEMO_DATA",
                "TORCH_CPP_LOG_LEVEL"):
        if var not in extra:
            env.pop(var, None)
    return env


def run_sh(*args, timeout=300, **env):
    return subprocess.run(["bash", "run.sh", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env_for(**env))


def assert_one_line_error(proc, status, *fragments):
    assert proc.returncode == status, proc.stdout[-2000:] + proc.stderr[-3000:]
    return one_error_line(proc, *fragments)


@pytest.mark.slow
def test_errors_are_one_line_with_status_2(db_root, tiny_opts, tmp_path):
    opts = ["--opts", *tiny_opts, f"db_root={db_root}", f"output_dir={tmp_path}"]
    assert_one_line_error(run_sh(*opts, "trBach=3"), 2, "unknown key 'trBach'", "trBatch")
    assert_one_line_error(run_sh(RUN_MODE="infer"), 2, "CHECKPOINT=")
    assert_one_line_error(run_sh(RUN_MODE="evaluate"), 2, "RUN_MODE")
    assert_one_line_error(run_sh(NNODES="2"), 2, "MASTER_ADDR", "MASTER_PORT")
    assert_one_line_error(run_sh("--opts", f"db_root={tmp_path}/nowhere", f"output_dir={tmp_path}"), 2,
                          "dataset folder not found")
    assert not (tmp_path / "demo" / "last.pth").exists()


@pytest.mark.slow
def test_two_processes_one_line_errors_and_a_busy_default_port(db_root, tiny_opts, tmp_path):
    opts = ["--opts", *tiny_opts, f"db_root={db_root}", f"output_dir={tmp_path}"]
    # Two ranks fail alike: the launcher prints the first failure once, with its status.
    assert_one_line_error(run_sh(*opts, "trBach=3", NGPUS="2"), 2, "unknown key 'trBach'")

    # torchrun's default port taken (another run on this machine): single-node runs pick a free one.
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("127.0.0.1", 29500))
            busy.listen(1)
        except OSError:
            pass  # already in use by someone else: the same situation
        # batches of 6: a process's first batch labels every task, the case in which DDP's C++
        # side warns falsely about find_unused_parameters (utils/launch.py)
        proc = run_sh(*opts, "max_iter=2", "val_interval=2", "trBatch=6", NGPUS="2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "EADDRINUSE" not in proc.stderr and "Traceback" not in proc.stderr
    # Two CPU processes are announced as such, and nothing else is printed on stderr.
    if not torch.cuda.is_available():
        assert "NGPUS=2: 2 CPU processes on this node (no GPU visible): DDP over gloo" in proc.stdout
        assert proc.stderr.strip() == "", proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "demo" / "last.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 2 and len(ckpt["rng"]) == 2


@pytest.mark.slow
def test_ctrl_c_saves_last_pth_and_the_same_command_resumes(db_root, tiny_opts, tmp_path):
    opts = ["--opts", *tiny_opts, f"db_root={db_root}", f"output_dir={tmp_path}", "nworkers=2",
            "eval_kwargs.edge_workers=2", "val_interval=1000", "ckpt_interval=1000"]
    proc = subprocess.Popen(["bash", "run.sh", *opts, "max_iter=500"], cwd=ROOT, env=env_for(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # see below
    deadline = time.monotonic() + 600  # bounds a hang (load 8); the loop reads the log lines as they come
    for line in proc.stdout:  # wait until training is under way
        if " iter " in line and "/500" in line and int(line.split(" iter ")[1].split("/")[0]) >= 3:
            break
        assert time.monotonic() < deadline, "training did not start"
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to the whole foreground group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    stopped = int(out.split("interrupted at iteration ")[1].split("/")[0])
    assert "run the same command to resume" in out
    assert torch.load(tmp_path / "demo" / "last.pth", map_location="cpu", weights_only=True)["iteration"] == stopped
    assert stopped >= 3
    # The helpers (loader workers, evaluation pool) end with the run; the deadline bounds a
    # hang, generously for a machine at load 8, and the loop goes on as soon as they are gone.
    deadline = time.monotonic() + 120
    while group_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_processes(proc.pid) == [], "helper processes outlived the run"

    proc = run_sh(*opts, f"max_iter={stopped + 1}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"at iteration {stopped}" in proc.stdout
    assert torch.load(tmp_path / "demo" / "last.pth", map_location="cpu", weights_only=True)["iteration"] == stopped + 1


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_demo_data_generation_leaves_no_dataset(tmp_path, how):
    demo_data = tmp_path / "demo_data"
    # SIGINT as a terminal delivers it (also above): with its default action, whatever this test process
    # inherited (a shell's background job, `cmd &`, starts with SIGINT ignored, and an ignored
    # SIGINT stays ignored in bash and python: the generation would run on, then the demo).
    proc = subprocess.Popen(["bash", "run.sh"], cwd=ROOT, env=env_for(DEMO_DATA=str(demo_data)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300  # bounds a hang (load 8); the loop polls

    def images_written():  # in the hidden folder that is renamed into place when complete
        partial = [p for p in demo_data.iterdir() if p.name.startswith(".PASCALContext.partial")]
        return len(list(partial[0].glob("**/*.jpg"))) if partial else 0

    try:
        while not (demo_data.is_dir() and images_written() >= 3):  # some of the 300 files written
            assert proc.poll() is None and time.monotonic() < deadline, "generation did not start"
            time.sleep(0.05)
        os.killpg(proc.pid, how)
        proc.wait(timeout=300)
    finally:  # a failure leaves no run.sh behind (it would train the demo)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (demo_data / "PASCALContext").exists()
    if how == signal.SIGINT:  # a clean stop also removes its temporary folder
        assert list(demo_data.iterdir()) == []


@pytest.mark.slow
def test_a_demo_dataset_made_by_another_demo_version_is_generated_again(tmp_path):
    demo_data = tmp_path / "demo_data"
    (demo_data / "PASCALContext").mkdir(parents=True)
    (demo_data / "PASCALContext" / "stale.txt").write_text("128x128 images of an older demo")
    (demo_data / ".demo_args").write_text("--layout pascal --train 240 --val 60 --size 128 --seed 0\n")
    # RUN_MODE=infer with a missing checkpoint: the data step runs, then main.py stops at once.
    proc = run_sh(DEMO_DATA=str(demo_data), RUN_MODE="infer", CHECKPOINT=str(tmp_path / "none.pth"))
    assert_one_line_error(proc, 2, "checkpoint not found")
    assert "made by another version of the demo; generating it again" in proc.stdout
    assert not (demo_data / "PASCALContext" / "stale.txt").exists()
    assert len(list((demo_data / "PASCALContext" / "JPEGImages").glob("*.jpg"))) == 300
    assert "--size 96" in (demo_data / ".demo_args").read_text()
    again = run_sh(DEMO_DATA=str(demo_data), RUN_MODE="infer", TRAINED_MODEL=str(tmp_path / "none.pth"))
    assert "note: TRAINED_MODEL is now CHECKPOINT" in again.stderr  # the former name still works
    assert "checkpoint not found" in again.stderr
    assert "Generating" not in again.stdout and "generating" not in again.stdout  # up to date: kept
