"""One process group per run folder: `<run folder>/run.lock`, a POSIX record lock (lockf)
held by the run's rank 0 from its start to its exit, with the holder's host and process
id written inside. Record locks belong to the process (its loader workers, forked later,
do not inherit them) and also work on NFS.

A second run started in the same folder stops at once with one line naming the holder.
The operating system drops the lock when its process dies, however it dies (kill -9, a
crash), so a lock file that still names a process but is not locked was left behind:
the next run takes it over with a notice.

A run that ends normally deletes the file, while it still holds the lock. Deleting alone
could let two runs lock two different files of one name: one that opened the old file
before it was deleted locks it after the release, while a later one creates and locks a
new file. So a lock counts only when, once taken, the name still leads to the locked file
(same device and inode); otherwise the file was replaced under it and `acquire` tries the
name again.
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
        while True:
            handle = open(self.path, "a+", encoding="utf-8")  # held until release
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                handle.close()
                if err.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                raise RunFolderBusy(self._busy_message()) from None
            if self._names(handle):
                break
            handle.close()  # deleted by the run that released it: lock the file now under the name
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

    def _names(self, handle):
        """Whether self.path still leads to the open file `handle`."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        opened = os.fstat(handle.fileno())
        return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)

    def _busy_message(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                holder = handle.read().strip()
        except OSError:
            holder = ""
        host, _, pid = (holder or "another process").partition(" ")
        who = f"process {pid} on {host}" if pid else (holder or "another process")
        return (f"{self.run_dir} is in use by another run ({who}, {self.path}); wait for it to finish or stop it, "
                f"or start this one with --opts version_name=NEW_NAME")

    def release(self):
        """Delete the file while still holding its lock, then let go (see the module docstring)."""
        if self.handle is None:
            return
        try:
            os.remove(self.path)
        except OSError:  # e.g. a read-only folder: leave it emptied instead
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
