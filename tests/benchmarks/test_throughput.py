"""benchmarks.throughput end to end on a tiny config: one JSON line with every measurement."""
import json
from pathlib import Path

from benchmarks.throughput import main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pascal" / "resnet18_feature_official.yml"


def test_throughput_prints_one_json_line(capsys, tiny_opts):
    assert main(["--config", str(CONFIG), "--batch", "2", "--size", "32", "--iters", "1",
                 "--device", "cpu", "--matmul-size", "64", "--opts", *tiny_opts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    for name in ("train", "infer", "prelim"):
        assert line[f"{name}_images_per_s"] > 0 and line[f"{name}_gflop_per_image"] > 0
        assert line[f"{name}_matmul_fraction"] > 0
    assert line["decoder_flop_ratio"] > 1  # the refinement costs FLOPs
