"""tests/process_state.py and conftest's guard: a test that leaks process-wide state fails,
named, and the tests after it see the state as it was."""
import os
import signal
import subprocess
import sys
import textwrap

import torch

from tests import process_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_changes_name_what_changed_and_restore_puts_it_back(tmp_path):
    before = process_state.snapshot()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        os.environ["DIFFUSIONMTL_LEAK_CHECK"] = "1"
        os.chdir(tmp_path)
        signal.signal(signal.SIGUSR1, lambda *_: None)
        found = process_state.changes(before)
    finally:
        process_state.restore(before)
    assert len(found) == 4, found
    assert found[0] == f"torch threads {threads} -> {threads + 1}"
    assert "DIFFUSIONMTL_LEAK_CHECK: '<unset>' -> '1'" in found[1]
    assert found[2].startswith("signal handlers of SIGUSR1") and found[3].startswith("working directory")
    assert process_state.changes(before) == []
    assert torch.get_num_threads() == threads and "DIFFUSIONMTL_LEAK_CHECK" not in os.environ


def test_the_guard_fails_the_leaking_test_and_the_next_one_passes(tmp_path):
    (tmp_path / "test_leaks.py").write_text(textwrap.dedent("""
        import torch

        def test_a_leaks_threads():
            torch.set_num_threads(torch.get_num_threads() + 3)

        def test_b_sees_them_restored():
            assert torch.get_num_threads() == 1
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_leaks.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "2 passed, 1 error" in proc.stdout, proc.stdout[-3000:]
    assert "test_a_leaks_threads left process-wide state changed: torch threads 1 -> 4" in proc.stdout
