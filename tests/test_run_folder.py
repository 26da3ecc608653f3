"""The run folder from a user's side (main.py end to end): mistakes found at second 0, a rerun
that finishes what an error interrupted, one run per folder, log.txt telling why a run stopped,
a best.pth without the optimizer, and the summary's commands working."""
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.entry_points import one_error_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main_py(*args, expect=0, timeout=300):
    proc = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_val_size_mismatch_is_one_line_at_second_zero_and_leaves_no_folder(pascal_db, tiny_opts, tmp_path):
    proc = main_py("--config_exp", "configs/demo.yml", "--opts", *tiny_opts, f"db_root={pascal_db.db_root}",
                   f"output_dir={tmp_path}", "max_iter=1", "train_size=[32,32]", "val_size=[32,32]", expect=2)
    one_error_line(proc, "val_size 32x32 is smaller than validation image", "--opts val_size=[64,64]")
    assert "iter 1/" not in proc.stdout  # stopped before any training
    assert not (tmp_path / "demo").exists()  # failed before its first iteration: nothing left behind


@pytest.mark.slow
def test_an_evaluation_error_then_the_same_command_ends_with_best_pth(pascal_db, tiny_opts, tmp_path):
    data = pascal_db.copy_to(tmp_path / "db").db_root
    val_id = (data / "PASCALContext" / "ImageSets" / "Context" / "val.txt").read_text().split()[0]
    image = data / "PASCALContext" / "JPEGImages" / f"{val_id}.jpg"
    good = image.read_bytes()
    image.write_bytes(good[:len(good) // 2])  # header intact (passes the up-front check), pixels cut off
    args = ["--config_exp", "configs/demo.yml", "--opts", *tiny_opts, f"db_root={data}", f"output_dir={tmp_path}",
            "max_iter=2", "val_interval=2"]
    proc = main_py(*args, expect=2)
    line = one_error_line(proc, f"{val_id}", "training stopped at iteration 2", "run the same command to resume")
    run_dir = tmp_path / "demo"
    assert line in (run_dir / "log.txt").read_text()  # log.txt says why the run stopped
    assert not (run_dir / "best.pth").exists()

    image.write_bytes(good)
    proc = main_py(*args)  # the same command: evaluates the finished run, nothing retrained
    log = (run_dir / "log.txt").read_text()
    rerun = log.split("resumed from")[1]
    assert "iter 1/2" not in rerun and "evaluation at iteration 2" in rerun
    best = torch.load(run_dir / "best.pth", map_location="cpu", weights_only=True)
    assert set(best) == {"model", "config", "iteration", "best_score", "best_iteration", "best_metrics"}
    assert best["iteration"] == 2 and best["best_metrics"]["semseg"]["mIoU"] >= 0
    last = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    assert {"optimizer", "scheduler", "rng"} <= set(last) and last["evaluated_at"] == 2
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    assert "run finished" in log

    # Every command the summary prints works: the evaluation command, as printed.
    evaluate = next(line for line in proc.stdout.splitlines() if "evaluate:" in line).split("evaluate:")[1]
    command = shlex.split(evaluate)
    assert command[1] == "main.py" and str(run_dir / "best.pth") in command
    main_py(*command[2:])
    assert (run_dir / "infer" / "metrics.json").is_file()


@pytest.mark.slow
def test_a_second_run_in_a_busy_folder_stops_naming_the_first(pascal_db, tiny_opts, tmp_path):
    args = ["--config_exp", "configs/demo.yml", "--opts", *tiny_opts, f"db_root={pascal_db.db_root}",
            f"output_dir={tmp_path}",
            "max_iter=500", "version_name=twice"]
    first = subprocess.Popen([sys.executable, "main.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        lock = tmp_path / "twice" / "run.lock"
        deadline = time.monotonic() + 300  # bounds a hang (load 8); the loop goes on once the lock is held
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        proc = main_py(*args, expect=2)
        one_error_line(proc, "is in use by another run", f"process {first.pid}")
        assert "error" not in (tmp_path / "twice" / "log.txt").read_text()  # the first run's log is untouched
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130 and not lock.exists()  # released (deleted) when the first run stopped
