"""PASCAL-Context with the five multi-task labels, read from the official layout
(docs/datasets.md, "Layouts") and decoded into the raw samples of docs/conventions.md."""
import functools
import hashlib
import json
import os
import warnings

import cv2
import numpy as np

from data.readers import (check_shape, check_tasks, decode_normals, first_existing, ignore_target,
                          read_image, read_mat, read_split, require_dir)
from data.transforms import ignore_partless
from data.metadata import VOC_CLASSES
from utils.thinning import thin
from utils.errors import DataError
from utils.files import atomic_write, atomic_write_json
from utils.tasks import DATASET_TASKS, IGNORE_INDEX

DB_INFO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "db_info")

PERSON_CLASS = VOC_CLASSES.index("person")  # 15

# PASCAL-Part person part names -> the 6 human-part groups (0 is background).
PART_GROUPS = {
    **dict.fromkeys(("head", "hair", "leye", "reye", "lear", "rear", "lebrow", "rebrow",
                     "nose", "mouth"), 1),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}


def load_db_info(name):
    """One of the class-name tables shipped in data/db_info (name -> id dicts)."""
    with open(os.path.join(DB_INFO_DIR, name), encoding="utf-8") as handle:
        return json.load(handle)


def normals_valid_classes():
    """Context class ids whose distilled normals are trusted: the classes NYU also labels
    (the normals teacher was trained on NYU), minus the catch-all 'unknown', plus
    'tvmonitor' (NYU calls it 'television'). 170 ids."""
    context = load_db_info("context_classes.json")
    nyu = load_db_info("nyu_classes.json")
    names = ((set(context) & set(nyu)) - {"unknown"}) | {"tvmonitor"}
    return np.array(sorted(context[name] for name in names), dtype=np.int64)


def label_boundaries(label_map):
    """Pixels where the Laplacian of the label map is non-zero, thinned to 1 px; uint8 {0,1}.

    Integer maps of up to 16 bits are exact in float32 (|Laplacian| < 2^24), so they skip
    the float64 copy; other dtypes keep float64.
    """
    exact32 = np.issubdtype(label_map.dtype, np.integer) and label_map.dtype.itemsize <= 2
    depth = (np.float32, cv2.CV_32F) if exact32 else (np.float64, cv2.CV_64F)
    laplacian = cv2.Laplacian(label_map.astype(depth[0], order="C"), depth[1])
    return thin(laplacian != 0).view(np.uint8)


def decode_human_parts(anno, shape, path, sample_id):
    """`anno` struct of human_parts/<id>.mat -> (H, W) uint8 map: 0 background, 1..6 part
    groups; 255 everywhere when no part pixel is labelled (no person with parts, or only
    empty part masks: the release's AddIgnoreRegions rule, `data.transforms.ignore_partless`).
    Person objects without parts stay background; later parts overwrite earlier ones."""
    target = np.zeros(shape, np.uint8)
    try:
        objects = anno[0, 0]["objects"].ravel()
        for obj in objects:
            if int(np.asarray(obj["class_ind"]).ravel()[0]) != PERSON_CLASS:
                continue
            parts = obj["parts"]
            if parts.size == 0:
                continue
            for part in parts.ravel():
                name = str(np.asarray(part["part_name"]).ravel()[0])
                if name not in PART_GROUPS:
                    raise DataError(f"{path} (sample {sample_id!r}): unknown person part {name!r}")
                mask = np.asarray(part["mask"]).astype(bool)
                check_shape(mask, shape, path, sample_id)
                np.copyto(target, PART_GROUPS[name], where=mask)
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise DataError(f"{path} (sample {sample_id!r}): unexpected 'anno' structure ({err})") from None
    return ignore_partless(target)


def object_classes(anno, path, sample_id):
    """VOC class ids of the objects of a human_parts `anno` struct (the Parts cache entry)."""
    try:
        return [int(np.asarray(obj["class_ind"]).ravel()[0]) for obj in anno[0, 0]["objects"].ravel()]
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise DataError(f"{path} (sample {sample_id!r}): unexpected 'anno' structure ({err})") from None


