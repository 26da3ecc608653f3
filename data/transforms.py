"""Raw numpy samples -> training / validation tensors, as the public release makes them
(docs/datasets.md, "Training augmentation"; docs/conventions.md).

Training (PASCAL-Context and NYUD 4-task; the release's transform file, which ATRC and
InvPT share), in this order:
1. scale by s ~ U(0.5, 2): size (int(H s), int(W s)), the float image bilinear, every
   target with OpenCV's legacy nearest neighbour, depth divided by s (s == 1: untouched);
2. crop to `train_size`, the window redrawn (up to 10 checks) while semseg has fewer
   than two classes or one class covers >= 75% of its labelled pixels;
3. horizontal flip (p 0.5), normals' x negated;
4. mmseg's photometric distortion on the uint8 image (the float image truncated);
5. ImageNet normalisation, then padding to `train_size` with the content centred.
Validation: normalisation and centred padding to `val_size`, never resizing.

Either way `meta["size"]` is the content's (H, W) and `meta["offset"]` its top-left
corner in the padded maps; `content_windows(meta)` is where every consumer (metrics,
saved predictions, inference.py) reads that window. A human_parts map without any part
pixel becomes all-ignore (`ignore_partless`).

Randomness: every draw comes from a `numpy.random.Generator` passed as `rng` (the release
draws from Python's `random`; the distributions are the same). Training
(`data.datasets.PartiallyLabelled`) passes one seeded with (seed, epoch, sample index),
so augmentations do not depend on workers, processes or where a resumed run starts.
Called without one, `TrainTransform` seeds a Generator from torch's global generator
(`torch.randint`); numpy's global state is never touched.
"""
from typing import NamedTuple, Optional

import cv2
import numpy as np
import torch

from utils.errors import DataError
from utils.tasks import IGNORE_INDEX

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

CLASS_TASKS = ("semseg", "human_parts", "sal")  # -> int64 (H, W)
CHANNEL_TASKS = ("edge", "depth")  # -> float32 (1, H, W)

# What the padding holds, per target. The release pads depth with 0 (no measurement, as
# ours) and normals with 0, which its ignore step (AddIgnoreRegions: zero-length vector ->
# 255) turns into 255 before the loss sees them: the same tensors as padding with 255.
PAD_VALUE = {"semseg": IGNORE_INDEX, "human_parts": IGNORE_INDEX, "sal": IGNORE_INDEX, "edge": IGNORE_INDEX,
             "normals": IGNORE_INDEX, "depth": 0}

# mmseg's PhotoMetricDistortion defaults, which the release uses.
BRIGHTNESS_DELTA = 32
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18  # OpenCV hue units (2 degrees); the shift is drawn from -18..17


def rng_from_torch():
    """A numpy Generator seeded from torch's global generator (per-worker in a DataLoader)."""
    return np.random.default_rng(int(torch.randint(0, 2**63 - 1, ())))


def _targets(sample):
    return [key for key in sample if key not in ("image", "meta", "task_mask")]


def is_blank(value):
    """True for an all-ignore map (an unlabelled task): every augmentation keeps it all-ignore."""
    if value.size == 0 or value.flat[0] != IGNORE_INDEX:
        return False
    if value.ndim >= 2 and value.strides[0] == value.strides[1] == 0:  # constant over (H, W): `blank`
        value = value[0, 0]
    return bool((value == IGNORE_INDEX).all())


def blank(shape, dtype):
    """A read-only all-ignore map of `shape` that costs no memory (a broadcast scalar)."""
    return np.broadcast_to(np.array(IGNORE_INDEX, dtype), shape)


# ------------------------------------------------------------------------ 1. scale

def scaled_size(height, width, scale):
    """The release's scaled size: int(H * s), int(W * s), truncated (at least 1 pixel)."""
    return max(1, int(height * scale)), max(1, int(width * scale))


