"""utils.processes: the watchdog that ends an evaluation-pool worker with its parent."""
import os
import subprocess
import sys
import time

from utils.processes import alive


def test_exit_with_parent_ends_a_helper_when_its_parent_is_killed(tmp_path):
    # parent -> helper (the helper watches the parent's pid, as an evaluation pool worker does)
    script = (
        "import os, subprocess, sys, time\n"
        "helper = subprocess.Popen([sys.executable, '-c', 'import sys, time; sys.path.insert(0, sys.argv[2]); "
        "from utils.processes import exit_with_parent; exit_with_parent(int(sys.argv[1]), 0.1); time.sleep(60)', "
        "str(os.getpid()), os.getcwd()], start_new_session=True)\n"
        "print(helper.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    helper_pid = int(parent.stdout.readline())
    time.sleep(1.0)
    assert alive(helper_pid)
    parent.kill()
    parent.wait()
    # The helper ends at once (the kernel kills it with its parent, PR_SET_PDEATHSIG); the
    # deadline only bounds a hang, generously enough for a machine running at load 8.
    deadline = time.monotonic() + 120
    while alive(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(helper_pid)
