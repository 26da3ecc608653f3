"""End-to-end on the synthetic Cityscapes layout: main.py trains with an official-format
one-label split, run_mode=infer evaluates the checkpoint, inference.py draws it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from data.metadata import CITYSCAPES7_PALETTE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/cityscapes/resnet18_onelabel.yml"


def run(args, expect=0):
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_train_infer_and_inference_on_synthetic_cityscapes(cityscapes_db, tiny_opts, tmp_path):
    db_root = cityscapes_db.db_root
    assert (cityscapes_db.n_train, cityscapes_db.n_val, cityscapes_db.size) == (7, 3, (32, 64))
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 3 + [[1.0, 0.0]])  # MTPSL's format: rows = train index
    torch.save({"labels_weights": weights}, tmp_path / "cityscapes_onelabel.pth")
    opts = [*tiny_opts, "train_size=[32,64]", "val_size=[32,64]", f"db_root={db_root}",
            f"output_dir={tmp_path / 'out'}", "max_iter=4", "val_interval=2",
            f"partial_labels_file={tmp_path / 'cityscapes_onelabel.pth'}"]
    proc = run(["main.py", "--config_exp", CONFIG, "--opts"] + opts)
    run_dir = tmp_path / "out" / "cityscapes_resnet18_onelabel"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"semseg", "depth", "delta_m"} <= set(metrics) and "edge" not in metrics
    assert set(metrics["depth"]) == {"absErr", "relErr"} and metrics["depth"]["absErr"] > 0
    assert 0.0 <= metrics["semseg"]["mIoU"] <= 100.0
    expected = ((metrics["semseg"]["mIoU"] - 75.82) / 75.82 * 100  # the paper's single-task references
                + (0.0125 - metrics["depth"]["absErr"]) / 0.0125 * 100) / 2
    assert metrics["delta_m"] == pytest.approx(expected)
    assert "absErr" in proc.stdout and "7 train / 3 val images" in proc.stdout
    assert torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)["iteration"] == 4

    run(["main.py", "--config_exp", CONFIG, "--run_mode", "infer", "--checkpoint", str(run_dir / "best.pth"),
         "--opts"] + opts + ["eval_kwargs.save_predictions=true"])
    infer_dir = run_dir / "infer"
    infer_metrics = json.loads((infer_dir / "metrics.json").read_text())
    assert set(infer_metrics["depth"]) == {"absErr", "relErr"} and "delta_m" in infer_metrics
    assert "absErr" in (infer_dir / "metrics.txt").read_text()
    semseg = Image.open(infer_dir / "predictions" / "semseg" / "0.png")
    assert semseg.mode == "P" and semseg.size == (64, 32) and np.array(semseg).max() < 7
    assert semseg.getpalette()[:21] == CITYSCAPES7_PALETTE[:7].reshape(-1).tolist()
    assert len(list((infer_dir / "predictions" / "depth").glob("*.png"))) == 3

    image = (np.load(db_root / "cityscapes" / "val" / "image" / "1.npy") * 255).round().astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "street.png")
    run(["inference.py", "--config_path", CONFIG, "--checkpoint", str(run_dir / "best.pth"), "--image_path",
         str(tmp_path / "street.png"), "--save_dir", str(tmp_path / "pred"), "--device", "cpu",
         "--opts"] + opts)
    drawn = Image.open(tmp_path / "pred" / "semseg" / "street.png")
    assert drawn.size == (64, 32) and drawn.getpalette()[:21] == CITYSCAPES7_PALETTE[:7].reshape(-1).tolist()
    for folder in ("depth", "depth_mm", "overview"):
        assert (tmp_path / "pred" / folder / "street.png").is_file(), folder
