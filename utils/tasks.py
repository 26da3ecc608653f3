"""Task and dataset tables shared by every package (the single source of truth)."""
from utils.errors import ConfigError

# Canonical task order. It matches the column order of the official partial-label
# files: PASCAL [semseg, human_parts, sal, normals, edge], NYUD [semseg, depth, normals],
# Cityscapes [semseg, depth].
TASK_ORDER = ("semseg", "human_parts", "sal", "depth", "normals", "edge")

# Output channels of every task, per dataset.
DATASET_TASKS = {
    "PASCALContext": {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1},
    "NYUD": {"semseg": 40, "depth": 1, "normals": 3, "edge": 1},
    "NYUD_MTAN": {"semseg": 13, "depth": 1, "normals": 3},
    "Cityscapes": {"semseg": 7, "depth": 1},
}

# Label sets a dataset offers besides its default number of semseg classes
# (Cityscapes: label_7 or label_19, `semseg_classes` in the config).
SEMSEG_CLASS_CHOICES = {"Cityscapes": (7, 19)}

# Folder under `db_root` holding each dataset.
DATASET_DIRNAME = {"PASCALContext": "PASCALContext", "NYUD": "NYUDv2", "NYUD_MTAN": "nyuv2",
                   "Cityscapes": "cityscapes"}

# Boundary matching tolerance as a fraction of the image diagonal (docs/metrics.md).
EDGE_MAXDIST = {"PASCALContext": 0.0075, "NYUD": 0.011, "NYUD_MTAN": 0.011, "Cityscapes": None}  # no edge task

# The metrics where lower is better (the errors); higher is better for every other one.
# The one table of metric directions: Delta_m, the refinement gain and best_metric read it.
LOWER_IS_BETTER = frozenset({"mErr", "rmse", "absErr", "relErr"})

# The headline metric of each task (for Delta_m).
TASK_METRIC = {
    "semseg": "mIoU",
    "human_parts": "mIoU",
    "sal": "maxF",
    "depth": "rmse",
    "normals": "mErr",
    "edge": "odsF",
}

# Datasets whose papers report a task with another headline metric: on the MTAN layouts
# (the partial-label protocol of MTPSL, whose NYUD and Cityscapes numbers the paper reports)
# depth is scored by its absolute error (Cityscapes stores inverse depth).
DATASET_TASK_METRIC = {"NYUD_MTAN": {"depth": "absErr"}, "Cityscapes": {"depth": "absErr"}}

# Metric names used by earlier versions -> today's (old configs get a message naming the new one).
RENAMED_METRICS = {"abs_err": "absErr"}

IGNORE_INDEX = 255


def metric_sign(metric):
    """+1.0 where a higher value of `metric` is better, -1.0 where lower is better."""
    return -1.0 if metric in LOWER_IS_BETTER else 1.0


def headline_metric(dataset, task):
    """(metric name, lower is better) of `task` on `dataset` (None: the task's default)."""
    name = DATASET_TASK_METRIC.get(dataset, {}).get(task, TASK_METRIC[task])
    return name, name in LOWER_IS_BETTER


def ordered_tasks(names):
    """Return `names` sorted in the canonical task order."""
    return [t for t in TASK_ORDER if t in set(names)]


def headline_reference(reference_metrics, dataset, task):
    """The reference value of `task`'s headline metric on `dataset`; None when the task has
    no reference. A reference without the headline metric (a typo, an old name such as
    `abs_err`, another column) is a ConfigError rather than a task silently left out."""
    given = reference_metrics.get(task)
    if not given:
        return None
    name = headline_metric(dataset, task)[0]
    if name not in given:
        renamed = [f" ('{old}' is now named '{RENAMED_METRICS[old]}')" for old in given if old in RENAMED_METRICS]
        raise ConfigError(f"reference_metrics.{task}: Delta_m on {dataset or 'this dataset'} compares "
                          f"{task}.{name}, got {sorted(given)}{''.join(renamed[:1])}")
    return given[name]


def check_reference_metrics(reference_metrics, dataset, source):
    """Raise ConfigError (prefixed with `source`, the config file) unless every task's
    reference names the task's headline metric on `dataset`."""
    for task in reference_metrics:
        try:
            headline_reference(reference_metrics, dataset, task)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
