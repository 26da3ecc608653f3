"""Transforms of the partial-label protocol for the MTAN .npy layouts (NYUD_MTAN and
Cityscapes; docs/datasets.md, "Training augmentation"). The paper's NYUD and Cityscapes
numbers come from MTPSL's dataset code, so these follow it rather than the PASCAL recipe
of data/transforms.py.

Training (`MTANTrainTransform`): s drawn uniformly from (1.0, 1.2, 1.5); the window of
h = int(H / s) by w = int(W / s) pixels at a uniformly drawn (top, left) (0..H-h and
0..W-w, both ends inclusive) is resized back to H x W with torch's `F.interpolate`, called
as MTPSL calls it: the image `bilinear` with align_corners=True, labels `nearest` (torch's
legacy rule, source index floor(dst * in / out)), depth `nearest` then divided by s (a
crop seen s times larger looks s times nearer; MTPSL divides Cityscapes' *inverse* depth
by s as well, kept so that numbers stay comparable), normals `bilinear` with
align_corners=True and not renormalised. Then, Cityscapes only, a horizontal flip with
probability 0.5. No padding, no photometric change; images stay float32 in [0, 1] until
the ImageNet normalisation at the end.
Validation (`MTANValTransform`): no transform, only normalisation and tensors.

Either way the output is the tensors of docs/conventions.md at the image's own size,
which must be the configured train_size / val_size (the protocol never pads).

Randomness: every draw comes from the `numpy.random.Generator` passed as `rng`, in the
order scale, top, left, flip; training (`data.datasets.PartiallyLabelled`) seeds it with
(seed, epoch, sample index), so a resumed run sees the same crops.
"""
import numpy as np
import torch
import torch.nn.functional as F

from data.transforms import IMAGENET_MEAN, IMAGENET_STD, rng_from_torch
from utils.errors import DataError
from utils.tasks import IGNORE_INDEX

SCALES = (1.0, 1.2, 1.5)

# Maps resampled bilinearly (align_corners=True); every other map is resampled `nearest`.
BILINEAR = ("image", "normals")


def to_maps(sample, tasks):
    """The raw sample's maps as float32 (C, H, W) tensors, as MTPSL holds them: image in
    [0, 1], labels as float class ids (255 = ignore), depth (1, H, W), and normals with their
    stored zero vectors where the loader marked them invalid (255), so that bilinear
    resampling mixes exactly what MTPSL's does."""
    maps = {"image": torch.from_numpy(np.ascontiguousarray(sample["image"].transpose(2, 0, 1), np.float32))}
    for task in tasks:
        value = np.asarray(sample[task], dtype=np.float32)
        value = torch.from_numpy(np.ascontiguousarray(value.transpose(2, 0, 1) if value.ndim == 3 else value[None]))
        if task == "normals":
            value = value.masked_fill(value == IGNORE_INDEX, 0.0)
        maps[task] = value
    return maps


def crop_size(shape, scale):
    """(h, w) of the protocol's crop of an image of `shape` (H, W): (int(H / s), int(W / s))."""
    return int(shape[0] / scale), int(shape[1] / scale)


def scale_crop(maps, scale, top, left):
    """The protocol's `RandomScaleCrop` for one drawn (scale, top, left): each (C, H, W) map's
    window resized back to (H, W); depth divided by `scale` (0 = invalid stays 0, 255 =
    ignore stays 255)."""
    height, width = maps["image"].shape[-2:]
    crop_h, crop_w = crop_size((height, width), scale)
    out = {}
    for key, value in maps.items():
        window = value[None, :, top:top + crop_h, left:left + crop_w]  # (1, C, h, w)
        if key in BILINEAR:
            resized = F.interpolate(window, size=(height, width), mode="bilinear", align_corners=True)[0]
        else:
            resized = F.interpolate(window, size=(height, width), mode="nearest")[0]
        if key == "depth":
            resized = torch.where(resized == IGNORE_INDEX, resized, resized / scale)
        out[key] = resized
    return out


def hflip(maps):
    """Mirror every map; the x component of normals changes sign (zero vectors stay zero)."""
    out = {key: value.flip(-1) for key, value in maps.items()}
    if "normals" in out:
        out["normals"][0].neg_()
    return out


def to_sample(maps, sample, tasks, task_mask):
    """Tensors of docs/conventions.md: the image ImageNet-normalised, class maps int64,
    normals 255 where the vector is zero (no normal), `meta.size` the image size."""
    mean = torch.from_numpy(IMAGENET_MEAN)[:, None, None]
    std = torch.from_numpy(IMAGENET_STD)[:, None, None]
    out = {"image": (maps["image"] - mean) / std}
    for task in tasks:
        value = maps[task]
        if task == "semseg":
            value = value[0].long()
        elif task == "normals":
            value = value.masked_fill((value == 0).all(0), IGNORE_INDEX)
        out[task] = value.contiguous()
    height, width = out["image"].shape[-2:]
    out["task_mask"] = torch.as_tensor(task_mask, dtype=torch.bool)
    out["meta"] = {"id": str(sample["meta"]["id"]), "size": torch.tensor([height, width], dtype=torch.int64)}
    return out


def check_size(sample, size, key):
    """The protocol keeps the image size, so it has to be the configured one (`key`)."""
    height, width = sample["image"].shape[:2]
    if (height, width) != tuple(size):
        raise DataError(f"image '{sample['meta']['id']}' is {height}x{width} but {key} is {size[0]}x{size[1]}; "
                        f"the protocol keeps each image's size (no padding): set {key} to [{height}, {width}]")


def _task_mask(sample, tasks):
    return np.asarray(sample.get("task_mask", np.ones(len(tasks), bool)), dtype=bool)


class MTANTrainTransform:
    """Training augmentation of the protocol (module docstring); `flip_prob` 0.5 for
    Cityscapes, 0 for NYUD (MTPSL does not flip NYUD)."""

    pads = False  # every image must have the size train_size (engine.preflight checks it up front)

    def __init__(self, tasks, size, flip_prob, scales=SCALES):
        self.tasks = list(tasks)
        self.size = tuple(size)
        self.flip_prob = flip_prob
        self.scales = tuple(scales)

    def draw(self, shape, rng):
        """(scale, top, left) of one crop, drawn from `rng`."""
        scale = float(self.scales[int(rng.integers(len(self.scales)))])
        crop_h, crop_w = crop_size(shape, scale)
        top = int(rng.integers(0, shape[0] - crop_h + 1))
        left = int(rng.integers(0, shape[1] - crop_w + 1))
        return scale, top, left

    def __call__(self, sample, rng=None):
        rng = rng_from_torch() if rng is None else rng
        check_size(sample, self.size, "train_size")
        maps = scale_crop(to_maps(sample, self.tasks), *self.draw(sample["image"].shape[:2], rng))
        if self.flip_prob and rng.random() < self.flip_prob:
            maps = hflip(maps)
        return to_sample(maps, sample, self.tasks, _task_mask(sample, self.tasks))


class MTANValTransform:
    """Validation: no transform (normalisation and tensors only)."""

    pads = False  # every image must have the size val_size (engine.preflight checks it up front)

    def __init__(self, tasks, size):
        self.tasks = list(tasks)
        self.size = tuple(size)

    def __call__(self, sample):
        check_size(sample, self.size, "val_size")
        return to_sample(to_maps(sample, self.tasks), sample, self.tasks, _task_mask(sample, self.tasks))
