"""MTAN's preprocessed arrays (one .npy per image and task under train/ and val/): the
NYUD-v2 13-class layout and the Cityscapes 7/19-class layout with inverse depth."""
import os

import numpy as np

from data.synthetic.objects import KINDS
from data.synthetic.scenes import make_scene, make_street_scene, shade
from data.synthetic.writing import _depth_with_holes, _sample_rng

# MTAN 13 classes (-1 = unlabelled).
MTAN_IDS = {"bed": 0, "bookshelf": 5, "ceiling": 2, "chair": 3, "floor": 4, "cabinet": 5,
            "door": 5, "box": 6, "lamp": 6, "bottle": 6, "pottedplant": 6, "person": 6,
            "picture": 7, "sofa": 8, "diningtable": 9, "tvmonitor": 10, "wall": 11,
            "window": 12, "clutter": -1}
# Cityscapes (MTAN preprocessing): 19 train ids and the 7 categories (-1 = void).
CITYSCAPES19_IDS = {"road": 0, "sidewalk": 1, "building": 2, "pole": 5, "sign": 7, "tree": 8, "grass": 9,
                    "sky": 10, "person": 11, "car": 13, "bus": 15, "train": 16, "motorbike": 17,
                    "bicycle": 18}
CITYSCAPES7_IDS = {"road": 0, "sidewalk": 0, "building": 1, "pole": 2, "sign": 2, "tree": 3, "grass": 3,
                   "sky": 4, "person": 5, "car": 6, "bus": 6, "train": 6, "motorbike": 6, "bicycle": 6}


def write_mtan_sample(root, split, index, scene, rng):
    folder = os.path.join(root, split)
    image = shade(scene, rng)
    np.save(os.path.join(folder, "image", f"{index}.npy"), image.astype(np.float32) / 255.0)
    labels = np.array([MTAN_IDS.get(k, -1) for k in KINDS], np.float32)[scene.kind]
    np.save(os.path.join(folder, "label", f"{index}.npy"), labels)
    depth = _depth_with_holes(scene, rng)
    np.save(os.path.join(folder, "depth", f"{index}.npy"), depth[..., None])
    normals = np.where((depth > 0)[..., None], scene.normal, 0.0).astype(np.float32)  # MTAN: 0 = none
    np.save(os.path.join(folder, "normal", f"{index}.npy"), normals)


def write_cityscapes_sample(root, split, index, scene, rng):
    """MTAN's Cityscapes arrays: image [0, 1], label_7 / label_19 with -1 = void, and
    inverse depth (1 / metres) with 0 where there is none (sky, bonnet, sensor holes)."""
    folder = os.path.join(root, split)
    image = shade(scene, rng)
    np.save(os.path.join(folder, "image", f"{index}.npy"), image.astype(np.float32) / 255.0)
    for count, ids in ((7, CITYSCAPES7_IDS), (19, CITYSCAPES19_IDS)):
        labels = np.array([ids.get(k, -1) for k in KINDS], np.float32)[scene.kind]
        np.save(os.path.join(folder, f"label_{count}", f"{index}.npy"), labels)
    depth = _depth_with_holes(scene, rng)
    measured = (depth > 0) & ~np.isin(scene.kind, [KINDS.index("sky"), KINDS.index("clutter")])
    inverse = np.where(measured, 1.0 / np.maximum(depth, 1e-3), 0.0).astype(np.float32)
    np.save(os.path.join(folder, "depth", f"{index}.npy"), inverse[..., None])


def _write_nyud_mtan(root, counts, height, width, seed):
    for split, count in counts.items():
        for folder in ("image", "label", "depth", "normal"):
            os.makedirs(os.path.join(root, split, folder), exist_ok=True)
        for index in range(count):
            rng = _sample_rng(seed, split, index)
            write_mtan_sample(root, split, index, make_scene(rng, height, width, "nyud", 0.3), rng)


def _write_cityscapes(root, counts, height, width, seed):
    for split, count in counts.items():
        for folder in ("image", "label_7", "label_19", "depth"):
            os.makedirs(os.path.join(root, split, folder), exist_ok=True)
        for index in range(count):
            rng = _sample_rng(seed, split, index)
            write_cityscapes_sample(root, split, index, make_street_scene(rng, height, width), rng)
