"""File readers shared by the dataset loaders: every failure becomes a DataError that names
the file and the sample, so a broken dataset is reported once, at the file that is broken."""
import os

import cv2
import numpy as np
import scipy.io
from PIL import Image

from utils.errors import DataError
from utils.tasks import IGNORE_INDEX


def require_dir(path, what):
    """Raise DataError unless `path` is a directory (`what` says which one, for the message)."""
    if not os.path.isdir(path):
        raise DataError(f"{what} not found: {path}")


def check_tasks(dataset, tasks, available):
    """Return `tasks` as a list after checking each is one `dataset` provides."""
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise DataError(f"{dataset} has no task {unknown[0]!r}; available: {list(available)}")
    return tasks


def read_split(path):
    """Sample ids of a split file: one per line, blank lines skipped."""
    if not os.path.isfile(path):
        raise DataError(f"split file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        ids = [line.strip() for line in handle if line.strip()]
    if not ids:
        raise DataError(f"split file is empty: {path}")
    return ids


def _missing(path, sample_id):
    return DataError(f"missing file {path} (sample {sample_id!r})")


def _corrupt(path, sample_id, err):
    return DataError(f"cannot read {path} (sample {sample_id!r}): {err}")


def first_existing(paths, sample_id):
    """The first of `paths` that exists (e.g. .png then .jpg); DataError naming all of them."""
    for path in paths:
        if os.path.isfile(path):
            return path
    raise DataError(f"missing file {' or '.join(paths)} (sample {sample_id!r})")


def read_image(path, sample_id, mode=None):
    """Decode an image file with PIL: `mode="RGB"` converts, None keeps the stored values
    (palette indices for VOC label PNGs, gray or RGB otherwise)."""
    if not os.path.isfile(path):
        raise _missing(path, sample_id)
    try:
        with Image.open(path) as image:
            image.load()
            if mode is not None and image.mode != mode:
                image = image.convert(mode)
            return np.array(image)
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises these for bad files
        raise _corrupt(path, sample_id, err) from None


# 8-bit code v -> normal component 2v/255 - 1, computed in float32 as (2v - 255) / 255.
NORMALS_FROM_CODE = ((np.arange(256, dtype=np.float32) * 2.0 - 255.0) / 255.0)[None]


def decode_normals(encoded):
    """(H, W, 3+) normals PNG -> float32 (H, W, 3), 2v/255 - 1 (8-bit: one table lookup)."""
    if encoded.dtype != np.uint8:
        return (encoded[..., :3].astype(np.float32) * 2.0 - 255.0) / 255.0
    return cv2.LUT(np.ascontiguousarray(encoded[..., :3]), NORMALS_FROM_CODE)


def read_npy(path, sample_id):
    """Load a .npy array (never a pickle)."""
    if not os.path.isfile(path):
        raise _missing(path, sample_id)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise _corrupt(path, sample_id, err) from None


def read_mat(path, sample_id, key):
    """Load variable `key` of a MATLAB file."""
    if not os.path.isfile(path):
        raise _missing(path, sample_id)
    try:
        content = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises anything from IndexError to OSError on garbage
        raise _corrupt(path, sample_id, err) from None
    if key not in content:
        raise DataError(f"{path} (sample {sample_id!r}) has no variable {key!r}")
    return content[key]


def check_shape(array, shape, path, sample_id):
    """Raise DataError unless the map at `path` has the image's (H, W)."""
    if array.shape[:2] != tuple(shape):
        raise DataError(f"{path} (sample {sample_id!r}) is {array.shape[0]}x{array.shape[1]}, "
                        f"the image is {shape[0]}x{shape[1]}")


def ignore_target(task, shape):
    """The raw target of a task that is not decoded (unlabelled): all ignore, never zero."""
    if task == "normals":
        return np.full((*shape, 3), IGNORE_INDEX, np.float32)
    if task == "depth":
        return np.full(shape, IGNORE_INDEX, np.float32)
    return np.full(shape, IGNORE_INDEX, np.uint8)
