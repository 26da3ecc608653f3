"""data/transforms.py: each step of the release's training transform against hand-worked
numbers on small arrays, the centred padding and its content window."""
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from data.transforms import (Photometric, TrainTransform, ValTransform, centred_offset, choose_crop,
                             content_windows, crop_accepted, crop_to_content, draw_photometric, ignore_partless,
                             photometric_distortion, random_scale, rng_from_torch, scale_shift, scaled_size)
from tests.data.scripted_rng import ScriptedRng, photometric_draws
from utils.errors import DataError

ALL_TASKS = ["semseg", "human_parts", "sal", "depth", "normals", "edge"]
NO_AUGMENTATION = dict(scale_range=(1.0, 1.0), flip_prob=0.0, photometric_prob=0.0)


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
    assert out["meta"]["offset"].dtype == torch.int64


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


# ------------------------------------------------------------------------ 1. scale

def test_scaled_size_truncates():
    assert scaled_size(7, 9, 1.5) == (10, 13)  # 10.5 -> 10, 13.5 -> 13 (rounding would give 14)
    assert scaled_size(60, 80, 1.19) == (71, 95)  # 71.4, 95.2
    assert scaled_size(375, 500, 0.5) == (187, 250)


def test_scale_one_leaves_the_sample_untouched():
    sample = raw_sample()
    assert random_scale(sample, 1.0) is sample


def test_targets_use_legacy_nearest():
    # OpenCV's INTER_NEAREST: source index floor(dst * in / out), here 3 -> 7: 0 0 0 1 1 2 2
    # (INTER_NEAREST_EXACT samples pixel centres: 0 0 1 1 1 2 2)
    labels = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    sample = {"image": np.zeros((3, 3, 3), np.uint8), "semseg": labels, "meta": {}}
    scaled = random_scale(sample, 7 / 3)["semseg"]
    source = np.array([0, 0, 0, 1, 1, 2, 2])
    assert np.array_equal(scaled, labels[source][:, source])


def test_legacy_nearest_is_opencvs_double_arithmetic():
    # the index is floor(dst * (1 / (out / in))) in doubles: at exact multiples that is a
    # hair under in / out, so 6 -> 34 maps dst 17 to source 2, not 3
    values = np.tile(np.arange(6, dtype=np.float32), (2, 1))
    resized = cv2.resize(values, (34, 2), interpolation=cv2.INTER_NEAREST)[0]
    expected = np.minimum(np.floor(np.arange(34) * (1 / (34 / 6))), 5)
    assert np.array_equal(resized, expected) and resized[17] == 2


def test_image_is_resized_as_float_then_truncated():
    # a 1x2 image [10, 13] at scale 2 (1x2 -> 2x4): bilinear gives 10, 10.75, 12.25, 13 in
    # float, truncated by the photometric step to 10, 10, 12, 13 (uint8 resizing rounds: 11)
    image = np.repeat(np.array([[[10], [13]]], np.uint8), 3, axis=2)
    sample = {"image": image, "semseg": np.array([[1, 2]], np.uint8), "meta": {"id": "x"}}
    scaled = random_scale(sample, 2.0)
    assert scaled["image"].dtype == np.float32
    assert np.allclose(scaled["image"][..., 0], [[10, 10.75, 12.25, 13]] * 2)
    transform = TrainTransform(["semseg"], (2, 4), scale_range=(2.0, 2.0), flip_prob=0.0, photometric_prob=0.0)
    augmented = transform.augment(sample, np.random.default_rng(0), np.array([True]))
    assert augmented["image"].dtype == np.uint8
    assert augmented["image"][..., 0].tolist() == [[10, 10, 12, 13]] * 2


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_depth_is_divided_by_the_scale(scale):
    transform = TrainTransform(["depth"], (200, 200), scale_range=(scale, scale))
    depth = transform(raw_sample(), np.random.default_rng(0))["depth"][0]
    height, width = int(60 * scale), int(80 * scale)
    top, left = (200 - height) // 2, (200 - width) // 2
    content = depth[top:top + height, left:left + width]
    assert set(content.unique().tolist()) == {0.0, float(np.float32(4.0) / np.float32(scale))}  # missing: 0
    outside = torch.ones_like(depth, dtype=torch.bool)
    outside[top:top + height, left:left + width] = False
    assert (depth[outside] == 0).all()  # depth padding: no measurement, as the release pads


def test_unlabelled_depth_stays_ignore_when_scaled():
    sample = raw_sample()
    sample["depth"][:] = 255
    depth = TrainTransform(["depth"], (64, 64))(sample, np.random.default_rng(1))["depth"]
    assert (depth == 255).all()


# ------------------------------------------------------------------------- 2. crop

def test_crop_check_needs_two_classes_and_a_largest_share_under_75_percent():
    assert crop_accepted(np.array([[1, 1], [2, 2]], np.uint8))  # 1/2
    assert crop_accepted(np.array([[1, 1, 2, 3]], np.uint8))  # 1/2
    assert crop_accepted(np.array([[1, 1, 2, 255]], np.uint8))  # 2/3: 255 not counted
    assert not crop_accepted(np.array([[1, 1, 1, 2]], np.uint8))  # exactly 3/4
    assert not crop_accepted(np.array([[1, 1, 1, 1, 1, 2, 255, 255]], np.uint8))  # 5/6
    assert not crop_accepted(np.array([[1, 1, 1, 255]], np.uint8))  # one class
    assert not crop_accepted(np.full((2, 2), 255, np.uint8))  # no label at all


# 2 x 6 labels, windows 2 x 2 at left 0..4: only left = 2 (classes 1 and 2, half each) passes;
# left 0, 1 and 3 show one class, left 4 one class and ignore.
STRIP = np.array([[1, 1, 1, 2, 2, 255]] * 2, np.uint8)


def corners(*lefts):
    return [draw for left in lefts for draw in (("integers", 0), ("integers", left))]


def test_crop_accepts_the_first_good_window():
    rng = ScriptedRng(*corners(2))
    assert choose_crop(STRIP.shape, (2, 2), rng, semseg=STRIP) == (0, 2) and not rng.left


def test_crop_redraws_rejected_windows():
    rng = ScriptedRng(*corners(0, 3, 4, 2))
    assert choose_crop(STRIP.shape, (2, 2), rng, semseg=STRIP) == (0, 2) and not rng.left


def test_crop_gives_up_after_ten_rejections_and_takes_the_eleventh_unchecked():
    rng = ScriptedRng(*corners(0, 1, 3, 4, 0, 1, 3, 4, 0, 1, 4))
    assert choose_crop(STRIP.shape, (2, 2), rng, semseg=STRIP) == (0, 4) and not rng.left
    good_eleventh = ScriptedRng(*corners(0, 1, 3, 4, 0, 1, 3, 4, 0, 1, 2, 0))
    assert choose_crop(STRIP.shape, (2, 2), good_eleventh, semseg=STRIP) == (0, 2)
    assert good_eleventh.left == [("integers", 0), ("integers", 0)]  # no 12th window


def test_crop_offsets_are_uniform_over_every_window():
    # without semseg one draw; offsets from 0..max(H - h, 0), both ends included
    rng = ScriptedRng(("integers", 3), ("integers", 0))
    assert choose_crop((7, 4), (4, 8), rng) == (3, 0) and not rng.left  # 7 - 4 = 3; 4 < 8: only 0
    generator = np.random.default_rng(0)
    seen = {choose_crop((5, 5), (3, 3), generator) for _ in range(300)}
    assert seen == {(top, left) for top in range(3) for left in range(3)}


def test_crop_rule_only_looks_at_labelled_semseg():
    sample = {"image": np.zeros((2, 6, 3), np.uint8), "semseg": STRIP, "sal": np.zeros((2, 6), np.uint8),
              "meta": {"id": "strip"}}
    transform = TrainTransform(["semseg", "sal"], (2, 2), **NO_AUGMENTATION)
    for task_mask, lefts, left in (([True, True], (0, 2), 2), ([False, True], (0,), 0)):
        rng = ScriptedRng(("uniform", 1.0), *corners(*lefts), ("random", 0.9), *photometric_draws())
        out = transform({**sample, "task_mask": np.array(task_mask)}, rng)
        assert out["semseg"].tolist() == STRIP[:, left:left + 2].tolist() and not rng.left


# ------------------------------------------------------------------------- 3. flip

