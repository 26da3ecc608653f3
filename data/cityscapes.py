"""Cityscapes as MTAN preprocessed it, the layout of MTPSL's and the
paper's partial-label benchmark: 128x256 images, 7 (or 19) semantic classes and inverse
depth, 2,975 training and 500 validation images.

Layout under `root` (the `cityscapes` folder): `{train,val}/{image,label_7,label_19,depth}/
<index>.npy`; image float (H, W, 3) in [0, 1]; labels (H, W) class ids with -1 = ignore;
depth (H, W, 1) inverse depth with 0 = invalid. Sample ids are the row indices, as in the
official split file `cityscapes_onelabel.pth`.

Training augmentation follows the protocol (MTAN / MTPSL `RandomScaleCrop`): a crop of
1/s of the image for s drawn from (1.0, 1.2, 1.5), resized back to the image size
(bilinear image, nearest labels and depth), depth divided by s, then a horizontal flip
with probability 0.5; no photometric jitter. Dividing *inverse* depth by s is what the
protocol's code does (it shares the transform with metric-depth NYUv2); we keep it so
that numbers stay comparable.
"""
import os

import cv2
import numpy as np

from data.readers import (DecodedLoader, check_shape, check_tasks, decode_index_labels, depth_2d, read_npy,
                          require_dir, row_index_ids)
from data.transforms import hflip, pad_and_tensorize, rng_from_torch
from utils.errors import DataError
from utils.tasks import DATASET_TASKS, IGNORE_INDEX, SEMSEG_CLASS_CHOICES

LABEL_SETS = SEMSEG_CLASS_CHOICES["Cityscapes"]  # (7, 19): folders label_7 / label_19


class Cityscapes(DecodedLoader):
    """Raw samples of docs/conventions.md from the MTAN .npy layout; `num_classes` picks
    `label_7` (default) or `label_19`."""

    def __init__(self, root, split, tasks, transform=None, num_classes=DATASET_TASKS["Cityscapes"]["semseg"]):
        if num_classes not in LABEL_SETS:
            raise DataError(f"Cityscapes has label sets {list(LABEL_SETS)}, not {num_classes} classes")
        require_dir(root, "Cityscapes root")
        self.root = root
        self.split = split
        self.tasks = check_tasks("Cityscapes", tasks, DATASET_TASKS["Cityscapes"])
        self.transform = transform
        self.num_classes = num_classes
        self.ids = row_index_ids(os.path.join(root, split, "image"), f"Cityscapes split '{split}'")
        self._decoders = {"semseg": self._semseg, "depth": self._depth}

    def _path(self, folder, sample_id):
        return os.path.join(self.root, self.split, folder, f"{sample_id}.npy")

    def _image(self, sample_id):
        """float [0, 1] (MTAN) -> uint8 RGB, like every other loader's raw image."""
        path = self._path("image", sample_id)
        image = read_npy(path, sample_id)
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"{path} (sample {sample_id!r}): image must be (H, W, 3), got {image.shape}")
        if image.dtype == np.uint8:
            return image
        image = image.astype(np.float32)
        if not np.isfinite(image).all() or image.min(initial=0.0) < 0 or image.max(initial=0.0) > 1:
            raise DataError(f"{path} (sample {sample_id!r}): image values must be finite and in [0, 1]")
        return np.rint(image * 255.0).astype(np.uint8)

    def _semseg(self, sample_id, shape):
        path = self._path(f"label_{self.num_classes}", sample_id)
        return decode_index_labels(read_npy(path, sample_id), self.num_classes, shape, path, sample_id)

    def _depth(self, sample_id, shape):
        path = self._path("depth", sample_id)
        depth = depth_2d(read_npy(path, sample_id), path, sample_id)
        check_shape(depth, shape, path, sample_id)
        if not np.isfinite(depth).all() or depth.min(initial=0.0) < 0:
            raise DataError(f"{path} (sample {sample_id!r}): inverse depth must be finite and >= 0")
        return depth


def scale_crop(sample, scale, top, left):
    """The protocol's scale-crop: the (H/s, W/s) window at (top, left) resized back to
    (H, W); depth divided by `scale` (ignored pixels stay 255, invalid ones 0)."""
    height, width = sample["image"].shape[:2]
    crop_h, crop_w = int(height / scale), int(width / scale)
    window = (slice(top, top + crop_h), slice(left, left + crop_w))
    out = dict(sample)
    out["image"] = cv2.resize(sample["image"][window], (width, height), interpolation=cv2.INTER_LINEAR)
    for key in sample:
        if key in ("image", "meta", "task_mask"):
            continue
        resized = cv2.resize(sample[key][window], (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
        if key == "depth":
            resized = np.where(resized == IGNORE_INDEX, resized, resized / np.float32(scale))
        out[key] = resized
    return out


class CityscapesTrainTransform:
    """Training augmentation of the Cityscapes protocol (module docstring); the output
    is padded to `size` (the image size, 128x256, in the paper's setting)."""

    def __init__(self, tasks, size, scales=(1.0, 1.2, 1.5), flip_prob=0.5):
        self.tasks = list(tasks)
        self.size = tuple(size)
        self.scales = tuple(scales)
        self.flip_prob = flip_prob

    def __call__(self, sample, rng=None):
        rng = rng_from_torch() if rng is None else rng
        height, width = sample["image"].shape[:2]
        if height > self.size[0] or width > self.size[1]:
            raise DataError(f"Cityscapes image '{sample['meta']['id']}' is {height}x{width}, larger than "
                            f"train_size {self.size[0]}x{self.size[1]}; set train_size to the image size")
        task_mask = np.asarray(sample.get("task_mask", np.ones(len(self.tasks), bool)), dtype=bool)
        scale = float(self.scales[int(rng.integers(len(self.scales)))])
        top = int(rng.integers(0, height - int(height / scale) + 1))
        left = int(rng.integers(0, width - int(width / scale) + 1))
        sample = scale_crop(sample, scale, top, left)
        if rng.random() < self.flip_prob:
            sample = hflip(sample)
        return pad_and_tensorize(sample, self.tasks, self.size, task_mask)
