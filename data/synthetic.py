"""Synthetic multi-task scenes written in the exact on-disk layouts of PASCAL-Context,
NYUD-v2 and Cityscapes (README, Datasets), for tests and for the CPU demo.

A scene is one pinhole-camera view of a room (floor, walls, ceiling), of a ground plane
under the sky, or of a street (road, sidewalks, facades; Cityscapes), with objects
standing at different distances. Every label comes from the
same geometry, so the tasks are related as in real data: nearer objects occlude farther
ones (semseg, human parts, boundaries), normals and depth follow the surfaces (boxes are
exact planes, round things are bulged 2-D shapes), the nearest objects are salient, and
pixel colours depend on the class, the part, the texture and the shading of the normal.

Camera frame: x right, y up, z towards the camera; depth is the distance along the
optical axis. Object coordinates: x lateral from the object's anchor, y up from the
floor, z away from the camera from the object's front.

    python -m data.synthetic --layout pascal --out demo_data --train 100 --val 20 --size 128
    python -m data.synthetic --layout cityscapes --out demo_data --train 100 --val 20   # 128x256

The dataset folder appears only when complete (written next to it, then renamed); an
existing non-empty one is replaced only with --force.
"""
import argparse
import dataclasses
import functools
import json
import os
import shutil
import tempfile

import cv2
import numpy as np
import scipy.io
from PIL import Image

from data.metadata import LAYOUTS, VOC_CLASSES, VOC_PALETTE
from data.pascal_context import label_boundaries, load_db_info
from utils.cli import HelpFormatter
from utils.errors import DataError
from utils.tasks import DATASET_DIRNAME, IGNORE_INDEX

DEFAULT_SIZES = {"cityscapes": "128x256"}  # --size when not given; else 128
SKY_DEPTH = 1000.0

# Base albedo (RGB in [0, 1]) of every kind of surface; instances jitter around it.
KIND_COLOURS = {
    "wall": (0.80, 0.76, 0.68), "floor": (0.55, 0.40, 0.28), "ceiling": (0.92, 0.92, 0.90),
    "sky": (0.55, 0.72, 0.95), "grass": (0.30, 0.55, 0.20), "ground": (0.60, 0.50, 0.35),
    "road": (0.40, 0.40, 0.42), "tree": (0.15, 0.35, 0.15),
    "person": (0.85, 0.65, 0.50), "cat": (0.60, 0.45, 0.30), "dog": (0.45, 0.30, 0.15),
    "cow": (0.25, 0.20, 0.18), "horse": (0.50, 0.28, 0.12), "sheep": (0.90, 0.88, 0.80),
    "bird": (0.85, 0.70, 0.20), "car": (0.80, 0.10, 0.10), "bus": (0.95, 0.75, 0.10),
    "train": (0.20, 0.30, 0.70), "bicycle": (0.10, 0.60, 0.60), "motorbike": (0.15, 0.15, 0.15),
    "aeroplane": (0.85, 0.87, 0.90), "boat": (0.95, 0.95, 0.95), "bottle": (0.10, 0.55, 0.30),
    "pottedplant": (0.20, 0.60, 0.15), "chair": (0.65, 0.35, 0.15), "diningtable": (0.50, 0.30, 0.12),
    "sofa": (0.35, 0.25, 0.60), "tvmonitor": (0.12, 0.12, 0.14), "bed": (0.85, 0.85, 0.95),
    "cabinet": (0.70, 0.55, 0.35), "bookshelf": (0.45, 0.30, 0.20), "box": (0.75, 0.60, 0.40),
    "lamp": (0.95, 0.90, 0.60), "picture": (0.30, 0.50, 0.70), "window": (0.70, 0.85, 0.95),
    "door": (0.55, 0.35, 0.20), "clutter": (0.50, 0.50, 0.50),
    # street scenes (appended, so the indices above and the older layouts do not change)
    "building": (0.62, 0.58, 0.55), "sidewalk": (0.70, 0.68, 0.64), "pole": (0.45, 0.45, 0.47),
    "sign": (0.85, 0.80, 0.15),
}
KINDS = tuple(KIND_COLOURS)

# Object kinds each scene style draws from (people are added separately).
OBJECT_POOLS = {
    "pascal_indoor": ("cat", "dog", "bird", "bottle", "pottedplant", "chair", "diningtable",
                      "sofa", "tvmonitor"),
    "pascal_outdoor": ("cow", "horse", "sheep", "dog", "cat", "bird", "car", "bus", "train",
                       "bicycle", "motorbike", "aeroplane", "boat"),
    "nyud": ("chair", "diningtable", "sofa", "tvmonitor", "bed", "cabinet", "bookshelf", "box",
             "lamp", "bottle", "pottedplant", "clutter"),
}
WALL_DECOR = ("picture", "window", "door")

# Label tables. PASCAL: VOC id (semseg, .mat objects) and Context name (LabelMap).
PASCAL_CONTEXT_NAME = {"diningtable": "table", "bookshelf": "shelves", "lamp": "light", "clutter": "unknown"}
# NYUD-40 ids as stored in segmentation/<id>.png (0 = unlabelled).
NYU40_IDS = {"wall": 1, "floor": 2, "cabinet": 3, "bed": 4, "chair": 5, "sofa": 6,
             "diningtable": 7, "door": 8, "window": 9, "bookshelf": 10, "picture": 11,
             "ceiling": 22, "tvmonitor": 25, "box": 29, "person": 31, "lamp": 35,
             "bottle": 40, "pottedplant": 40, "clutter": 0}
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
STREET_VEHICLES = ("car", "car", "car", "bus", "bicycle", "motorbike")


# ----------------------------------------------------------------------------- camera
class Camera:
    """Pinhole camera with zero pitch: the horizon is the row of the optical axis."""

    def __init__(self, rng, height, width):
        self.height, self.width = height, width
        self.focal = width * rng.uniform(0.9, 1.2)
        self.cx = width / 2.0
        self.horizon = height * rng.uniform(0.3, 0.5)
        self.eye = rng.uniform(0.9, 1.5)  # camera height above the floor (m)
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
        self.slope_x = (cols - self.cx) / self.focal  # ray direction per unit depth
        self.slope_y = (self.horizon - rows) / self.focal

    def project(self, x, y, depth):
        """World point (x lateral, y above the floor, depth) -> pixel (u, v)."""
        return self.cx + self.focal * x / depth, self.horizon + self.focal * (self.eye - y) / depth


# ------------------------------------------------------------------------- primitives
@dataclasses.dataclass
class Box:
    """Axis-aligned box in object coordinates (metres); its visible faces are exact planes."""
    x0: float
    x1: float
    y0: float
    y1: float
    z0: float
    z1: float
    colour: tuple
    part: str = None


@dataclasses.dataclass
class Blob:
    """A 2-D shape facing the camera, bulged into a rounded solid (depth and normals from a
    circular profile over its distance transform). Shapes, in object coordinates:
    ("ellipse", x, y, rx, ry), ("capsule", x0, y0, x1, y1, r), ("poly", ((x, y), ...)),
    ("ring", x, y, r, width)."""
    shape: tuple
    colour: tuple
    part: str = None
    dz: float = 0.0  # depth offset from the object's front
    bulge: float = 1.0