def test_flip_mirrors_maps_and_negates_normal_x():
    def run(flip_prob):
        transform = TrainTransform(ALL_TASKS, (60, 80), scale_range=(1.0, 1.0), flip_prob=flip_prob,
                                   photometric_prob=0.0)
        return transform(raw_sample(), np.random.default_rng(0))

    plain, flipped = run(0.0), run(1.0)
    for key in ("image", "semseg", "edge", "depth"):
        assert torch.equal(flipped[key], plain[key].flip(-1))
    mirrored = plain["normals"].flip(-1)
    valid = mirrored[0] != 255
    assert torch.equal(flipped["normals"][0][valid], -mirrored[0][valid])
    assert (flipped["normals"][:, ~valid] == 255).all()  # invalid stays 255 in all channels
    assert torch.equal(flipped["normals"][1:], mirrored[1:])


# ---------------------------------------------------------- 4. photometric distortion

PIXELS = np.array([[[3, 100, 250], [200, 0, 0], [7, 120, 120]]], np.uint8)


def distort(image, **choices):
    params = dict(brightness=None, contrast=None, contrast_first=True, saturation=None, hue=None)
    return photometric_distortion(image, Photometric(**{**params, **choices})).tolist()


def test_each_arithmetic_step_clips_and_truncates_to_uint8():
    assert scale_shift(np.array([3, 100, 250], np.uint8), beta=10.7).tolist() == [13, 110, 255]
    assert distort(PIXELS, brightness=10.7) == [[[13, 110, 255], [210, 10, 10], [17, 130, 130]]]
    assert distort(PIXELS, brightness=-20.5) == [[[0, 79, 229], [179, 0, 0], [0, 99, 99]]]
    # contrast: a plain multiplication (no mean): 3.9 -> 3, 9.1 -> 9, 325 -> 255
    assert distort(PIXELS, contrast=1.3) == [[[3, 130, 255], [255, 0, 0], [9, 156, 156]]]
    assert distort(PIXELS, contrast=0.5, contrast_first=False) == [[[1, 50, 125], [100, 0, 0], [3, 60, 60]]]


def test_float_input_is_truncated_first():
    image = np.array([[[10.9, 0.5, 254.99]]], np.float32)
    assert distort(image) == [[[10, 0, 254]]]


def test_saturation_scales_opencvs_uint8_s_channel():
    # red (200, 0, 0): H 0, S 255, V 200; S * 0.5 = 127.5 -> 127; back to RGB the minimum
    # channel is V (1 - S / 255) = 200 * 128 / 255 = 100.4 -> 100. Grey (S = 0) stays grey.
    image = np.array([[[200, 0, 0], [120, 120, 120]]], np.uint8)
    assert distort(image, saturation=0.5) == [[[200, 100, 100], [120, 120, 120]]]
    assert distort(image, saturation=1.5)[0][1] == [120, 120, 120]


def test_hue_shifts_opencvs_uint8_h_channel_modulo_180():
    # H in 2-degree units. Red (H 0) - 18 -> 162 (324 deg): R = V, B = V (1 - 24 / 60) = 120;
    # red + 17 -> 17 (34 deg): G = V 34 / 60 = 113.3 -> 113;
    # (200, 0, 67) has H 170 (339.9 deg); + 17 = 187 -> 7 (14 deg): G = 200 * 14 / 60 = 46.7 -> 47
    image = np.array([[[200, 0, 0], [200, 0, 67], [120, 120, 120]]], np.uint8)
    assert cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[0, :, 0].tolist() == [0, 170, 0]
    assert distort(image, hue=-18) == [[[200, 0, 120], [200, 0, 187], [120, 120, 120]]]
    assert distort(image, hue=17) == [[[200, 113, 0], [200, 47, 0], [120, 120, 120]]]


def test_contrast_runs_second_or_last():
    red = np.array([[[200, 0, 0]]], np.uint8)
    # second: (255, 0, 0), then hue -18: B = 255 * 0.6 = 153; last: (200, 0, 120) * 2 clipped
    assert distort(red, contrast=2.0, contrast_first=True, hue=-18) == [[[255, 0, 153]]]
    assert distort(red, contrast=2.0, contrast_first=False, hue=-18) == [[[255, 0, 240]]]


def test_photometric_draws_follow_mmseg():
    rng = ScriptedRng(*photometric_draws(brightness=-4.5, contrast=1.2, contrast_first=False, hue=-18))
    assert draw_photometric(rng) == Photometric(-4.5, 1.2, False, None, -18) and not rng.left
    generator = np.random.default_rng(0)
    draws = [draw_photometric(generator) for _ in range(3000)]
    hues = {d.hue for d in draws if d.hue is not None}
    assert hues == set(range(-18, 18))  # -18..17, both ends included
    assert 0.45 < np.mean([d.contrast_first for d in draws]) < 0.55
    assert 0.45 < np.mean([d.saturation is not None for d in draws]) < 0.55
    skipped = draw_photometric(np.random.default_rng(1), prob=0.0)
    assert (skipped.brightness, skipped.contrast, skipped.saturation, skipped.hue) == (None,) * 4


