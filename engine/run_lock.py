"""One process group per run folder: `<run folder>/run.lock`, a POSIX record lock (lockf)
held by the run's rank 0 from its start to its exit, with the holder's host and process
id written inside. Record locks belong to the process (its loader workers, forked later,
do not inherit them) and also work on NFS.

A second run started in the same folder stops at once with one line naming the holder.
The operating system drops the lock when its process dies, however it dies (kill -9, a
crash), so a lock file that still names a process but is not locked was left behind:
the next run takes it over with a notice. The file stays (emptied) when a run ends
normally: deleting it could let two runs lock two different files of the same name.
"""
import errno
import fcntl
import os
import socket

from utils.errors import DiffusionMTLError


class RunFolderBusy(DiffusionMTLError):
    """Another live run holds the run folder."""


class RunLock:
    """`with RunLock(run_dir, notify):` owns the folder for the block; `notify(text)` tells
    about a lock taken over from a dead run."""

    def __init__(self, run_dir, notify=print):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, "run.lock")
        self.notify = notify
        self.handle = None

    def acquire(self):
        os.makedirs(self.run_dir, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # held until release
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            host, _, pid = holder.partition(" ")
            who = f"process {pid} on {host}" if pid else holder
            raise RunFolderBusy(f"{self.run_dir} is in use by another run ({who}, {self.path}); wait for it to "
                                f"finish or stop it, or start this one with --opts version_name=NEW_NAME") from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            host, _, pid = previous.partition(" ")
            self.notify(f"took over {self.path} from a run that ended without releasing it "
                        f"(process {pid} on {host} is gone)")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} {os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self):
        if self.handle is None:
            return
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.flush()
        fcntl.lockf(self.handle, fcntl.LOCK_UN)
        self.handle.close()
        self.handle = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
