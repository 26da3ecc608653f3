"""data/transforms.py: the training augmentations and the validation padding."""
import numpy as np
import pytest
import torch

from data.transforms import (TrainTransform, ValTransform, choose_crop, dominant_class_fraction,
                             ignore_partless, rng_from_torch)
from utils.errors import DataError

ALL_TASKS = ["semseg", "human_parts", "sal", "depth", "normals", "edge"]


def raw_sample(height=60, width=80, seed=0):
    """A raw loader sample (docs/conventions.md) with every task."""
    rng = np.random.default_rng(seed)
    normals = rng.uniform(-1, 1, (height, width, 3)).astype(np.float32)
    normals[:5] = 255  # invalid rows
    depth = np.full((height, width), 4.0, np.float32)
    depth[:, :7] = 0  # missing
    return {
        "image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "semseg": rng.integers(0, 21, (height, width), dtype=np.uint8),
        "human_parts": rng.integers(0, 7, (height, width), dtype=np.uint8),
        "sal": rng.integers(0, 2, (height, width), dtype=np.uint8),
        "edge": rng.integers(0, 2, (height, width), dtype=np.uint8),
        "normals": normals,
        "depth": depth,
        "meta": {"id": "img0", "size": (height, width)},
    }


def test_train_output_shapes_and_dtypes():
    out = TrainTransform(ALL_TASKS, (48, 64))(raw_sample(), np.random.default_rng(0))
    assert out["image"].shape == (3, 48, 64) and out["image"].dtype == torch.float32
    for task in ("semseg", "human_parts", "sal"):
        assert out[task].shape == (48, 64) and out[task].dtype == torch.int64
    for task in ("edge", "depth"):
        assert out[task].shape == (1, 48, 64) and out[task].dtype == torch.float32
    assert out["normals"].shape == (3, 48, 64) and out["normals"].dtype == torch.float32
    assert out["task_mask"].dtype == torch.bool and out["task_mask"].tolist() == [True] * 6
    assert out["meta"]["id"] == "img0" and out["meta"]["size"].dtype == torch.int64


def test_train_is_reproducible_from_a_seed_and_from_torch():
    transform = TrainTransform(ALL_TASKS, (48, 64))
    first = transform(raw_sample(), np.random.default_rng(3))
    second = transform(raw_sample(), np.random.default_rng(3))
    for key in ALL_TASKS + ["image"]:
        assert torch.equal(first[key], second[key])
    torch.manual_seed(5)
    from_torch = transform(raw_sample())
    torch.manual_seed(5)
    assert torch.equal(from_torch["image"], transform(raw_sample())["image"])
    torch.manual_seed(5)
    first_draw = rng_from_torch().integers(1 << 30)
    assert rng_from_torch().integers(1 << 30) != first_draw  # fresh numbers on every call


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_depth_is_divided_by_the_scale(scale):
    transform = TrainTransform(["depth"], (200, 200), scale_range=(scale, scale))
    depth = transform(raw_sample(), np.random.default_rng(0))["depth"]
    height, width = round(60 * scale), round(80 * scale)
    valid = depth[0, :height, :width]
    assert set(valid.unique().tolist()) == {0.0, 4.0 / scale}  # missing stays 0
    assert (depth[0, height:] == 255).all() and (depth[0, :, width:] == 255).all()


def test_unlabelled_depth_stays_ignore_when_scaled():
    sample = raw_sample()
    sample["depth"][:] = 255
    depth = TrainTransform(["depth"], (64, 64))(sample, np.random.default_rng(1))["depth"]
    assert (depth == 255).all()


def test_flip_mirrors_maps_and_negates_normal_x():
    def run(flip_prob):
        transform = TrainTransform(ALL_TASKS, (60, 80), scale_range=(1.0, 1.0), flip_prob=flip_prob,
                                   jitter_prob=0.0)
        return transform(raw_sample(), np.random.default_rng(0))

    plain, flipped = run(0.0), run(1.0)
    for key in ("image", "semseg", "edge", "depth"):
        assert torch.equal(flipped[key], plain[key].flip(-1))
    mirrored = plain["normals"].flip(-1)
    valid = mirrored[0] != 255
    assert torch.equal(flipped["normals"][0][valid], -mirrored[0][valid])
    assert (flipped["normals"][:, ~valid] == 255).all()  # invalid stays 255 in all channels
    assert torch.equal(flipped["normals"][1:], mirrored[1:])


def test_jitter_changes_only_the_image():
    def run(jitter_prob):
        transform = TrainTransform(ALL_TASKS, (48, 64), scale_range=(0.8, 1.2), jitter_prob=jitter_prob)
        return transform(raw_sample(), np.random.default_rng(2))

    still, jittered = run(0.0), run(1.0)
    for task in ALL_TASKS:
        assert torch.equal(still[task], jittered[task])
    assert not torch.equal(still["image"], jittered["image"])


def test_small_images_are_padded_with_ignore_bottom_right():
    out = TrainTransform(ALL_TASKS, (100, 120), scale_range=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0)(
        raw_sample(), np.random.default_rng(0))
    assert out["meta"]["size"].tolist() == [60, 80]
    for task in ALL_TASKS:
        target = out[task] if out[task].ndim == 3 else out[task][None]
        assert (target[:, 60:] == 255).all() and (target[:, :, 80:] == 255).all()
    assert (out["image"][:, 60:] == 0).all() and (out["image"][:, :, 80:] == 0).all()
    assert out["semseg"][:60, :80].max() < 21  # the content is the whole image, unpadded


