"""NYUD-v2 in its two layouts (docs/datasets.md, "Layouts"), decoded into the raw samples of
docs/conventions.md:

- `NYUD`: the multi-task layout of InvPT / ATRC (semseg 40 classes, depth, normals, edge);
- `NYUDMTAN`: the MTAN .npy layout used by MTPSL's partial-label files (13 classes,
  depth, normals), whose sample ids are the row indices of those files.
"""
import os

import numpy as np

from data.readers import (DecodedLoader, MTANLoader, check_shape, check_tasks, decode_index_labels, decode_normals,
                          depth_2d, first_existing, read_image, read_npy, read_split, require_dir)
from utils.errors import DataError
from utils.tasks import DATASET_TASKS, IGNORE_INDEX


class NYUD(DecodedLoader):
    """Multi-task layout: `root` is the NYUDv2 folder with images/, segmentation/, depth/,
    normals/, edge/ and gt_sets/{train,val}.txt."""

    NUM_CLASSES = DATASET_TASKS["NYUD"]["semseg"]

    def __init__(self, root, split, tasks, transform=None):
        require_dir(root, "NYUD root")
        self.root = root
        self.tasks = check_tasks("NYUD", tasks, DATASET_TASKS["NYUD"])
        self.transform = transform
        self.ids = read_split(os.path.join(root, "gt_sets", f"{split}.txt"))
        # task -> decoder(sample_id, image (H, W)) -> raw target
        self._decoders = {"semseg": self._semseg, "depth": self._depth,
                          "normals": self._normals, "edge": self._edge}

    def _path(self, folder, sample_id, ext):
        return os.path.join(self.root, folder, f"{sample_id}{ext}")

    def files(self, index, tasks=None):
        """The files `load(index, tasks)` reads, each as a tuple of alternatives (one must exist)."""
        sample_id = self.ids[index]
        decode = self.tasks if tasks is None else tasks
        folders = {"semseg": ("segmentation", ".png"), "depth": ("depth", ".npy"),
                   "normals": ("normals", ".png"), "edge": ("edge", ".png")}
        return [(self._path("images", sample_id, ".png"), self._path("images", sample_id, ".jpg"))] + \
            [(self._path(*folders[task][:1], sample_id, folders[task][1]),) for task in self.tasks if task in decode]

    def _semseg(self, sample_id, shape):
        """Stored as class + 1 with 0 = unlabelled; anything outside 1..40 is ignored."""
        path = self._path("segmentation", sample_id, ".png")
        stored = read_image(path, sample_id)
        if stored.ndim != 2:
            raise DataError(f"{path} (sample {sample_id!r}): expected a single-channel label PNG")
        check_shape(stored, shape, path, sample_id)
        stored = stored.astype(np.int64)
        labels = np.where((stored >= 1) & (stored <= self.NUM_CLASSES), stored - 1, IGNORE_INDEX)
        return labels.astype(np.uint8)

    def _depth(self, sample_id, shape):
        path = self._path("depth", sample_id, ".npy")
        depth = depth_2d(read_npy(path, sample_id), path, sample_id)
        check_shape(depth, shape, path, sample_id)
        return depth

    def _normals(self, sample_id, shape):
        path = self._path("normals", sample_id, ".png")
        encoded = read_image(path, sample_id)
        if encoded.ndim != 3 or encoded.shape[2] < 3:
            raise DataError(f"{path} (sample {sample_id!r}): expected an RGB PNG")
        check_shape(encoded, shape, path, sample_id)
        return decode_normals(encoded)

    def _edge(self, sample_id, shape):
        path = self._path("edge", sample_id, ".png")
        edge = read_image(path, sample_id)
        if edge.ndim == 3:
            edge = edge[..., 0]
        check_shape(edge, shape, path, sample_id)
        return (edge.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)

    def _image(self, sample_id):
        path = first_existing([self._path("images", sample_id, ".png"),
                               self._path("images", sample_id, ".jpg")], sample_id)
        return read_image(path, sample_id, mode="RGB")


class NYUDMTAN(MTANLoader):
    """MTAN layout: `root` is the nyuv2 folder with {train,val}/{image,label,depth,normal}/
    <index>.npy. Images are float (H, W, 3) in [0, 1], kept so (float32) for the protocol's
    transform (data/mtan_transforms.py); labels are class ids with -1 = ignore; depth
    0 = invalid; normals in [-1, 1], all-zero vectors marking pixels without a normal
    (ignored, as MTAN's metric does)."""

    NUM_CLASSES = DATASET_TASKS["NYUD_MTAN"]["semseg"]

    def __init__(self, root, split, tasks, transform=None):
        super().__init__(root, split, tasks, transform, "NYUD_MTAN", "NYUD (MTAN layout)")
        self.folders = {"semseg": "label", "depth": "depth", "normals": "normal"}
        self._decoders = {"semseg": self._semseg, "depth": self._depth, "normals": self._normals}

    def _semseg(self, sample_id, shape):
        path = self._path("label", sample_id)
        return decode_index_labels(read_npy(path, sample_id), self.NUM_CLASSES, shape, path, sample_id)

    def _depth(self, sample_id, shape):
        path = self._path("depth", sample_id)
        depth = depth_2d(read_npy(path, sample_id), path, sample_id)
        check_shape(depth, shape, path, sample_id)
        return depth

    def _normals(self, sample_id, shape):
        path = self._path("normal", sample_id)
        normals = read_npy(path, sample_id)
        if normals.ndim != 3 or normals.shape[2] != 3:
            raise DataError(f"{path} (sample {sample_id!r}): normals must be (H, W, 3), got {normals.shape}")
        check_shape(normals, shape, path, sample_id)
        normals = normals.astype(np.float32)
        normals[(normals == 0).all(axis=2)] = IGNORE_INDEX
        return normals