class LabelCache:
    """Label maps decoded from .mat files (edge, human_parts), kept on disk as PNGs so that
    .mat parsing and thinning happen once per file, not once per epoch.

    An entry is keyed by the source file's absolute path, modification time and size (and
    `VERSION`, bumped whenever a decoder changes): an edited or replaced .mat file is
    decoded afresh. Entries are written atomically (a temporary file renamed into place),
    so workers and ranks may fill the same folder at once. A folder that cannot be
    written only costs speed (one warning).
    """

    VERSION = 1

    def __init__(self, folder):
        self.folder = folder
        self._warned = False

    def _entry(self, kind, source):
        stat = os.stat(source)
        key = f"{self.VERSION}\0{os.path.abspath(source)}\0{stat.st_mtime_ns}\0{stat.st_size}"
        return os.path.join(self.folder, kind, hashlib.sha256(key.encode()).hexdigest() + ".png")

    def get(self, kind, source, shape, decode):
        """The cached (H, W) uint8 map decoded from `source`, else `decode()`, stored."""
        try:
            entry = self._entry(kind, source)
            with open(entry, "rb") as handle:
                encoded = np.frombuffer(handle.read(), np.uint8)
        except OSError:  # no entry yet (or no source: `decode` names it)
            encoded = None
        if encoded is not None:
            cached = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
            if cached is not None and cached.dtype == np.uint8 and cached.shape == tuple(shape):
                return cached
        value = decode()
        self._store(kind, source, value)
        return value

    def _store(self, kind, source, value):
        try:
            entry = self._entry(kind, source)
            ok, encoded = cv2.imencode(".png", value)
            if not ok:
                raise OSError("PNG encoding failed")
            atomic_write(entry, lambda handle: handle.write(encoded.tobytes()))
        except OSError as err:
            if not self._warned:
                warnings.warn(f"label cache {self.folder} not written ({err}); labels are decoded every time")
                self._warned = True


