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


def image_sizes(dataset):
    """(path, H, W) of every sample's image, from headers (the first existing alternative)."""
    for index in range(len(dataset)):
        path = next(p for p in dataset.loader.files(index, [])[0] if os.path.exists(p))
        yield (path, *image_size(path))


def check_train_sizes(dataset, train_size):
    """Where the protocol never pads or crops to a fixed size (NYUD MTAN layout, Cityscapes),
    every training image has the size train_size."""
    if getattr(dataset.transform, "pads", True):
        return  # scaled, cropped and padded to train_size: any size works
    for path, height, width in image_sizes(dataset):
        if (height, width) != tuple(train_size):
            raise ConfigError(f"train_size {train_size[0]}x{train_size[1]} differs from the size of training image "
                              f"{path} ({height}x{width}); this dataset trains at its own size: "
                              f"--opts train_size=[{height},{width}]")


def check_val_sizes(dataset, val_size):
    """Every validation image fits inside `val_size` (predictions are padded to it), or has
    exactly that size where the protocol never pads (NYUD MTAN layout, Cityscapes)."""
    pads = getattr(dataset.transform, "pads", True)
    first_wrong, needed = None, list(val_size) if pads else [0, 0]
    for path, height, width in image_sizes(dataset):
        wrong = height > val_size[0] or width > val_size[1] if pads else (height, width) != tuple(val_size)
        if wrong:
            first_wrong = first_wrong or (path, height, width)
        needed = [max(needed[0], height), max(needed[1], width)]
    if first_wrong is None:
        return
    path, height, width = first_wrong
    if pads:
        raise ConfigError(f"val_size {val_size[0]}x{val_size[1]} is smaller than validation image {path} "
                          f"({height}x{width}); the whole split fits in --opts val_size=[{needed[0]},{needed[1]}] "
                          f"(val_size may change when a run is continued)")
    raise ConfigError(f"val_size {val_size[0]}x{val_size[1]} differs from the size of validation image {path} "
                      f"({height}x{width}); this dataset is evaluated unpadded at its own size: "
                      f"--opts val_size=[{height},{width}]")
