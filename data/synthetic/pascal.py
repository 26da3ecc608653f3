"""The PASCAL-Context layout (with PASCAL-Part human parts and distilled normals and
saliency): JPEGImages/, semseg/VOC12/, pascal-context/trainval/*.mat, human_parts/*.mat,
normals_distill/, sal_distill/, ImageSets/{Context,Parts}/."""
import json
import os

import cv2
import numpy as np
from PIL import Image

from data.metadata import VOC_CLASSES, VOC_PALETTE
from data.pascal_context import load_db_info
from data.synthetic.objects import KINDS
from data.synthetic.scenes import WALL_DECOR, make_scene, shade
from data.synthetic.writing import _sample_rng, _write_gray, _write_lines, _write_mat, _write_rgb, encode_normals
from utils.tasks import IGNORE_INDEX

# Label tables: the VOC id (semseg, .mat objects) is the index in VOC_CLASSES; the Context
# name (LabelMap) is the kind's name except for these.
PASCAL_CONTEXT_NAME = {"diningtable": "table", "bookshelf": "shelves", "lamp": "light", "clutter": "unknown"}
PASCAL_PERSON_PROB = 0.85  # share of PASCAL-layout scenes with people


def salient_instances(scene, min_area=0.02):
    """The nearest sizeable objects (within 30% of the nearest one's distance)."""
    area = np.bincount(scene.instance.ravel(), minlength=len(scene.objects) + 1) / scene.instance.size
    candidates = [(d, i) for i, obj, d in scene.objects if area[i] >= min_area and obj.kind not in WALL_DECOR]
    if not candidates:
        return []
    nearest = min(candidates)[0]
    return [i for d, i in candidates if d <= 1.3 * nearest]


def _mat_objects(scene):
    """The human_parts `anno.objects` struct array: every visible VOC object, with the
    visible masks of its labelled parts."""
    object_dtype = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    part_dtype = [("part_name", "O"), ("mask", "O")]
    records, classes = [], []
    for instance, obj, _ in sorted(scene.objects, key=lambda o: o[0]):
        mask = scene.instance == instance
        if obj.kind not in VOC_CLASSES or not mask.any():
            continue
        parts = []
        for index in np.unique(scene.part[mask]):
            if index >= 0:
                parts.append((scene.part_names[index], (mask & (scene.part == index)).astype(np.uint8)))
        part_array = np.zeros((0, 0))
        if parts:
            part_array = np.zeros((1, len(parts)), part_dtype)
            for k, (name, part_mask) in enumerate(parts):
                part_array[0, k] = (name, part_mask)
        class_ind = VOC_CLASSES.index(obj.kind)
        records.append((obj.kind, np.array([[class_ind]], np.uint8), mask.astype(np.uint8), part_array))
        classes.append(class_ind)
    objects = np.zeros((1, len(records)), object_dtype)
    for k, record in enumerate(records):
        objects[0, k] = record
    return objects, classes


def write_pascal_sample(root, sample_id, scene, rng, context_ids, palette):
    image = shade(scene, rng)
    _write_rgb(os.path.join(root, "JPEGImages", f"{sample_id}.jpg"), image, quality=92)
    voc = np.array([VOC_CLASSES.index(k) if k in VOC_CLASSES else 0 for k in KINDS], np.uint8)
    semseg = voc[scene.kind]
    objects_only = np.where(semseg > 0, scene.instance, 0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    outline = cv2.dilate(objects_only, kernel) != cv2.erode(objects_only, kernel)
    semseg[outline & (semseg > 0)] = IGNORE_INDEX  # VOC's void outline around objects
    png = Image.fromarray(semseg)
    png.putpalette(palette.ravel().tolist())  # turns the "L" image into a "P" one
    png.save(os.path.join(root, "semseg", "VOC12", f"{sample_id}.png"))
    lookup = np.array([context_ids[PASCAL_CONTEXT_NAME.get(k, k)] for k in KINDS], np.uint16)
    _write_mat(os.path.join(root, "pascal-context", "trainval", f"{sample_id}.mat"), {"LabelMap": lookup[scene.kind]})
    objects, classes = _mat_objects(scene)
    anno = np.zeros((1, 1), [("imname", "O"), ("objects", "O")])
    anno[0, 0] = (f"{sample_id}.jpg", objects)
    _write_mat(os.path.join(root, "human_parts", f"{sample_id}.mat"), {"anno": anno})
    _write_rgb(os.path.join(root, "normals_distill", f"{sample_id}.png"), encode_normals(scene.normal))
    salient = np.isin(scene.instance, salient_instances(scene)).astype(np.float32)
    soft = cv2.blur(salient, (3, 3))  # distilled saliency is soft at the outline
    _write_gray(os.path.join(root, "sal_distill", f"{sample_id}.png"), np.rint(soft * 255).astype(np.uint8))
    return classes


def _write_pascal(root, counts, height, width, seed):
    for folder in ("JPEGImages", "semseg/VOC12", "pascal-context/trainval", "human_parts",
                   "normals_distill", "sal_distill", "ImageSets/Context", "ImageSets/Parts"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    context_ids = load_db_info("context_classes.json")
    palette = VOC_PALETTE
    offset = 0
    for split, count in counts.items():
        ids = [f"synth_{offset + i:06d}" for i in range(count)]
        offset += count
        cache = {}
        for index, sample_id in enumerate(ids):
            rng = _sample_rng(seed, split, index)
            style = "pascal_indoor" if rng.random() < 0.5 else "pascal_outdoor"
            scene = make_scene(rng, height, width, style, person_prob=PASCAL_PERSON_PROB)
            cache[sample_id] = write_pascal_sample(root, sample_id, scene, rng, context_ids, palette)
        _write_lines(os.path.join(root, "ImageSets", "Context", f"{split}.txt"), ids)
        cache_path = os.path.join(root, "ImageSets", "Parts", f"{split}.txt")
        with open(cache_path, "w", encoding="utf-8") as handle:
            json.dump(cache, handle)
