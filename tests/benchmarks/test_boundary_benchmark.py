"""benchmarks.boundary end to end on small images: one JSON line with every figure."""
import json

import numpy as np

from benchmarks.boundary import PASCAL_VAL_IMAGES, boundary_pair, main


def test_boundary_benchmark_prints_one_json_line(capsys):
    assert main(["--size", "48", "--width", "64", "--thresholds", "5", "--images", "3",
                 "--reference-images", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["size"] == [48, 64] and line["images"] == 3 and line["reference_images"] == 2
    assert line["ours_s_per_image"] > 0 and line["reference_s_per_image"] > 0
    assert line["speedup"] > 0
    assert line["largest_count_difference"] >= 0 and 0 <= line["largest_count_difference_fraction"] < 0.05
    assert 0 < line["ours_odsF"] <= 100 and 0 < line["reference_odsF"] <= 100
    # ours is a maximum matching: never below pyEdgeEval on the same images
    assert line["ours_odsF_on_reference_images"] >= line["reference_odsF"] - 1e-9
    projected = line["ours_s_per_image"] * PASCAL_VAL_IMAGES / 3600
    assert abs(line["pascal_val_core_hours_ours"] - projected) < 0.01


def test_boundary_benchmark_without_reference_and_bad_arguments(capsys):
    assert main(["--size", "32", "--thresholds", "3", "--images", "1", "--reference-images", "0"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert "speedup" not in line and line["ours_s_per_image"] > 0
    assert main(["--size", "32", "--images", "1", "--reference-images", "2"]) == 2
    assert main(["--max-dist", "0"]) == 2
    assert "error:" in capsys.readouterr().err


def test_benchmark_images_are_real_photos_with_boundaries():
    first, boundary = boundary_pair(0, 64, 96)
    later, _ = boundary_pair(21, 64, 96)  # a crop / flip of photo 1
    assert first.shape == boundary.shape == (64, 96) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0 and first.std() > 0.05
    assert 0.01 < boundary.mean() < 0.3
    assert not np.array_equal(first, later)
