"""Helpers of the entry-point tests (test_run_sh.py, test_user_path.py): what a user sees
on stderr and which processes a run leaves behind."""
import os


def one_error_line(proc, *fragments):
    """The single `error: ...` line of a finished process's stderr, containing `fragments`."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def group_processes(pgid, leader=True):
    """Live (not zombie) processes of process group `pgid`, its leader included or not."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and (leader or int(pid) != pgid) and fields[0] not in "ZX":
            found.append(int(pid))
    return found
