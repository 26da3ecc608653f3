"""data.datasets.build_dataset on generated synthetic datasets, configured like a real run."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.datasets import build_dataset
from data.partial_labels import generate, save_json, train_ids
from utils.config import load_config
from utils.errors import DataError

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("DIFFUSIONMTL_REFERENCE",
                                Path(__file__).resolve().parents[3] / "shared" / "reference"))
SIZES = ["train_size=[48, 48]", "val_size=[64, 64]"]
MTAN = ["train_db_name=NYUD_MTAN", "val_db_name=NYUD_MTAN", "task_dictionary.include_human_parts=false",
        "task_dictionary.include_sal=false", "task_dictionary.include_edge=false",
        "task_dictionary.include_depth=true"]


@pytest.fixture
def db_root(pascal_db):
    assert (pascal_db.n_train, pascal_db.n_val, pascal_db.size) == (12, 4, (64, 64))  # the numbers below
    return pascal_db.db_root


@pytest.fixture
def config(tmp_path):
    """config(db_root, *opts): demo.yml on that dataset, with the label cache under tmp_path."""
    def load(db_root, *opts):
        return load_config(str(REPO / "configs" / "demo.yml"),
                           opts=[f"db_root={db_root}", f"output_dir={tmp_path}/out", *SIZES, *opts])
    return load


def test_onelabel_train_samples_ignore_their_unlabelled_tasks(db_root, config):
    cfg = config(db_root, "ssl_type=onelabel", "seed=3")
    dataset = build_dataset(cfg, "train")
    assert len(dataset) == 12 and dataset.task_masks.shape == (12, 5)
    counts = dataset.task_masks.sum(axis=0)
    assert (dataset.task_masks.sum(axis=1) == 1).all() and counts.max() - counts.min() <= 1
    labelled_with_values = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["task_mask"].dtype == torch.bool
        assert sample["task_mask"].tolist() == dataset.task_masks[index].tolist()
        assert sample["image"].shape == (3, 48, 48)
        for task, labelled in zip(cfg.TASKS.NAMES, sample["task_mask"].tolist()):
            if labelled:  # a labelled crop may still be all ignore (e.g. normals on the sky)
                labelled_with_values += bool((sample[task] != 255).any())
            else:
                assert (sample[task] == 255).all(), (index, task)
    assert labelled_with_values >= 5


def test_val_is_fully_labelled_and_padded(db_root, config):
    cfg = config(db_root)
    dataset = build_dataset(cfg, "val")
    sample = dataset[0]
    assert len(dataset) == 4 and sample["task_mask"].all()
    assert sample["image"].shape == (3, 64, 64) and sample["meta"]["size"].tolist() == [64, 64]
    assert (sample["sal"] != 255).any()


def test_full_labels(db_root, config):
    assert build_dataset(config(db_root, "ssl_type=full"), "train").task_masks.all()


def test_split_file_from_the_cli_matches_the_generated_split(db_root, tmp_path, config):
    cfg = config(db_root, "ssl_type=randomlabels", "seed=5")
    ids = train_ids("PASCALContext", cfg.train_db_dir)
    save_json(generate("PASCALContext", ids, cfg.TASKS.NAMES, "randomlabels", 5), tmp_path / "split.json")
    split_file = f"partial_labels_file={tmp_path}/split.json"
    from_file = build_dataset(config(db_root, "ssl_type=randomlabels", split_file), "train")
    generated = build_dataset(cfg, "train")
    assert from_file.ids == ids
    assert np.array_equal(from_file.task_masks, generated.task_masks)
    sums = generated.task_masks.sum(axis=1)
    assert sums.min() >= 1 and sums.max() <= 4


def test_split_file_for_other_images_is_an_error(db_root, tmp_path, config):
    record = generate("PASCALContext", ["2008_000002"], ["semseg", "sal"], "onelabel", 0)
    save_json(record, tmp_path / "other.json")
    cfg = config(db_root, f"partial_labels_file={tmp_path}/other.json")
    with pytest.raises(DataError, match="other.json"):
        build_dataset(cfg, "train")


def test_split_file_of_another_setting_is_an_error(db_root, tmp_path, config):
    cfg = config(db_root)
    ids = train_ids("PASCALContext", cfg.train_db_dir)
    save_json(generate("PASCALContext", ids, cfg.TASKS.NAMES, "onelabel", 0), tmp_path / "one.json")
    with pytest.raises(DataError, match="one.json.*'onelabel'.*'randomlabels'"):
        build_dataset(config(db_root, "ssl_type=randomlabels", f"partial_labels_file={tmp_path}/one.json"),
                      "train")


def test_official_nyud_file_maps_rows_to_mtan_indices(nyud_mtan_db, config, tmp_path):
    official = REFERENCE / "partial_labels" / "nyud_onelabel.pth"
    if not official.is_file():
        pytest.skip(f"official split files not available ({official})")
    assert (nyud_mtan_db.n_train, nyud_mtan_db.size) == (11, (32, 48))
    weights = torch.load(official, weights_only=True)["labels_weights"][:11]  # the rows of the 11 images
    path = tmp_path / "nyud_onelabel.pth"
    torch.save({"labels_weights": weights}, path)
    cfg = config(nyud_mtan_db.db_root, *MTAN, "train_size=[32, 48]", "val_size=[32, 48]", f"partial_labels_file={path}")
    dataset = build_dataset(cfg, "train")
    assert dataset.ids == [str(i) for i in range(11)]
    assert np.array_equal(dataset.task_masks, weights.numpy() != 0)
    sample = dataset[0]
    assert sample["depth"].shape == (1, 32, 48)
    for task, labelled in zip(["semseg", "depth", "normals"], sample["task_mask"].tolist()):
        assert labelled or (sample[task] == 255).all()


def test_missing_dataset_folder_points_to_the_generator(tmp_path, config):
    with pytest.raises(DataError, match="data.synthetic --layout pascal"):
        build_dataset(config(tmp_path), "train")


def test_augmentation_depends_only_on_seed_epoch_and_index(db_root, config):
    dataset = build_dataset(config(db_root), "train")

    def first_batch(workers, torch_seed):
        torch.manual_seed(torch_seed)
        loader = DataLoader(dataset, batch_size=4, num_workers=workers,
                            multiprocessing_context="fork" if workers else None)
        return next(iter(loader))

    first, second = first_batch(0, 0), first_batch(2, 123)
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["semseg"], second["semseg"])
    assert first["meta"]["id"] == dataset.ids[:4]
    assert torch.equal(dataset[5]["image"], dataset[5]["image"])
    before = dataset[5]["image"]
    dataset.set_epoch(1)
    assert not torch.equal(before, dataset[5]["image"])


def test_set_epoch_reaches_persistent_workers(db_root, config):
    # main.py keeps its training workers alive across epochs; the epoch that seeds the
    # augmentations must still reach them (it lives in shared memory)
    dataset = build_dataset(config(db_root), "train")
    loader = DataLoader(dataset, batch_size=2, num_workers=1, persistent_workers=True,
                        multiprocessing_context="fork")
    epoch0 = next(iter(loader))["image"]
    dataset.set_epoch(1)
    epoch1 = next(iter(loader))["image"]
    assert not torch.equal(epoch0, epoch1)
    assert torch.equal(epoch1[0], dataset[0]["image"])  # what the main process computes for epoch 1
    dataset.set_epoch(0)
    assert torch.equal(next(iter(loader))["image"], epoch0)


def test_pascal_labels_are_cached_under_output_dir(db_root, tmp_path, config):
    dataset = build_dataset(config(db_root, f"output_dir={tmp_path}", "ssl_type=full"), "train")
    dataset[0]
    cached = list((tmp_path / "label_cache").rglob("*.png"))
    assert cached  # the edge / human_parts maps decoded from the .mat files
    off = build_dataset(config(db_root, f"output_dir={tmp_path}/off", "ssl_type=full", "label_cache=false"), "train")
    assert torch.equal(off[0]["edge"], dataset[0]["edge"])
    assert not (tmp_path / "off" / "label_cache").exists()