class PascalContext:
    """`PascalContext(root, split, tasks)[i]` -> raw sample dict (docs/conventions.md),
    passed through `transform` when given. `root` is the PASCALContext folder.

    `cache_dir` (optional) keeps the edge and human_parts maps decoded from the .mat files
    (`LabelCache`); the samples are the same with or without it.
    """

    def __init__(self, root, split, tasks, transform=None, cache_dir=None):
        require_dir(root, "PASCAL-Context root")
        self.root = root
        self.split = split
        self.tasks = check_tasks("PASCALContext", tasks, DATASET_TASKS["PASCALContext"])
        self.transform = transform
        self.ids = read_split(os.path.join(root, "ImageSets", "Context", f"{split}.txt"))
        self._part_classes = self._parts_cache() if "human_parts" in self.tasks else None
        self._normals_valid = None
        if "normals" in self.tasks:  # lookup table: Context class id -> normals trusted
            classes = normals_valid_classes()
            self._normals_valid = np.zeros(int(classes.max()) + 1, bool)
            self._normals_valid[classes] = True
        self._cache = LabelCache(cache_dir) if cache_dir else None
        # task -> decoder(sample_id, image (H, W), LabelMap reader) -> raw target
        self._decoders = {"semseg": self._semseg, "human_parts": self._human_parts,
                          "sal": self._sal, "normals": self._normals, "edge": self._edge}

    def __len__(self):
        return len(self.ids)

    def _path(self, *parts):
        return os.path.join(self.root, *parts)

    def _parts_cache(self):
        """ImageSets/Parts/<split>.txt: JSON dict id -> VOC class ids of the annotated objects,
        so images without people need no .mat read (ids it lacks are read from their .mat).
        Rebuilt from the .mat files (and written back when possible) when it is missing."""
        path = self._path("ImageSets", "Parts", f"{self.split}.txt")
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    cache = json.load(handle)
            except (OSError, ValueError) as err:
                raise DataError(f"cannot read the parts cache {path}: {err}") from None
            if not isinstance(cache, dict):
                raise DataError(f"parts cache {path}: expected a JSON object id -> class ids")
            return cache
        cache = {}
        for sample_id in self.ids:
            mat_path = self._path("human_parts", f"{sample_id}.mat")
            cache[sample_id] = object_classes(read_mat(mat_path, sample_id, "anno"), mat_path, sample_id)
        try:
            atomic_write_json(path, cache)  # concurrent ranks write identical content
        except OSError as err:
            warnings.warn(f"could not write the parts cache {path}: {err}")
        return cache

    def _label_map(self, sample_id, shape):
        path = self._path("pascal-context", "trainval", f"{sample_id}.mat")
        label_map = read_mat(path, sample_id, "LabelMap")
        if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.number):
            raise DataError(f"{path} (sample {sample_id!r}): LabelMap must be a 2-D numeric array")
        check_shape(label_map, shape, path, sample_id)
        return label_map

    def _semseg(self, sample_id, shape, label_map):
        path = first_existing([self._path("semseg", "VOC12", f"{sample_id}.png"),
                               self._path("semseg", "pascal-context", f"{sample_id}.png")], sample_id)
        semseg = read_image(path, sample_id)
        if semseg.ndim != 2:
            raise DataError(f"{path} (sample {sample_id!r}): expected a single-channel label PNG")
        check_shape(semseg, shape, path, sample_id)
        bad = (semseg >= len(VOC_CLASSES)) & (semseg != IGNORE_INDEX)
        if bad.any():
            raise DataError(f"{path} (sample {sample_id!r}): class id {int(semseg[bad][0])} "
                            f"outside 0..{len(VOC_CLASSES) - 1} and {IGNORE_INDEX}")
        return semseg.astype(np.uint8)

    def _human_parts(self, sample_id, shape, label_map):
        classes = self._part_classes.get(sample_id)
        if classes is not None and PERSON_CLASS not in classes:
            return np.full(shape, IGNORE_INDEX, np.uint8)
        path = self._path("human_parts", f"{sample_id}.mat")
        def decode():
            return decode_human_parts(read_mat(path, sample_id, "anno"), shape, path, sample_id)
        return self._cache.get("human_parts", path, shape, decode) if self._cache else decode()

    def _normals(self, sample_id, shape, label_map):
        path = self._path("normals_distill", f"{sample_id}.png")
        encoded = read_image(path, sample_id)
        if encoded.ndim != 3 or encoded.shape[2] < 3:
            raise DataError(f"{path} (sample {sample_id!r}): expected an RGB PNG")
        check_shape(encoded, shape, path, sample_id)
        normals = decode_normals(encoded)
        invalid = np.logical_not(self._normals_allowed(label_map())).view(np.uint8)
        return cv2.copyTo(np.full_like(normals, IGNORE_INDEX), invalid, normals)  # 255 where invalid

    def _normals_allowed(self, label_map):
        """(H, W) bool: the Context class of the pixel is in `normals_valid_classes()`."""
        table = self._normals_valid
        if not np.issubdtype(label_map.dtype, np.integer):
            return np.isin(label_map, np.flatnonzero(table))
        inside = (label_map >= 0) & (label_map < len(table))
        return table[np.where(inside, label_map, 0)] & inside

    def _sal(self, sample_id, shape, label_map):
        path = self._path("sal_distill", f"{sample_id}.png")
        saliency = read_image(path, sample_id)
        if saliency.ndim == 3:
            saliency = saliency[..., 0]
        check_shape(saliency, shape, path, sample_id)
        return (saliency.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)

    def _edge(self, sample_id, shape, label_map):
        if self._cache is None:
            return label_boundaries(label_map())
        path = self._path("pascal-context", "trainval", f"{sample_id}.mat")
        return self._cache.get("edge", path, shape, lambda: label_boundaries(label_map()))

    def files(self, index, tasks=None):
        """The files `load(index, tasks)` reads, each as a tuple of alternatives (one must exist)."""
        sample_id = self.ids[index]
        decode = self.tasks if tasks is None else tasks
        needed = [(self._path("JPEGImages", f"{sample_id}.jpg"),)]
        if "edge" in decode or "normals" in decode:
            needed.append((self._path("pascal-context", "trainval", f"{sample_id}.mat"),))
        if "semseg" in decode:
            needed.append((self._path("semseg", "VOC12", f"{sample_id}.png"),
                           self._path("semseg", "pascal-context", f"{sample_id}.png")))
        if "human_parts" in decode:
            classes = self._part_classes.get(sample_id)
            if classes is None or PERSON_CLASS in classes:
                needed.append((self._path("human_parts", f"{sample_id}.mat"),))
        if "normals" in decode:
            needed.append((self._path("normals_distill", f"{sample_id}.png"),))
        if "sal" in decode:
            needed.append((self._path("sal_distill", f"{sample_id}.png"),))
        return needed

    def load(self, index, tasks=None):
        """The raw sample, before `transform`. Only `tasks` (default: all) are decoded; the
        others are all-ignore maps (unlabelled tasks cost no .mat read or thinning)."""
        sample_id = self.ids[index]
        decode = self.tasks if tasks is None else tasks
        image = read_image(self._path("JPEGImages", f"{sample_id}.jpg"), sample_id, mode="RGB")
        shape = image.shape[:2]
        sample = {"image": image}
        label_map = functools.cache(lambda: self._label_map(sample_id, shape))  # read when needed
        for task in self.tasks:
            sample[task] = (self._decoders[task](sample_id, shape, label_map) if task in decode
                            else ignore_target(task, shape))
        sample["meta"] = {"id": sample_id, "size": shape}
        return sample

    def __getitem__(self, index):
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample
