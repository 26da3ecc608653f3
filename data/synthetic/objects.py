"""What objects look like: the kinds of surface with their albedo, the two primitives
(boxes and bulged 2-D blobs) and one builder per kind of object.

Object coordinates: x lateral from the object's anchor, y up from the floor, z away from
the camera from the object's front.
"""
import dataclasses
import functools

import numpy as np

from data.metadata import VOC_CLASSES
from data.pascal_context import load_db_info

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