@dataclasses.dataclass
class SceneObject:
    kind: str
    prims: list
    width: float  # metres, for placement
    height: float
    depth: float
    parts_labelled: bool = False
    altitude: float = 0.0  # lift above the floor (flying objects)


@functools.lru_cache(maxsize=None)
def _part_names(class_id):
    """PASCAL-Part part names of a VOC class."""
    return frozenset(load_db_info("pascal_part.json")[str(class_id)])


def _jitter(rng, colour, amount=0.12):
    return tuple(np.clip(np.asarray(colour) * rng.uniform(1 - amount, 1 + amount, 3), 0, 1))


def _person(rng, colour):
    """Standing person facing the camera; part names as in PASCAL-Part ('l' = the person's
    left = image right). Listed back to front: later primitives overwrite earlier ones."""
    tall = rng.uniform(1.5, 1.9)
    skin = _jitter(rng, colour)
    hair = _jitter(rng, (0.15, 0.10, 0.05) if rng.random() < 0.7 else (0.85, 0.75, 0.40))
    shirt = tuple(rng.uniform(0.1, 0.9, 3))
    trousers = tuple(rng.uniform(0.05, 0.5, 3))
    shoes = (0.08, 0.08, 0.08)
    prims = []
    for side, sign in (("l", 1), ("r", -1)):
        hip = np.array([sign * 0.06, 0.50]) * tall
        spread = rng.uniform(-0.05, 0.25)
        knee = hip + np.array([sign * 0.24 * np.sin(spread), -0.24 * np.cos(spread)]) * tall
        ankle = knee + np.array([0.0, -(knee[1] - 0.05 * tall)])
        prims += [Blob(("capsule", *hip, *knee, 0.05 * tall), trousers, f"{side}uleg"),
                  Blob(("capsule", *knee, *ankle, 0.04 * tall), trousers, f"{side}lleg"),
                  Blob(("ellipse", ankle[0] + sign * 0.03 * tall, 0.025 * tall, 0.05 * tall,
                        0.025 * tall), shoes, f"{side}foot")]
    prims += [
        Blob(("poly", ((-0.12 * tall, 0.81 * tall), (0.12 * tall, 0.81 * tall),
                       (0.10 * tall, 0.49 * tall), (-0.10 * tall, 0.49 * tall))), shirt, "torso"),
        Blob(("capsule", 0.0, 0.80 * tall, 0.0, 0.86 * tall, 0.03 * tall), skin, "neck"),
        Blob(("ellipse", 0.0, 0.915 * tall, 0.055 * tall, 0.07 * tall), skin, "head"),
        Blob(("ellipse", 0.0, 0.955 * tall, 0.058 * tall, 0.04 * tall), hair, "hair", dz=-0.01),
    ]
    for x, y, rx, ry, colour, name in ((0.02, 0.92, 0.009, 0.007, (0.05,) * 3, "leye"),
                                       (-0.02, 0.92, 0.009, 0.007, (0.05,) * 3, "reye"),
                                       (0.0, 0.885, 0.016, 0.006, (0.6, 0.2, 0.2), "mouth")):
        face_detail = ("ellipse", x * tall, y * tall, rx * tall, ry * tall)
        prims.append(Blob(face_detail, colour, name, dz=-0.1, bulge=0))
    for side, sign in (("l", 1), ("r", -1)):
        shoulder = np.array([sign * 0.13, 0.78]) * tall
        raise_upper = rng.uniform(0.1, 1.6)
        elbow = shoulder + np.array([sign * np.sin(raise_upper), -np.cos(raise_upper)]) * 0.17 * tall
        raise_lower = raise_upper + rng.uniform(-0.6, 1.0)
        wrist = elbow + np.array([sign * np.sin(raise_lower), -np.cos(raise_lower)]) * 0.15 * tall
        prims += [Blob(("capsule", *shoulder, *elbow, 0.035 * tall), shirt, f"{side}uarm", dz=-0.05),
                  Blob(("capsule", *elbow, *wrist, 0.03 * tall), skin, f"{side}larm", dz=-0.05),
                  Blob(("ellipse", *wrist, 0.035 * tall, 0.035 * tall), skin, f"{side}hand", dz=-0.06)]
    return prims, 0.5 * tall, tall, 0.3


def _quadruped(rng, kind, colour):
    """Animal seen from the side (cat, dog, cow, horse, sheep), facing left or right."""
    length, leg, body = {"cat": (0.5, 0.15, 0.18), "dog": (0.8, 0.3, 0.3), "sheep": (1.1, 0.35, 0.5),
                         "cow": (2.0, 0.7, 0.8), "horse": (2.0, 0.9, 0.7)}[kind]
    length, leg, body = (v * rng.uniform(0.85, 1.15) for v in (length, leg, body))
    face = 1 if rng.random() < 0.5 else -1
    coat = _jitter(rng, colour)
    dark = tuple(np.asarray(coat) * 0.6)
    names = _part_names(VOC_CLASSES.index(kind))

    def part(*candidates):  # the first PASCAL-Part name this class uses
        return next((name for name in candidates if name in names), None)

    centre_y = leg + body / 2
    prims = []
    for near, front in ((False, True), (False, False), (True, True), (True, False)):
        x = face * (0.35 if front else -0.35) * length + (0.05 * length if near else -0.05 * length)
        side = "l" if near == (face > 0) else "r"
        name = part(f"{side}{'f' if front else 'b'}leg", f"{side}{'f' if front else 'b'}uleg")
        prims.append(Blob(("capsule", x, centre_y, x, 0.03, 0.07 * body + 0.02), dark if not near else coat,
                          name, dz=-0.02 if near else 0.02))
    tail = (-face * length / 2, centre_y + body * 0.2,
            -face * (length / 2 + 0.25 * length), centre_y - body * 0.3)
    prims += [Blob(("capsule", *tail, 0.04 * body + 0.01), dark, part("tail")),
              Blob(("ellipse", 0.0, centre_y, length / 2, body / 2), coat, part("torso")),
              Blob(("capsule", face * 0.4 * length, centre_y + 0.2 * body,
                    face * 0.55 * length, centre_y + 0.7 * body, 0.18 * body), coat, part("neck"), dz=-0.02),
              Blob(("ellipse", face * 0.62 * length, centre_y + 0.8 * body, 0.3 * body, 0.25 * body),
                   coat, part("head"), dz=-0.04)]
    return prims, length, centre_y + body * 1.1, 0.4 * length


