"""benchmarks.train_loop end to end on a tiny config: main.py's loader and step, every figure reported."""
import json
from pathlib import Path

import pytest

from benchmarks.train_loop import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.slow
def test_report_of_the_real_loop(capsys, tiny_opts):
    assert main(["--config_exp", str(CONFIGS / "pascal" / "resnet18_onelabel.yml"), "--device", "cpu",
                 "--iters", "2", "--warmup", "1", "--workers", "1", "--opts", *tiny_opts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["batch"] == 2 and report["size"] == [64, 64] and report["workers"] == 1
    assert report["iters"] == 2 and report["images_per_s"] > 0
    assert 0 <= report["data_wait_fraction"] <= 1
    assert report["gflop_per_image"] > 0 and 0 < report["mfu"] < 2 and report["peak_memory_mb"] > 0
    assert report["loader_samples_per_s"] > 0
    assert report["loader_samples_per_s_per_worker"] == report["loader_samples_per_s"]
    assert lines[0].startswith("train loop: ") and lines[1].startswith("loader alone: ")


def test_cuda_without_a_gpu_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["--config_exp", str(CONFIGS / "demo.yml"), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
