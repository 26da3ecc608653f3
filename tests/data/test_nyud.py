"""NYUD (multi-task layout) and NYUDMTAN (MTAN .npy layout) decode the layouts the README describes."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from data.nyud import NYUD, NYUDMTAN
from data.synthetic import generate
from utils.errors import DataError

NYUD_TASKS = ["semseg", "depth", "normals", "edge"]
MTAN_TASKS = ["semseg", "depth", "normals"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("db"))
    return {"nyud": generate("nyud", out, 4, 2, (40, 56), seed=2),
            "mtan": generate("nyud_mtan", out, 11, 2, (24, 32), seed=2)}


@pytest.fixture
def nyud_root(sources, tmp_path):
    return shutil.copytree(sources["nyud"], tmp_path / "NYUDv2")


@pytest.fixture
def mtan_root(sources, tmp_path):
    return shutil.copytree(sources["mtan"], tmp_path / "nyuv2")


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
        assert sample["meta"] == {"id": str(index), "size": (24, 32)}
        stored = np.load(os.path.join(root, "train", "image", f"{index}.npy"))
        assert sample["image"].dtype == np.uint8
        assert np.array_equal(sample["image"], np.rint(stored * 255).astype(np.uint8))
        labels = np.load(os.path.join(root, "train", "label", f"{index}.npy"))
        assert np.array_equal(sample["semseg"], np.where(labels == -1, 255, labels).astype(np.uint8))
        depth = sample["depth"]
        assert depth.dtype == np.float32 and depth.shape == (24, 32)
        normals = sample["normals"]
        stored_normals = np.load(os.path.join(root, "train", "normal", f"{index}.npy"))
        none = (stored_normals == 0).all(axis=2)
        assert (normals[none] == 255).all() and np.array_equal(normals[~none], stored_normals[~none])
        assert (none == (depth == 0)).all()


def test_mtan_minus_one_is_ignore_and_2d_depth_and_uint8_images(mtan_root):
    dataset = NYUDMTAN(str(mtan_root), "val", MTAN_TASKS)
    labels = np.full((24, 32), 3, np.float32)
    labels[0, 0] = -1
    np.save(mtan_root / "val" / "label" / "0.npy", labels)
    depth = np.full((24, 32), 2.5, np.float32)
    np.save(mtan_root / "val" / "depth" / "0.npy", depth)
    image = np.full((24, 32, 3), 7, np.uint8)
    np.save(mtan_root / "val" / "image" / "0.npy", image)
    sample = dataset[0]
    assert sample["semseg"][0, 0] == 255 and (sample["semseg"].ravel()[1:] == 3).all()
    assert np.array_equal(sample["depth"], depth) and np.array_equal(sample["image"], image)


def test_mtan_label_out_of_range(mtan_root):
    dataset = NYUDMTAN(str(mtan_root), "val", ["semseg"])
    np.save(mtan_root / "val" / "label" / "1.npy", np.full((24, 32), 13, np.float32))
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