def _bird(rng, colour):
    size = rng.uniform(0.25, 0.45)
    face = 1 if rng.random() < 0.5 else -1
    coat = _jitter(rng, colour)
    return [Blob(("capsule", 0.05 * face * size, 0.3 * size, 0.1 * face * size, 0.0, 0.02),
                 (0.5, 0.4, 0.1), "rleg"),
            Blob(("poly", ((-face * 0.3 * size, 0.5 * size), (-face * 0.75 * size, 0.7 * size),
                           (-face * 0.7 * size, 0.45 * size))), coat, "tail"),
            Blob(("ellipse", 0.0, 0.5 * size, 0.35 * size, 0.22 * size), coat, "torso"),
            Blob(("ellipse", -0.05 * face * size, 0.55 * size, 0.2 * size, 0.1 * size),
                 tuple(np.asarray(coat) * 0.7), "lwing", dz=-0.02),
            Blob(("ellipse", face * 0.35 * size, 0.78 * size, 0.14 * size, 0.14 * size), coat, "head",
                 dz=-0.02),
            Blob(("poly", ((face * 0.45 * size, 0.8 * size), (face * 0.62 * size, 0.76 * size),
                           (face * 0.45 * size, 0.72 * size))), (0.9, 0.5, 0.1), "beak", dz=-0.03),
            ], size, size, 0.2


def _vehicle(rng, kind, colour):
    """Car, bus or train: a body box, a cabin or window band, wheels; side or front view."""
    length, height = {"car": (4.2, 1.5), "bus": (10.0, 3.0), "train": (20.0, 3.6)}[kind]
    width = 1.8 if kind == "car" else 2.6
    paint = _jitter(rng, colour)
    glass = (0.15, 0.2, 0.3)
    side_view = rng.random() < 0.6
    across, along = (length, width) if side_view else (width, length)
    prims = [Box(-across / 2, across / 2, 0.3, 0.3 + 0.55 * height, 0.0, along, paint)]
    if kind == "car":
        inset = 0.2 * across
        prims.append(Box(-across / 2 + inset, across / 2 - inset, 0.3 + 0.55 * height, height,
                         0.1 * along, 0.9 * along, glass))
    else:
        prims.append(Box(-across / 2, across / 2, 0.3 + 0.55 * height, height, 0.0, along, paint))
        prims.append(Box(-across / 2 + 0.1, across / 2 - 0.1, 0.6 * height, 0.9 * height, -0.02, 0.0, glass))
    for x in (-0.35 * across, 0.35 * across):
        prims.append(Blob(("ellipse", x, 0.35, 0.35, 0.35), (0.05, 0.05, 0.05), dz=-0.05, bulge=0.3))
    return prims, across, height, along


def _bike(rng, kind, colour):
    paint = _jitter(rng, colour)
    radius = 0.33 if kind == "bicycle" else 0.3
    prims = [Blob(("ring", x, radius, radius, 0.05 if kind == "bicycle" else 0.12), (0.05, 0.05, 0.05))
             for x in (-0.55, 0.55)]
    prims += [Blob(("capsule", -0.55, radius, 0.0, 0.75, 0.03), paint),
              Blob(("capsule", 0.0, 0.75, 0.55, radius, 0.03), paint),
              Blob(("capsule", 0.45, 0.95, 0.55, radius, 0.03), paint)]
    if kind == "motorbike":
        prims.append(Blob(("ellipse", 0.0, 0.7, 0.45, 0.2), paint, dz=-0.05))
    return prims, 1.8, 1.0, 0.5


def _aeroplane(rng, colour):
    body = _jitter(rng, colour, 0.05)
    length = rng.uniform(20, 35)
    face = 1 if rng.random() < 0.5 else -1
    return [Blob(("poly", ((-face * 0.1 * length, 0.2 * length), (face * 0.15 * length, 0.2 * length),
                           (-face * 0.05 * length, -0.05 * length))), tuple(np.asarray(body) * 0.8), dz=0.5),
            Blob(("ellipse", 0.0, 0.2 * length, 0.5 * length, 0.06 * length), body),
            Blob(("poly", ((-face * 0.5 * length, 0.2 * length), (-face * 0.4 * length, 0.2 * length),
                           (-face * 0.5 * length, 0.38 * length))), body),
            ], length, 0.4 * length, 0.3 * length


def _boat(rng, colour):
    hull = _jitter(rng, colour, 0.05)
    length = rng.uniform(4, 8)
    return [Blob(("poly", ((-length / 2, 0.8), (length / 2, 0.8), (0.4 * length, 0.0), (-0.4 * length, 0.0))),
                 hull),
            Blob(("capsule", 0.0, 0.8, 0.0, 0.8 + 0.8 * length, 0.06), (0.4, 0.3, 0.2)),
            Blob(("poly", ((0.05, 0.9), (0.05, 0.75 * length), (0.4 * length, 0.9))), (0.95, 0.95, 0.9),
                 dz=-0.05),
            ], length, 0.8 + 0.8 * length, 2.0


