"""benchmarks.loader end to end on tiny synthetic datasets: every stage is reported."""
import json
from pathlib import Path

from benchmarks.loader import loader_samples_per_second, main
from utils.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PASCAL_TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]


def _report(capsys):
    lines = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_pascal_report_has_every_stage(capsys):
    config = CONFIGS / "pascal" / "resnet18_onelabel.yml"
    assert main(["--config", str(config), "--size", "48", "--samples", "6", "--passes", "1",
                 "--workers", "1"]) == 0
    lines, report = _report(capsys)
    assert report["dataset"] == "PASCALContext" and report["train_size"] == [48, 48]
    for section in ("ms_per_sample", "ms_per_sample_cached"):
        stages = report[section]
        assert {f"decode {t}" for t in PASCAL_TASKS} | {"decode image"} <= set(stages)
        for setting in ("one-label", "all labels"):
            for stage in ("augment", "tensors", "total", "mean total"):
                assert stages[f"{stage} {setting}"] > 0
        assert stages["total all labels"] >= stages["augment all labels"] + stages["tensors all labels"] - 1e-6
    assert report["dataloader"] == {"workers": 1, "batch": 6, "samples_per_s": report["dataloader"]["samples_per_s"]}
    assert report["dataloader"]["samples_per_s"] > 0
    assert any(line.startswith("DataLoader, 1 workers") for line in lines)


def test_layout_option_measures_that_datasets_tasks(capsys):
    config = CONFIGS / "pascal" / "resnet18_onelabel.yml"
    assert main(["--config", str(config), "--layout", "nyud_mtan", "--size", "32", "--samples", "4",
                 "--passes", "1", "--workers", "0", "--opts", "trBatch=2"]) == 0
    _, report = _report(capsys)
    assert report["dataset"] == "NYUD_MTAN" and report["tasks"] == ["semseg", "depth", "normals"]
    assert "ms_per_sample_cached" not in report  # the label cache is PASCAL-Context's
    assert {"decode semseg", "decode depth", "decode normals"} <= set(report["ms_per_sample"])


def test_samples_per_second_of_a_config(pascal_db, tmp_path):
    cfg = load_config(str(CONFIGS / "pascal" / "resnet18_onelabel.yml"),
                      [f"db_root={pascal_db.db_root}", f"output_dir={tmp_path}", "partial_labels_file=",
                       "train_size=[32, 32]", "trBatch=2"])
    assert loader_samples_per_second(cfg, 0, 6) > 0


def test_bad_config_is_one_error_line(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.yml"), "--samples", "2"]) == 2
    assert "config file not found" in capsys.readouterr().err
