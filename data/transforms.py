"""Raw numpy samples -> training / validation tensors (docs/conventions.md).

Training (the public release's): random scale 0.5-2 (depth divided by the scale), random crop
to `train_size` redrawn (up to 10 windows) while one semseg class covers > 75% of it,
horizontal flip (normal x negated), photometric jitter, ImageNet normalisation, padding
bottom/right with 255 (the image with 0 after normalisation, i.e. the mean colour).
Validation: normalisation and padding bottom/right to `val_size`, never resizing.
Either way `meta["size"]` is the unpadded extent, so `[:size[0], :size[1]]` is the content,
and a human_parts map without any part pixel becomes all-ignore (`ignore_partless`).

Randomness: every draw comes from a `numpy.random.Generator` passed as `rng`. Training
(`data.datasets.PartiallyLabelled`) passes one seeded with (seed, epoch, sample index),
so augmentations do not depend on workers, processes or where a resumed run starts.
Called without one, `TrainTransform` seeds a Generator from torch's global generator
(`torch.randint`); numpy's global state is never touched.
"""
import cv2
import numpy as np
import torch

from utils.errors import DataError
from utils.tasks import IGNORE_INDEX

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

UINT8_TASKS = ("semseg", "human_parts", "sal", "edge")  # raw (H, W) uint8 maps
CLASS_TASKS = ("semseg", "human_parts", "sal")  # -> int64 (H, W)
CHANNEL_TASKS = ("edge", "depth")  # -> float32 (1, H, W)

# Gray weights (ITU-R BT.601) used by the contrast and saturation jitter.
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


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


def random_scale(sample, scale):
    """Resize image (bilinear) and targets (nearest); depth in metres is divided by `scale`.

    All-ignore targets are not resized: they become `blank` maps of the new size.
    """
    height, width = sample["image"].shape[:2]
    dsize = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2: (W, H)
    out = dict(sample)
    out["image"] = cv2.resize(sample["image"], dsize, interpolation=cv2.INTER_LINEAR)
    for key in _targets(sample):
        value = sample[key]
        if is_blank(value):
            out[key] = blank((dsize[1], dsize[0]) + value.shape[2:], value.dtype)
            continue
        resized = cv2.resize(value, dsize, interpolation=cv2.INTER_NEAREST_EXACT)
        if key == "depth":
            # A farther camera sees everything smaller: scaling by s divides the depth by s.
            resized = np.where(resized == IGNORE_INDEX, resized, resized / np.float32(scale))
        out[key] = resized
    return out


def dominant_class_fraction(semseg):
    """Share of the most frequent class among the non-ignored pixels (0 when none)."""
    counts = np.bincount(semseg.ravel())
    if len(counts) > IGNORE_INDEX:
        counts[IGNORE_INDEX] = 0
    total = int(counts.sum())
    return float(counts.max()) / total if total else 0.0


def choose_crop(shape, size, rng, semseg=None, max_ratio=0.75, tries=10):
    """Top-left corner of a `size` crop in an image of `shape`.

    With `semseg` given, windows are redrawn (up to `tries` in all) while one class covers
    more than `max_ratio` of the window's labelled pixels; the last window is kept when
    none passes. Images smaller than the crop have one window, at (0, 0).
    """
    height, width = shape
    crop_h, crop_w = size
    for _ in range(tries):
        top = int(rng.integers(0, max(height - crop_h, 0) + 1))
        left = int(rng.integers(0, max(width - crop_w, 0) + 1))
        if semseg is None or (height <= crop_h and width <= crop_w):
            break
        if dominant_class_fraction(semseg[top:top + crop_h, left:left + crop_w]) <= max_ratio:
            break
    return top, left


def hflip(sample):
    """Mirror every map; the x component of valid normals changes sign."""
    out = {key: (np.ascontiguousarray(value[:, ::-1]) if key not in ("meta", "task_mask") else value)
           for key, value in sample.items()}
    if "normals" in out:
        normals = out["normals"]
        valid = normals[..., 0] != IGNORE_INDEX
        normals[..., 0] = np.where(valid, -normals[..., 0], normals[..., 0])
    return out


def mirror(sample):
    """`hflip` for `TrainTransform.augment`: `blank` maps stay views, the others are
    flipped by OpenCV into contiguous copies (later steps read them fast)."""
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


def wrap_degrees(hue):
    """`hue % 360` (NumPy's floor modulo, float32) for hue in (-360, 720), without the slow
    general modulo: the same bits, -0 and values that round to 360 included."""
    hue = np.where(hue >= 360, hue - np.float32(360), hue)  # exact: Sterbenz
    return np.where(hue < 0, hue + np.float32(360), hue) + np.float32(0)  # + 0: -0 -> +0


