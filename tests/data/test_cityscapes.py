"""Cityscapes (MTAN layout): the loader on generated data, build_dataset with the one-label
split and the protocol's transforms (tests/data/test_mtan_transforms.py checks their
arithmetic), and the synthetic street scenes."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from data.cityscapes import Cityscapes
from data.datasets import build_dataset
from data.mtan_transforms import MTANTrainTransform, MTANValTransform
from data.synthetic import KINDS, generate
from utils.config import load_config
from utils.errors import DataError

REPO = Path(__file__).resolve().parents[2]
TASKS = ["semseg", "depth"]


@pytest.fixture
def db_root(cityscapes_db):
    db = cityscapes_db
    assert (db.n_train, db.n_val, db.size, db.seed) == (7, 3, (32, 64), 2)  # the numbers the tests below use
    return cityscapes_db.db_root


@pytest.fixture
def broken_root(tmp_path, cityscapes_db):
    """A private copy to damage."""
    return cityscapes_db.copy_to(tmp_path).root


def arrays(root, split, index):
    folder = Path(root) / split
    return {name: np.load(folder / name / f"{index}.npy") for name in ("image", "label_7", "label_19", "depth")}


def test_layout_shapes_and_value_ranges(db_root):
    root = db_root / "cityscapes"
    assert sorted(os.listdir(root)) == ["train", "val"]
    assert sorted(os.listdir(root / "train")) == ["depth", "image", "label_19", "label_7"]
    assert sorted(os.listdir(root / "val" / "label_7")) == ["0.npy", "1.npy", "2.npy"]
    seen_7, seen_19, void = set(), set(), 0
    for index in range(7):
        raw = arrays(root, "train", index)
        assert raw["image"].dtype == np.float32 and raw["image"].shape == (32, 64, 3)
        assert 0.0 <= raw["image"].min() and raw["image"].max() <= 1.0
        assert raw["label_7"].shape == raw["label_19"].shape == (32, 64)
        assert raw["depth"].shape == (32, 64, 1) and raw["depth"].min() >= 0.0
        seen_7 |= set(np.unique(raw["label_7"]).tolist())
        seen_19 |= set(np.unique(raw["label_19"]).tolist())
        void += int((raw["label_7"] == -1).sum())
        # the two label sets agree: void in one is void in the other; sky is sky
        assert ((raw["label_7"] == -1) == (raw["label_19"] == -1)).all()
        assert ((raw["label_7"] == 4) == (raw["label_19"] == 10)).all()
        # related tasks: no depth on the sky or on void pixels; near things have larger inverse depth
        assert (raw["depth"][..., 0][(raw["label_7"] == 4) | (raw["label_7"] == -1)] == 0).all()
    assert seen_7 <= set(range(-1, 7)) and {0, 1, 4} <= seen_7
    assert seen_19 <= set(range(-1, 19)) and len(seen_19) > len(seen_7)
    assert void > 0


def test_loader_round_trip(db_root):
    root = db_root / "cityscapes"
    loader = Cityscapes(str(root), "train", TASKS)
    assert loader.ids == [str(i) for i in range(7)] and len(loader) == 7
    for index in (0, 6):
        sample = loader.load(index)
        raw = arrays(root, "train", index)
        assert sample["image"].dtype == np.float32 and np.array_equal(sample["image"], raw["image"])  # not quantised
        assert sample["semseg"].dtype == np.uint8
        assert np.array_equal(sample["semseg"], np.where(raw["label_7"] == -1, 255, raw["label_7"]))
        assert sample["depth"].dtype == np.float32 and np.array_equal(sample["depth"], raw["depth"][..., 0])
        assert sample["meta"] == {"id": str(index), "size": (32, 64)}
    nineteen = Cityscapes(str(root), "val", TASKS, num_classes=19).load(2)
    assert np.array_equal(nineteen["semseg"], np.where(arrays(root, "val", 2)["label_19"] == -1, 255,
                                                       arrays(root, "val", 2)["label_19"]))
    only_depth = loader.load(1, tasks=["depth"])
    assert (only_depth["semseg"] == 255).all() and (only_depth["depth"] != 255).any()
    assert list(Cityscapes(str(root), "val", ["depth"]).load(0)) == ["image", "depth", "meta"]


@pytest.mark.parametrize("damage, message", [
    (lambda root: os.remove(root / "train" / "depth" / "3.npy"), r"missing file .*depth.3\.npy \(sample '3'\)"),
    (lambda root: (root / "train" / "label_7" / "3.npy").write_bytes(b"garbage"),
     r"cannot read .*label_7.3\.npy \(sample '3'\)"),
    (lambda root: np.save(root / "train" / "label_7" / "3.npy", np.full((32, 64), 7.0, np.float32)),
     r"label_7.3\.npy \(sample '3'\): label 7 outside -1..6"),
    (lambda root: np.save(root / "train" / "depth" / "3.npy", np.zeros((16, 64, 1), np.float32)),
     r"depth.3\.npy \(sample '3'\) is 16x64, the image is 32x64"),
    (lambda root: np.save(root / "train" / "depth" / "3.npy", np.full((32, 64, 1), np.nan, np.float32)),
     r"depth.3\.npy \(sample '3'\): inverse depth must be finite"),
    (lambda root: np.save(root / "train" / "image" / "3.npy", np.full((32, 64, 3), 1.0005, np.float32)),
     r"image.3\.npy \(sample '3'\): image values must be in \[0, 1\], found 1.0005$"),
    (lambda root: np.save(root / "train" / "image" / "3.npy", np.full((32, 64, 3), -1e-5, np.float64)),
     r"image.3\.npy \(sample '3'\): image values must be in \[0, 1\], found -1e-05$"),
    (lambda root: np.save(root / "train" / "image" / "3.npy", np.full((32, 64, 3), 200, np.uint8)),
     r"image.3\.npy \(sample '3'\): image must hold floats in \[0, 1\] \(the MTAN layout\), got uint8$"),
])
def test_broken_files_name_the_file_and_the_sample(broken_root, damage, message):
    damage(broken_root)
    with pytest.raises(DataError, match=message):
        Cityscapes(str(broken_root), "train", TASKS).load(3)


def test_files_lists_what_load_reads(broken_root):
    """`files` (the run's up-front check for missing files) names the label set in use."""
    loader = Cityscapes(str(broken_root), "train", TASKS, num_classes=19)
    folder = broken_root / "train"
    assert loader.files(2) == [(str(folder / "image" / "2.npy"),), (str(folder / "label_19" / "2.npy"),),
                               (str(folder / "depth" / "2.npy"),)]
    assert loader.files(2, ["depth"]) == [(str(folder / "image" / "2.npy"),), (str(folder / "depth" / "2.npy"),)]


def test_construction_errors(broken_root):
    with pytest.raises(DataError, match="label sets"):
        Cityscapes(str(broken_root), "train", TASKS, num_classes=13)
    with pytest.raises(DataError, match="no task 'normals'"):
        Cityscapes(str(broken_root), "train", ["semseg", "normals"])
    with pytest.raises(DataError, match="split 'test' not found"):
        Cityscapes(str(broken_root), "test", TASKS)
    np.save(broken_root / "train" / "image" / "extra.npy", np.zeros((32, 64, 3), np.float32))
    with pytest.raises(DataError, match="extra.npy is not a row index"):
        Cityscapes(str(broken_root), "train", TASKS)


def test_train_transform_draws_from_the_protocol_scales(db_root):
    """Every depth value of a training sample is a stored one divided by one scale of
    (1, 1.2, 1.5), and each scale occurs."""
    loader = Cityscapes(str(db_root / "cityscapes"), "train", TASKS)
    raw = loader.load(0)
    valid = np.unique(raw["depth"][raw["depth"] > 0])
    transform = MTANTrainTransform(TASKS, (32, 64), flip_prob=0.5)
    seen = set()
    for seed in range(40):
        out = transform(dict(raw, task_mask=np.array([True, True])), rng=np.random.default_rng(seed))
        assert out["image"].shape == (3, 32, 64) and out["semseg"].shape == (32, 64)
        assert out["semseg"].dtype == torch.int64 and out["depth"].shape == (1, 32, 64)
        depth = out["depth"][0].numpy()
        values = np.unique(depth[depth > 0])
        for scale in (1.0, 1.2, 1.5):
            if np.isin(values, (valid / np.float32(scale)).astype(np.float32)).all():
                seen.add(scale)
                break
        else:
            pytest.fail(f"seed {seed}: depth values are not the stored ones divided by one scale")
    assert seen == {1.0, 1.2, 1.5}


def config(db_root, *opts):
    return load_config(str(REPO / "configs" / "cityscapes" / "resnet18_onelabel.yml"),
                       opts=[f"db_root={db_root}", "train_size=[32,64]", "val_size=[32,64]", *opts])


def test_build_dataset_with_an_official_format_split(db_root, tmp_path):
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 3 + [[0.0, 1.0]])  # 7 rows: [semantic, depth]
    torch.save({"labels_weights": weights}, tmp_path / "cityscapes_onelabel.pth")
    cfg = config(db_root, f"partial_labels_file={tmp_path / 'cityscapes_onelabel.pth'}")
    train = build_dataset(cfg, "train")
    assert isinstance(train.transform, MTANTrainTransform) and train.transform.flip_prob == 0.5
    assert isinstance(build_dataset(cfg, "val").transform, MTANValTransform) and len(train) == 7
    assert train.task_masks.tolist() == (weights != 0).tolist()
    for index in range(7):
        sample = train[index]
        assert sample["task_mask"].tolist() == (weights[index] != 0).tolist()
        unlabelled = "depth" if weights[index, 0] else "semseg"
        assert (sample[unlabelled] == 255).all()
    val = build_dataset(cfg, "val")
    assert len(val) == 3 and val.task_masks.all()
    raw = arrays(db_root / "cityscapes", "val", 1)
    sample = val[1]
    assert sample["semseg"].tolist() == np.where(raw["label_7"] == -1, 255, raw["label_7"]).tolist()
    assert torch.equal(sample["depth"][0], torch.from_numpy(raw["depth"][..., 0]))


def test_build_dataset_nineteen_classes_and_generated_split(db_root):
    cfg = config(db_root, "semseg_classes=19", "seed=1", "partial_labels_file=")  # generated ids: not the paper's split
    val = build_dataset(cfg, "val")
    raw = arrays(db_root / "cityscapes", "val", 0)
    assert val[0]["semseg"].tolist() == np.where(raw["label_19"] == -1, 255, raw["label_19"]).tolist()
    masks = build_dataset(cfg, "train").task_masks
    assert (masks.sum(axis=1) == 1).all() and sorted(masks.sum(axis=0).tolist()) == [3, 4]


def test_missing_dataset_names_the_generator(tmp_path):
    with pytest.raises(DataError, match="data.synthetic --layout cityscapes"):
        build_dataset(config(tmp_path), "train")


def test_street_scenes_are_deterministic_and_use_the_street_kinds(tmp_path, db_root):
    again = generate("cityscapes", str(tmp_path), 7, 3, (32, 64), seed=2)
    for name in ("image", "label_19", "depth"):
        assert (Path(again) / "train" / name / "5.npy").read_bytes() == \
            (db_root / "cityscapes" / "train" / name / "5.npy").read_bytes()
    other = generate("cityscapes", str(tmp_path / "other"), 1, 1, (32, 64), seed=3)
    assert (Path(other) / "train" / "image" / "0.npy").read_bytes() != \
        (db_root / "cityscapes" / "train" / "image" / "0.npy").read_bytes()
    assert KINDS[-4:] == ("building", "sidewalk", "pole", "sign")  # appended: older layouts unchanged
