"""data/splits/: the paper's partial-label splits ship with the project, in JSON, and the
paper configs train on them by default (data/splits/README.md)."""
import contextlib
import gzip
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from data.datasets import build_dataset
from data.partial_labels import (LOGGER, build_task_masks, generate, load_partial_labels, resolve_split_path,
                                 save_json, summarize, task_mask_table)
from utils.config import load_config
from utils.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SPLITS = REPO / "data" / "splits"
REFERENCE = Path(os.environ.get("DIFFUSIONMTL_REFERENCE",
                                Path(__file__).resolve().parents[3] / "shared" / "reference"))
MTPSL = REFERENCE / "partial_labels" / "mtpsl"

# file -> (dataset, setting, images, labelled images per task, images per number of tasks); the
# statistics of MTPSL's files (SPEC, Partial-label split files; tests/data/test_partial_labels.py)
SHIPPED = {
    "pascal_onelabel.json.gz": ("PASCALContext", "onelabel", 4998,
                                {"semseg": 1000, "human_parts": 999, "sal": 1000, "normals": 1000, "edge": 999},
                                {"1": 4998}),
    "pascal_randomlabels.json.gz": ("PASCALContext", "randomlabels", 4998,
                                    {"semseg": 2450, "human_parts": 847, "sal": 2445, "normals": 2480, "edge": 2557},
                                    {"1": 1538, "2": 1529, "3": 1541, "4": 390}),
    "nyud_mtan_onelabel.json.gz": ("NYUD_MTAN", "onelabel", 795, {"semseg": 265, "depth": 265, "normals": 265},
                                   {"1": 795}),
    "nyud_mtan_randomlabels.json.gz": ("NYUD_MTAN", "randomlabels", 795,
                                       {"semseg": 392, "depth": 408, "normals": 385}, {"1": 405, "2": 390}),
    "cityscapes_onelabel.json.gz": ("Cityscapes", "onelabel", 2975, {"semseg": 1487, "depth": 1488}, {"1": 2975}),
}
# The same splits as the reference keeps them: MTPSL's weight files, and PASCAL's keyed by image name
REFERENCE_FILES = {"pascal_onelabel.json.gz": "pascal_onelabel.pth",
                   "pascal_randomlabels.json.gz": "pascal_randomlabels.pth",
                   "nyud_mtan_onelabel.json.gz": "nyud_onelabel.pth",
                   "nyud_mtan_randomlabels.json.gz": "nyud_randomlabels.pth",
                   "cityscapes_onelabel.json.gz": "cityscapes_onelabel.pth"}


def test_every_shipped_split_is_listed_with_its_license():
    assert sorted(p.name for p in SPLITS.glob("*.json.gz")) == sorted(SHIPPED)
    assert "MIT License" in (SPLITS / "LICENSE").read_text()
    readme = (SPLITS / "README.md").read_text()
    assert all(name in readme for name in SHIPPED)
    assert not list(SPLITS.glob("*.npy")) and not list(SPLITS.glob("*.pth"))  # nothing that unpickles


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_split_has_the_official_statistics(name):
    dataset, setting, num_images, per_task, per_image = SHIPPED[name]
    record = load_partial_labels(SPLITS / name)
    assert (record["dataset"], record["setting"]) == (dataset, setting)
    summary = summarize(record)
    assert summary["num_images"] == num_images
    assert summary["labels_per_task"] == per_task and list(summary["labels_per_task"]) == record["tasks"]
    assert summary["tasks_per_image"] == per_image
    json.loads(gzip.decompress((SPLITS / name).read_bytes()))  # plain JSON inside


def test_mtan_splits_are_indexed_by_row():
    for name, size in (("nyud_mtan_onelabel.json.gz", 795), ("cityscapes_onelabel.json.gz", 2975)):
        assert list(load_partial_labels(SPLITS / name)["labels"]) == [str(i) for i in range(size)]


def _reference(name):
    path = REFERENCE / "partial_labels" / REFERENCE_FILES[name]
    if not path.is_file():
        pytest.skip(f"reference split files not available ({path})")
    return load_partial_labels(path)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_split_equals_the_reference_file(name):
    reference, shipped = _reference(name), load_partial_labels(SPLITS / name)
    assert shipped["tasks"] == reference["tasks"] and shipped["dataset"] == reference["dataset"]
    assert shipped["labels"] == reference["labels"]


def test_conversion_from_mtpsl_reproduces_the_shipped_bytes(tmp_path):
    """The one-off conversion (the only code that unpickles) gives the committed files back."""
    if not MTPSL.is_dir():
        pytest.skip(f"MTPSL's split files not available ({MTPSL})")
    from data.splits.convert_mtpsl import convert
    written = convert(MTPSL, tmp_path)
    assert sorted(p.name for p in written) == sorted(SHIPPED)
    for path in written:
        assert path.read_bytes() == (SPLITS / path.name).read_bytes(), path.name


