"""engine.run_lock: one run per folder, held across processes; a dead holder's lock is taken over."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from engine.run_lock import RunFolderBusy, RunLock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = ("import sys, time; sys.path.insert(0, sys.argv[2]); from engine.run_lock import RunLock; "
        "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)")


def holder(run_dir):
    """A second process that takes the lock of `run_dir` and keeps it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), ROOT], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_in_the_same_folder_stops_naming_the_holder(tmp_path):
    proc = holder(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusy, match=f"process {proc.pid} on {socket.gethostname()}"):
            RunLock(str(tmp_path / "run")).acquire()
    finally:
        proc.terminate()
        proc.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_notice(tmp_path):
    proc = holder(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    notices = []
    lock = RunLock(str(tmp_path / "run"), notify=notices.append).acquire()
    assert len(notices) == 1 and f"process {proc.pid} on {socket.gethostname()} is gone" in notices[0]
    with open(lock.path, encoding="utf-8") as handle:
        assert handle.read().split() == [socket.gethostname(), str(os.getpid())]
    lock.release()


def test_released_at_exit_and_free_for_the_next_run_without_a_notice(tmp_path):
    notices = []
    with RunLock(str(tmp_path / "run"), notify=notices.append) as lock:
        path = lock.path
    assert not os.path.exists(path)  # deleted by the run that held it (see the module docstring)
    proc = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"), str(tmp_path / "run"),
                           ROOT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "held", proc.stderr
    # the holder exited without releasing: the lock is free again, its file names the dead process
    with RunLock(str(tmp_path / "run"), notify=notices.append):
        pass
    assert len(notices) == 1 and "is gone" in notices[0]


def test_a_file_deleted_under_a_waiting_opener_is_not_taken_as_the_lock(tmp_path):
    """The release deletes the file while holding it; a run that opened the old file before
    that (and locks it after) must see that the name now leads elsewhere and lock anew."""
    first = RunLock(str(tmp_path / "run")).acquire()
    late = open(first.path, "a+", encoding="utf-8")  # opened before the release, as a racing run would
    try:
        first.release()
        assert not os.path.exists(first.path)
        second = RunLock(str(tmp_path / "run"))
        assert not second._names(late)  # the old file: no longer the lock
        second.acquire()
        assert second._names(second.handle)
        proc = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"), str(tmp_path / "run"),
                               ROOT], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "in use by another run" in proc.stderr  # the new file is held
        second.release()
    finally:
        late.close()