def _furniture(rng, kind, colour):
    """Box-built furniture and props (front faces towards the camera)."""
    c = _jitter(rng, colour)
    darker = tuple(np.asarray(c) * 0.6)
    s = rng.uniform(0.85, 1.15)
    if kind == "diningtable":
        w, h, d = 1.6 * s, 0.75, 0.9 * s
        legs = [Box(x - 0.04, x + 0.04, 0.0, h - 0.05, z, z + 0.08, darker)
                for z in (d - 0.1, 0.02) for x in (-w / 2 + 0.05, w / 2 - 0.13)]
        return legs + [Box(-w / 2, w / 2, h - 0.05, h, 0.0, d, c)], w, h, d
    if kind == "chair":
        w, h, d = 0.5 * s, 1.0 * s, 0.5 * s
        legs = [Box(x, x + 0.05, 0.0, 0.45, z, z + 0.05, darker)
                for z in (d - 0.05, 0.0) for x in (-w / 2, w / 2 - 0.05)]
        back, seat = Box(-w / 2, w / 2, 0.45, h, d - 0.06, d, c), Box(-w / 2, w / 2, 0.45, 0.5, 0.0, d, c)
        return legs[:2] + [back, seat] + legs[2:], w, h, d
    if kind == "sofa":
        w, d = 2.0 * s, 0.9
        return [Box(-w / 2, w / 2, 0.1, 0.9, d - 0.25, d, c), Box(-w / 2, w / 2, 0.0, 0.45, 0.0, d, c),
                Box(-w / 2, -w / 2 + 0.2, 0.45, 0.65, 0.0, d, darker),
                Box(w / 2 - 0.2, w / 2, 0.45, 0.65, 0.0, d, darker)], w, 0.9, d
    if kind == "tvmonitor":
        w = 0.9 * s
        return [Box(-0.06, 0.06, 0.0, 0.6, 0.1, 0.2, (0.2, 0.2, 0.2)),
                Box(-w / 2, w / 2, 0.6, 0.6 + 0.6 * w, 0.05, 0.13, c),
                Box(-w / 2 + 0.04, w / 2 - 0.04, 0.64, 0.56 + 0.6 * w, 0.03, 0.05,
                    tuple(rng.uniform(0.1, 0.6, 3)))], w, 0.6 + 0.6 * w, 0.2
    if kind == "bed":
        w, d = 1.6 * s, 2.0 * s
        return [Box(-w / 2, w / 2, 0.0, 1.0, d - 0.1, d, darker), Box(-w / 2, w / 2, 0.0, 0.5, 0.0, d, c),
                Blob(("ellipse", 0.0, 0.62, 0.35 * w, 0.12), (0.95, 0.95, 0.95), dz=d - 0.4)], w, 1.0, d
    if kind == "bookshelf":
        w, h = 0.9 * s, 1.8 * s
        shelves = [Box(-w / 2 + 0.05, w / 2 - 0.05, y, y + 0.3, -0.01, 0.0, tuple(rng.uniform(0.1, 0.9, 3)))
                   for y in np.arange(0.1, h - 0.35, 0.4)]
        return [Box(-w / 2, w / 2, 0.0, h, 0.0, 0.35, c)] + shelves, w, h, 0.35
    if kind == "cabinet":
        w, h = 0.8 * s, 1.0 * s
        return [Box(-w / 2, w / 2, 0.0, h, 0.0, 0.5, c),
                Box(0.25 * w, 0.3 * w, 0.6 * h, 0.75 * h, -0.02, 0.0, (0.8, 0.8, 0.8))], w, h, 0.5
    if kind == "box":
        e = 0.45 * s
        return [Box(-e / 2, e / 2, 0.0, e, 0.0, e, c)], e, e, e
    if kind == "lamp":
        lampshade = Blob(("poly", ((-0.15, 1.2), (0.15, 1.2), (0.25, 1.55), (-0.25, 1.55))), c, dz=-0.05)
        return [Blob(("capsule", 0.0, 0.0, 0.0, 1.3, 0.02), (0.3, 0.3, 0.3)), lampshade], 0.5, 1.55, 0.3
    if kind == "bottle":
        tall = 0.6 * s
        return [Blob(("capsule", 0.0, 0.08, 0.0, 0.6 * tall, 0.08 * tall / 0.6), c),
                Blob(("capsule", 0.0, 0.6 * tall, 0.0, tall, 0.03), c),
                Blob(("ellipse", 0.0, 0.35 * tall, 0.09, 0.08 * tall), (0.9, 0.9, 0.85), dz=-0.02, bulge=0.5)
                ], 0.2, tall, 0.2
    if kind == "pottedplant":
        return [Blob(("poly", ((-0.15, 0.35), (0.15, 0.35), (0.11, 0.0), (-0.11, 0.0))), (0.7, 0.35, 0.2)),
                *[Blob(("ellipse", x, y, 0.18 * s, 0.15 * s), _jitter(rng, c), dz=-0.02 * i)
                  for i, (x, y) in enumerate(((-0.15, 0.55), (0.15, 0.55), (0.0, 0.75)))]], 0.6, 0.9, 0.3
    # clutter: an unlabelled lump
    lump = Blob(("ellipse", 0.0, 0.2, rng.uniform(0.2, 0.4), 0.2), tuple(rng.uniform(0.2, 0.8, 3)))
    return [lump], 0.6, 0.4, 0.4


def build_object(rng, kind, parts_labelled=False):
    """Primitives and size of one object of `kind`, in object coordinates."""
    colour = KIND_COLOURS[kind]
    if kind == "person":
        prims, width, height, depth = _person(rng, colour)
    elif kind in ("cat", "dog", "cow", "horse", "sheep"):
        prims, width, height, depth = _quadruped(rng, kind, colour)
    elif kind == "bird":
        prims, width, height, depth = _bird(rng, colour)
    elif kind in ("car", "bus", "train"):
        prims, width, height, depth = _vehicle(rng, kind, colour)
    elif kind in ("bicycle", "motorbike"):
        prims, width, height, depth = _bike(rng, kind, colour)
    elif kind == "aeroplane":
        prims, width, height, depth = _aeroplane(rng, colour)
    elif kind == "boat":
        prims, width, height, depth = _boat(rng, colour)
    else:
        prims, width, height, depth = _furniture(rng, kind, colour)
    return SceneObject(kind, prims, width, height, depth, parts_labelled)


# -------------------------------------------------------------------------- rendering
class Scene:
    """Per-pixel buffers of one rendered scene."""

    def __init__(self, camera):
        shape = (camera.height, camera.width)
        self.camera = camera
        self.kind = np.zeros(shape, np.int16)  # index into KINDS
        self.instance = np.zeros(shape, np.int16)  # 0 = room / outdoors, 1.. = objects
        self.part = np.full(shape, -1, np.int16)  # index into self.part_names
        self.depth = np.full(shape, np.inf, np.float32)
        self.normal = np.zeros(shape + (3,), np.float32)
        self.albedo = np.zeros(shape + (3,), np.float32)
        self.part_names = []
        self.objects = []  # (instance id, SceneObject, anchor depth)

    def part_index(self, name):
        if name not in self.part_names:
            self.part_names.append(name)
        return self.part_names.index(name)


def _box_faces(camera, box, anchor_x, anchor_d, lift):
    """Visible faces of a box as (corner list, normal, per-pixel depth function)."""
    x0, x1 = anchor_x + box.x0, anchor_x + box.x1
    y0, y1 = box.y0 + lift, box.y1 + lift
    z0, z1 = anchor_d + box.z0, anchor_d + box.z1
    eye, f = camera.eye, camera.focal
    faces = [(((x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)), (0, 0, 1),
              lambda u, v: np.full(u.shape, z0, np.float32))]
    if y1 < eye:  # top seen from above
        faces.append((((x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)), (0, 1, 0),
                      lambda u, v: f * (eye - y1) / np.maximum(v - camera.horizon, 1e-3)))
    if y0 > eye:  # bottom seen from below
        faces.append((((x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)), (0, -1, 0),
                      lambda u, v: f * (y0 - eye) / np.maximum(camera.horizon - v, 1e-3)))
    if x0 > 0:  # box right of the camera: its left side shows
        faces.append((((x0, y0, z0), (x0, y1, z0), (x0, y1, z1), (x0, y0, z1)), (-1, 0, 0),
                      lambda u, v: f * x0 / np.maximum(u - camera.cx, 1e-3)))
    if x1 < 0:  # box left of the camera: its right side shows
        faces.append((((x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)), (1, 0, 0),
                      lambda u, v: f * x1 / np.minimum(u - camera.cx, -1e-3)))
    return faces, (z0, z1)


def _crop(camera, us, vs, margin=2):
    """Integer pixel window covering the points (u, v), clipped to the image; None if empty."""
    left = max(int(np.floor(min(us))) - margin, 0)
    right = min(int(np.ceil(max(us))) + margin + 1, camera.width)
    top = max(int(np.floor(min(vs))) - margin, 0)
    bottom = min(int(np.ceil(max(vs))) + margin + 1, camera.height)
    if left >= right or top >= bottom:
        return None
    return top, bottom, left, right


SHIFT = 4  # cv2 sub-pixel bits for drawing


def _fixed(points, top, left):
    return (np.round((np.asarray(points, np.float64) - [left, top]) * (1 << SHIFT))).astype(np.int32)


