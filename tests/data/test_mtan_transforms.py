"""The partial-label protocol's transforms (data/mtan_transforms.py) against the protocol
written out with numpy index formulas on small arrays: crop window, bilinear
(align_corners=True) image and normals, legacy-nearest labels and depth, depth / s."""
import numpy as np
import pytest
import torch

from data.mtan_transforms import MTANTrainTransform, MTANValTransform
from data.readers import ignore_target
from data.transforms import IMAGENET_MEAN, IMAGENET_STD
from utils.errors import DataError

TASKS = ["semseg", "depth", "normals"]
HEIGHT, WIDTH = 6, 10
# The protocol's crop size (int(H / s), int(W / s)) for each scale, worked out by hand.
CROP = {1.0: (6, 10), 1.2: (5, 8), 1.5: (4, 6)}
INVALID_NORMALS = (slice(2, 4), slice(3, 6))  # stored as zero vectors, 255 in the raw sample


class Forced:
    """Stands in for np.random.Generator: returns the given integer draws and flip draw."""

    def __init__(self, *integers, flip_draw=0.9):
        self.integers_left = list(integers)
        self.flip_draw = flip_draw

    def integers(self, *_):
        return self.integers_left.pop(0)

    def random(self):
        return self.flip_draw


def raw_sample():
    """A raw MTAN sample as the loaders return it (docs/conventions.md), with every value
    distinct enough that a wrong source pixel shows."""
    rng = np.random.default_rng(0)
    semseg = rng.integers(0, 13, (HEIGHT, WIDTH)).astype(np.uint8)
    semseg[0, :3] = 255
    depth = rng.uniform(0.5, 5.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth[4, 1:4] = 0.0  # invalid
    normals = rng.normal(size=(HEIGHT, WIDTH, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=2, keepdims=True)
    normals[INVALID_NORMALS] = 255.0
    return {"image": rng.random((HEIGHT, WIDTH, 3), dtype=np.float32), "semseg": semseg, "depth": depth,
            "normals": normals, "meta": {"id": "7", "size": (HEIGHT, WIDTH)}}


def nearest_rows(out_size, in_size):
    """torch's legacy `nearest`: source index floor(dst * in / out), in exact integers."""
    return (np.arange(out_size) * in_size) // out_size


def bilinear(array, out_shape):
    """(h, w, ...) -> (H, W, ...) in float64 with align_corners=True: the source coordinate of
    output index d is d * (in - 1) / (out - 1), blended between its two neighbours."""
    array = array.astype(np.float64)
    for axis, out_size in enumerate(out_shape):
        in_size = array.shape[axis]
        position = np.arange(out_size) * (in_size - 1) / (out_size - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        weight = (position - low).reshape([-1 if a == axis else 1 for a in range(array.ndim)])
        array = np.take(array, low, axis=axis) * (1 - weight) + np.take(array, high, axis=axis) * weight
    return array


def normalised(image):
    """(H, W, 3) in [0, 1] -> (3, H, W) ImageNet-normalised."""
    return ((image - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def expected_protocol(sample, scale, top, left):
    """The protocol's scale-crop of `sample`, written out (module docstring)."""
    crop_h, crop_w = CROP[scale]
    window = (slice(top, top + crop_h), slice(left, left + crop_w))
    rows, cols = nearest_rows(HEIGHT, crop_h), nearest_rows(WIDTH, crop_w)
    nearest = lambda value: value[window][rows][:, cols]  # noqa: E731
    stored_normals = np.where(sample["normals"] == 255, 0.0, sample["normals"])
    normals = bilinear(stored_normals[window], (HEIGHT, WIDTH))
    normals[(normals == 0).all(axis=2)] = 255
    depth = nearest(sample["depth"])
    return {"image": normalised(bilinear(sample["image"][window], (HEIGHT, WIDTH))),
            "semseg": nearest(sample["semseg"]).astype(np.int64),
            "depth": np.where(depth == 255, 255, depth / np.float32(scale))[None],
            "normals": normals.transpose(2, 0, 1)}


@pytest.mark.parametrize("scale_index, top, left", [(1, 1, 2), (2, 2, 4), (2, 0, 0), (0, 0, 0)])
def test_scale_crop_matches_the_written_out_protocol(scale_index, top, left):
    sample = raw_sample()
    scale = (1.0, 1.2, 1.5)[scale_index]
    out = MTANTrainTransform(TASKS, (HEIGHT, WIDTH), flip_prob=0.0)(sample, rng=Forced(scale_index, top, left))
    expected = expected_protocol(sample, scale, top, left)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (3, HEIGHT, WIDTH)
    # float images kept: a uint8 round trip would be up to 0.5 / 255 / 0.225 = 0.0087 off
    assert np.abs(out["image"].numpy() - expected["image"]).max() < 1e-5
    assert out["semseg"].dtype == torch.int64 and np.array_equal(out["semseg"].numpy(), expected["semseg"])
    depth = out["depth"].numpy()
    assert depth.shape == (1, HEIGHT, WIDTH) and np.allclose(depth, expected["depth"], rtol=1e-6, atol=0)
    assert np.array_equal(depth == 0, expected["depth"] == 0)  # invalid stays 0
    normals = out["normals"].numpy()
    assert np.array_equal(normals == 255, expected["normals"] == 255)
    assert np.abs(normals - expected["normals"]).max() < 1e-6
    assert out["meta"]["size"].tolist() == [HEIGHT, WIDTH] and out["meta"]["id"] == "7"
    if scale != 1.0:  # pixels between a valid and an invalid normal are blends, not renormalised
        lengths = np.linalg.norm(normals.transpose(1, 2, 0)[(normals != 255).all(0)], axis=1)
        assert ((lengths > 0.01) & (lengths < 0.99)).any()


def test_scale_one_at_the_origin_is_the_identity():
    sample = raw_sample()
    out = MTANTrainTransform(TASKS, (HEIGHT, WIDTH), flip_prob=0.0)(sample, rng=Forced(0, 0, 0))
    assert torch.equal(out["semseg"], torch.from_numpy(sample["semseg"].astype(np.int64)))
    assert torch.equal(out["depth"][0], torch.from_numpy(sample["depth"]))
    assert torch.equal(out["normals"], torch.from_numpy(sample["normals"].transpose(2, 0, 1).copy()))


def test_unlabelled_targets_stay_all_ignore():
    sample = dict(raw_sample(), **{task: ignore_target(task, (HEIGHT, WIDTH)) for task in ("depth", "normals")},
                  task_mask=np.array([True, False, False]))
    out = MTANTrainTransform(TASKS, (HEIGHT, WIDTH), flip_prob=0.0)(sample, rng=Forced(2, 1, 3))
    assert (out["depth"] == 255).all() and (out["normals"] == 255).all()  # not 255 / 1.5, not blended
    assert out["task_mask"].tolist() == [True, False, False]


def test_draws_come_from_the_generator_in_order():
    """scale index, top, left (both ends inclusive), then the flip: a generator with the
    same seed gives the same sample, as PartiallyLabelled's (seed, epoch, index) ones do."""
    sample = raw_sample()
    transform = MTANTrainTransform(TASKS, (HEIGHT, WIDTH), flip_prob=0.5)
    for seed in range(6):
        draws = np.random.default_rng(seed)
        scale_index = int(draws.integers(3))
        crop_h, crop_w = CROP[(1.0, 1.2, 1.5)[scale_index]]
        forced = Forced(scale_index, int(draws.integers(0, HEIGHT - crop_h + 1)),
                        int(draws.integers(0, WIDTH - crop_w + 1)), flip_draw=draws.random())
        out, again = transform(sample, rng=np.random.default_rng(seed)), transform(sample, rng=forced)
        for key in TASKS + ["image"]:
            assert torch.equal(out[key], again[key]), (seed, key)


def test_scales_and_positions_cover_the_protocol_ranges():
    transform = MTANTrainTransform(TASKS, (HEIGHT, WIDTH), flip_prob=0.0)
    draws = [transform.draw((HEIGHT, WIDTH), np.random.default_rng(seed)) for seed in range(400)]
    assert {scale for scale, _, _ in draws} == {1.0, 1.2, 1.5}
    for scale, (crop_h, crop_w) in CROP.items():
        assert {top for s, top, _ in draws if s == scale} == set(range(HEIGHT - crop_h + 1))
        assert {left for s, _, left in draws if s == scale} == set(range(WIDTH - crop_w + 1))


def test_nyud_never_flips_cityscapes_flips_half_the_time():
    sample = raw_sample()
    plain = MTANValTransform(TASKS, (HEIGHT, WIDTH))(sample)
    nyud = MTANTrainTransform(TASKS, (HEIGHT, WIDTH), flip_prob=0.0, scales=(1.0,))
    for seed in range(12):  # no flip, no photometric change: the validation sample itself
        out = nyud(sample, rng=np.random.default_rng(seed))
        assert all(torch.equal(out[key], plain[key]) for key in TASKS + ["image"])
    cityscapes = MTANTrainTransform(TASKS, (HEIGHT, WIDTH), flip_prob=0.5, scales=(1.0,))
    flipped = [torch.equal(cityscapes(sample, rng=np.random.default_rng(seed))["semseg"], plain["semseg"].flip(-1))
               for seed in range(12)]
    assert any(flipped) and not all(flipped)
    mirrored = cityscapes(sample, rng=Forced(0, 0, 0, flip_draw=0.1))
    assert torch.equal(mirrored["image"], plain["image"].flip(-1))
    assert torch.equal(mirrored["depth"], plain["depth"].flip(-1))
    valid = plain["normals"].flip(-1) != 255
    expected_x = plain["normals"][0].flip(-1)
    assert torch.equal(mirrored["normals"][0][valid[0]], -expected_x[valid[0]])  # x negated
    assert torch.equal(mirrored["normals"][1:], plain["normals"][1:].flip(-1))


def test_validation_is_normalisation_only():
    sample = raw_sample()
    out = MTANValTransform(TASKS, (HEIGHT, WIDTH))(sample)
    assert np.abs(out["image"].numpy() - normalised(sample["image"])).max() < 1e-6
    assert torch.equal(out["semseg"], torch.from_numpy(sample["semseg"].astype(np.int64)))
    assert torch.equal(out["depth"][0], torch.from_numpy(sample["depth"]))
    assert out["task_mask"].tolist() == [True, True, True]


def test_the_configured_size_must_be_the_image_size():
    with pytest.raises(DataError, match=r"image '7' is 6x10 but train_size is 8x10; .*set train_size to \[6, 10\]"):
        MTANTrainTransform(TASKS, (8, 10), flip_prob=0.0)(raw_sample(), rng=Forced(0, 0, 0))
    with pytest.raises(DataError, match=r"image '7' is 6x10 but val_size is 6x12"):
        MTANValTransform(TASKS, (6, 12))(raw_sample())