def _paper_configs():
    """Every shipped config whose dataset has an official split, with the file it must name."""
    for path in sorted((REPO / "configs").glob("*/*.yml")):
        raw = yaml.safe_load(path.read_text())
        dataset, setting = raw["train_db_name"], raw.get("ssl_type", "onelabel")
        name = {"PASCALContext": "pascal", "NYUD_MTAN": "nyud_mtan", "Cityscapes": "cityscapes"}.get(dataset)
        yield path.relative_to(REPO), (f"data/splits/{name}_{setting}.json.gz" if name else None)


@pytest.mark.parametrize("config, expected", list(_paper_configs()), ids=lambda v: str(v))
def test_paper_configs_train_on_the_shipped_split(config, expected):
    cfg = load_config(str(REPO / config), opts=["db_root=."])
    assert cfg.partial_labels_file == expected
    if expected:
        record = load_partial_labels(cfg.partial_labels_file)
        assert (record["dataset"], record["setting"]) == (cfg.train_db_name, cfg.ssl_type)


def test_demo_and_tiny_configs_keep_a_generated_split(tiny_cfg):
    assert load_config(str(REPO / "configs" / "demo.yml"), opts=["db_root=."]).partial_labels_file is None
    assert tiny_cfg().partial_labels_file is None


def test_relative_split_path_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = load_partial_labels("data/splits/nyud_mtan_onelabel.json.gz")
    assert len(record["labels"]) == 795
    (tmp_path / "data" / "splits").mkdir(parents=True)  # a file of that name here wins
    save_json(generate("NYUD_MTAN", ["0", "1"], ["semseg", "depth"], "onelabel", 0),
              tmp_path / "data" / "splits" / "nyud_mtan_onelabel.json.gz")
    assert len(load_partial_labels("data/splits/nyud_mtan_onelabel.json.gz")["labels"]) == 2
    with pytest.raises(DataError, match=r"not found: data/splits/absent.json \(looked in the working directory"):
        load_partial_labels("data/splits/absent.json")


def test_split_ids_absent_from_the_dataset_are_an_error():
    record = generate("PASCALContext", ["a", "b", "c", "d"], ["semseg", "sal"], "onelabel", 0)
    with pytest.raises(DataError, match=r"split.json: 2 of its 4 image ids are not in the dataset's training split "
                                        r"of 2 images \(first: \['c', 'd'\]\)"):
        task_mask_table(record, ["a", "b"], ["semseg", "sal"], "split.json")


def test_official_split_on_a_generated_dataset_names_the_absent_ids(pascal_db, tmp_path):
    cfg = load_config(str(REPO / "configs" / "pascal" / "resnet18_onelabel.yml"),
                      opts=[f"db_root={pascal_db.db_root}", f"output_dir={tmp_path}"])
    with pytest.raises(DataError, match=r"pascal_onelabel.json.gz: 4998 of its 4998 image ids are not in the "
                                        r"dataset's training split of 12 images \(first: \['2008_000008', "):
        build_dataset(cfg, "train")


@contextlib.contextmanager
def _captured(logger):
    """The messages `logger` emits at INFO (its level and handlers restored after)."""
    messages, level = [], logger.level
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_split_in_use_is_logged(tiny_cfg, tmp_path):
    ids = [str(i) for i in range(795)]
    cfg = tiny_cfg("train_db_name=NYUD_MTAN", "val_db_name=NYUD_MTAN", "task_dictionary.include_human_parts=false",
                   "task_dictionary.include_sal=false", "task_dictionary.include_edge=false",
                   "task_dictionary.include_depth=true", "partial_labels_file=data/splits/nyud_mtan_onelabel.json.gz")
    with _captured(LOGGER) as messages:
        masks = build_task_masks(cfg, ids)
    assert masks.sum(axis=0).tolist() == [265, 265, 265] and (masks.sum(axis=1) == 1).all()
    path = resolve_split_path("data/splits/nyud_mtan_onelabel.json.gz")  # relative when the cwd is the project
    assert messages == [f"partial labels: onelabel split {path} (the paper's split: MTPSL's nyuv2_onelabel.pth); "
                        "labelled training images per task: semseg 265, depth 265, normals 265"]
    with _captured(LOGGER) as messages:
        build_task_masks(tiny_cfg("seed=4"), [f"im{i}" for i in range(10)])
    assert messages[0].startswith("partial labels: generated onelabel split (seed 4; partial_labels_file is null)")
    assert np.array_equal(build_task_masks(tiny_cfg("ssl_type=full"), ["a"]), [[True] * 5])