def _raster_box(camera, box, anchor_x, anchor_d, lift):
    """-> (window, mask, depth, normal) of a box, or None when off-screen."""
    faces, (z0, z1) = _box_faces(camera, box, anchor_x, anchor_d, lift)
    corners = [camera.project(*p) for face in faces for p in face[0]]
    window = _crop(camera, [c[0] for c in corners], [c[1] for c in corners])
    if window is None:
        return None
    top, bottom, left, right = window
    v, u = np.mgrid[top:bottom, left:right].astype(np.float32)
    mask = np.zeros(u.shape, np.uint8)
    depth = np.zeros(u.shape, np.float32)
    normal = np.zeros(u.shape + (3,), np.float32)
    for points, face_normal, depth_fn in faces:
        face = np.zeros(u.shape, np.uint8)
        cv2.fillPoly(face, [_fixed([camera.project(*p) for p in points], top, left)], 1, shift=SHIFT)
        face = face.astype(bool)
        mask[face] = 1
        depth[face] = np.clip(depth_fn(u[face], v[face]), z0, z1)
        normal[face] = face_normal
    return window, mask.astype(bool), depth, normal


def _raster_blob(camera, blob, anchor_x, anchor_d, lift):
    """-> (window, mask, depth, normal) of a bulged 2-D shape, or None when off-screen."""
    depth0 = anchor_d + blob.dz
    scale = camera.focal / depth0  # pixels per metre at this depth
    kind, *geo = blob.shape
    if kind == "poly":
        pts = [camera.project(anchor_x + x, y + lift, depth0) for x, y in geo[0]]
        reach = 0.0
    elif kind == "capsule":
        x0, y0, x1, y1, radius = geo
        pts = [camera.project(anchor_x + x0, y0 + lift, depth0),
               camera.project(anchor_x + x1, y1 + lift, depth0)]
        reach = radius * scale
    else:  # ellipse, ring
        x, y, rx = geo[:3]
        ry = geo[3] if kind == "ellipse" else rx
        pts = [camera.project(anchor_x + x, y + lift, depth0)]
        reach = max(rx, ry) * scale
    us, vs = [p[0] for p in pts], [p[1] for p in pts]
    window = _crop(camera, [min(us) - reach, max(us) + reach], [min(vs) - reach, max(vs) + reach])
    if window is None:
        return None
    top, bottom, left, right = window
    canvas = np.zeros((bottom - top, right - left), np.uint8)
    if kind == "poly":
        cv2.fillPoly(canvas, [_fixed(pts, top, left)], 1, shift=SHIFT)
    elif kind == "capsule":
        a, b = (tuple(int(c) for c in p) for p in _fixed(pts, top, left))
        cv2.line(canvas, a, b, 1, max(1, int(round(2 * reach))), cv2.LINE_8, SHIFT)
    elif kind == "ellipse":
        centre = tuple(int(c) for c in _fixed(pts, top, left)[0])
        axes = (int(round(rx * scale * (1 << SHIFT))), int(round(ry * scale * (1 << SHIFT))))
        cv2.ellipse(canvas, centre, axes, 0, 0, 360, 1, -1, shift=SHIFT)
    else:  # ring
        centre = tuple(int(c) for c in _fixed(pts, top, left)[0])
        width = max(1, int(round(geo[3] * scale)))
        radius = int(round(max(rx * scale - width / 2, 1) * (1 << SHIFT)))
        cv2.circle(canvas, centre, radius, 1, width, cv2.LINE_8, SHIFT)
    mask = canvas.astype(bool)
    if not mask.any():
        return None
    # Circular profile over the distance to the outline: a disc becomes a hemisphere,
    # a capsule a cylinder. Normal of the height field h(u, v): (-dh/du, dh/dv, 1).
    dist = cv2.distanceTransform(canvas, cv2.DIST_L2, 3)
    radius = float(dist.max())
    height = (np.sqrt(np.maximum(radius ** 2 - (radius - dist) ** 2, 0.0)) * blob.bulge).astype(np.float32)
    dh_du = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=1) * 0.5  # central differences
    dh_dv = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=1) * 0.5
    normal = np.stack([-dh_du, dh_dv, np.ones_like(height)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    depth = depth0 - height / scale
    return window, mask, depth.astype(np.float32), normal.astype(np.float32)


def render_object(scene, obj, instance, anchor_x, anchor_d):
    """Rasterise an object's primitives (painter's order inside the object), then z-test
    the object against the scene."""
    camera = scene.camera
    rasters = []
    for prim in obj.prims:
        if isinstance(prim, Box):
            raster = _raster_box(camera, prim, anchor_x, anchor_d, obj.altitude)
        else:
            raster = _raster_blob(camera, prim, anchor_x, anchor_d, obj.altitude)
        if raster is not None:
            rasters.append((prim, raster))
    if not rasters:
        return
    windows = np.array([raster[0] for _, raster in rasters])
    top, left = windows[:, 0].min(), windows[:, 2].min()
    bottom, right = windows[:, 1].max(), windows[:, 3].max()
    shape = (bottom - top, right - left)  # the object's buffers cover the union of windows
    mask = np.zeros(shape, bool)
    depth = np.zeros(shape, np.float32)
    normal = np.zeros(shape + (3,), np.float32)
    albedo = np.zeros(shape + (3,), np.float32)
    part = np.full(shape, -1, np.int16)
    for prim, ((t, b, l, r), prim_mask, prim_depth, prim_normal) in rasters:
        region = (slice(t - top, b - top), slice(l - left, r - left))
        mask[region] |= prim_mask
        depth[region][prim_mask] = prim_depth[prim_mask]
        normal[region][prim_mask] = prim_normal[prim_mask]
        albedo[region][prim_mask] = prim.colour
        part[region][prim_mask] = scene.part_index(prim.part) if (obj.parts_labelled and prim.part) else -1
    window = (slice(top, bottom), slice(left, right))
    visible = mask & (depth < scene.depth[window])
    for buffer, values in ((scene.kind, KINDS.index(obj.kind)), (scene.instance, instance),
                           (scene.part, part[visible]), (scene.depth, depth[visible]),
                           (scene.normal, normal[visible]), (scene.albedo, albedo[visible])):
        buffer[window][visible] = values
    scene.objects.append((instance, obj, anchor_d))


def _smooth_noise(rng, shape, cells):
    """Smooth random field in [-1, 1] (bicubic upsampling of a coarse grid)."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), -1, 1)


def render_background(scene, rng, indoor, room):
    """Ray-cast the room's planes (nearest hit wins) or the ground plane and the sky."""
    cam = scene.camera
    sx, sy = cam.slope_x, cam.slope_y
    inf = np.float32(np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = np.where(sy < 0, cam.eye / -sy, inf)
        if indoor:
            left, right, back, ceiling = room
            planes = [("floor", floor, (0, 1, 0)),
                      ("ceiling", np.where(sy > 0, (ceiling - cam.eye) / sy, inf), (0, -1, 0)),
                      ("wall", np.full(sx.shape, back, np.float32), (0, 0, 1)),
                      ("wall", np.where(sx < 0, left / -sx, inf), (1, 0, 0)),
                      ("wall", np.where(sx > 0, right / sx, inf), (-1, 0, 0))]
        else:
            ground = ("grass", "ground", "road")[rng.integers(3)]
            hills = _smooth_noise(rng, (1, cam.width), 6)[0] + 1  # in [0, 2]
            skyline = cam.horizon - cam.height * (0.04 + 0.08 * hills)
            rows = np.arange(cam.height, dtype=np.float32)[:, None]
            tree = (rows >= skyline[None, :]) & (sy >= 0) if rng.random() < 0.5 else np.zeros(sx.shape, bool)
            planes = [(ground, np.where(sy < 0, np.minimum(floor, 200.0), inf), (0, 1, 0)),
                      ("tree", np.where(tree, 150.0, inf), (0, 0, 1)),
                      ("sky", np.full(sx.shape, SKY_DEPTH, np.float32), (0, 0, 1))]
    depths = np.stack([p[1] for p in planes])
    nearest = depths.argmin(axis=0)
    scene.depth[:] = depths.min(axis=0)
    x, z = sx * scene.depth, scene.depth  # hit point: lateral offset and distance
    noise = _smooth_noise(rng, scene.depth.shape, 8)
    for index, (kind, _, normal) in enumerate(planes):
        hit = nearest == index
        scene.kind[hit] = KINDS.index(kind)
        scene.normal[hit] = normal
        base = np.asarray(_jitter(rng, KIND_COLOURS[kind]), np.float32)
        if kind in ("floor", "ceiling"):  # tiles on the plane: checkerboard in (x, z)
            tile = rng.uniform(0.4, 0.8)
            pattern = ((np.floor(x[hit] / tile) + np.floor(z[hit] / tile)) % 2) * 0.25 + 0.75
        elif kind == "wall":  # wallpaper stripes along the wall
            along = z[hit] if normal[0] != 0 else x[hit]
            pattern = 0.9 + 0.1 * np.sign(np.sin(along * rng.uniform(6, 14)))
        elif kind == "sky":
            pattern = 0.85 + 0.3 * (sy[hit] > 0) * np.clip(sy[hit] * 2, 0, 1)
        else:
            pattern = 1.0 + 0.25 * noise[hit]
        scene.albedo[hit] = base * np.asarray(pattern, np.float32)[:, None]


def shade(scene, rng):
    """Lambertian shading of the albedo by the normals plus texture and sensor noise -> uint8 RGB."""
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.3, 1.0), 1.0], np.float32)
    light /= np.linalg.norm(light)
    lambert = np.clip(scene.normal @ light, 0, 1)[..., None]
    texture = 1.0 + 0.08 * _smooth_noise(rng, scene.depth.shape, 24)[..., None]
    image = scene.albedo * texture * (0.45 + 0.55 * lambert)
    image += rng.normal(0, 0.015, image.shape).astype(np.float32)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def _scaled(obj, factor):
    """The object enlarged by `factor` about its anchor (small things shot from close by)."""
    def shape(geo):
        kind, *values = geo
        if kind == "poly":
            return (kind, tuple((x * factor, y * factor) for x, y in values[0]))
        return (kind, *(v * factor for v in values))

    prims = [dataclasses.replace(p, x0=p.x0 * factor, x1=p.x1 * factor, y0=p.y0 * factor, y1=p.y1 * factor,
                                 z0=p.z0 * factor, z1=p.z1 * factor) if isinstance(p, Box)
             else dataclasses.replace(p, shape=shape(p.shape), dz=p.dz * factor) for p in obj.prims]
    return dataclasses.replace(obj, prims=prims, width=obj.width * factor, height=obj.height * factor,
                               depth=obj.depth * factor)


