"""data/partial_labels.py: generated splits follow the protocol; official files load safely."""
import collections
import fractions
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data.partial_labels import (generate, load_partial_labels, main, save_json, summarize,
                                 task_mask_table)
from utils.errors import DataError

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("DIFFUSIONMTL_REFERENCE",
                                Path(__file__).resolve().parents[3] / "shared" / "reference"))
OFFICIAL = REFERENCE / "partial_labels"
PASCAL_TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]
NYUD_TASKS = ["semseg", "depth", "normals"]
CITYSCAPES_TASKS = ["semseg", "depth"]


@functools.cache
def official(name):
    """The loaded official split (loading a PASCAL file takes seconds: cache it)."""
    path = OFFICIAL / name
    if not path.is_file():
        pytest.skip(f"official split files not available ({path})")
    return load_partial_labels(path)


def table(record):
    return np.array(list(record["labels"].values()))


@pytest.mark.parametrize("name, num_images, per_task, per_image", [
    ("pascal_onelabel.pth", 4998, [1000, 999, 1000, 1000, 999], {"1": 4998}),
    ("pascal_randomlabels.pth", 4998, [2450, 847, 2445, 2480, 2557], None),
    ("nyud_onelabel.pth", 795, [265, 265, 265], {"1": 795}),
    ("cityscapes_onelabel.pth", 2975, [1487, 1488], {"1": 2975}),
])
def test_official_split_statistics(name, num_images, per_task, per_image):
    summary = summarize(official(name))
    assert summary["num_images"] == num_images
    assert list(summary["labels_per_task"].values()) == per_task
    if per_image is not None:
        assert summary["tasks_per_image"] == per_image
    else:
        assert set(summary["tasks_per_image"]) == {"1", "2", "3", "4"}


def test_official_files_map_to_dataset_ids_by_task_name():
    pascal = official("pascal_onelabel.pth")
    assert pascal["tasks"] == PASCAL_TASKS and pascal["setting"] == "onelabel"
    ids = sorted(pascal["labels"])[:10]
    subset = {**pascal, "labels": {i: pascal["labels"][i] for i in ids}}  # a split names only dataset ids
    masks = task_mask_table(subset, ids, ["sal", "semseg"], "pascal_onelabel.pth")
    assert masks.tolist() == [[pascal["labels"][i][2] == 1, pascal["labels"][i][0] == 1] for i in ids]

    nyud = official("nyud_onelabel.pth")
    assert nyud["tasks"] == NYUD_TASKS and nyud["dataset"] == "NYUD_MTAN"
    masks = task_mask_table(nyud, [str(i) for i in range(795)], NYUD_TASKS, "nyud_onelabel.pth")
    assert masks.shape == (795, 3) and (masks.sum(axis=1) == 1).all()


def test_official_cityscapes_split_maps_rows_to_the_mtan_indices():
    cityscapes = official("cityscapes_onelabel.pth")
    assert cityscapes["dataset"] == "Cityscapes" and cityscapes["tasks"] == CITYSCAPES_TASKS
    assert cityscapes["setting"] == "onelabel"
    weights = torch.load(OFFICIAL / "cityscapes_onelabel.pth", weights_only=True)["labels_weights"]
    masks = task_mask_table(cityscapes, [str(i) for i in range(2975)], ["depth", "semseg"], "cityscapes")
    assert masks.tolist() == (weights[:, [1, 0]] != 0).tolist()


def test_two_column_weight_files_are_cityscapes_splits(tmp_path):
    """The format of MTPSL's Cityscapes file, checked without the file itself."""
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    torch.save({"labels_weights": weights}, tmp_path / "cityscapes_onelabel.pth")
    record = load_partial_labels(tmp_path / "cityscapes_onelabel.pth")
    assert record["dataset"] == "Cityscapes" and record["setting"] == "onelabel"
    assert record["labels"] == {"0": [1, 0], "1": [0, 1], "2": [0, 1]}
    assert summarize(record)["labels_per_task"] == {"semseg": 1, "depth": 2}