def random_scale(sample, scale):
    """Resize as the release does: the image as float32 with bilinear interpolation (the
    truncation to uint8 comes with the photometric step), targets with OpenCV's legacy
    nearest neighbour (source index floor(dst * in / out)); depth in metres is divided by
    `scale`. scale == 1 returns `sample` itself. All-ignore targets become `blank` maps."""
    if scale == 1.0:
        return sample
    height, width = scaled_size(*sample["image"].shape[:2], scale)
    dsize = (width, height)  # cv2: (W, H)
    out = dict(sample)
    out["image"] = cv2.resize(sample["image"].astype(np.float32), dsize, interpolation=cv2.INTER_LINEAR)
    for key in _targets(sample):
        value = sample[key]
        if is_blank(value):
            out[key] = blank((height, width) + value.shape[2:], value.dtype)
            continue
        resized = cv2.resize(value, dsize, interpolation=cv2.INTER_NEAREST)
        if key == "depth":
            # A farther camera sees everything smaller: scaling by s divides the depth by s.
            resized = np.where(resized == IGNORE_INDEX, resized, resized / np.float32(scale))
        out[key] = resized
    return out


# ------------------------------------------------------------------------- 2. crop

def crop_accepted(semseg, max_ratio=0.75):
    """The release's crop check (cat_max_ratio): among the labelled pixels (not 255) of the
    window, at least two classes, and the most frequent one under `max_ratio` of them."""
    counts = np.bincount(semseg.ravel(), minlength=IGNORE_INDEX + 1)[:IGNORE_INDEX]
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < max_ratio


def choose_crop(shape, size, rng, semseg=None, max_ratio=0.75, tries=10):
    """Top-left corner of a `size` window in an image of `shape`, each offset uniform in
    0..max(H - h, 0) (both ends included).

    With `semseg` given, as the release: up to `tries` windows are checked
    (`crop_accepted`); a rejected one is replaced by a new draw, so after `tries`
    rejections the window drawn last (the 11th by default) is used unchecked.
    """
    height, width = shape
    crop_h, crop_w = size

    def draw():
        return (int(rng.integers(0, max(height - crop_h, 0) + 1)),
                int(rng.integers(0, max(width - crop_w, 0) + 1)))

    top, left = draw()
    if semseg is not None:
        for _ in range(tries):
            if crop_accepted(semseg[top:top + crop_h, left:left + crop_w], max_ratio):
                break
            top, left = draw()
    return top, left


# ------------------------------------------------------------------------- 3. flip

def mirror(sample):
    """Mirror every map; the x component of valid normals changes sign. `blank` maps stay
    views, the others are flipped by OpenCV into contiguous copies (later steps read them fast)."""
    out = dict(sample)
    for key in ["image"] + _targets(sample):
        value = sample[key]
        if is_blank(value):
            out[key] = value[:, ::-1]
        elif value.dtype in (np.uint8, np.float32):
            out[key] = cv2.flip(value, 1)
        else:
            out[key] = np.ascontiguousarray(value[:, ::-1])
    if "normals" in out and not is_blank(out["normals"]):
        x = out["normals"][..., 0]
        np.negative(x, out=x, where=x != IGNORE_INDEX)
    return out


# ------------------------------------------------------------ 4. photometric distortion

class Photometric(NamedTuple):
    """The random choices of one photometric distortion; None = the step is skipped."""
    brightness: Optional[float]  # added to every value
    contrast: Optional[float]  # every value multiplied by it
    contrast_first: bool  # contrast right after brightness, else after hue
    saturation: Optional[float]  # OpenCV's uint8 S channel multiplied by it
    hue: Optional[int]  # added to OpenCV's uint8 H channel (2-degree units), modulo 180


def draw_photometric(rng, prob=0.5):
    """mmseg's PhotoMetricDistortion draws: each step with probability `prob`, brightness
    U(-32, 32), contrast and saturation U(0.5, 1.5), hue an integer in -18..17, and contrast
    second or last with probability 1/2 (drawn in the order the steps run)."""

    def maybe(draw):
        return draw() if rng.random() < prob else None

    brightness = maybe(lambda: float(rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)))
    contrast_first = bool(rng.random() < 0.5)
    contrast = maybe(lambda: float(rng.uniform(*CONTRAST_RANGE))) if contrast_first else None
    saturation = maybe(lambda: float(rng.uniform(*SATURATION_RANGE)))
    hue = maybe(lambda: int(rng.integers(-HUE_DELTA, HUE_DELTA)))
    if not contrast_first:
        contrast = maybe(lambda: float(rng.uniform(*CONTRAST_RANGE)))
    return Photometric(brightness, contrast, contrast_first, saturation, hue)


def scale_shift(values, alpha=1.0, beta=0.0):
    """mmseg's `convert`: clip(values * alpha + beta, 0, 255) in float32, truncated to uint8."""
    return np.clip(values.astype(np.float32) * np.float32(alpha) + np.float32(beta), 0, 255).astype(np.uint8)