# How tall objects look, as a fraction of the image height. People are drawn larger than
# other objects (as in PASCAL photos, where people are the most common subject): at the
# demo's 96-128 px their parts (head, arms, legs) must span several pixels to be learnable.
OBJECT_HEIGHT = (0.15, 0.6)
PERSON_HEIGHT = (0.5, 0.95)
PASCAL_PERSON_PROB = 0.85  # share of PASCAL-layout scenes with people


def _place(rng, camera, obj, indoor):
    """-> (object, anchor x, anchor depth): the object looks OBJECT_HEIGHT (people:
    PERSON_HEIGHT) of the image tall and stands no closer than where its base meets the
    bottom edge (enlarged when it would be too small there); flying objects get an altitude
    that puts them in the sky."""
    target = rng.uniform(*(PERSON_HEIGHT if obj.kind == "person" else OBJECT_HEIGHT)) * camera.height
    near = max(camera.focal * camera.eye / (camera.height - camera.horizon), 0.8)
    depth = camera.focal * obj.height / target
    if depth < near:
        obj, depth = _scaled(obj, near / depth), near
    depth = min(depth, 6.0 if indoor else 60.0)
    u = rng.uniform(0.1, 0.9) * camera.width
    if obj.kind == "aeroplane":
        rise = camera.horizon * rng.uniform(0.2, 0.9)
        obj.altitude = camera.eye + depth * rise / camera.focal
    return obj, (u - camera.cx) * depth / camera.focal, depth


def make_scene(rng, height, width, style, person_prob):
    """Render one scene of `style` ("pascal_indoor", "pascal_outdoor", "nyud")."""
    camera = Camera(rng, height, width)
    scene = Scene(camera)
    indoor = style != "pascal_outdoor"
    pool = OBJECT_POOLS[style]
    kinds = [pool[i] for i in rng.integers(len(pool), size=rng.integers(2, 5))]
    if rng.random() < person_prob:
        kinds += ["person"] * int(rng.integers(1, 3))
    objects = []
    for kind in kinds:
        obj = build_object(rng, kind, parts_labelled=(kind != "person" or rng.random() < 0.85))
        objects.append(_place(rng, camera, obj, indoor))
    room = None
    if indoor:  # the room encloses every object
        left = max([1.5] + [obj.width / 2 - x + 0.3 for obj, x, _ in objects])
        right = max([1.5] + [obj.width / 2 + x + 0.3 for obj, x, _ in objects])
        back = max([3.5] + [d + obj.depth for obj, _, d in objects]) + rng.uniform(0.3, 2.0)
        ceiling = max([camera.eye + rng.uniform(1.0, 1.6)] + [obj.height + 0.2 for obj, _, _ in objects])
        room = (left, right, back, ceiling)
        for kind in rng.choice(WALL_DECOR, size=rng.integers(0, 3), replace=False):
            w, h = {"picture": (0.8, 0.6), "window": (1.2, 1.2), "door": (0.9, 2.1)}[kind]
            bottom = 0.0 if kind == "door" else min(rng.uniform(0.9, 1.4), room[3] - h - 0.1)
            x = rng.uniform(-left + w, right - w) if right + left > 2 * w else 0.0
            panel = Box(-w / 2, w / 2, bottom, bottom + h, 0.0, 0.01, _jitter(rng, KIND_COLOURS[kind]))
            obj = SceneObject(kind, [panel], w, h, 0.01)
            objects.append((obj, x, back - 0.02))
    render_background(scene, rng, indoor, room)
    for instance, (obj, anchor_x, anchor_d) in enumerate(sorted(objects, key=lambda o: -o[2]), start=1):
        render_object(scene, obj, instance, anchor_x, anchor_d)
    return scene


