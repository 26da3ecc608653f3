"""The fast loader paths compute exactly what a straightforward implementation computes.

The references below are the plain versions of the training transform (resize every map,
crop, copy-flip, the release's photometric steps, pad, convert), of the boundary labels (float64 Laplacian,
skimage's `thin`) and of the normals decoding (arithmetic, `np.isin`). Images and labels
must match bit for bit: no resampling of the image was changed.
"""
import os
import shutil

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from skimage.morphology import thin as skimage_thin

import data.pascal_context as pascal_context
from data.pascal_context import LabelCache, PascalContext, label_boundaries, normals_valid_classes
from utils.thinning import thin
from data.readers import read_image
from data.synthetic import generate
from data.transforms import TrainTransform, ValTransform, ignore_partless
from tests.data.release_reference import photometric
from utils.tasks import IGNORE_INDEX

PASCAL_TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]
ALL_TASKS = ["semseg", "human_parts", "sal", "depth", "normals", "edge"]
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


# ---------------------------------------------------------------- reference computations
def reference_photometric(image, rng, prob):
    """The release's photometric steps with the choices drawn as data.transforms draws them."""
    def maybe(draw):
        return draw() if rng.random() < prob else None

    brightness = maybe(lambda: rng.uniform(-32, 32))
    contrast_first = rng.random() < 0.5
    contrast = maybe(lambda: rng.uniform(0.5, 1.5)) if contrast_first else None
    saturation = maybe(lambda: rng.uniform(0.5, 1.5))
    hue = maybe(lambda: int(rng.integers(-18, 18)))
    if not contrast_first:
        contrast = maybe(lambda: rng.uniform(0.5, 1.5))
    return photometric(image, brightness, contrast, contrast_first, saturation, hue)


def reference_tensors(sample, tasks, size):
    """Normalise, pad centred (depth with 0, the rest with 255; an unlabelled map, all 255,
    stays all 255), convert."""
    height, width = sample["image"].shape[:2]
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    image = np.zeros((3, *size), np.float32)
    normalised = (sample["image"].astype(np.float32) / 255.0 - MEAN) / STD
    image[:, top:top + height, left:left + width] = normalised.transpose(2, 0, 1)
    out = {"image": torch.from_numpy(image)}
    for task in tasks:
        value = sample[task]
        fill = 0 if task == "depth" and not (value == IGNORE_INDEX).all() else IGNORE_INDEX
        canvas = np.full(size + value.shape[2:], fill, value.dtype)
        canvas[top:top + height, left:left + width] = value
        if task == "human_parts":
            ignore_partless(canvas)
        if task in ("semseg", "human_parts", "sal"):
            out[task] = torch.from_numpy(canvas.astype(np.int64))
        elif task in ("edge", "depth"):
            out[task] = torch.from_numpy(canvas.astype(np.float32)[None])
        else:
            out[task] = torch.from_numpy(np.ascontiguousarray(canvas.astype(np.float32).transpose(2, 0, 1)))
    out["size"] = torch.tensor([height, width])
    out["offset"] = torch.tensor([top, left])
    return out


def reference_train(sample, tasks, size, task_mask, rng, flip_prob=0.5, photometric_prob=0.5):
    """Scale every map (truncated size, float image bilinear, labels legacy nearest, depth / s),
    choose the crop (up to 10 checks on labelled semseg, then the 11th window), crop, flip by
    copying, the release's photometric steps, pad and convert."""
    scale = float(rng.uniform(0.5, 2.0))
    height, width = sample["image"].shape[:2]
    dsize = (int(width * scale), int(height * scale))
    scaled = {"image": cv2.resize(sample["image"].astype(np.float32), dsize, interpolation=cv2.INTER_LINEAR)}
    for task in tasks:
        resized = cv2.resize(sample[task], dsize, interpolation=cv2.INTER_NEAREST)
        if task == "depth":
            resized = np.where(resized == IGNORE_INDEX, resized, resized / np.float32(scale))
        scaled[task] = resized
    scaled_h, scaled_w = dsize[1], dsize[0]

    def window_at(top, left):
        return scaled["semseg"][top:top + size[0], left:left + size[1]]

    def draw():
        return (int(rng.integers(0, max(scaled_h - size[0], 0) + 1)),
                int(rng.integers(0, max(scaled_w - size[1], 0) + 1)))

    top, left = draw()
    if "semseg" in tasks and task_mask[tasks.index("semseg")]:
        for _ in range(10):
            counts = np.bincount(window_at(top, left).ravel(), minlength=256)[:IGNORE_INDEX]
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < 0.75:
                break
            top, left = draw()
    cropped = {key: value[top:top + size[0], left:left + size[1]] for key, value in scaled.items()}
    if rng.random() < flip_prob:
        cropped = {key: np.ascontiguousarray(value[:, ::-1]) for key, value in cropped.items()}
        if "normals" in cropped:
            x = cropped["normals"][..., 0]
            cropped["normals"][..., 0] = np.where(x != IGNORE_INDEX, -x, x)
    cropped["image"] = reference_photometric(cropped["image"], rng, photometric_prob)
    return reference_tensors(cropped, tasks, size)


