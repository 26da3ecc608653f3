"""End-to-end: main.py training, resume, torchrun DDP, run_mode=infer, failure paths."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def db_root(pascal_db):
    return str(pascal_db.db_root)


def run_main(args, opts, expect=0, env=None, torchrun=0):
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
    cmd = launcher + ["main.py"] + args + ["--opts"] + opts
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_demo_config_trains_evaluates_and_writes_the_run_folder(db_root, tiny_opts, pascal_db, tmp_path):
    demo = [opt for opt in tiny_opts if opt != "eval_at_start=false"]  # demo.yml's own eval_at_start
    opts = [*demo, f"db_root={db_root}", f"output_dir={tmp_path}", "max_iter=4", "val_interval=2"]
    proc = run_main(["--config_exp", "configs/demo.yml"], opts)
    run_dir = tmp_path / "demo"
    for name in ("last.pth", "best.pth", "metrics.json", "log.txt"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"semseg", "human_parts", "sal", "normals", "edge"}
    assert 0.0 <= metrics["semseg"]["mIoU"] <= 100.0 and metrics["normals"]["mErr"] > 0
    ckpt = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 4
    log = (run_dir / "log.txt").read_text()
    assert "evaluation at iteration 0 (untrained)" in log  # demo.yml: eval_at_start
    assert "evaluation at iteration 2" in log and "evaluation at iteration 4" in log
    assert "mIoU" in proc.stdout

    # Started again with a larger budget, the run continues where it stopped.
    run_main(["--config_exp", "configs/demo.yml"], opts[:-2] + ["max_iter=6", "val_interval=3"])
    assert torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)["iteration"] == 6
    assert "resumed from" in (run_dir / "log.txt").read_text()

    # run_mode=infer: metrics JSON, table and per-image predictions.
    run_main(["--config_exp", "configs/demo.yml", "--run_mode", "infer", "--checkpoint",
              str(run_dir / "best.pth")], opts + ["eval_kwargs.save_predictions=true"])
    infer_dir = run_dir / "infer"
    assert json.loads((infer_dir / "metrics.json").read_text()).keys() == metrics.keys()
    assert "mIoU" in (infer_dir / "metrics.txt").read_text()
    assert len(list((infer_dir / "predictions" / "semseg").glob("*.png"))) == pascal_db.n_val


@pytest.mark.slow
def test_evaluation_is_deterministic(db_root, tiny_opts, tmp_path):
    opts = [*tiny_opts, f"db_root={db_root}", f"output_dir={tmp_path}", "max_iter=2", "val_interval=2"]
    run_main(["--config_exp", "configs/demo.yml"], opts)
    ckpt = str(tmp_path / "demo" / "last.pth")
    results = []
    for _ in range(2):
        run_main(["--config_exp", "configs/demo.yml", "--run_mode", "infer", "--checkpoint", ckpt], opts)
        results.append((tmp_path / "demo" / "infer" / "metrics.json").read_text())
    assert results[0] == results[1]


@pytest.mark.slow
def test_torchrun_two_processes_train_resume_and_infer(db_root, tiny_opts, tmp_path):
    opts = [*tiny_opts, f"db_root={db_root}", f"output_dir={tmp_path}", "max_iter=3", "val_interval=3"]
    proc = run_main(["--config_exp", "configs/demo.yml"], opts, torchrun=2)
    run_dir = tmp_path / "demo"
    ckpt = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 3 and len(ckpt["rng"]) == 2
    assert "2 process(es)" in (run_dir / "log.txt").read_text()
    assert proc.stdout.count("training demo") == 1  # rank 0 logs alone

    run_main(["--config_exp", "configs/demo.yml"], opts[:-2] + ["max_iter=5", "val_interval=5"], torchrun=2)
    assert torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)["iteration"] == 5

    # Sharded evaluation over two processes gives the single-process numbers.
    infer = ["--config_exp", "configs/demo.yml", "--run_mode", "infer", "--checkpoint", str(run_dir / "last.pth")]
    run_main(infer, opts, torchrun=2)
    two = json.loads((run_dir / "infer" / "metrics.json").read_text())
    run_main(infer, opts)
    one = json.loads((run_dir / "infer" / "metrics.json").read_text())
    assert two.keys() == one.keys()
    for task in one:
        if isinstance(one[task], dict):
            for name, value in one[task].items():
                assert two[task][name] == pytest.approx(value, rel=1e-5, abs=1e-6), (task, name)


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_weights(db_root, tiny_opts, tmp_path):
    base = [*tiny_opts, f"db_root={db_root}", "max_iter=8", "val_interval=100", "ckpt_interval=2", "nworkers=2"]
    straight = tmp_path / "straight"
    run_main(["--config_exp", "configs/demo.yml"], base + [f"output_dir={straight}"])

    killed = tmp_path / "killed"
    cmd = [sys.executable, "main.py", "--config_exp", "configs/demo.yml", "--opts"] + base + [f"output_dir={killed}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    last = killed / "demo" / "last.pth"
    deadline = time.monotonic() + 300  # bounds a hang (load 8); the loop polls
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = torch.load(last, map_location="cpu", weights_only=True)["iteration"]
    assert stopped_at < 8, "the run finished before it could be killed"

    run_main(["--config_exp", "configs/demo.yml"], base + [f"output_dir={killed}"])
    assert f"at iteration {stopped_at}" in (killed / "demo" / "log.txt").read_text()
    assert_same_weights(weights(straight / "demo" / "last.pth"), weights(last))


@pytest.mark.slow
def test_diverging_loss_stops_with_a_message(db_root, tiny_opts, tmp_path):
    opts = [*tiny_opts, f"db_root={db_root}", f"output_dir={tmp_path}", "max_iter=20", "val_interval=100",
            "optimizer=sgd", "optimizer_kwargs.lr=1e12", "grad_clip_param.max_norm=1e30", "ckpt_interval=1"]
    proc = run_main(["--config_exp", "configs/demo.yml"], opts, expect=2)
    assert "training diverged (loss" in proc.stderr and "last good checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert all(torch.isfinite(v.float()).all() for v in weights(tmp_path / "demo" / "last.pth").values())


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors(db_root, tmp_path):
    opts = [f"db_root={db_root}", f"output_dir={tmp_path}"]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    proc = run_main(["--config_exp", "configs/demo.yml", "--run_mode", "infer", "--checkpoint", str(bad)],
                    opts, expect=2)
    assert proc.stderr.strip().count("\n") == 0 and "bad.pth" in proc.stderr
    proc = run_main(["--config_exp", "configs/demo.yml"], opts + ["trBatch=x"], expect=2)
    assert "trBatch" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_main(["--config_exp", "configs/demo.yml"], [f"db_root={tmp_path}/missing"], expect=2)
    assert "missing" in proc.stderr and "Traceback" not in proc.stderr