# ------------------------------------------------------------------------ street scenes
def _facade_segments(rng, length):
    """Building fronts and rows of trees along one side of a street, as segments ending at
    distance `ends` with heights `heights` (metres) and kinds."""
    ends, heights, kinds, distance = [], [], [], 0.0
    while distance < length:
        distance += rng.uniform(6.0, 20.0)
        tree = rng.random() < 0.2
        ends.append(distance)
        heights.append(rng.uniform(3.0, 8.0) if tree else rng.uniform(4.0, 16.0))
        kinds.append("tree" if tree else "building")
    return np.array(ends), np.array(heights), np.array(kinds)


def render_street(scene, rng, road_half, walk, back):
    """Ray-cast a straight street: road and sidewalks on the ground plane, facades (houses
    or trees) at |x| = road_half + walk up to their heights, houses across the far end at
    `back`, sky above."""
    cam = scene.camera
    sx, sy = cam.slope_x, cam.slope_y
    inf = np.float32(np.inf)
    side = road_half + walk
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        floor = np.where(sy < 0, cam.eye / -sy, inf)
        road = np.abs(sx * floor) < road_half
        planes = [("road", np.where(road, floor, inf), (0, 1, 0)),
                  ("sidewalk", np.where(road, inf, floor), (0, 1, 0))]
        for sign, slope in ((-1, -sx), (1, sx)):  # the left, then the right side
            ends, heights, kinds = _facade_segments(rng, back)
            hit = np.where(slope > 0, side / slope, inf)
            segment = np.minimum(np.searchsorted(ends, hit), len(ends) - 1)
            covered = np.isfinite(hit) & (hit < back) & (cam.eye + sy * hit < heights[segment])
            for kind in ("building", "tree"):
                planes.append((kind, np.where(covered & (kinds[segment] == kind), hit, inf), (-sign, 0, 0)))
        far_top = rng.uniform(3.0, 12.0)
        planes += [("building", np.where(cam.eye + sy * back < far_top, back, inf).astype(np.float32), (0, 0, 1)),
                   ("sky", np.full(sx.shape, SKY_DEPTH, np.float32), (0, 0, 1))]
    depths = np.stack([p[1] for p in planes])
    nearest = depths.argmin(axis=0)
    scene.depth[:] = depths.min(axis=0)
    x, z = sx * scene.depth, scene.depth
    up = cam.eye + sy * scene.depth  # height of the hit point
    noise = _smooth_noise(rng, scene.depth.shape, 8)
    for index, (kind, _, normal) in enumerate(planes):
        hit = nearest == index
        scene.kind[hit] = KINDS.index(kind)
        scene.normal[hit] = normal
        base = np.asarray(_jitter(rng, KIND_COLOURS[kind]), np.float32)
        if kind == "building":  # rows of windows
            along = z[hit] if normal[0] != 0 else x[hit]
            pattern = np.where((np.sin(along * 2.0) > 0.3) & (np.sin(up[hit] * 2.2) > 0.2), 0.5, 1.0)
        elif kind == "road":  # dashed centre line
            pattern = np.where((np.abs(x[hit]) < 0.1) & (np.sin(z[hit] * 0.8) > 0), 2.2, 1.0 + 0.1 * noise[hit])
        elif kind == "sidewalk":  # paving slabs
            pattern = ((np.floor(x[hit] / 0.6) + np.floor(z[hit] / 0.6)) % 2) * 0.15 + 0.85
        elif kind == "sky":
            pattern = 0.85 + 0.3 * np.clip(sy[hit] * 2, 0, 1)
        else:
            pattern = 1.0 + 0.25 * noise[hit]
        scene.albedo[hit] = base * np.asarray(pattern, np.float32)[:, None]


def _street_tree(rng):
    tall = rng.uniform(4.0, 8.0)
    crown = _jitter(rng, KIND_COLOURS["tree"])
    return SceneObject("tree", [Blob(("capsule", 0.0, 0.0, 0.0, 0.6 * tall, 0.15), (0.35, 0.25, 0.15)),
                                Blob(("ellipse", 0.0, 0.7 * tall, 0.25 * tall, 0.3 * tall), crown, dz=-0.1)],
                       0.5 * tall, tall, 0.5 * tall)


def make_street_scene(rng, height, width):
    """A street seen from a car (Cityscapes-like): vehicles on the road, people, poles with
    signs and trees on the sidewalks, facades along both sides, the car's bonnet at the
    bottom (void, no depth, as in Cityscapes)."""
    camera = Camera(rng, height, width)
    scene = Scene(camera)
    road_half, walk, back = rng.uniform(3.0, 7.0), rng.uniform(1.5, 4.0), rng.uniform(40.0, 120.0)
    near = max(camera.focal * camera.eye / (camera.height - camera.horizon), 1.5)  # ground seen from here
    placed = []
    for kind in (STREET_VEHICLES[i] for i in rng.integers(len(STREET_VEHICLES), size=rng.integers(1, 5))):
        obj = build_object(rng, kind)
        lane = max(road_half - obj.width / 2, 0.0)
        distance = rng.uniform(max(near + 2.0, 3.0 * obj.height), min(back, 50.0))
        placed.append((obj, rng.uniform(-lane, lane), distance))
    for _ in range(rng.integers(0, 4)):
        obj = build_object(rng, "person", parts_labelled=True)
        x = (1 if rng.random() < 0.5 else -1) * rng.uniform(road_half + 0.4, road_half + walk - 0.3)
        placed.append((obj, x, rng.uniform(near, 30.0)))
    for _ in range(rng.integers(0, 4)):
        x = (1 if rng.random() < 0.5 else -1) * (road_half + 0.3)
        distance = rng.uniform(near + 1.0, min(back, 40.0))
        if rng.random() < 0.4:
            placed.append((_street_tree(rng), x, distance))
            continue
        tall = rng.uniform(3.0, 5.0)
        placed.append((SceneObject("pole", [Box(-0.07, 0.07, 0.0, tall, 0.0, 0.14, KIND_COLOURS["pole"])],
                                   0.14, tall, 0.14), x, distance))
        if rng.random() < 0.7:
            plate = Box(-0.35, 0.35, tall - 0.1, tall + 0.5, -0.03, 0.0, _jitter(rng, KIND_COLOURS["sign"]))
            placed.append((SceneObject("sign", [plate], 0.7, tall + 0.5, 0.03), x, distance))
    render_street(scene, rng, road_half, walk, back)
    for instance, (obj, anchor_x, anchor_d) in enumerate(sorted(placed, key=lambda o: -o[2]), start=1):
        render_object(scene, obj, instance, anchor_x, anchor_d)
    # the bonnet: a low arc over the bottom rows
    cols = np.arange(width, dtype=np.float32)
    top = height * (1.0 - rng.uniform(0.04, 0.1)) + height * 0.05 * ((cols - width / 2) / (width / 2)) ** 2
    bonnet = np.arange(height, dtype=np.float32)[:, None] >= top[None, :]
    scene.kind[bonnet] = KINDS.index("clutter")
    scene.instance[bonnet] = 0
    scene.normal[bonnet] = (0, 1, 0)
    scene.albedo[bonnet] = _jitter(rng, (0.2, 0.2, 0.22))
    return scene


