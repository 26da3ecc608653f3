"""Checks a run makes before spending any compute: every file the splits need exists and
every validation image fits `val_size` (image headers only), so a mismatch is one line at
second 0, not an error after training."""
import os

import numpy as np
from PIL import Image

from utils.errors import ConfigError, DataError


def check_files(*datasets):
    """Every file the splits need exists (stat calls only)."""
    for dataset in datasets:
        missing = dataset.missing_files()
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DataError(f"missing file {missing[0]}{more}: the dataset at {os.path.dirname(missing[0])} "
                            "is incomplete")


def image_size(path):
    """(H, W) of an image file from its header: PNG / JPEG via PIL (no decoding), .npy via
    its array header (memory-mapped, nothing read)."""
    try:
        if path.endswith(".npy"):
            return tuple(np.load(path, mmap_mode="r").shape[:2])
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from None


def check_val_sizes(dataset, val_size):
    """Every validation image fits inside `val_size` (predictions are padded to it)."""
    loader = dataset.loader
    first_too_large, needed = None, list(val_size)
    for index in range(len(dataset)):
        path = next(p for p in loader.files(index, [])[0] if os.path.exists(p))
        height, width = image_size(path)
        if height > val_size[0] or width > val_size[1]:
            first_too_large = first_too_large or (path, height, width)
            needed = [max(needed[0], height), max(needed[1], width)]
    if first_too_large is not None:
        path, height, width = first_too_large
        raise ConfigError(f"val_size {val_size[0]}x{val_size[1]} is smaller than validation image {path} "
                          f"({height}x{width}); the whole split fits in --opts val_size=[{needed[0]},{needed[1]}] "
                          f"(val_size may change when a run is continued)")
