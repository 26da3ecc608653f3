"""What a user meets after `bash run.sh` starts: data problems found up front or reported in
one line with the progress kept, helper processes that die with the run, safe checkpoint
messages, a run folder that refuses another experiment, a closing summary, clean CLIs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import models  # noqa: F401  (torchvision's import sets $TORCHINDUCTOR_CACHE_DIR once per process: at
# collection, not inside a test that calls main.main, which imports the model code only when it runs)
from tests.entry_points import group_processes, one_error_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def db_root(pascal_db):
    return pascal_db.db_root


def run(cmd, expect, timeout=300, env=None):
    proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env or ENV)
    assert proc.returncode == expect, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture
def main_py(tiny_opts):
    def start(opts, expect=0, extra=()):
        return run(["main.py", "--config_exp", "configs/demo.yml", *extra, "--opts", *tiny_opts, *opts], expect)
    return start


def test_a_missing_file_stops_the_run_before_training(pascal_db, main_py, tmp_path):
    dataset = pascal_db.copy_to(tmp_path / "db").root
    val_id = (dataset / "ImageSets" / "Context" / "val.txt").read_text().split()[0]
    (dataset / "sal_distill" / f"{val_id}.png").unlink()
    proc = main_py([f"db_root={tmp_path / 'db'}", f"output_dir={tmp_path}"], expect=2)
    one_error_line(proc, f"sal_distill/{val_id}.png")
    assert not (tmp_path / "demo" / "last.pth").exists() and "iter 1/" not in proc.stdout


@pytest.mark.slow
def test_a_corrupt_file_read_by_a_loader_worker_is_one_line_and_keeps_the_progress(pascal_db, main_py, tmp_path):
    dataset = pascal_db.copy_to(tmp_path / "db").root
    train_ids = (dataset / "ImageSets" / "Context" / "train.txt").read_text().split()
    order = torch.randperm(len(train_ids), generator=torch.Generator().manual_seed(0))  # epoch 0, seed 0
    bad = train_ids[order[4]]  # the first sample of the third batch of two
    (dataset / "JPEGImages" / f"{bad}.jpg").write_bytes(b"not a jpeg")
    proc = main_py([f"db_root={tmp_path / 'db'}", f"output_dir={tmp_path}", "nworkers=2", "max_iter=6",
                    "val_interval=100", "ckpt_interval=100"], expect=2)
    line = one_error_line(proc, f"{bad}.jpg", "saved", "run the same command to resume")
    assert "Traceback" not in line and "DataLoader worker" not in line
    ckpt = torch.load(tmp_path / "demo" / "last.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 2  # the two finished iterations are kept


@pytest.mark.slow
def test_evaluation_workers_exit_when_training_is_killed(db_root, tiny_opts, tmp_path):
    cmd = [sys.executable, "main.py", "--config_exp", "configs/demo.yml", "--opts", *tiny_opts, f"db_root={db_root}",
           f"output_dir={tmp_path}", "eval_kwargs.edge_workers=2", "max_iter=1000", "val_interval=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        # Deadlines bound a hang, generously for a machine at load 8; the loops poll and go on
        # as soon as the condition holds.
        deadline = time.monotonic() + 300
        while len(group_processes(proc.pid, leader=False)) < 4:  # resource tracker, forkserver, two workers
            assert proc.poll() is None and time.monotonic() < deadline, "the evaluation pool did not start"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # the trainer alone, as `kill -9 PID` does
        proc.wait()
        # The helpers end promptly, by events rather than a poll interval: the forkserver
        # exits when the trainer's end of its pipe closes, the kernel kills its workers
        # (PR_SET_PDEATHSIG), and the resource tracker exits when its last writer has gone.
        deadline = time.monotonic() + 120
        while group_processes(proc.pid, leader=False) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert group_processes(proc.pid, leader=False) == []
    finally:
        for pid in group_processes(proc.pid, leader=False):
            os.kill(pid, signal.SIGKILL)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_with_its_reason(db_root, tiny_opts, tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"model": _Payload(marker)}, evil)
    proc = subprocess.run(["bash", "run.sh", "--opts", *tiny_opts, f"db_root={db_root}", f"output_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**ENV, "PYTHON": sys.executable, "NGPUS": "1", "RUN_MODE": "infer",
                               "CHECKPOINT": str(evil)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = one_error_line(proc, "evil.pth is not a loadable checkpoint", "GLOBAL")
    assert "system" in line and "weights_only" not in line and "Re-running" not in line
    assert not marker.exists()


def test_inference_save_dir_that_is_a_file_is_a_usage_error(tmp_path):
    target = tmp_path / "predictions"
    target.write_text("keep me")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    proc = run(["inference.py", "--checkpoint", str(tmp_path / "none.pth"), "--image_path", str(tmp_path / "a.png"),
                "--save_dir", str(target)], expect=2)
    one_error_line(proc, "--save_dir", "not a folder")
    assert target.read_text() == "keep me"


@pytest.mark.slow
def test_a_run_explains_itself_and_refuses_a_different_experiment(db_root, main_py, tmp_path):
    opts = [f"db_root={db_root}", f"output_dir={tmp_path}", "max_iter=2", "val_interval=2", "amp=true"]
    proc = main_py(opts)
    run_dir = tmp_path / "demo"
    assert not (run_dir / "run.lock").exists()  # a clean finish leaves no lock file
    assert "amp: true has no effect on CPU" in proc.stdout or torch.cuda.is_available()
    # The closing summary: where everything is and what to run next.
    summary = proc.stdout[proc.stdout.index("run finished"):]
    for fragment in ("iteration 2/2", str(run_dir / "best.pth"), str(run_dir / "last.pth"), "semseg.mIoU",
                     "--run_mode infer --checkpoint", "inference.py --checkpoint", "min"):
        assert fragment in summary, fragment
    assert "CPU thread(s) per process ($OMP_NUM_THREADS)" in proc.stdout
    # Redirected output: log lines, no progress-bar redraws or colour codes.
    assert "\r" not in proc.stdout + proc.stderr and "\x1b[" not in proc.stdout + proc.stderr
    # Per-task loss columns: every task on every log line, '-' where unlabelled in the batch.
    for line in [l for l in proc.stdout.splitlines() if " iter " in l]:
        columns = line.split("|")[1].split()
        assert columns[0::2] == ["semseg", "human_parts", "sal", "normals", "edge"], line
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["iteration"] == 2 and metrics["checkpoint"] == str(run_dir / "last.pth")
    assert (run_dir / "config.yaml").is_file()

    before = (run_dir / "last.pth").read_bytes()
    proc = main_py(opts + ["optimizer_kwargs.lr=0.5"], expect=2)
    one_error_line(proc, "optimizer_kwargs.lr: 0.001 -> 0.5", "version_name", "output_dir")
    proc = main_py(opts + ["model_kwargs.embed_dim=24"], expect=2)
    one_error_line(proc, "model_kwargs.embed_dim: 16 -> 24")
    assert (run_dir / "last.pth").read_bytes() == before
    assert "nothing to do" in main_py(opts + ["val_interval=5"]).stdout  # budget / logging keys may change
    proc = main_py(opts + ["max_iter=1"], expect=2)  # a budget below what the run reached: it cannot go back
    assert proc.stdout == ""
    one_error_line(proc, f"{run_dir / 'last.pth'} is already at iteration 2, past this command's last iteration 1 "
                   "(max_iter=1)", "max_iter above 2", "--run_mode infer", "version_name=NEW_NAME")
    assert (run_dir / "last.pth").read_bytes() == before and "max_iter: 2" in (run_dir / "config.yaml").read_text()

    # Evaluation records what it evaluated; its prediction PNGs are inference.py's palette images.
    main_py(opts + ["eval_kwargs.save_predictions=true"], extra=["--run_mode", "infer", "--checkpoint",
                                                                str(run_dir / "best.pth")])
    infer = json.loads((run_dir / "infer" / "metrics.json").read_text())
    assert infer["iteration"] == 2 and infer["checkpoint"] == str(run_dir / "best.pth")
    semseg = Image.open(next((run_dir / "infer" / "predictions" / "semseg").glob("*.png")))
    assert semseg.mode == "P" and np.asarray(semseg).max() < 21

    # inference.py needs no config: the checkpoint carries it.
    image = next((db_root / "PASCALContext" / "JPEGImages").glob("*.jpg"))
    run(["inference.py", "--checkpoint", str(run_dir / "best.pth"), "--image_path", str(image),
         "--save_dir", str(tmp_path / "pred")], expect=0)
    assert Image.open(tmp_path / "pred" / "semseg" / f"{image.stem}.png").mode == "P"


def test_every_cli_documents_its_arguments_and_accepts_config_exp(capsys):
    import inference
    import main
    from benchmarks import throughput

    for parse in (main.parse_args, inference.parse_args, throughput.main):
        with pytest.raises(SystemExit) as exit_status:
            parse(["--help"])
        assert exit_status.value.code == 0
        text = capsys.readouterr().out
        assert "--config_exp" in text, parse
        if parse is not throughput.main:
            assert text.count("(default:") >= 4, parse
    assert inference.parse_args(["--config_exp", "c.yml", "--checkpoint", "x.pth", "--image_path", "i",
                                 "--save_dir", "o"]).config_path == "c.yml"


def test_help_and_config_keys_answer_without_importing_torch():
    # `--help` took 15 s on a busy machine: the parser must not need torch, which loads only to run
    check = ("import sys, contextlib, io, main; out = io.StringIO()\n"
             "with contextlib.redirect_stdout(out):\n"
             "    try: main.parse_args(['--help'])\n"
             "    except SystemExit: pass\n"
             "    assert main.main(['--config_keys']) == 0\n"
             "assert '--device' in out.getvalue() and 'trBatch' in out.getvalue()\n"
             "print(sorted(m for m in ('torch', 'torchvision', 'timm', 'cv2') if m in sys.modules))")
    proc = run(["-c", check], expect=0)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_a_setup_error_is_the_only_line_and_log_txt_keeps_the_setup(db_root, tiny_opts, tmp_path, capsys):
    """Errors found after the run folder's logger is set up (sizes, the model, a split file)
    used to come after the setup's log lines; amp on a CPU is said, not silently ignored."""
    import main

    (tmp_path / "demo").mkdir()  # an existing run folder: kept, with its log.txt
    status = main.main(["--config_exp", "configs/demo.yml", "--device", "cpu", "--opts", *tiny_opts,
                        f"db_root={db_root}", f"output_dir={tmp_path}", "val_size=[32,32]", "amp=true"])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.startswith("error: val_size 32x32 is smaller than") and captured.err.count("\n") == 1
    log = (tmp_path / "demo" / "log.txt").read_text()
    for line in ("CPU thread(s) per process", "amp: true has no effect on CPU", "partial labels:", "error: val_size"):
        assert line in log, line
    assert not (tmp_path / "demo" / "run.lock").exists()


def test_a_truncated_checkpoint_is_called_truncated(tmp_path):
    from engine.checkpoint import load_checkpoint
    from utils.errors import CheckpointError

    torch.save({"model": {"w": torch.zeros(1000)}}, tmp_path / "last.pth")
    data = (tmp_path / "last.pth").read_bytes()
    for size in (len(data) // 2, 0):
        (tmp_path / "last.pth").write_bytes(data[:size])
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(str(tmp_path / "last.pth"))
        message = str(err.value)
        assert "last.pth cannot be read: the file is truncated or damaged" in message and f"{size:,} bytes" in message
        assert "plain containers" not in message and "miniz" not in message and "restore a copy" in message