def photometric_jitter(image, rng, prob=0.5):
    """Brightness, contrast, saturation and hue jitter, each applied with `prob`.

    uint8 or float (H, W, 3) RGB in [0, 255] -> float32 in [0, 255]. Ranges as is usual
    in the field: brightness +-32, contrast and saturation x[0.5, 1.5], hue +-36 degrees.
    Each step works in place on one float32 copy of the image.
    """
    image = np.array(image, dtype=np.float32, order="C")
    if rng.random() < prob:
        np.add(image, np.float32(rng.uniform(-32, 32)), out=image)
        np.clip(image, 0, 255, out=image)
    if rng.random() < prob:
        mean = float((image @ GRAY_WEIGHTS).mean())
        np.subtract(image, mean, out=image)
        np.multiply(image, np.float32(rng.uniform(0.5, 1.5)), out=image)
        np.add(image, mean, out=image)
        np.clip(image, 0, 255, out=image)
    if rng.random() < prob:
        gray = (image @ GRAY_WEIGHTS)[..., None]
        gray = np.repeat(gray, 3, axis=2)  # (H, W, 3): no broadcasting over 3-long rows
        np.subtract(image, gray, out=image)
        np.multiply(image, np.float32(rng.uniform(0.5, 1.5)), out=image)
        np.add(image, gray, out=image)
        np.clip(image, 0, 255, out=image)
    if rng.random() < prob:
        np.divide(image, 255.0, out=image)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360)
        hsv[..., 0] = wrap_degrees(hsv[..., 0] + np.float32(rng.uniform(-36, 36)))
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        np.multiply(image, 255.0, out=image)
        np.clip(image, 0, 255, out=image)
    return image


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


def _padded(value, shape, dtype, height, width, channels_first=False):
    """`value` (height, width[, C]) as a new `dtype` array of `shape` ((H, W), (1, H, W), or
    (C, H, W) with `channels_first`), padded bottom/right with 255: one copy, whatever the
    memory layout of `value` (cropped, mirrored or `blank` maps)."""
    if is_blank(value):
        return np.full(shape, IGNORE_INDEX, dtype)
    unpadded = (height, width) == tuple(shape[-2:])
    canvas = np.empty(shape, dtype) if unpadded else np.full(shape, IGNORE_INDEX, dtype)
    view = canvas.transpose(1, 2, 0) if channels_first else canvas.reshape(shape[-2:])
    view[:height, :width] = value
    return canvas


def pad_and_tensorize(sample, tasks, size, task_mask):
    """Pad bottom/right to `size` (image 0, targets 255) and convert to the conventions' tensors.

    human_parts maps without a part pixel become all-ignore here (`ignore_partless`).
    """
    height, width = sample["image"].shape[:2]
    out_h, out_w = size
    image = np.zeros((3, out_h, out_w), np.float32)
    normalize_into(sample["image"], image[:, :height, :width])
    out = {"image": torch.from_numpy(image)}
    for task in tasks:
        if task in CLASS_TASKS:
            target = _padded(sample[task], (out_h, out_w), np.int64, height, width)
        elif task in CHANNEL_TASKS:
            target = _padded(sample[task], (1, out_h, out_w), np.float32, height, width)
        else:  # normals (H, W, 3) -> (3, H, W)
            target = _padded(sample[task], (3, out_h, out_w), np.float32, height, width, channels_first=True)
        if task == "human_parts":
            ignore_partless(target)
        out[task] = torch.from_numpy(target)
    out["task_mask"] = torch.as_tensor(task_mask, dtype=torch.bool)
    out["meta"] = {"id": str(sample["meta"]["id"]), "size": torch.tensor([height, width], dtype=torch.int64)}
    return out


def _task_mask(sample, tasks):
    if "task_mask" in sample:
        return np.asarray(sample["task_mask"], dtype=bool)
    return np.ones(len(tasks), dtype=bool)


class TrainTransform:
    """Training augmentation; `sample` may carry `task_mask` (T,) in `tasks` order."""

    def __init__(self, tasks, size, scale_range=(0.5, 2.0), flip_prob=0.5, jitter_prob=0.5,
                 max_class_ratio=0.75, crop_tries=10):
        self.tasks = list(tasks)
        self.size = tuple(size)
        self.scale_range = scale_range
        self.flip_prob = flip_prob
        self.jitter_prob = jitter_prob
        self.max_class_ratio = max_class_ratio
        self.crop_tries = crop_tries

    def __call__(self, sample, rng=None):
        rng = rng_from_torch() if rng is None else rng
        task_mask = _task_mask(sample, self.tasks)
        return pad_and_tensorize(self.augment(sample, rng, task_mask), self.tasks, self.size, task_mask)

    def augment(self, sample, rng, task_mask):
        """Scale, crop, flip and jitter a raw sample; maps may come back as views (cropped,
        mirrored or `blank`), which `pad_and_tensorize` copies once."""
        sample = random_scale(sample, float(rng.uniform(*self.scale_range)))

        # The crop rule looks at semseg only where semseg is labelled for this sample.
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
        sample["image"] = photometric_jitter(sample["image"], rng, self.jitter_prob)
        return sample


class ValTransform:
    """Validation: normalise and pad bottom/right to `size`; larger images are an error."""

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
