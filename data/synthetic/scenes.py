"""Random scenes shared by every layout: a pinhole camera, the rasteriser (objects,
room or ground plane, street), the shading into an RGB image, and the placement of
objects in a room, outdoors or along a street.

A scene is one view of a room (floor, walls, ceiling), of a ground plane under the sky, or
of a street (road, sidewalks, facades; Cityscapes), with objects standing at different
distances. Every label comes from the same geometry, so the tasks are related as in real
data: nearer objects occlude farther ones (semseg, human parts, boundaries), normals and
depth follow the surfaces (boxes are exact planes, round things are bulged 2-D shapes),
the nearest objects are salient, and pixel colours depend on the class, the part, the
texture and the shading of the normal.

Camera frame: x right, y up, z towards the camera; depth is the distance along the
optical axis.
"""
import dataclasses

import cv2
import numpy as np

from data.synthetic.objects import KIND_COLOURS, KINDS, Blob, Box, SceneObject, _jitter, build_object

SKY_DEPTH = 1000.0

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
