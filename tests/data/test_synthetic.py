"""The synthetic generator writes the official layouts, deterministically, with related tasks."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io
from PIL import Image

from data.pascal_context import PERSON_CLASS, VOC_CLASSES, load_db_info
from data import synthetic
from data.synthetic import generate, main, parse_size
from utils.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _same_content(path_a, path_b):
    """Byte equality, except .mat files (their header holds a time stamp): equal variables."""
    if not path_a.endswith(".mat"):
        with open(path_a, "rb") as a, open(path_b, "rb") as b:
            return a.read() == b.read()
    mat_a, mat_b = scipy.io.loadmat(path_a), scipy.io.loadmat(path_b)
    if "LabelMap" in mat_a:
        return np.array_equal(mat_a["LabelMap"], mat_b["LabelMap"])
    objects_a, objects_b = mat_a["anno"][0, 0]["objects"].ravel(), mat_b["anno"][0, 0]["objects"].ravel()
    return len(objects_a) == len(objects_b) and all(
        np.array_equal(a["mask"], b["mask"]) and a["parts"].size == b["parts"].size
        for a, b in zip(objects_a, objects_b))


@pytest.fixture
def pascal(pascal_db):
    assert (pascal_db.n_train, pascal_db.n_val, pascal_db.size) == (12, 4, (64, 64))  # the numbers below
    return str(pascal_db.root)


@pytest.mark.parametrize("layout", ["pascal", "nyud", "nyud_mtan", "cityscapes"])
def test_same_seed_same_files_other_seed_other_images(tmp_path, layout):
    roots = [generate(layout, str(tmp_path / name), 3, 1, (40, 48), seed)
             for name, seed in (("a", 5), ("b", 5), ("c", 6))]
    files = _files(roots[0])
    assert files == _files(roots[1]) == _files(roots[2])
    assert all(_same_content(os.path.join(roots[0], f), os.path.join(roots[1], f)) for f in files)
    images = [f for f in files if f.startswith(("JPEGImages", "images", os.path.join("train", "image")))]
    assert images
    assert not any(_same_content(os.path.join(roots[0], f), os.path.join(roots[2], f)) for f in images)


def test_images_do_not_depend_on_the_number_generated(tmp_path):
    small = generate("nyud", str(tmp_path / "small"), 2, 1, 32, seed=1)
    large = generate("nyud", str(tmp_path / "large"), 4, 1, 32, seed=1)
    for sample_id in ("000000", "000001"):
        assert _same_content(os.path.join(small, "images", f"{sample_id}.png"),
                             os.path.join(large, "images", f"{sample_id}.png"))


def test_pascal_layout_files(pascal):
    train = open(os.path.join(pascal, "ImageSets", "Context", "train.txt")).read().split()
    val = open(os.path.join(pascal, "ImageSets", "Context", "val.txt")).read().split()
    assert len(train) == 12 and len(val) == 4 and not set(train) & set(val)
    sample_id = train[0]
    image = Image.open(os.path.join(pascal, "JPEGImages", f"{sample_id}.jpg"))
    assert image.format == "JPEG" and image.size == (64, 64)
    semseg = Image.open(os.path.join(pascal, "semseg", "VOC12", f"{sample_id}.png"))
    assert semseg.mode == "P"  # palette PNG like VOC's
    assert Image.open(os.path.join(pascal, "normals_distill", f"{sample_id}.png")).mode == "RGB"
    assert Image.open(os.path.join(pascal, "sal_distill", f"{sample_id}.png")).mode == "L"
    label_map = scipy.io.loadmat(os.path.join(pascal, "pascal-context", "trainval", sample_id))["LabelMap"]
    assert label_map.shape == (64, 64) and label_map.min() >= 1 and label_map.max() <= 459


def test_pascal_mat_struct_layout_and_consistent_labels(pascal):
    """anno[0][0][1][0] is the object array (class, class_ind, mask, parts); object masks,
    semseg and LabelMap agree; the Parts cache lists each image's object classes."""
    context = load_db_info("context_classes.json")
    cache = json.load(open(os.path.join(pascal, "ImageSets", "Parts", "train.txt")))
    with_person = without_person = 0
    for sample_id, classes in cache.items():
        anno = scipy.io.loadmat(os.path.join(pascal, "human_parts", f"{sample_id}.mat"))["anno"]
        assert str(anno[0][0][0][0]) == f"{sample_id}.jpg"
        objects = anno[0][0][1][0]
        assert [int(obj[1][0][0]) for obj in objects] == classes
        semseg = np.array(Image.open(os.path.join(pascal, "semseg", "VOC12", f"{sample_id}.png")))
        label_path = os.path.join(pascal, "pascal-context", "trainval", f"{sample_id}.mat")
        label_map = scipy.io.loadmat(label_path)["LabelMap"]
        for obj in objects:
            name, class_ind, mask = str(obj[0][0]), int(obj[1][0][0]), obj[2].astype(bool)
            assert VOC_CLASSES[class_ind] == name and mask.any()
            assert set(np.unique(semseg[mask])) <= {class_ind, 255}
            context_name = {"diningtable": "table"}.get(name, name)
            assert (label_map[mask] == context[context_name]).all()
            for part in (obj[3][0] if obj[3].size else []):
                assert str(part[0][0]) in load_db_info("pascal_part.json")[str(class_ind)]
                assert not (part[1].astype(bool) & ~mask).any()  # parts lie inside their object
        with_person += PERSON_CLASS in classes
        without_person += PERSON_CLASS not in classes
    assert with_person and without_person


