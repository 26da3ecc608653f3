"""Cityscapes as MTAN preprocessed it, the layout of MTPSL's and the
paper's partial-label benchmark: 128x256 images, 7 (or 19) semantic classes and inverse
depth, 2,975 training and 500 validation images.

Layout under `root` (the `cityscapes` folder): `{train,val}/{image,label_7,label_19,depth}/
<index>.npy`; image float (H, W, 3) in [0, 1]; labels (H, W) class ids with -1 = ignore;
depth (H, W, 1) inverse depth with 0 = invalid. Sample ids are the row indices, as in the
official split file `cityscapes_onelabel.pth`.

Images stay float32 in [0, 1] for the protocol's training transform (MTPSL's scale-crop
and horizontal flip, data/mtan_transforms.py).
"""
import numpy as np

from data.readers import MTANLoader, check_shape, decode_index_labels, depth_2d, read_npy
from utils.errors import DataError
from utils.tasks import DATASET_TASKS, SEMSEG_CLASS_CHOICES

LABEL_SETS = SEMSEG_CLASS_CHOICES["Cityscapes"]  # (7, 19): folders label_7 / label_19


class Cityscapes(MTANLoader):
    """Raw samples of docs/conventions.md from the MTAN .npy layout; `num_classes` picks
    `label_7` (default) or `label_19`."""

    def __init__(self, root, split, tasks, transform=None, num_classes=DATASET_TASKS["Cityscapes"]["semseg"]):
        if num_classes not in LABEL_SETS:
            raise DataError(f"Cityscapes has label sets {list(LABEL_SETS)}, not {num_classes} classes")
        super().__init__(root, split, tasks, transform, "Cityscapes", "Cityscapes")
        self.num_classes = num_classes
        self.folders = {"semseg": f"label_{num_classes}", "depth": "depth"}
        self._decoders = {"semseg": self._semseg, "depth": self._depth}

    def _semseg(self, sample_id, shape):
        path = self._path(self.folders["semseg"], sample_id)
        return decode_index_labels(read_npy(path, sample_id), self.num_classes, shape, path, sample_id)

    def _depth(self, sample_id, shape):
        path = self._path("depth", sample_id)
        depth = depth_2d(read_npy(path, sample_id), path, sample_id)
        check_shape(depth, shape, path, sample_id)
        if not np.isfinite(depth).all() or depth.min(initial=0.0) < 0:
            raise DataError(f"{path} (sample {sample_id!r}): inverse depth must be finite and >= 0")
        return depth

