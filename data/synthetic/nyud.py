"""The NYUD-v2 multi-task layout: images/, segmentation/ (NYUD-40 ids), depth/*.npy
(metres, 0 = missing), normals/, edge/, gt_sets/."""
import os

import numpy as np

from data.pascal_context import label_boundaries
from data.synthetic.objects import KINDS
from data.synthetic.scenes import make_scene, shade
from data.synthetic.writing import (_depth_with_holes, _sample_rng, _write_gray, _write_lines, _write_rgb,
                                    encode_normals)

# NYUD-40 ids as stored in segmentation/<id>.png (0 = unlabelled).
NYU40_IDS = {"wall": 1, "floor": 2, "cabinet": 3, "bed": 4, "chair": 5, "sofa": 6,
             "diningtable": 7, "door": 8, "window": 9, "bookshelf": 10, "picture": 11,
             "ceiling": 22, "tvmonitor": 25, "box": 29, "person": 31, "lamp": 35,
             "bottle": 40, "pottedplant": 40, "clutter": 0}


def write_nyud_sample(root, sample_id, scene, rng):
    image = shade(scene, rng)
    _write_rgb(os.path.join(root, "images", f"{sample_id}.png"), image)
    nyu40 = np.array([NYU40_IDS.get(k, 0) for k in KINDS], np.uint8)[scene.kind]
    _write_gray(os.path.join(root, "segmentation", f"{sample_id}.png"), nyu40)
    np.save(os.path.join(root, "depth", f"{sample_id}.npy"), _depth_with_holes(scene, rng))
    _write_rgb(os.path.join(root, "normals", f"{sample_id}.png"), encode_normals(scene.normal))
    _write_gray(os.path.join(root, "edge", f"{sample_id}.png"), label_boundaries(nyu40) * 255)


def _write_nyud(root, counts, height, width, seed):
    for folder in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    offset = 0
    for split, count in counts.items():
        ids = [f"{offset + i:06d}" for i in range(count)]
        offset += count
        for index, sample_id in enumerate(ids):
            rng = _sample_rng(seed, split, index)
            write_nyud_sample(root, sample_id, make_scene(rng, height, width, "nyud", 0.3), rng)
        _write_lines(os.path.join(root, "gt_sets", f"{split}.txt"), ids)
