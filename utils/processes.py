"""Process helpers: is a process alive, and the watchdog that ends a helper process with
its parent (the boundary evaluation's worker pool). The run-folder lock needs neither: the
operating system drops its record lock when its process dies (engine/run_lock.py)."""
import ctypes
import os
import signal
import sys
import threading
import time


def alive(pid):
    """Whether process `pid` runs (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # zombie: dead
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def _kill_on_parent_death():
    """Linux: ask the kernel to SIGKILL this process the moment its parent exits. -> set or not"""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_with_parent(parent_pid, interval=1.0):
    """Pool initializer: ignore Ctrl-C (the parent handles it) and exit when `parent_pid` is gone.

    A forkserver's workers are not the trainer's children, so a `kill -9` of the trainer
    would leave them (and the forkserver they keep alive) running for minutes. On Linux the
    end is prompt, whatever the load: the forkserver exits as soon as the trainer's end of
    its pipe closes, and the kernel then kills its workers (PR_SET_PDEATHSIG). Elsewhere, and
    as a fallback, a thread polls `parent_pid` every `interval` seconds.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _kill_on_parent_death()
    if not alive(parent_pid):  # it died before the request above took effect
        os._exit(0)

    def watch():
        while alive(parent_pid):
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
