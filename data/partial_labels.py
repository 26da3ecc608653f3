"""Partial-label splits: which tasks are labelled on each training image (docs/datasets.md,
"Partial labels").

Settings (MTPSL protocol): `full` (every task), `onelabel` (exactly one task per image,
tasks balanced: counts differ by at most one) and `randomlabels` (a uniformly random
non-empty, non-full subset per image). Generation is a function of (sorted ids, number
of tasks, setting, seed) only, so the CLI and `build_dataset` produce the same split.

Our file format is JSON (`.json`, or gzip-compressed `.json.gz`): {"dataset", "setting",
"seed", "tasks": [...], "labels": {id: [0/1 per task]}} plus an optional "source". The
paper's splits ship in that format in data/splits/ (converted once from MTPSL's files,
data/splits/README.md). The official `.pth` files also load, with
`torch.load(weights_only=True)` and a three-entry numpy allow-list; they become the same
record. A relative `partial_labels_file` is looked up in the working directory, then in
the project folder, so `data/splits/...` works from anywhere.

CLI:
  python -m data.partial_labels --dataset pascal --root DIR/PASCALContext --setting onelabel \
      --seed 0 --out FILE.json
  python -m data.partial_labels --summary FILE.json|FILE.pth [...]
"""
import argparse
import gzip
import io
import json
import logging
import pickle
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from data.metadata import LAYOUTS
from utils.cli import HelpFormatter
from utils.errors import DataError, DiffusionMTLError
from utils.tasks import DATASET_TASKS, TASK_ORDER

SETTINGS = ("full", "onelabel", "randomlabels")

PROJECT_DIR = Path(__file__).resolve().parents[1]

# A child of the run's logger (utils.logger.setup_logger): a run names its split among its
# first log lines; outside a run (tests, data.check) nothing is printed.
LOGGER = logging.getLogger("diffusionmtl.data")

# Column order of the official split files.
OFFICIAL_TASKS = {
    "PASCALContext": ("semseg", "human_parts", "sal", "normals", "edge"),
    "NYUD_MTAN": ("semseg", "depth", "normals"),
    "Cityscapes": ("semseg", "depth"),
}

# Official `{'labels_weights': (N, T)}` files (MTPSL): rows = MTAN train index; the number
# of columns tells the dataset.
WEIGHT_FILE_DATASETS = {len(OFFICIAL_TASKS[name]): name for name in ("NYUD_MTAN", "Cityscapes")}