def reference_boundaries(label_map):
    laplacian = cv2.Laplacian(label_map.astype(np.float64), cv2.CV_64F)
    return skimage_thin(laplacian != 0).astype(np.uint8)


def assert_same_tensors(out, expected, tasks):
    for key in ["image"] + tasks:
        assert out[key].dtype == expected[key].dtype and out[key].shape == expected[key].shape, key
        assert torch.equal(out[key], expected[key]), key
    assert torch.equal(out["meta"]["size"], expected["size"])
    assert torch.equal(out["meta"]["offset"], expected["offset"])


# ------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    return generate("pascal", str(tmp_path_factory.mktemp("db")), 10, 1, (72, 96), seed=5)


def random_sample(seed, height=60, width=80):
    """Every task, random content, some ignore pixels and missing depth."""
    rng = np.random.default_rng(seed)
    normals = rng.uniform(-1, 1, (height, width, 3)).astype(np.float32)
    normals[rng.random((height, width)) < 0.2] = IGNORE_INDEX
    depth = rng.uniform(0.5, 9, (height, width)).astype(np.float32)
    depth[rng.random((height, width)) < 0.1] = 0
    semseg = rng.integers(0, 3, (height, width), dtype=np.uint8)  # few classes: the crop rule retries
    semseg[rng.random((height, width)) < 0.1] = IGNORE_INDEX
    return {"image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "semseg": semseg,
            "human_parts": rng.integers(0, 7, (height, width), dtype=np.uint8) * (rng.random() < 0.7),
            "sal": rng.integers(0, 2, (height, width), dtype=np.uint8),
            "edge": rng.integers(0, 2, (height, width), dtype=np.uint8), "normals": normals, "depth": depth,
            "meta": {"id": f"s{seed}", "size": (height, width)}}


@pytest.mark.parametrize("size", [(48, 64), (40, 40), (96, 128)])  # crops, and padding
def test_train_transform_matches_reference_on_random_samples(size):
    transform = TrainTransform(ALL_TASKS, size)
    for seed in range(12):
        for labelled in ([ALL_TASKS[seed % 6]], ALL_TASKS):  # one-label: the others all-ignore
            sample = random_sample(seed)
            task_mask = np.array([t in labelled for t in ALL_TASKS])
            for task in ALL_TASKS:
                if task not in labelled:
                    sample[task] = np.full_like(sample[task], IGNORE_INDEX)
            sample["task_mask"] = task_mask
            out = transform(dict(sample), np.random.default_rng([seed, len(labelled)]))
            expected = reference_train(sample, ALL_TASKS, size, task_mask,
                                       np.random.default_rng([seed, len(labelled)]))
            assert_same_tensors(out, expected, ALL_TASKS)
            assert out["task_mask"].tolist() == task_mask.tolist()


def test_train_transform_matches_reference_on_pascal_samples(pascal):
    dataset = PascalContext(pascal, "train", PASCAL_TASKS)
    transform = TrainTransform(PASCAL_TASKS, (64, 64))
    for index in range(len(dataset)):
        for labelled in ([PASCAL_TASKS[index % 5]], PASCAL_TASKS):
            sample = dataset.load(index, labelled)
            sample["task_mask"] = np.array([t in labelled for t in PASCAL_TASKS])
            rng_seed = [index, len(labelled)]
            out = transform(dict(sample), np.random.default_rng(rng_seed))
            expected = reference_train(sample, PASCAL_TASKS, (64, 64), sample["task_mask"],
                                       np.random.default_rng(rng_seed))
            assert_same_tensors(out, expected, PASCAL_TASKS)


def test_val_transform_matches_reference(pascal):
    dataset = PascalContext(pascal, "val", PASCAL_TASKS)
    out = ValTransform(PASCAL_TASKS, (80, 100))(dataset.load(0))
    assert_same_tensors(out, reference_tensors(dataset.load(0), PASCAL_TASKS, (80, 100)), PASCAL_TASKS)


def test_thin_matches_skimage():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        mask = rng.random(tuple(rng.integers(1, 40, 2))) < rng.uniform(0.05, 0.95)
        if seed % 2:  # thick blobs need several iterations
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        thinned = thin(mask)
        assert thinned.dtype == bool and np.array_equal(thinned, skimage_thin(mask)), seed