def salient_instances(scene, min_area=0.02):
    """The nearest sizeable objects (within 30% of the nearest one's distance)."""
    area = np.bincount(scene.instance.ravel(), minlength=len(scene.objects) + 1) / scene.instance.size
    candidates = [(d, i) for i, obj, d in scene.objects if area[i] >= min_area and obj.kind not in WALL_DECOR]
    if not candidates:
        return []
    nearest = min(candidates)[0]
    return [i for d, i in candidates if d <= 1.3 * nearest]


def encode_normals(normals):
    """Unit vectors -> 8-bit RGB, v = (n + 1) / 2 * 255 (decoded as 2v/255 - 1)."""
    return np.clip(np.rint((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- writers
def _write_rgb(path, image, quality=None):
    flags = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality is not None else []
    if not cv2.imwrite(path, np.ascontiguousarray(image[..., ::-1]), flags):
        raise DataError(f"cannot write {path}")


def _write_gray(path, image):
    if not cv2.imwrite(path, image):
        raise DataError(f"cannot write {path}")


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
    scipy.io.savemat(os.path.join(root, "pascal-context", "trainval", f"{sample_id}.mat"),
                     {"LabelMap": lookup[scene.kind]}, do_compression=True)
    objects, classes = _mat_objects(scene)
    anno = np.zeros((1, 1), [("imname", "O"), ("objects", "O")])
    anno[0, 0] = (f"{sample_id}.jpg", objects)
    scipy.io.savemat(os.path.join(root, "human_parts", f"{sample_id}.mat"), {"anno": anno},
                     do_compression=True)
    _write_rgb(os.path.join(root, "normals_distill", f"{sample_id}.png"), encode_normals(scene.normal))
    salient = np.isin(scene.instance, salient_instances(scene)).astype(np.float32)
    soft = cv2.blur(salient, (3, 3))  # distilled saliency is soft at the outline
    _write_gray(os.path.join(root, "sal_distill", f"{sample_id}.png"), np.rint(soft * 255).astype(np.uint8))
    return classes


def _depth_with_holes(scene, rng):
    """Sensor depth: glass (windows) and a few random blobs read 0 = missing."""
    depth = scene.depth.copy()
    depth[scene.kind == KINDS.index("window")] = 0
    holes = np.zeros(depth.shape, np.uint8)
    for _ in range(rng.integers(0, 3)):
        centre = (int(rng.integers(depth.shape[1])), int(rng.integers(depth.shape[0])))
        axes = (int(rng.integers(2, max(3, depth.shape[1] // 12))),
                int(rng.integers(2, max(3, depth.shape[0] // 12))))
        cv2.ellipse(holes, centre, axes, 0, 0, 360, 1, -1)
    depth[holes > 0] = 0
    return depth.astype(np.float32)


def write_nyud_sample(root, sample_id, scene, rng):
    image = shade(scene, rng)
    _write_rgb(os.path.join(root, "images", f"{sample_id}.png"), image)
    nyu40 = np.array([NYU40_IDS.get(k, 0) for k in KINDS], np.uint8)[scene.kind]
    _write_gray(os.path.join(root, "segmentation", f"{sample_id}.png"), nyu40)
    np.save(os.path.join(root, "depth", f"{sample_id}.npy"), _depth_with_holes(scene, rng))
    _write_rgb(os.path.join(root, "normals", f"{sample_id}.png"), encode_normals(scene.normal))
    _write_gray(os.path.join(root, "edge", f"{sample_id}.png"), label_boundaries(nyu40) * 255)


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


# ------------------------------------------------------------------------- generation
def parse_size(text):
    """'128' -> (128, 128); '96x128' -> (96, 128) as (H, W)."""
    try:
        values = [int(v) for v in str(text).lower().split("x")]
    except ValueError:
        raise DataError(f"size must be S or HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 16:
        raise DataError(f"size must be S or HxW with sides >= 16, got {text!r}")
    return tuple(values)


def _sample_rng(seed, split, index):
    """Each image has its own stream, so it does not depend on how many are generated."""
    return np.random.default_rng([seed, ("train", "val").index(split), index])


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


# layout (data.metadata.LAYOUTS) -> writer(root, counts, height, width, seed)
WRITERS = {"pascal": _write_pascal, "nyud": _write_nyud, "nyud_mtan": _write_nyud_mtan,
           "cityscapes": _write_cityscapes}


def generate(layout, out, n_train, n_val, size, seed, force=False):
    """Write a synthetic dataset of `layout` under the db_root `out`; return its folder.

    `size` is an int (square) or (H, W); same arguments, same files. The dataset is
    written into a hidden sibling folder and renamed into place when complete, so an
    interrupted run never leaves a half-written dataset at the target. An existing
    non-empty target is a DataError unless `force` (then it is replaced).
    """
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; choose one of {list(LAYOUTS)}")
    height, width = parse_size(size) if isinstance(size, (int, str)) else tuple(size)
    dataset, writer = LAYOUTS[layout], WRITERS[layout]
    root = os.path.join(out, DATASET_DIRNAME[dataset])
    if os.path.exists(root) and not os.path.isdir(root):
        raise DataError(f"{root} exists and is not a folder")
    if os.path.isdir(root) and os.listdir(root) and not force:
        raise DataError(f"{root} already exists and is not empty; pass --force to replace it")
    os.makedirs(out, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.partial-", dir=out)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o777 & ~umask)  # mkdtemp makes it private; the dataset is not
    try:
        writer(partial, {"train": n_train, "val": n_val}, height, width, seed)
        if os.path.isdir(root):  # empty, or replaced with force
            previous = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.old-", dir=out)
            os.rename(root, os.path.join(previous, "old"))
            os.rename(partial, root)
            shutil.rmtree(previous)
        else:
            os.rename(partial, root)
    except BaseException:  # KeyboardInterrupt included: leave nothing half-written behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return root


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--layout", choices=list(LAYOUTS), required=True, help="which on-disk layout to write")
    parser.add_argument("--out", required=True, help="db_root: the dataset folder is created inside")
    parser.add_argument("--train", type=int, default=100, help="training images")
    parser.add_argument("--val", type=int, default=20, help="validation images")
    parser.add_argument("--size", default=None, help="S (square) or HxW; none: 128, cityscapes 128x256")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty dataset folder")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size or DEFAULT_SIZES.get(args.layout, "128"))
        root = generate(args.layout, args.out, args.train, args.val, size, args.seed,
                        force=args.force)
    except DataError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {args.train} train + {args.val} val images to {root}")


if __name__ == "__main__":
    main()