def test_photometric_changes_only_the_image():
    def run(photometric_prob):
        transform = TrainTransform(ALL_TASKS, (48, 64), scale_range=(0.8, 1.2), photometric_prob=photometric_prob)
        return transform(raw_sample(), np.random.default_rng(2))

    still, distorted = run(0.0), run(1.0)
    for task in ALL_TASKS:
        assert torch.equal(still[task], distorted[task])
    assert not torch.equal(still["image"], distorted["image"])


# --------------------------------------------------------------- 5. centred padding

def test_centred_offsets_for_odd_and_even_differences():
    assert centred_offset((3, 4), (6, 6)) == (1, 1)  # differences 3 (odd: extra row below) and 2
    assert centred_offset((2, 5), (6, 6)) == (2, 0)  # 4 and 1
    assert centred_offset((6, 6), (6, 6)) == (0, 0)
    assert centred_offset((60, 80), (64, 97)) == (2, 8)


def test_small_training_crops_are_padded_centred_with_the_release_fills():
    out = TrainTransform(ALL_TASKS, (100, 121), **NO_AUGMENTATION)(raw_sample(), np.random.default_rng(0))
    assert out["meta"]["size"].tolist() == [60, 80] and out["meta"]["offset"].tolist() == [20, 20]
    inside = torch.zeros(100, 121, dtype=torch.bool)
    inside[20:80, 20:100] = True
    for task in ("semseg", "human_parts", "sal", "edge", "normals"):
        target = out[task] if out[task].ndim == 3 else out[task][None]
        assert (target[:, ~inside] == 255).all(), task
    assert (out["depth"][0, ~inside] == 0).all() and (out["image"][:, ~inside] == 0).all()
    assert out["semseg"][inside].max() < 21  # the content is the whole image


def test_val_pads_centred_without_resizing():
    sample = raw_sample(61, 79)
    out = ValTransform(ALL_TASKS, (64, 96))(sample)
    assert out["image"].shape == (3, 64, 96)
    assert out["meta"]["size"].tolist() == [61, 79] and out["meta"]["offset"].tolist() == [1, 8]
    rows, cols = slice(1, 62), slice(8, 87)
    assert torch.equal(out["semseg"][rows, cols], torch.from_numpy(sample["semseg"]).long())
    assert torch.equal(out["depth"][0, rows, cols], torch.from_numpy(sample["depth"]))
    assert (out["semseg"][:1] == 255).all() and (out["semseg"][62:] == 255).all()
    assert (out["normals"][:, :, :8] == 255).all() and (out["normals"][:, :, 87:] == 255).all()
    assert (out["depth"][0, :, 87:] == 0).all() and (out["image"][:, 62:] == 0).all()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    expected = (torch.from_numpy(sample["image"]).permute(2, 0, 1) / 255.0 - mean) / std
    assert torch.allclose(out["image"][:, rows, cols], expected, atol=1e-5)
    assert out["task_mask"].all()


def test_content_windows_of_a_batch_and_cropping():
    transform = ValTransform(["semseg"], (64, 96))
    first, second = raw_sample(61, 79), raw_sample(64, 96, seed=1)
    batch = default_collate([transform(first), transform(second)])
    windows = content_windows(batch["meta"])
    assert windows.tolist() == [[1, 8, 61, 79], [0, 0, 64, 96]]
    assert torch.equal(crop_to_content(batch["semseg"][0], windows[0]), torch.from_numpy(first["semseg"]).long())
    assert content_windows({"size": torch.tensor([5, 7])}).tolist() == [[0, 0, 5, 7]]  # never padded


def test_val_rejects_images_larger_than_val_size():
    with pytest.raises(DataError, match="img0.*60x80.*val_size"):
        ValTransform(ALL_TASKS, (64, 64))(raw_sample())


# ----------------------------------------------------------------- human parts rule

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
    assert (val["human_parts"][2:62, 8:88] == torch.from_numpy(sample["human_parts"]).long()).all()