def stripes(width=200, band=(80, 120)):
    """Class 0 everywhere but a vertical band of class 1: one 32x32 window in 5 passes the 75% rule."""
    semseg = np.zeros((32, width), np.uint8)
    semseg[:, band[0]:band[1]] = 1
    return semseg


def test_crop_retry_rule_prefers_windows_without_a_dominant_class():
    semseg = stripes()
    rngs = [np.random.default_rng(seed) for seed in range(50)]
    checked = [choose_crop(semseg.shape, (32, 32), rng, semseg=semseg) for rng in rngs]
    unchecked = [choose_crop(semseg.shape, (32, 32), np.random.default_rng(seed)) for seed in range(50)]

    def passing(corners):
        return sum(dominant_class_fraction(semseg[t:t + 32, l:l + 32]) <= 0.75 for t, l in corners)

    # Ten tries find a passing window 9 times in 10, a single try 1 time in 5.
    assert passing(checked) >= 38 and passing(unchecked) <= 18


def test_crop_rule_only_looks_at_labelled_semseg():
    sample = raw_sample(32, 200)
    sample["semseg"] = stripes()
    tasks = ["semseg", "sal"]
    kwargs = dict(scale_range=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0)
    transform = TrainTransform(tasks, (32, 32), **kwargs)

    def passing(task_mask):
        count = 0
        for seed in range(50):
            out = transform({**sample, "task_mask": np.array(task_mask)}, np.random.default_rng(seed))
            count += dominant_class_fraction(out["semseg"].numpy()) <= 0.75
        return count

    assert passing([True, True]) >= 38 and passing([False, True]) <= 18


def test_dominant_class_fraction_ignores_255():
    assert dominant_class_fraction(np.array([[1, 1, 2, 255]], np.uint8)) == pytest.approx(2 / 3)
    assert dominant_class_fraction(np.full((4, 4), 255, np.uint8)) == 0.0


def test_val_pads_bottom_right_without_resizing():
    sample = raw_sample()
    out = ValTransform(ALL_TASKS, (64, 96))(sample)
    assert out["image"].shape == (3, 64, 96) and out["meta"]["size"].tolist() == [60, 80]
    assert torch.equal(out["semseg"][:60, :80], torch.from_numpy(sample["semseg"]).long())
    assert torch.equal(out["depth"][0, :60, :80], torch.from_numpy(sample["depth"]))
    assert (out["semseg"][60:] == 255).all() and (out["normals"][:, :, 80:] == 255).all()
    assert (out["image"][:, 60:] == 0).all()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    expected = (torch.from_numpy(sample["image"]).permute(2, 0, 1) / 255.0 - mean) / std
    assert torch.allclose(out["image"][:, :60, :80], expected, atol=1e-5)
    assert out["task_mask"].all()


def test_val_rejects_images_larger_than_val_size():
    with pytest.raises(DataError, match="img0.*60x80.*val_size"):
        ValTransform(ALL_TASKS, (64, 64))(raw_sample())


def test_ignore_partless_rule():
    background_and_ignore = np.array([[0, 0], [255, 0]], np.uint8)
    assert (ignore_partless(background_and_ignore.copy()) == 255).all()
    with_a_part = np.array([[0, 3], [255, 0]], np.uint8)
    assert np.array_equal(ignore_partless(with_a_part.copy()), with_a_part)


def test_train_crop_showing_no_part_is_all_ignore():
    # a person's head (part 1) in the top-left 30x40 corner of a 60x80 image, background
    # elsewhere; 16x16 crops at scale 1 either show some of the head or none of it
    sample = raw_sample()
    sample["human_parts"] = np.zeros((60, 80), np.uint8)
    sample["human_parts"][:30, :40] = 1
    transform = TrainTransform(["semseg", "human_parts"], (16, 16), scale_range=(1.0, 1.0))
    outcomes = set()
    for seed in range(40):
        parts = transform(dict(sample), np.random.default_rng(seed))["human_parts"]
        if (parts == 1).any():
            outcomes.add("head")
            assert (parts != 255).all()  # labelled crops keep every label, background included
        else:
            outcomes.add("no part")
            assert (parts == 255).all()  # never trained as all-background
    assert outcomes == {"head", "no part"}


def test_person_without_part_pixels_is_all_ignore_in_train_and_val():
    sample = raw_sample()
    sample["human_parts"] = np.zeros((60, 80), np.uint8)  # e.g. a person whose part masks are empty
    train = TrainTransform(["human_parts"], (48, 64))(dict(sample), np.random.default_rng(0))
    assert (train["human_parts"] == 255).all()
    val = ValTransform(["human_parts"], (64, 96))(dict(sample))
    assert (val["human_parts"] == 255).all()
    sample["human_parts"][30, 40] = 2  # one torso pixel: the map is kept, background included
    val = ValTransform(["human_parts"], (64, 96))(dict(sample))
    assert (val["human_parts"][:60, :80] == torch.from_numpy(sample["human_parts"]).long()).all()