def photometric_distortion(image, params):
    """mmseg's PhotoMetricDistortion with the choices `params`, as the release runs it:
    on the image truncated to uint8 (H, W, 3) RGB, each step rounding down to uint8, the
    colour steps in OpenCV's uint8 HSV (H in 0..179). Returns uint8 (H, W, 3)."""
    image = image.astype(np.uint8)
    if params.brightness is not None:
        image = scale_shift(image, beta=params.brightness)
    if params.contrast_first and params.contrast is not None:
        image = scale_shift(image, alpha=params.contrast)
    if params.saturation is not None:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = scale_shift(hsv[..., 1], alpha=params.saturation)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if params.hue is not None:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + params.hue) % 180
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not params.contrast_first and params.contrast is not None:
        image = scale_shift(image, alpha=params.contrast)
    return image


# ------------------------------------------------------- 5. normalise, pad, tensors

def normalize_into(image, out):
    """(H, W, 3) RGB in [0, 255] -> ImageNet-normalised, written into `out` (3, H, W) float32."""
    for channel in range(3):
        plane = out[channel]
        np.divide(image[..., channel], np.float32(255.0), out=plane, dtype=np.float32)
        np.subtract(plane, IMAGENET_MEAN[channel], out=plane)
        np.divide(plane, IMAGENET_STD[channel], out=plane)
    return out


def normalize(image):
    """(H, W, 3) RGB in [0, 255] -> ImageNet-normalised float32 (3, H, W)."""
    return normalize_into(image, np.empty((3,) + image.shape[:2], np.float32))


def ignore_partless(parts):
    """A human_parts map with no part pixel (only background and ignore) becomes all-ignore.

    The public release's rule (AddIgnoreRegions), applied to the training
    crop and to the whole validation image alike: a crop that shows no part says nothing
    about where parts are, and training it as all-background biases the task towards
    background. Modifies `parts` (H, W) in place and returns it.
    """
    if not ((parts != 0) & (parts != IGNORE_INDEX)).any():
        parts.fill(IGNORE_INDEX)
    return parts


def centred_offset(content, canvas):
    """(top, left) of a `content` (h, w) centred in a `canvas` (H, W), as the release pads:
    ((H - h) // 2, (W - w) // 2), so an odd difference leaves the extra row / column at
    the bottom / right."""
    return (canvas[0] - content[0]) // 2, (canvas[1] - content[1]) // 2


def content_windows(meta):
    """(B, 4) int64 [top, left, height, width]: where each sample's content lies in its
    padded maps, from a collated batch's `meta` (a single sample's meta gives (1, 4)).

    The one place that reads the window: metrics, saved predictions, TensorBoard images
    and inference.py crop with it. A meta without "offset" (samples that were never
    padded) has its content at (0, 0).
    """
    size = torch.as_tensor(meta["size"], dtype=torch.int64).reshape(-1, 2)
    offset = meta.get("offset")
    offset = torch.zeros_like(size) if offset is None else torch.as_tensor(offset, dtype=torch.int64).reshape(-1, 2)
    return torch.cat([offset, size], dim=1)


def crop_to_content(array, window):
    """`array`'s last two axes cut to `window` ([top, left, height, width], a row of
    `content_windows`): the padding removed."""
    top, left, height, width = (int(v) for v in window)
    return array[..., top:top + height, left:left + width]


def _padded(value, shape, dtype, window, fill, channels_first=False):
    """`value` (height, width[, C]) as a new `dtype` array of `shape` ((H, W), (1, H, W), or
    (C, H, W) with `channels_first`), placed at `window` (top, left, height, width) on a
    canvas of `fill`: one copy, whatever the memory layout of `value` (cropped, mirrored
    or `blank` maps). A `blank` map stays all-ignore, padding included."""
    if is_blank(value):
        return np.full(shape, IGNORE_INDEX, dtype)
    top, left, height, width = window
    unpadded = (height, width) == tuple(shape[-2:])
    canvas = np.empty(shape, dtype) if unpadded else np.full(shape, fill, dtype)
    view = canvas.transpose(1, 2, 0) if channels_first else canvas.reshape(shape[-2:])
    view[top:top + height, left:left + width] = value
    return canvas