def test_mtan_arrays(tmp_path):
    root = generate("nyud_mtan", str(tmp_path), 2, 1, "24x32", seed=0)
    image = np.load(os.path.join(root, "train", "image", "0.npy"))
    assert image.dtype == np.float32 and image.shape == (24, 32, 3) and 0 <= image.min() and image.max() <= 1
    assert np.load(os.path.join(root, "train", "depth", "0.npy")).shape == (24, 32, 1)
    labels = np.load(os.path.join(root, "val", "label", "0.npy"))
    assert labels.shape == (24, 32) and set(np.unique(labels)) <= set(range(-1, 13))


def test_parse_size():
    assert parse_size("128") == (128, 128)
    assert parse_size("96x128") == (96, 128)
    assert parse_size(64) == (64, 64)
    for bad in ("abc", "8", "1x2x3"):
        with pytest.raises(DataError):
            parse_size(bad)


def test_cli_rejects_a_bad_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--layout", "nyud", "--out", str(tmp_path), "--size", "big"])
    assert exit_info.value.code == 2 and "big" in capsys.readouterr().err


def test_cli_writes_the_dataset(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "data.synthetic", "--layout", "nyud", "--out", str(tmp_path),
         "--train", "2", "--val", "1", "--size", "32x48", "--seed", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "NYUDv2"
    assert (root / "gt_sets" / "train.txt").read_text().split() == ["000000", "000001"]
    assert (root / "gt_sets" / "val.txt").read_text().split() == ["000002"]
    assert np.load(root / "depth" / "000002.npy").shape == (32, 48)


def test_existing_dataset_is_refused_without_force_and_replaced_with_it(tmp_path):
    root = generate("nyud", str(tmp_path), 3, 1, 32, seed=1)
    (tmp_path / "NYUDv2" / "extra.txt").write_text("not part of the dataset")
    result = subprocess.run(
        [sys.executable, "-m", "data.synthetic", "--layout", "nyud", "--out", str(tmp_path),
         "--train", "1", "--val", "1", "--size", "32"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--force" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "NYUDv2" / "gt_sets" / "train.txt").read_text().split() == ["000000", "000001", "000002"]

    main(["--layout", "nyud", "--out", str(tmp_path), "--train", "1", "--val", "1", "--size", "32",
          "--force"])
    assert (tmp_path / "NYUDv2" / "gt_sets" / "train.txt").read_text().split() == ["000000"]
    assert not (tmp_path / "NYUDv2" / "extra.txt").exists()
    assert os.listdir(tmp_path) == ["NYUDv2"]  # no temporary folder left behind
    assert _files(root) == _files(generate("nyud", str(tmp_path / "fresh"), 1, 1, 32, seed=0))


def test_an_empty_target_folder_is_filled(tmp_path):
    (tmp_path / "nyuv2").mkdir()
    root = generate("nyud_mtan", str(tmp_path), 1, 1, 32, seed=0)
    assert sorted(os.listdir(root)) == ["train", "val"] and os.listdir(tmp_path) == ["nyuv2"]


def test_a_failed_generation_leaves_nothing_at_the_target(tmp_path, monkeypatch):
    import data.synthetic.nyud as nyud_writer  # _write_nyud looks write_nyud_sample up here
    written = []
    original = nyud_writer.write_nyud_sample

    def fail_on_the_third(root, *args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(original(root, *args))

    monkeypatch.setattr(nyud_writer, "write_nyud_sample", fail_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        generate("nyud", str(tmp_path), 4, 1, 32, seed=0)
    assert len(written) == 2 and os.listdir(tmp_path) == []


def test_a_killed_generation_leaves_nothing_at_the_target(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "data.synthetic", "--layout", "nyud", "--out", str(tmp_path),
         "--train", "500", "--val", "1", "--size", "64"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # bounds a hang (load 8); the loop polls for the first depth file
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [d for d in os.listdir(tmp_path) if d.startswith(".NYUDv2.partial-")]
        depth = tmp_path / partial[0] / "depth" if partial else None
        if depth is not None and depth.is_dir() and os.listdir(depth):
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert proc.returncode != 0, "generation finished before it could be killed"
    assert partial and not (tmp_path / "NYUDv2").exists()


def test_people_look_larger_than_other_objects():
    """An object of height h at depth d spans focal * h / d pixels: people are placed to span
    PERSON_HEIGHT of the image (their parts stay learnable at 96-128 px), others OBJECT_HEIGHT."""
    spans = {"person": [], "chair": []}
    for seed in range(40):
        rng = np.random.default_rng(seed)
        camera = synthetic.Camera(rng, 96, 128)
        for kind in spans:
            obj, _, depth = synthetic._place(rng, camera, synthetic.build_object(rng, kind), indoor=True)
            spans[kind].append(camera.focal * obj.height / depth / camera.height)
    low, high = synthetic.PERSON_HEIGHT
    assert low - 1e-6 <= min(spans["person"]) and max(spans["person"]) <= high + 1e-6
    low, high = synthetic.OBJECT_HEIGHT
    assert low - 1e-6 <= min(spans["chair"]) and max(spans["chair"]) <= high + 1e-6