def generate(dataset, ids, tasks, setting, seed):
    """A deterministic split record for `ids` (any order) and `tasks`."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected one of {SETTINGS}")
    if setting != "full" and len(tasks) < 2:
        raise ValueError(f"setting '{setting}' needs at least two tasks, got {list(tasks)}")
    order = sorted(str(i) for i in ids)
    num_images, num_tasks = len(order), len(tasks)
    rng = np.random.default_rng(seed)
    if setting == "full":
        labels = np.ones((num_images, num_tasks), dtype=np.int64)
    elif setting == "onelabel":
        # Deal tasks round-robin (in a random task order), then shuffle over images.
        which = rng.permutation(num_tasks)[np.arange(num_images) % num_tasks]
        labels = np.eye(num_tasks, dtype=np.int64)[rng.permutation(which)]
    else:
        # Subsets as bit codes 1 .. 2^T - 2: uniform over the non-empty, non-full ones.
        codes = rng.integers(1, 2**num_tasks - 1, size=num_images)
        labels = (codes[:, None] >> np.arange(num_tasks)) & 1
    return {
        "dataset": dataset,
        "setting": setting,
        "seed": seed,
        "tasks": list(tasks),
        "labels": {image_id: row.tolist() for image_id, row in zip(order, labels)},
    }


def save_json(record, path):
    """Write `record` as JSON, one image per line; gzip-compressed when `path` ends in .gz
    (with no time stamp or name in the header: the same record gives the same bytes)."""
    keys = [key for key in ("dataset", "setting", "seed", "source", "tasks") if key in record]
    head = "".join(f"  {json.dumps(key)}: {json.dumps(record[key])},\n" for key in keys)
    rows = ",\n".join(f"    {json.dumps(image_id)}: {json.dumps(row)}"
                      for image_id, row in record["labels"].items())
    text = "{\n" + head + '  "labels": {\n' + rows + "\n  }\n}\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if str(path).endswith(".gz"):
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as handle:
            handle.write(text.encode("utf-8"))
        Path(path).write_bytes(buffer.getvalue())
    else:
        Path(path).write_text(text, encoding="utf-8")


def _numpy_allowlist():
    """The globals the official PASCAL pickles need, and nothing more (docs/datasets.md,
    "Partial labels")."""
    try:
        from numpy._core.multiarray import scalar  # NumPy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar
    # The files name the scalar reconstructor by its NumPy 1 path.
    allow = [(scalar, "numpy.core.multiarray.scalar"), np.dtype]
    if hasattr(np, "dtypes"):
        allow.append(np.dtypes.StrDType)
    return allow


def _setting_from_name(path):
    return next((s for s in ("onelabel", "randomlabels") if s in Path(path).name), None)


def _load_official(path):
    try:
        with torch.serialization.safe_globals(_numpy_allowlist()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise DataError(f"{path}: cannot load partial-label file safely: {err}") from None
    if isinstance(obj, dict) and "labels_weights" in obj:  # NYUD / Cityscapes: rows = MTAN train index
        weights = obj["labels_weights"]
        if (not isinstance(weights, torch.Tensor) or weights.ndim != 2
                or weights.shape[1] not in WEIGHT_FILE_DATASETS):
            expected = " or ".join(f"(N, {len(OFFICIAL_TASKS[d])}) for {d} {list(OFFICIAL_TASKS[d])}"
                                   for d in WEIGHT_FILE_DATASETS.values())
            raise DataError(f"{path}: 'labels_weights' must be a tensor {expected}")
        dataset = WEIGHT_FILE_DATASETS[weights.shape[1]]
        tasks = OFFICIAL_TASKS[dataset]
        labels = {str(row): [int(v != 0) for v in values] for row, values in enumerate(weights.tolist())}
    elif isinstance(obj, dict):  # PASCAL: image id -> list of 5 ints
        tasks = OFFICIAL_TASKS["PASCALContext"]
        labels = {}
        for image_id, values in obj.items():
            if not isinstance(values, (list, tuple)) or len(values) != len(tasks):
                raise DataError(f"{path}: image '{image_id}' has {values!r}, expected {len(tasks)} "
                                f"values for tasks {list(tasks)}")
            labels[str(image_id)] = [int(v != 0) for v in values]
        dataset = "PASCALContext"
    else:
        raise DataError(f"{path}: not a partial-label file (got {type(obj).__name__})")
    return {"dataset": dataset, "setting": _setting_from_name(path), "seed": None,
            "tasks": list(tasks), "labels": labels}


def _load_json(path):
    try:
        raw = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
        record = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read partial-label JSON: {err}") from None
    if not isinstance(record, dict) or not {"tasks", "labels"} <= set(record):
        raise DataError(f"{path}: expected a JSON object with 'tasks' and 'labels'")
    tasks, labels = record["tasks"], record["labels"]
    if not isinstance(tasks, list) or not tasks or any(t not in TASK_ORDER for t in tasks):
        raise DataError(f"{path}: 'tasks' must be a list of task names from {list(TASK_ORDER)}, "
                        f"got {tasks!r}")
    if not isinstance(labels, dict):
        raise DataError(f"{path}: 'labels' must map image ids to lists of 0/1")
    for image_id, row in labels.items():
        if not isinstance(row, list) or len(row) != len(tasks) or any(v not in (0, 1) for v in row):
            raise DataError(f"{path}: image '{image_id}' has {row!r}, expected {len(tasks)} values "
                            f"(0/1) for tasks {tasks}")
    if not isinstance(record.get("source", {}), dict):
        raise DataError(f"{path}: 'source' must be a JSON object (where the split comes from)")
    record.setdefault("dataset", None)
    record.setdefault("setting", None)
    record.setdefault("seed", None)
    return record


def resolve_split_path(path):
    """`path` as given when it exists (or is absolute); else, for a relative path, the same
    path inside the project folder when it exists there (the shipped data/splits/ files,
    whatever the working directory)."""
    path = Path(path)
    if path.is_absolute() or path.exists() or not (PROJECT_DIR / path).exists():
        return path
    return PROJECT_DIR / path


def load_partial_labels(path):
    """Load our JSON (.json / .json.gz) or an official `.pth` split as a record. Raises DataError."""
    given, path = str(path), str(resolve_split_path(path))
    if not Path(path).is_file():
        where = "" if Path(given).is_absolute() else f" (looked in the working directory and in {PROJECT_DIR})"
        raise DataError(f"partial-label file not found: {given}{where}")
    if path.endswith((".json", ".json.gz")):
        return _load_json(path)
    if path.endswith((".pth", ".pt")):
        return _load_official(path)
    raise DataError(f"{path}: unknown partial-label format; expected .json, .json.gz or .pth")


def task_mask_table(record, ids, tasks, source):
    """(N, T) bool: row i = ids[i], columns = `tasks` (mapped by name). Raises DataError."""
    missing_tasks = [t for t in tasks if t not in record["tasks"]]
    if missing_tasks:
        raise DataError(f"{source}: labels tasks {record['tasks']}, which lack {missing_tasks} "
                        f"needed by this run ({list(tasks)})")
    known = set(ids)
    absent = [i for i in record["labels"] if i not in known]
    if absent:
        raise DataError(f"{source}: {len(absent)} of its {len(record['labels'])} image ids are not in the "
                        f"dataset's training split of {len(ids)} images (first: {absent[:5]}); is it for "
                        f"another dataset, or is the dataset incomplete?")
    missing = [i for i in ids if i not in record["labels"]]
    if missing:
        raise DataError(f"{source}: does not cover {len(missing)} of the {len(ids)} training images "
                        f"(e.g. {missing[:3]}); is it for another dataset?")
    columns = [record["tasks"].index(t) for t in tasks]
    table = np.array([record["labels"][i] for i in ids], dtype=bool).reshape(len(ids), -1)
    return table[:, columns]


def split_source(cfg):
    """Where the training split's labels come from, in words (the log and data.check say it)."""
    if cfg.ssl_type == "full":
        return "none (ssl_type full: every task labelled on every image)"
    if cfg.partial_labels_file:
        return f"{cfg.ssl_type} split {resolve_split_path(cfg.partial_labels_file)}"
    return f"generated {cfg.ssl_type} split (seed {cfg.seed}; partial_labels_file is null)"


def build_task_masks(cfg, ids):
    """(N, T) bool task mask of the training images `ids` for `cfg.ssl_type`; logs its source."""
    tasks = cfg.TASKS.NAMES
    source = split_source(cfg)
    if cfg.ssl_type == "full":
        masks = np.ones((len(ids), len(tasks)), dtype=bool)
    elif cfg.partial_labels_file:
        record = load_partial_labels(cfg.partial_labels_file)
        if record["setting"] is not None and record["setting"] != cfg.ssl_type:
            raise DataError(f"{cfg.partial_labels_file}: is a '{record['setting']}' split but ssl_type is "
                            f"'{cfg.ssl_type}'")
        origin = (record.get("source") or {}).get("origin")
        if origin:
            source += f" ({origin})"
        masks = task_mask_table(record, ids, tasks, cfg.partial_labels_file)
    else:
        masks = task_mask_table(generate(cfg.train_db_name, ids, tasks, cfg.ssl_type, cfg.seed), ids, tasks, source)
    counts = ", ".join(f"{task} {count}" for task, count in zip(tasks, masks.sum(axis=0).tolist()))
    LOGGER.info(f"partial labels: {source}; labelled training images per task: {counts}")
    return masks


def train_ids(dataset, root):
    """Training-split ids of a dataset folder, read from its split files (no images loaded)."""
    root = Path(root)
    if dataset in ("NYUD_MTAN", "Cityscapes"):  # MTAN layouts: ids are the row indices
        folder = root / "train" / "image"
        if not folder.is_dir():
            raise DataError(f"{dataset} training images not found: {folder}")
        return sorted((p.stem for p in folder.glob("*.npy")), key=int)
    split = root / ("ImageSets/Context/train.txt" if dataset == "PASCALContext" else "gt_sets/train.txt")
    if not split.is_file():
        raise DataError(f"training split file not found: {split}")
    return [line.strip() for line in split.read_text().splitlines() if line.strip()]


def summarize(record):
    """Per-task label counts and the histogram of labelled tasks per image."""
    table = np.array(list(record["labels"].values()), dtype=np.int64).reshape(len(record["labels"]), -1)
    per_image = Counter(table.sum(axis=1).tolist())
    return {
        "dataset": record["dataset"],
        "setting": record["setting"],
        "num_images": len(table),
        "tasks": record["tasks"],
        "labels_per_task": dict(zip(record["tasks"], table.sum(axis=0).tolist())),
        "tasks_per_image": {str(k): per_image[k] for k in sorted(per_image)},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--summary", metavar="FILE", nargs="+",
                        help="print the statistics of .json or .pth splits, one JSON object per file")
    parser.add_argument("--dataset", choices=sorted(LAYOUTS), help="which dataset the split is for")
    parser.add_argument("--root", help="the dataset folder, e.g. demo_data/PASCALContext")
    parser.add_argument("--setting", choices=SETTINGS, default="onelabel", help="partial-label setting")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same split")
    parser.add_argument("--tasks", help="comma-separated tasks (default: all tasks of the dataset)")
    parser.add_argument("--out", help="output .json file")
    args = parser.parse_args(argv)
    try:
        if args.summary:
            for path in args.summary:
                print(json.dumps({"file": path, **summarize(load_partial_labels(path))}))
            return 0
        if not (args.dataset and args.root and args.out):
            parser.error("--dataset, --root and --out are required to generate a split")
        dataset = LAYOUTS[args.dataset]
        tasks = args.tasks.split(",") if args.tasks else list(DATASET_TASKS[dataset])
        unknown = [t for t in tasks if t not in DATASET_TASKS[dataset]]
        if unknown:
            parser.error(f"--tasks: {unknown} not available on {dataset}: {list(DATASET_TASKS[dataset])}")
        if args.setting != "full" and len(tasks) < 2:
            parser.error(f"--setting {args.setting} needs at least two tasks")
        tasks = [t for t in TASK_ORDER if t in tasks]
        record = generate(dataset, train_ids(dataset, args.root), tasks, args.setting, args.seed)
        save_json(record, args.out)
        print(json.dumps({"file": args.out, **summarize(record)}))
    except DiffusionMTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
