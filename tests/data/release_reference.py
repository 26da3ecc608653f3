"""The public release's PASCAL-Context / NYUD training transform, written out plainly from
its definition (docs/datasets.md, "Training augmentation"; the release's transform file
that ATRC and InvPT share), with every random choice passed in. Our data/transforms.py is
checked against it.

It works as the release does: every map (H, W, C) float32, the image resized as a float
image, targets as float maps, padding with the release's own fills (normals 0, depth 0)
followed by its ignore step (a zero-length normal becomes 255).
"""
import cv2
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
FILL = {"image": 0.0, "semseg": 255.0, "human_parts": 255.0, "sal": 255.0, "edge": 255.0, "normals": 0.0,
        "depth": 0.0}


def as_release_sample(sample):
    """Our raw sample -> the release's: every map float32 (H, W, C), pixels without a
    normal stored as the zero vector (ours: 255)."""
    out = {}
    for key, value in sample.items():
        if key in ("meta", "task_mask"):
            continue
        value = np.array(value, np.float32)
        out[key] = value if value.ndim == 3 else value[..., None]
    if "normals" in out:
        out["normals"][(out["normals"] == 255).all(axis=2)] = 0
    return out


def scale(sample, factor):
    if factor == 1.0:
        return sample
    out = {}
    for key, value in sample.items():
        new_h, new_w = int(value.shape[0] * factor), int(value.shape[1] * factor)
        flag = cv2.INTER_LINEAR if key == "image" else cv2.INTER_NEAREST
        resized = cv2.resize(np.squeeze(value), (new_w, new_h), interpolation=flag)
        if resized.ndim == 2:
            resized = resized[..., None]
        if key == "depth":
            resized = resized / factor
        out[key] = resized
    return out


def crop_ok(semseg, max_ratio=0.75):
    labels, counts = np.unique(semseg, return_counts=True)
    counts = counts[labels != 255]
    return len(counts) > 1 and np.max(counts) / np.sum(counts) < max_ratio


def crop(sample, size, windows):
    """`windows`: the (top, left) drawn in turn; the first accepted of the first 10, else the 11th."""
    for index, (top, left) in enumerate(windows):
        window = sample["semseg"][top:top + size[0], left:left + size[1]]
        if index == 10 or crop_ok(window):
            break
    return {key: value[top:top + size[0], left:left + size[1]] for key, value in sample.items()}


def flip(sample):
    out = {key: np.fliplr(value).copy() for key, value in sample.items()}
    if "normals" in out:
        out["normals"][:, :, 0] *= -1
    return out


def convert(image, alpha=1, beta=0):
    return np.clip(image.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric(image, brightness=None, contrast=None, contrast_first=True, saturation=None, hue=None):
    image = image.astype(np.uint8)
    if brightness is not None:
        image = convert(image, beta=brightness)
    if contrast_first and contrast is not None:
        image = convert(image, alpha=contrast)
    if saturation is not None:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        image[:, :, 1] = convert(image[:, :, 1], alpha=saturation)
        image = cv2.cvtColor(image, cv2.COLOR_HSV2RGB)
    if hue is not None:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        image[:, :, 0] = (image[:, :, 0].astype(int) + hue) % 180
        image = cv2.cvtColor(image, cv2.COLOR_HSV2RGB)
    if not contrast_first and contrast is not None:
        image = convert(image, alpha=contrast)
    return image.astype(np.float32)


def normalize(image):
    return (image / 255.0 - MEAN) / STD


def pad(sample, size):
    out = {}
    for key, value in sample.items():
        delta_h, delta_w = max(size[0] - value.shape[0], 0), max(size[1] - value.shape[1], 0)
        padded = np.full((size[0], size[1], value.shape[2]), FILL[key], np.float32)
        padded[delta_h // 2:delta_h // 2 + value.shape[0], delta_w // 2:delta_w // 2 + value.shape[1]] = value
        out[key] = padded
    return out


def add_ignore_regions(sample):
    if "normals" in sample:
        norm = np.sqrt((sample["normals"] ** 2).sum(axis=2))
        sample["normals"][norm == 0, :] = 255
    if "human_parts" in sample and ((sample["human_parts"] == 0) | (sample["human_parts"] == 255)).all():
        sample["human_parts"] = np.full_like(sample["human_parts"], 255)
    return sample


def release_train(sample, size, factor, windows, flipped, **photometric_choices):
    """Our raw sample through the release's training transform with the given choices ->
    {key: (C, H, W) float32}, and the (top, left) of the content in the padded maps."""
    sample = scale(as_release_sample(sample), factor)
    sample = crop(sample, size, windows)
    if flipped:
        sample = flip(sample)
    sample["image"] = normalize(photometric(sample["image"], **photometric_choices))
    content = sample["image"].shape[:2]
    sample = add_ignore_regions(pad(sample, size))
    offset = ((size[0] - content[0]) // 2, (size[1] - content[1]) // 2)
    return {key: value.transpose(2, 0, 1) for key, value in sample.items()}, offset
