"""PascalContext decodes the official layout as docs/datasets.md describes it."""
import json
import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image
from skimage.morphology import thin

from data.pascal_context import (PART_GROUPS, PascalContext, decode_human_parts, label_boundaries,
                                 load_db_info, normals_valid_classes)
from data.synthetic import generate
from utils.errors import DataError

TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return generate("pascal", str(tmp_path_factory.mktemp("db")), 6, 2, (48, 64), seed=11)


@pytest.fixture
def root(source, tmp_path):
    """A private copy that a test may break."""
    return shutil.copytree(source, tmp_path / "PASCALContext")


def _error(dataset_or_fn, *args):
    with pytest.raises(DataError) as info:
        dataset_or_fn(*args)
    return str(info.value)


def _anno(objects, shape):
    """A human_parts `anno` struct: objects = [(class_ind, object mask, [(part, mask), ...])]."""
    records = np.zeros((1, len(objects)), [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for k, (class_ind, mask, parts) in enumerate(objects):
        part_array = np.zeros((0, 0))
        if parts:
            part_array = np.zeros((1, len(parts)), [("part_name", "O"), ("mask", "O")])
            for j, (name, part_mask) in enumerate(parts):
                part_array[0, j] = (name, part_mask.astype(np.uint8))
        records[0, k] = ("x", np.array([[class_ind]], np.uint8), mask.astype(np.uint8), part_array)
    anno = np.zeros((1, 1), [("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("x.jpg", records)
    return anno


def _saved(tmp_path, anno):
    """Round trip through savemat/loadmat, as the loader sees real files."""
    path = str(tmp_path / "anno.mat")
    scipy.io.savemat(path, {"anno": anno})
    return scipy.io.loadmat(path)["anno"]


def test_samples_have_the_raw_layout(source):
    dataset = PascalContext(source, "train", TASKS)
    assert len(dataset) == 6 and dataset.ids[0] == "synth_000000"
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["meta"] == {"id": dataset.ids[index], "size": (48, 64)}
        assert sample["image"].dtype == np.uint8 and sample["image"].shape == (48, 64, 3)
        for task in ("semseg", "human_parts", "sal", "edge"):
            assert sample[task].dtype == np.uint8 and sample[task].shape == (48, 64)
        assert set(np.unique(sample["semseg"])) <= set(range(21)) | {255}
        parts = sample["human_parts"]
        assert set(np.unique(parts)) <= set(range(7)) or (parts == 255).all()
        assert set(np.unique(sample["sal"])) <= {0, 1}
        assert set(np.unique(sample["edge"])) <= {0, 1} and sample["edge"].any()
        normals = sample["normals"]
        assert normals.dtype == np.float32 and normals.shape == (48, 64, 3)
        invalid = (normals == 255).all(axis=2)
        assert ((normals == 255).any(axis=2) == invalid).all()  # 255 in all channels or none
        assert np.abs(normals[~invalid]).max() <= 1.0


def test_every_task_decodes_from_its_file(source):
    dataset = PascalContext(source, "train", TASKS)
    sample_id = dataset.ids[2]
    sample = dataset[2]
    label_map = scipy.io.loadmat(os.path.join(source, "pascal-context", "trainval", sample_id))["LabelMap"]
    # edge: the thinned non-zero Laplacian of LabelMap, 1 px thin
    assert np.array_equal(sample["edge"], label_boundaries(label_map))
    assert np.array_equal(thin(sample["edge"]), sample["edge"].astype(bool))
    # normals: 2v/255 - 1 where the Context class is allowed, 255 elsewhere
    encoded = np.array(Image.open(os.path.join(source, "normals_distill", f"{sample_id}.png")))
    allowed = np.isin(label_map, normals_valid_classes())
    assert np.allclose(sample["normals"][allowed], encoded[allowed] * (2 / 255) - 1)
    assert (sample["normals"][~allowed] == 255).all()
    # saliency: v/255 > 0.5
    soft = np.array(Image.open(os.path.join(source, "sal_distill", f"{sample_id}.png")))
    assert np.array_equal(sample["sal"], (soft > 127).astype(np.uint8))
    # semseg: the palette indices as stored
    stored = Image.open(os.path.join(source, "semseg", "VOC12", f"{sample_id}.png"))
    assert np.array_equal(sample["semseg"], np.array(stored))


def test_human_parts_with_and_without_people(source):
    dataset = PascalContext(source, "train", ["human_parts"])
    cache = json.load(open(os.path.join(source, "ImageSets", "Parts", "train.txt")))
    seen = set()
    for index, sample_id in enumerate(dataset.ids):
        parts = dataset[index]["human_parts"]
        if 15 in cache[sample_id]:
            seen.add("person")
            assert (parts != 255).all() and parts.max() > 0
        else:
            seen.add("none")
            assert (parts == 255).all()
    assert seen == {"person", "none"}


def test_part_groups_cover_pascal_part_person_names():
    assert set(PART_GROUPS) == set(load_db_info("pascal_part.json")["15"])
    assert PART_GROUPS["hair"] == 1 and PART_GROUPS["neck"] == 2 and PART_GROUPS["ruarm"] == 3
    assert PART_GROUPS["lhand"] == 4 and PART_GROUPS["luleg"] == 5 and PART_GROUPS["rfoot"] == 6


def test_decode_human_parts_by_hand(tmp_path):
    shape = (4, 6)
    person = np.zeros(shape, bool)
    person[:, :3] = True
    head, torso, hand = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
    head[0, :3] = True
    torso[1:3, :3] = True
    hand[1, 2] = True  # after the torso: overwrites it
    cat = np.zeros(shape, bool)
    cat[:, 4:] = True
    other_person = np.zeros(shape, bool)
    other_person[3, 3] = True
    anno = _saved(tmp_path, _anno([(8, cat, [("head", cat)]),  # parts of a non-person: ignored
                                   (15, person, [("head", head), ("torso", torso), ("lhand", hand)]),
                                   (15, other_person, [])], shape))
    expected = np.array([[1, 1, 1, 0, 0, 0],
                         [2, 2, 4, 0, 0, 0],
                         [2, 2, 2, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0]], np.uint8)
    assert np.array_equal(decode_human_parts(anno, shape, "anno.mat", "x"), expected)
    # no person with part labels -> everything ignored
    only_unlabelled = _saved(tmp_path, _anno([(15, person, []), (8, cat, [("head", cat)])], shape))
    assert (decode_human_parts(only_unlabelled, shape, "anno.mat", "x") == 255).all()
    # a person whose part masks are all empty has no part pixel: ignored as well
    empty_parts = _saved(tmp_path, _anno([(15, person, [("head", np.zeros(shape, bool)),
                                                        ("torso", np.zeros(shape, bool))])], shape))
    assert (decode_human_parts(empty_parts, shape, "anno.mat", "x") == 255).all()
    unknown = _saved(tmp_path, _anno([(15, person, [("wing", head)])], shape))
    assert "wing" in _error(decode_human_parts, unknown, shape, "anno.mat", "x")


def test_label_boundaries_is_one_pixel_thin():
    label_map = np.ones((6, 8), np.int32)
    label_map[:, 4:] = 2
    edge = label_boundaries(label_map)
    assert edge.dtype == np.uint8
    assert edge.sum(axis=1).max() == 1 and edge.sum() >= 4  # thinning may shorten the ends
    assert set(np.nonzero(edge)[1]) <= {3, 4}


def test_normals_allowed_classes():
    context = load_db_info("context_classes.json")
    allowed = normals_valid_classes()
    assert len(allowed) == 170
    assert context["tvmonitor"] in allowed and context["wall"] in allowed and context["floor"] in allowed
    assert context["unknown"] not in allowed and context["sky"] not in allowed


def test_saliency_threshold(root):
    dataset = PascalContext(str(root), "train", ["sal"])
    sample_id = dataset.ids[0]
    values = np.zeros((48, 64), np.uint8)
    values[0, :4] = (127, 128, 200, 255)
    Image.fromarray(values).save(root / "sal_distill" / f"{sample_id}.png")
    assert list(dataset[0]["sal"][0, :5]) == [0, 1, 1, 1, 0]


def test_semseg_fallback_folder(root):
    dataset = PascalContext(str(root), "train", ["semseg"])
    sample_id = dataset.ids[0]
    expected = dataset[0]["semseg"]
    os.makedirs(root / "semseg" / "pascal-context")
    shutil.move(root / "semseg" / "VOC12" / f"{sample_id}.png",
                root / "semseg" / "pascal-context" / f"{sample_id}.png")
    assert np.array_equal(dataset[0]["semseg"], expected)


def test_parts_cache_rebuilt_when_missing(root):
    cache_path = root / "ImageSets" / "Parts" / "train.txt"
    original = json.loads(cache_path.read_text())
    cache_path.unlink()
    PascalContext(str(root), "train", ["human_parts"])
    assert json.loads(cache_path.read_text()) == original


def test_parts_cache_skips_images_without_people(root):
    cache = json.loads((root / "ImageSets" / "Parts" / "train.txt").read_text())
    dataset = PascalContext(str(root), "train", ["human_parts"])
    index = next(i for i, sample_id in enumerate(dataset.ids) if 15 not in cache[sample_id])
    os.remove(root / "human_parts" / f"{dataset.ids[index]}.mat")
    assert (dataset[index]["human_parts"] == 255).all()


def test_transform_is_applied(source):
    dataset = PascalContext(source, "val", ["semseg"], transform=lambda s: {"id": s["meta"]["id"]})
    assert dataset[0] == {"id": dataset.ids[0]}


def test_missing_root_and_split(root, tmp_path):
    assert str(tmp_path / "nowhere") in _error(PascalContext, str(tmp_path / "nowhere"), "train", TASKS)
    split = root / "ImageSets" / "Context" / "val.txt"
    split.unlink()
    assert str(split) in _error(PascalContext, str(root), "val", TASKS)
    assert "depth" in _error(PascalContext, str(root), "train", ["depth"])


@pytest.mark.parametrize("task, relative", [
    ("semseg", "JPEGImages/{}.jpg"),
    ("semseg", "semseg/VOC12/{}.png"),
    ("human_parts", "human_parts/{}.mat"),
    ("normals", "normals_distill/{}.png"),
    ("sal", "sal_distill/{}.png"),
    ("edge", "pascal-context/trainval/{}.mat"),
])
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_bad_files_name_the_file_and_sample(root, task, relative, damage):
    dataset = PascalContext(str(root), "train", [task])
    index = next(i for i, sample_id in enumerate(dataset.ids)
                 if task != "human_parts" or (dataset[i]["human_parts"] != 255).any())
    sample_id = dataset.ids[index]
    path = root / relative.format(sample_id)
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:40])  # truncated
    message = _error(dataset.__getitem__, index)
    assert sample_id in message and str(path) in message


def test_only_requested_tasks_are_decoded(root):
    import shutil

    shutil.rmtree(os.path.join(root, "pascal-context"))  # no LabelMap: edge / normals unreadable
    shutil.rmtree(os.path.join(root, "human_parts"))
    dataset = PascalContext(root, "train", ["semseg", "sal", "normals", "edge"])
    sample = dataset.load(0, tasks=["semseg"])
    assert sample["semseg"].dtype == np.uint8 and (sample["semseg"] != 255).any()
    assert (sample["sal"] == 255).all() and sample["sal"].dtype == np.uint8
    assert sample["normals"].shape == sample["image"].shape and (sample["normals"] == 255).all()
    assert (sample["edge"] == 255).all()
    with pytest.raises(DataError, match="pascal-context"):
        dataset.load(0)
