"""CPU thread sizing: config, then environment, then the cores shared with loaders."""
from utils import threads


def test_threads_follow_config_then_environment_then_cores(monkeypatch):
    for var in ("OMP_NUM_THREADS", threads.THREADS_ENV, threads.LAUNCHER_SET_OMP, "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    assert threads.choose_num_threads(None, loader_workers=2)[0] == 14
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes on this node: 4 cores each, 2 for loaders
    assert threads.choose_num_threads(None, loader_workers=2)[0] == 2
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert threads.choose_num_threads(None, loader_workers=2)[0] == 1  # the demo on a 2-core machine
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert threads.choose_num_threads(None, loader_workers=0)[0] == 1  # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_num_threads(None, 2) == (3, "$OMP_NUM_THREADS")
    monkeypatch.setenv(threads.THREADS_ENV, "5")
    assert threads.choose_num_threads(None, 2) == (5, f"${threads.THREADS_ENV}")
    assert threads.choose_num_threads(7, 2) == (7, "config num_threads")
    monkeypatch.delenv(threads.THREADS_ENV)
    monkeypatch.setenv(threads.LAUNCHER_SET_OMP, "1")  # the launcher's placeholder is not a choice
    assert threads.choose_num_threads(None, 0)[0] == 1 and "cores" in threads.choose_num_threads(None, 0)[1]
