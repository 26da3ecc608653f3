"""File readers shared by the dataset loaders: every failure becomes a DataError that names
the file and the sample, so a broken dataset is reported once, at the file that is broken."""
import os

import cv2
import numpy as np
import scipy.io
from PIL import Image

from utils.errors import DataError
from utils.tasks import DATASET_TASKS, IGNORE_INDEX


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


# How far an MTAN image value may lie outside [0, 1] (float rounding in the preprocessing).
UNIT_IMAGE_TOLERANCE = 1e-6


def read_unit_image(path, sample_id):
    """An MTAN-layout image (NYUD_MTAN, Cityscapes): a float (H, W, 3) .npy in [0, 1], returned
    as float32 with its values untouched (the protocol resamples the float image). A value
    outside [0, 1] means a corrupt or differently scaled file, never a silent rescale."""
    image = read_npy(path, sample_id)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{path} (sample {sample_id!r}): image must be (H, W, 3), got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise DataError(f"{path} (sample {sample_id!r}): image must hold floats in [0, 1] (the MTAN layout), "
                        f"got {image.dtype}")
    image = image.astype(np.float32, copy=False)
    outside = ~((image >= -UNIT_IMAGE_TOLERANCE) & (image <= 1 + UNIT_IMAGE_TOLERANCE))  # NaN included
    if outside.any():
        raise DataError(f"{path} (sample {sample_id!r}): image values must be in [0, 1], "
                        f"found {float(image[outside][0]):.7g}")
    return image


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


def depth_2d(depth, path, sample_id):
    """Depth stored (H, W) or (H, W, 1) -> float32 (H, W)."""
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise DataError(f"{path} (sample {sample_id!r}): depth must be (H, W) or (H, W, 1), "
                        f"got shape {depth.shape}")
    return depth.astype(np.float32)


def row_index_ids(image_dir, what):
    """The sample ids of an MTAN-style .npy split: its image files' row indices, in order."""
    require_dir(image_dir, what)
    stems = [name[:-4] for name in os.listdir(image_dir) if name.endswith(".npy")]
    if not stems:
        raise DataError(f"no .npy images in {image_dir}")
    bad = [stem for stem in stems if not stem.isdigit()]
    if bad:
        raise DataError(f"{image_dir}: file name {bad[0]}.npy is not a row index")
    return sorted(stems, key=int)


def decode_index_labels(labels, num_classes, shape, path, sample_id):
    """MTAN-style class ids ((H, W) or (H, W, 1), -1 = ignore) -> uint8 (H, W), 255 = ignore."""
    if labels.ndim == 3 and labels.shape[2] == 1:
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise DataError(f"{path} (sample {sample_id!r}): label must be (H, W), got {labels.shape}")
    check_shape(labels, shape, path, sample_id)
    if not np.isfinite(labels).all():
        raise DataError(f"{path} (sample {sample_id!r}): label has non-finite values")
    labels = np.rint(labels).astype(np.int64)
    bad = (labels < -1) | (labels >= num_classes)
    if bad.any():
        raise DataError(f"{path} (sample {sample_id!r}): label {int(labels[bad][0])} outside "
                        f"-1..{num_classes - 1}")
    return np.where(labels == -1, IGNORE_INDEX, labels).astype(np.uint8)


class DecodedLoader:
    """What the .npy / PNG loaders share: `load` decodes the image and the requested tasks
    through the subclass's `_image(sample_id)` and `_decoders` (task -> fn(sample_id,
    shape)); `[i]` applies `transform`. Subclasses set `ids`, `tasks` and `transform`."""

    def __len__(self):
        return len(self.ids)

    def load(self, index, tasks=None):
        """The raw sample, before `transform`; tasks outside `tasks` (default: all) are
        all-ignore maps, not decoded."""
        sample_id = self.ids[index]
        decode = self.tasks if tasks is None else tasks
        image = self._image(sample_id)
        shape = image.shape[:2]
        sample = {"image": image}
        for task in self.tasks:
            sample[task] = self._decoders[task](sample_id, shape) if task in decode else ignore_target(task, shape)
        sample["meta"] = {"id": sample_id, "size": shape}
        return sample

    def __getitem__(self, index):
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample


class MTANLoader(DecodedLoader):
    """What the MTAN .npy layouts (NYUD_MTAN, Cityscapes) share: files
    `root/<split>/<folder>/<index>.npy`, the row indices as sample ids, and float images in
    [0, 1] (`read_unit_image`). Subclasses set `folders` (task -> folder) and `_decoders`;
    `dataset` names the tasks' table entry, `what` the layout in messages."""

    def __init__(self, root, split, tasks, transform, dataset, what):
        require_dir(root, f"{what} root")
        self.root = root
        self.split = split
        self.tasks = check_tasks(dataset, tasks, DATASET_TASKS[dataset])
        self.transform = transform
        self.ids = row_index_ids(os.path.join(root, split, "image"), f"{what} split '{split}'")

    def _path(self, folder, sample_id):
        return os.path.join(self.root, self.split, folder, f"{sample_id}.npy")

    def files(self, index, tasks=None):
        """The files `load(index, tasks)` reads, each as a tuple of alternatives (one must exist)."""
        sample_id = self.ids[index]
        decode = self.tasks if tasks is None else tasks
        return [(self._path("image", sample_id),)] + \
            [(self._path(self.folders[task], sample_id),) for task in self.tasks if task in decode]

    def _image(self, sample_id):
        return read_unit_image(self._path("image", sample_id), sample_id)