def test_cli_generates_a_cityscapes_split(tmp_path, capsys):
    images = tmp_path / "cityscapes" / "train" / "image"
    images.mkdir(parents=True)
    for index in range(11):
        np.save(images / f"{index}.npy", np.zeros((2, 2, 3), np.float32))
    out = tmp_path / "split.json"
    assert main(["--dataset", "cityscapes", "--root", str(tmp_path / "cityscapes"), "--seed", "4",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "Cityscapes" and summary["tasks"] == CITYSCAPES_TASKS
    assert sorted(summary["labels_per_task"].values()) == [5, 6] and summary["tasks_per_image"] == {"1": 11}
    assert sorted(load_partial_labels(out)["labels"], key=int) == [str(i) for i in range(11)]


def test_onelabel_is_one_task_per_image_and_balanced():
    ids = [f"im{i:03d}" for i in range(103)]
    labels = table(generate("PASCALContext", ids, PASCAL_TASKS, "onelabel", seed=0))
    assert (labels.sum(axis=1) == 1).all()
    counts = labels.sum(axis=0)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 103


def test_randomlabels_are_uniform_nonempty_nonfull_subsets():
    ids = [str(i) for i in range(6000)]
    labels = table(generate("NYUD_MTAN", ids, NYUD_TASKS, "randomlabels", seed=1))
    assert labels.sum(axis=1).min() == 1 and labels.sum(axis=1).max() == 2
    subsets = collections.Counter(map(tuple, labels.tolist()))
    assert len(subsets) == 6 and all(900 < n < 1100 for n in subsets.values())


def test_full_labels_everything():
    assert table(generate("NYUD", ["a", "b"], NYUD_TASKS, "full", seed=0)).all()


def test_generation_is_deterministic_and_independent_of_id_order():
    ids = [f"im{i:03d}" for i in range(50)]
    first = generate("PASCALContext", ids, PASCAL_TASKS, "randomlabels", seed=7)
    again = generate("PASCALContext", ids[::-1], PASCAL_TASKS, "randomlabels", seed=7)
    other = generate("PASCALContext", ids, PASCAL_TASKS, "randomlabels", seed=8)
    assert first == again and first["labels"] != other["labels"]


def test_json_round_trip(tmp_path):
    record = generate("PASCALContext", ["b", "a", "c"], PASCAL_TASKS, "onelabel", seed=3)
    save_json(record, tmp_path / "split.json")
    assert load_partial_labels(tmp_path / "split.json") == record
    json.loads((tmp_path / "split.json").read_text())  # valid JSON


def test_mapping_errors_name_the_file(tmp_path):
    record = generate("PASCALContext", ["a", "b"], PASCAL_TASKS, "onelabel", seed=0)
    with pytest.raises(DataError, match="split.json.*1 of the 3"):
        task_mask_table(record, ["a", "b", "zzz"], PASCAL_TASKS, "split.json")
    with pytest.raises(DataError, match="split.json.*depth"):
        task_mask_table(record, ["a"], ["semseg", "depth"], "split.json")

    record["labels"]["a"] = [1, 0, 0]  # three values for five tasks
    (tmp_path / "bad.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="bad.json.*'a'"):
        load_partial_labels(tmp_path / "bad.json")

    torch.save({"labels_weights": torch.zeros(4, 4)}, tmp_path / "four_columns.pth")
    with pytest.raises(DataError, match="four_columns.pth.*N, 2"):
        load_partial_labels(tmp_path / "four_columns.pth")
    with pytest.raises(DataError, match="not found"):
        load_partial_labels(tmp_path / "absent.json")


def test_pickles_with_other_globals_are_refused(tmp_path):
    torch.save({"2008_000001": [1, 0, 0, 0, 0], "x": fractions.Fraction(1, 3)}, tmp_path / "evil.pth")
    with pytest.raises(DataError, match="evil.pth.*cannot load"):
        load_partial_labels(tmp_path / "evil.pth")


def test_cli_generates_a_split(tmp_path, capsys):
    root = tmp_path / "PASCALContext"
    (root / "ImageSets" / "Context").mkdir(parents=True)
    (root / "ImageSets" / "Context" / "train.txt").write_text("".join(f"im{i}\n" for i in range(12)))
    out = tmp_path / "split.json"
    assert main(["--dataset", "pascal", "--root", str(root), "--setting", "onelabel", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 12
    assert load_partial_labels(out) == generate("PASCALContext", [f"im{i}" for i in range(12)],
                                                PASCAL_TASKS, "onelabel", seed=0)
    assert main(["--dataset", "pascal", "--root", str(tmp_path), "--out", str(out)]) == 2
    assert "train.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_summary_cli_for_json_and_official_pth(tmp_path):
    ids = [f"im{i}" for i in range(12)]
    save_json(generate("PASCALContext", ids, PASCAL_TASKS, "onelabel", seed=0), tmp_path / "split.json")
    files = [str(tmp_path / "split.json")]
    if (OFFICIAL / "nyud_onelabel.pth").is_file():
        files.append(str(OFFICIAL / "nyud_onelabel.pth"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "data.partial_labels", "--summary", *files], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summaries = [json.loads(line) for line in result.stdout.splitlines()]
    assert summaries[0]["num_images"] == 12 and summaries[0]["tasks"] == PASCAL_TASKS
    assert sorted(summaries[0]["labels_per_task"].values()) == [2, 2, 2, 3, 3]
    assert summaries[0]["tasks_per_image"] == {"1": 12}
    if len(files) == 1:
        pytest.skip(f"official split files not available ({OFFICIAL})")
    assert summaries[1]["labels_per_task"] == {"semseg": 265, "depth": 265, "normals": 265}


def test_gzip_json_round_trip_is_deterministic(tmp_path):
    record = generate("NYUD_MTAN", [str(i) for i in range(7)], NYUD_TASKS, "randomlabels", seed=2)
    record["source"] = {"origin": "a test", "file": "x.pth", "sha256": "0" * 64}
    save_json(record, tmp_path / "a" / "split.json.gz")
    save_json(record, tmp_path / "b" / "split.json.gz")
    assert (tmp_path / "a" / "split.json.gz").read_bytes() == (tmp_path / "b" / "split.json.gz").read_bytes()
    assert load_partial_labels(tmp_path / "a" / "split.json.gz") == record
    record["source"] = "somewhere"
    save_json(record, tmp_path / "bad.json")
    with pytest.raises(DataError, match="bad.json: 'source' must be a JSON object"):
        load_partial_labels(tmp_path / "bad.json")
