"""NYUD (multi-task layout) and NYUDMTAN (MTAN .npy layout) decode the layouts
docs/datasets.md describes; build_dataset gives NYUD_MTAN the partial-label protocol's transforms."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.datasets import build_dataset
from data.mtan_transforms import MTANTrainTransform, MTANValTransform
from data.nyud import NYUD, NYUDMTAN
from utils.config import load_config
from utils.errors import DataError

REPO = Path(__file__).resolve().parents[2]

NYUD_TASKS = ["semseg", "depth", "normals", "edge"]
MTAN_TASKS = ["semseg", "depth", "normals"]


@pytest.fixture
def sources(nyud_db, nyud_mtan_db):
    """The session datasets (read only), with the counts and sizes the tests below use."""
    assert (nyud_db.n_train, nyud_db.n_val, nyud_db.size) == (4, 2, (40, 56))
    assert (nyud_mtan_db.n_train, nyud_mtan_db.n_val, nyud_mtan_db.size) == (11, 2, (32, 48))
    return {"nyud": str(nyud_db.root), "mtan": str(nyud_mtan_db.root)}


@pytest.fixture
def nyud_root(nyud_db, tmp_path):
    return nyud_db.copy_to(tmp_path).root


@pytest.fixture
def mtan_root(nyud_mtan_db, tmp_path):
    return nyud_mtan_db.copy_to(tmp_path).root


def _error(fn, *args):
    with pytest.raises(DataError) as info:
        fn(*args)
    return str(info.value)


def test_nyud_samples(sources):
    root = sources["nyud"]
    dataset = NYUD(root, "train", NYUD_TASKS)
    assert dataset.ids == ["000000", "000001", "000002", "000003"]
    for index, sample_id in enumerate(dataset.ids):
        sample = dataset[index]
        assert sample["meta"] == {"id": sample_id, "size": (40, 56)}
        assert sample["image"].dtype == np.uint8 and sample["image"].shape == (40, 56, 3)
        stored = np.array(Image.open(os.path.join(root, "segmentation", f"{sample_id}.png")))
        semseg = sample["semseg"]
        assert semseg.dtype == np.uint8 and semseg.shape == (40, 56)
        assert np.array_equal(semseg, np.where(stored == 0, 255, stored.astype(int) - 1))  # value - 1
        assert set(np.unique(semseg)) <= set(range(40)) | {255}
        depth = sample["depth"]
        assert depth.dtype == np.float32 and depth.shape == (40, 56) and depth.min() >= 0
        assert np.array_equal(depth, np.load(os.path.join(root, "depth", f"{sample_id}.npy")))
        normals = sample["normals"]
        assert normals.dtype == np.float32 and normals.shape == (40, 56, 3) and np.abs(normals).max() <= 1
        assert set(np.unique(sample["edge"])) <= {0, 1} and sample["edge"].dtype == np.uint8
    assert any((dataset[i]["depth"] == 0).any() for i in range(len(dataset)))  # missing depth kept as 0


def test_nyud_semseg_zero_becomes_ignore(nyud_root):
    dataset = NYUD(str(nyud_root), "val", ["semseg"])
    stored = np.array([[0, 1, 40, 41]], np.uint8)
    Image.fromarray(stored).save(nyud_root / "segmentation" / f"{dataset.ids[0]}.png")
    image = np.zeros((1, 4, 3), np.uint8)
    Image.fromarray(image).save(nyud_root / "images" / f"{dataset.ids[0]}.png")
    assert dataset[0]["semseg"].tolist() == [[255, 0, 39, 255]]


def test_nyud_jpg_images(nyud_root):
    dataset = NYUD(str(nyud_root), "train", ["edge"])
    png = nyud_root / "images" / f"{dataset.ids[1]}.png"
    Image.open(png).save(png.with_suffix(".jpg"), quality=95)
    png.unlink()
    assert dataset[1]["image"].shape == (40, 56, 3)


def test_nyud_depth_with_channel_axis(nyud_root):
    dataset = NYUD(str(nyud_root), "train", ["depth"])
    path = nyud_root / "depth" / f"{dataset.ids[0]}.npy"
    depth = np.load(path)
    np.save(path, depth[..., None].astype(np.float64))
    assert np.array_equal(dataset[0]["depth"], depth)


def test_mtan_samples(sources):
    root = sources["mtan"]
    dataset = NYUDMTAN(root, "train", MTAN_TASKS)
    assert dataset.ids == [str(i) for i in range(11)]  # numeric order: "10" after "9"
    for index in (0, 10):
        sample = dataset[index]
        assert sample["meta"] == {"id": str(index), "size": (32, 48)}
        stored = np.load(os.path.join(root, "train", "image", f"{index}.npy"))
        assert sample["image"].dtype == np.float32 and np.array_equal(sample["image"], stored)  # not quantised
        labels = np.load(os.path.join(root, "train", "label", f"{index}.npy"))
        assert np.array_equal(sample["semseg"], np.where(labels == -1, 255, labels).astype(np.uint8))
        depth = sample["depth"]
        assert depth.dtype == np.float32 and depth.shape == (32, 48)
        normals = sample["normals"]
        stored_normals = np.load(os.path.join(root, "train", "normal", f"{index}.npy"))
        none = (stored_normals == 0).all(axis=2)
        assert (normals[none] == 255).all() and np.array_equal(normals[~none], stored_normals[~none])
        assert (none == (depth == 0)).all()


def test_mtan_minus_one_is_ignore_and_2d_depth_and_float64_images(mtan_root):
    dataset = NYUDMTAN(str(mtan_root), "val", MTAN_TASKS)
    labels = np.full((32, 48), 3, np.float32)
    labels[0, 0] = -1
    np.save(mtan_root / "val" / "label" / "0.npy", labels)
    depth = np.full((32, 48), 2.5, np.float32)
    np.save(mtan_root / "val" / "depth" / "0.npy", depth)
    image = np.full((32, 48, 3), 0.25, np.float64)
    image[0, 0] = [0.0, 1.0, 1.0 + 5e-7]  # within the 1e-6 tolerance: kept as stored
    np.save(mtan_root / "val" / "image" / "0.npy", image)
    sample = dataset[0]
    assert sample["semseg"][0, 0] == 255 and (sample["semseg"].ravel()[1:] == 3).all()
    assert np.array_equal(sample["depth"], depth)
    assert sample["image"].dtype == np.float32 and np.array_equal(sample["image"], image.astype(np.float32))


@pytest.mark.parametrize("value, found", [(1.0005, "1.0005"), (255.0, "255"), (-2e-6, "-2e-06"), (np.nan, "nan")])
def test_mtan_image_outside_unit_range_is_corrupt(mtan_root, value, found):
    """One value outside [0, 1] (beyond 1e-6) is a corrupt file, never a silently rescaled image."""
    image = np.full((32, 48, 3), 0.5, np.float32)
    image[3, 4, 1] = value
    path = mtan_root / "train" / "image" / "2.npy"
    np.save(path, image)
    message = _error(NYUDMTAN(str(mtan_root), "train", MTAN_TASKS).__getitem__, 2)
    assert message == f"{path} (sample '2'): image values must be in [0, 1], found {found}"


def test_mtan_integer_images_are_rejected(mtan_root):
    path = mtan_root / "train" / "image" / "2.npy"
    np.save(path, np.full((32, 48, 3), 7, np.uint8))
    message = _error(NYUDMTAN(str(mtan_root), "train", MTAN_TASKS).load, 2)
    assert message == f"{path} (sample '2'): image must hold floats in [0, 1] (the MTAN layout), got uint8"


def test_mtan_label_out_of_range(mtan_root):
    dataset = NYUDMTAN(str(mtan_root), "val", ["semseg"])
    np.save(mtan_root / "val" / "label" / "1.npy", np.full((32, 48), 13, np.float32))
    message = _error(dataset.__getitem__, 1)
    assert "13" in message and os.path.join("val", "label", "1.npy") in message


def test_missing_roots_splits_and_tasks(nyud_root, mtan_root, tmp_path):
    missing = str(tmp_path / "nowhere")
    assert missing in _error(NYUD, missing, "train", NYUD_TASKS)
    assert missing in _error(NYUDMTAN, missing, "train", MTAN_TASKS)
    split = nyud_root / "gt_sets" / "val.txt"
    split.unlink()
    assert str(split) in _error(NYUD, str(nyud_root), "val", NYUD_TASKS)
    assert str(mtan_root / "test" / "image") in _error(NYUDMTAN, str(mtan_root), "test", MTAN_TASKS)
    assert "edge" in _error(NYUDMTAN, str(mtan_root), "train", ["edge"])
    assert "human_parts" in _error(NYUD, str(nyud_root), "train", ["human_parts"])


@pytest.mark.parametrize("relative", ["images/{}.png", "segmentation/{}.png", "depth/{}.npy",
                                      "normals/{}.png", "edge/{}.png"])
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_nyud_bad_files_name_the_file_and_sample(nyud_root, relative, damage):
    dataset = NYUD(str(nyud_root), "train", NYUD_TASKS)
    sample_id = dataset.ids[2]
    path = nyud_root / relative.format(sample_id)
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:30])
    message = _error(dataset.__getitem__, 2)
    assert sample_id in message and str(path) in message


@pytest.mark.parametrize("folder", ["image", "label", "depth", "normal"])
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_mtan_bad_files_name_the_file_and_sample(mtan_root, folder, damage):
    dataset = NYUDMTAN(str(mtan_root), "train", MTAN_TASKS)
    path = mtan_root / "train" / folder / "5.npy"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:30])
    message = _error(dataset.__getitem__, 5)
    assert "'5'" in message and str(path) in message


def test_build_dataset_uses_the_protocol_transform_seeded_per_sample(sources, nyud_mtan_db, tmp_path):
    """Training samples are the protocol's scale-crop drawn from (seed, epoch, index);
    validation samples are the stored maps, only normalised."""
    config = str(REPO / "configs" / "nyud" / "mtan_resnet18_onelabel.yml")
    opts = [f"db_root={nyud_mtan_db.db_root}", f"output_dir={tmp_path}", "train_size=[32,48]", "seed=3",
            "partial_labels_file="]  # generated ids: not the paper's split
    cfg = load_config(config, opts=opts + ["val_size=[32,48]"])
    train = build_dataset(cfg, "train")
    transform = MTANTrainTransform(MTAN_TASKS, (32, 48), flip_prob=0.0)
    for epoch in (0, 1):
        train.set_epoch(epoch)
        for index in (0, 4):
            labelled = [task for task, on in zip(MTAN_TASKS, train.task_masks[index]) if on]
            raw = dict(train.loader.load(index, labelled), task_mask=train.task_masks[index])
            expected = transform(raw, rng=np.random.default_rng([3, epoch, index]))
            sample = train[index]
            assert all(torch.equal(sample[key], expected[key]) for key in MTAN_TASKS + ["image"])
    val = build_dataset(cfg, "val")
    expected = MTANValTransform(MTAN_TASKS, (32, 48))(val.loader.load(1))
    assert all(torch.equal(val[1][key], expected[key]) for key in MTAN_TASKS + ["image"])
    with pytest.raises(DataError, match=r"val_size is 64x48; .*set val_size to \[32, 48\]"):
        build_dataset(load_config(config, opts=opts + ["val_size=[64,48]"]), "val")[0]