def pad_and_tensorize(sample, tasks, size, task_mask):
    """Normalise, pad to `size` with the content centred (`centred_offset`; fills:
    `PAD_VALUE`, the image 0 after normalisation, i.e. the mean colour) and convert to the
    conventions' tensors. human_parts maps without a part pixel become all-ignore here."""
    height, width = sample["image"].shape[:2]
    out_h, out_w = size
    top, left = centred_offset((height, width), size)
    window = (top, left, height, width)
    image = np.zeros((3, out_h, out_w), np.float32)
    normalize_into(sample["image"], image[:, top:top + height, left:left + width])
    out = {"image": torch.from_numpy(image)}
    for task in tasks:
        fill = PAD_VALUE[task]
        if task in CLASS_TASKS:
            target = _padded(sample[task], (out_h, out_w), np.int64, window, fill)
        elif task in CHANNEL_TASKS:
            target = _padded(sample[task], (1, out_h, out_w), np.float32, window, fill)
        else:  # normals (H, W, 3) -> (3, H, W)
            target = _padded(sample[task], (3, out_h, out_w), np.float32, window, fill, channels_first=True)
        if task == "human_parts":
            ignore_partless(target)
        out[task] = torch.from_numpy(target)
    out["task_mask"] = torch.as_tensor(task_mask, dtype=torch.bool)
    out["meta"] = {"id": str(sample["meta"]["id"]), "size": torch.tensor([height, width], dtype=torch.int64),
                   "offset": torch.tensor([top, left], dtype=torch.int64)}
    return out


def _task_mask(sample, tasks):
    if "task_mask" in sample:
        return np.asarray(sample["task_mask"], dtype=bool)
    return np.ones(len(tasks), dtype=bool)


class TrainTransform:
    """The release's training augmentation (module docstring); `sample` may carry
    `task_mask` (T,) in `tasks` order."""

    def __init__(self, tasks, size, scale_range=(0.5, 2.0), flip_prob=0.5, photometric_prob=0.5,
                 max_class_ratio=0.75, crop_tries=10):
        self.tasks = list(tasks)
        self.size = tuple(size)
        self.scale_range = scale_range
        self.flip_prob = flip_prob
        self.photometric_prob = photometric_prob
        self.max_class_ratio = max_class_ratio
        self.crop_tries = crop_tries

    def __call__(self, sample, rng=None):
        rng = rng_from_torch() if rng is None else rng
        task_mask = _task_mask(sample, self.tasks)
        return pad_and_tensorize(self.augment(sample, rng, task_mask), self.tasks, self.size, task_mask)

    def augment(self, sample, rng, task_mask):
        """Scale, crop, flip and distort a raw sample (steps 1-4); maps may come back as
        views (cropped, mirrored or `blank`), which `pad_and_tensorize` copies once."""
        sample = random_scale(sample, float(rng.uniform(*self.scale_range)))

        # The crop rule looks at semseg only where semseg is labelled for this sample (an
        # all-ignore map would reject every window: the 11th, a uniform draw, is the same).
        semseg_labelled = "semseg" in self.tasks and task_mask[self.tasks.index("semseg")]
        top, left = choose_crop(sample["image"].shape[:2], self.size, rng,
                                semseg=sample["semseg"] if semseg_labelled else None,
                                max_ratio=self.max_class_ratio, tries=self.crop_tries)
        crop_h, crop_w = self.size
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        sample = {key: (value if key in ("meta", "task_mask") else value[window])
                  for key, value in sample.items()}

        if rng.random() < self.flip_prob:
            sample = mirror(sample)
        sample["image"] = photometric_distortion(sample["image"], draw_photometric(rng, self.photometric_prob))
        return sample


class ValTransform:
    """Validation: normalise and pad to `size`, the content centred; larger images are an error."""

    def __init__(self, tasks, size):
        self.tasks = list(tasks)
        self.size = tuple(size)

    def check_size(self, height, width, image_id):
        if height > self.size[0] or width > self.size[1]:
            raise DataError(f"validation image '{image_id}' is {height}x{width}, larger than val_size "
                            f"{self.size[0]}x{self.size[1]}; raise val_size in the config")

    def __call__(self, sample):
        self.check_size(*sample["image"].shape[:2], sample["meta"]["id"])
        return pad_and_tensorize(sample, self.tasks, self.size, _task_mask(sample, self.tasks))
