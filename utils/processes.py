"""Process helpers: is a process alive, and the watchdog that ends a helper process with
its parent (evaluation pools; the run-folder lock uses `alive` for stale locks)."""
import os
import signal
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


def exit_with_parent(parent_pid, interval=1.0):
    """Pool initializer: ignore Ctrl-C (the parent handles it) and exit when `parent_pid` is gone.

    A forkserver's workers are not the trainer's children, so a `kill -9` of the trainer
    would leave them (and the forkserver they keep alive) running for minutes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while alive(parent_pid):
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