def test_label_boundaries_match_reference(pascal):
    folder = os.path.join(pascal, "pascal-context", "trainval")
    for name in sorted(os.listdir(folder)):
        label_map = scipy.io.loadmat(os.path.join(folder, name))["LabelMap"]
        expected = reference_boundaries(label_map)
        for variant in (label_map, label_map.astype(np.float64), label_map.astype(np.int32)):
            edge = label_boundaries(variant)
            assert edge.dtype == np.uint8 and np.array_equal(edge, expected), name


def test_normals_match_reference(pascal, tmp_path):
    root = shutil.copytree(pascal, tmp_path / "PASCALContext")
    dataset = PascalContext(str(root), "train", ["normals"])
    sample_id = dataset.ids[0]
    mat = root / "pascal-context" / "trainval" / f"{sample_id}.mat"
    label_map = scipy.io.loadmat(mat)["LabelMap"].astype(np.int32)
    label_map[:3, :5] = [0, 460, 9999, -4, 1]  # ids outside the class table are not trusted
    for stored in (label_map, label_map.astype(np.float64)):
        scipy.io.savemat(mat, {"LabelMap": stored})
        encoded = read_image(str(root / "normals_distill" / f"{sample_id}.png"), sample_id)
        expected = (encoded[..., :3].astype(np.float32) * 2.0 - 255.0) / 255.0
        expected[~np.isin(stored, normals_valid_classes())] = IGNORE_INDEX
        normals = dataset.load(0)["normals"]
        assert normals.dtype == np.float32 and np.array_equal(normals, expected)


def test_label_cache_gives_the_same_samples_without_reparsing(pascal, tmp_path, monkeypatch):
    plain = PascalContext(pascal, "train", PASCAL_TASKS)
    cached = PascalContext(pascal, "train", PASCAL_TASKS, cache_dir=str(tmp_path / "cache"))
    expected = [plain.load(i) for i in range(len(plain))]
    for _ in range(2):  # cold (decodes and stores), then warm
        for index, reference in enumerate(expected):
            sample = cached.load(index)
            for task in PASCAL_TASKS + ["image"]:
                assert sample[task].dtype == reference[task].dtype
                assert np.array_equal(sample[task], reference[task]), (index, task)
    assert os.listdir(tmp_path / "cache" / "edge") and os.listdir(tmp_path / "cache" / "human_parts")

    def no_parsing(path, *args):
        raise AssertionError(f"parsed {path}")

    monkeypatch.setattr(pascal_context, "read_mat", no_parsing)
    for index, reference in enumerate(expected):
        sample = cached.load(index, ["edge", "human_parts"])
        assert np.array_equal(sample["edge"], reference["edge"])
        assert np.array_equal(sample["human_parts"], reference["human_parts"])


def test_label_cache_decodes_an_edited_file_afresh(pascal, tmp_path):
    root = shutil.copytree(pascal, tmp_path / "PASCALContext")
    dataset = PascalContext(str(root), "train", ["edge"], cache_dir=str(tmp_path / "cache"))
    first = dataset.load(0)["edge"]
    mat = root / "pascal-context" / "trainval" / f"{dataset.ids[0]}.mat"
    label_map = scipy.io.loadmat(mat)["LabelMap"]
    label_map[:, : label_map.shape[1] // 2] = 7  # a new boundary down the middle
    scipy.io.savemat(mat, {"LabelMap": label_map})
    os.utime(mat, ns=(os.stat(mat).st_atime_ns, os.stat(mat).st_mtime_ns + 10**9))
    edited = dataset.load(0)["edge"]
    assert not np.array_equal(edited, first) and np.array_equal(edited, reference_boundaries(label_map))


def test_unwritable_label_cache_warns_and_still_decodes(pascal, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    dataset = PascalContext(pascal, "train", ["edge"], cache_dir=str(blocker))
    with pytest.warns(UserWarning, match="label cache"):
        edge = dataset.load(0)["edge"]
    assert np.array_equal(edge, PascalContext(pascal, "train", ["edge"]).load(0)["edge"])


def test_corrupt_cache_entry_is_replaced(pascal, tmp_path):
    cache = LabelCache(str(tmp_path / "cache"))
    source = os.path.join(pascal, "pascal-context", "trainval", "synth_000000.mat")
    value = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(cache.get("edge", source, (3, 4), lambda: value), value)
    entry = cache._entry("edge", source)
    with open(entry, "wb") as handle:
        handle.write(b"not a png")
    assert np.array_equal(cache.get("edge", source, (3, 4), lambda: value + 1), value + 1)
    assert np.array_equal(cache.get("edge", source, (3, 4), lambda: value), value + 1)  # stored again
    assert not [name for name in os.listdir(os.path.dirname(entry)) if ".tmp" in name]
