"""Configuration: YAML -> validated, read-only EasyDict.

All defaults live in `DEFAULTS`; `derive()` is the only place computed fields are set.
Keys keep the public release's names (trBatch, task_dictionary, ...) where they exist.
"""
import copy
import difflib
import os

import yaml
from easydict import EasyDict

from utils.errors import ConfigError
from utils.tasks import (DATASET_DIRNAME, DATASET_TASKS, EDGE_MAXDIST, SEMSEG_CLASS_CHOICES, TASK_ORDER,
                         headline_metric)

DB_ROOT_ENV = "DIFFUSIONMTL_DB_ROOT"
DATASETS = tuple(DATASET_TASKS)

DEFAULTS = {
    "version_name": "diffusionmtl",  # run name; the run folder is output_dir/version_name
    "train_db_name": "PASCALContext",
    "val_db_name": "PASCALContext",
    "db_root": None,  # folder holding the dataset folders; else $DIFFUSIONMTL_DB_ROOT
    "output_dir": "work_dirs",
    "seed": 0,
    "trBatch": 6,  # per-process batch
    "valBatch": 6,
    "nworkers": 2,
    "label_cache": True,  # PASCAL-Context: keep the labels decoded from .mat files (edge,
    # human_parts) as PNGs in output_dir/label_cache, so .mat parsing and thinning happen once
    "num_threads": None,  # CPU intra-op threads per process; null: $DIFFUSIONMTL_NUM_THREADS,
    # $OMP_NUM_THREADS, else the available cores / local processes, less room for loader workers
    "epochs": 100,  # used when max_iter is null
    "max_iter": None,
    "val_interval": 1000,  # iterations between evaluations
    "eval_at_start": False,  # also evaluate the untrained model (a baseline for the log)
    "log_interval": 20,  # iterations between log lines / TensorBoard scalars
    "ckpt_interval": 500,  # iterations between last.pth writes (also at every eval)
    "optimizer": "adam",
    "optimizer_kwargs": {"lr": 2e-5, "weight_decay": 1e-6, "momentum": 0.9},
    "scheduler": "poly",
    "scheduler_kwargs": {"power": 0.9},
    "model": "DiffusionMTL",
    "backbone": "resnet18",
    "backbone_kwargs": {
        "pretrained": None,  # true: timm / torchvision ImageNet weights (downloaded and cached by
        # those libraries); a path: a local weight file; null / false: random initialisation
        "drop_path_rate": 0.0,
        "num_taps": 4,  # ViT: blocks tapped as feature maps
        "patch_size": None,  # ViT: override the model's patch size
        "depth": None,  # ViT: override the number of blocks
    },
    "model_kwargs": {
        "embed_dim": 512,
        "fuse_stride": 8,  # all backbone maps are resized to this stride
        "prelim_blocks": 2,  # residual blocks per preliminary decoder
        "variant": "feature",  # feature | prediction diffusion
        "conditioning": "multitask",  # multitask | none
        "diffusion": True,  # false: same network as a plain iterative refiner
        "denoiser_depth": 4,
        "num_heads": 4,
        "mlp_ratio": 4.0,
        "token_stride": 4,  # denoiser tokens = fused map downsampled by this
        "head_convs": 3,  # 3x3 convs in each task's output stack
        "beta_schedule": "linear",  # linear (in sqrt(beta), as latent diffusion names it) | sqrt_linear | cosine
        "beta_start": 1e-3,
        "beta_end": 1e-2,
        "eval_noise": "zero",  # zero | seeded: deterministic noise at evaluation
        "eval_seed": 0,
    },
    "num_timesteps": 2,  # reverse diffusion steps
    "task_dictionary": {
        "include_semseg": False,
        "include_human_parts": False,
        "include_sal": False,
        "include_depth": False,
        "include_normals": False,
        "include_edge": False,
        "edge_w": 0.95,  # positive-class weight of the boundary BCE
    },
    "loss_kwargs": {
        "loss_weights": {
            "semseg": 1.0,
            "human_parts": 2.0,
            "sal": 5.0,
            "depth": 1.0,
            "normals": 10.0,
            "edge": 50.0,
        },
        "prelim_weight": 0.5,  # weight of the preliminary predictions' loss
    },
    "grad_clip_param": {"max_norm": 10.0, "norm_type": 2.0},
    "ignore_index": 255,
    "semseg_classes": None,  # null = the dataset's label set; Cityscapes: 7 or 19
    "ssl_type": "onelabel",  # full | onelabel | randomlabels
    "partial_labels_file": None,  # .json (ours) or official .pth; else generated from seed
    "train_size": [512, 512],  # crop size
    "val_size": [512, 512],  # pad size
    "amp": False,  # bf16 autocast (GPU only)
    "sync_bn": True,  # SyncBatchNorm when running distributed on GPU
    "channels_last": True,  # NHWC weights and inputs (faster convolutions with cuDNN and oneDNN)
    "compile": False,  # torch.compile backbone, decoders and denoiser blocks (a warm-up of minutes)
    "eval_kwargs": {
        "edge_thresholds_train": 9,
        "edge_thresholds_infer": 99,
        "edge_images_train": 0,  # > 0: boundary ODS-F on the first N val images during training
        "edge_workers": 0,  # boundary-matching processes; 0 = the CPU cores shared among local ranks
        "edge_maxdist": None,  # null = the dataset's standard tolerance
        "save_predictions": False,  # run_mode=infer: write per-image PNGs
    },
    "best_metric": None,  # delta_m or "<task>.<metric>" (semseg.mIoU); null: delta_m when
    # reference_metrics are given, else the first task's headline metric
    "reference_metrics": {},  # task -> {metric: value}, the Delta_m baseline
    "tb_images": 4,  # images shown in TensorBoard per evaluation
}

# Keys whose default is None (or a free-form dict) need their accepted types spelt out.
TYPES = {
    "db_root": (str, type(None)),
    "max_iter": (int, type(None)),
    "backbone_kwargs.pretrained": (bool, str, type(None)),
    "num_threads": (int, type(None)),
    "backbone_kwargs.patch_size": (int, type(None)),
    "backbone_kwargs.depth": (int, type(None)),
    "partial_labels_file": (str, type(None)),
    "semseg_classes": (int, type(None)),
    "eval_kwargs.edge_maxdist": (float, type(None)),
    "best_metric": (str, type(None)),
}
CHOICES = {
    "train_db_name": DATASETS,
    "val_db_name": DATASETS,
    "optimizer": ("adam", "adamw", "sgd"),
    "scheduler": ("poly", "constant"),
    "model": ("DiffusionMTL",),
    "model_kwargs.variant": ("feature", "prediction", "baseline"),
    "model_kwargs.conditioning": ("multitask", "none"),
    "model_kwargs.beta_schedule": ("linear", "sqrt_linear", "cosine"),
    "model_kwargs.eval_noise": ("zero", "seeded"),
    "ssl_type": ("full", "onelabel", "randomlabels"),
}
FREE_FORM = ("reference_metrics",)  # validated in derive()


def _type_name(types):
    return " or ".join(t.__name__ if t is not type(None) else "null" for t in types)


def _check(key, value, default, source):
    """Type-check one leaf value against its default (ints are accepted for floats)."""
    types = TYPES.get(key)
    if types is None:
        types = (type(default),)
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if float in types and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{source}: key '{key}' must be {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"{source}: key '{key}' must be {_type_name(types)}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{source}: key '{key}' must be one of {list(CHOICES[key])}, got {value!r}")
    return value


def _merge(base, update, source, prefix=""):
    """Merge `update` into `base` (a copy of DEFAULTS), rejecting unknown keys."""
    if not isinstance(update, dict):
        raise ConfigError(f"{source}: '{prefix or '<top level>'}' must be a mapping")
    for key, value in update.items():
        full = f"{prefix}{key}"
        if key not in base:
            close = difflib.get_close_matches(str(key), list(base), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown key '{full}'{hint}")
        if full in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: key '{full}' must be a mapping")
            base[key] = copy.deepcopy(value)
        elif isinstance(base[key], dict):
            _merge(base[key], value, source, prefix=f"{full}.")
        elif isinstance(base[key], list):
            if not isinstance(value, list) or len(value) != len(base[key]):
                raise ConfigError(f"{source}: key '{full}' must be a list of {len(base[key])} values")
            base[key] = [_check(full, v, base[key][0], source) for v in value]
        else:
            base[key] = _check(full, value, base[key], source)


def _parse_opts(opts):
    """['a.b=1', 'c=x'] -> nested dict; values parsed as YAML scalars (safe_load)."""
    tree = {}
    for item in opts or []:
        if "=" not in item:
            raise ConfigError(f"--opts: expected key=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--opts: cannot parse value of '{key}': {err}") from None
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def derive(cfg, source):
    """Compute every derived field in one place; the result is not changed afterwards."""
    tasks_available = DATASET_TASKS[cfg.train_db_name]
    if cfg.val_db_name != cfg.train_db_name:
        raise ConfigError(f"{source}: train_db_name and val_db_name must match "
                          f"({cfg.train_db_name} vs {cfg.val_db_name})")
    wanted = [t for t in TASK_ORDER if cfg.task_dictionary[f"include_{t}"]]
    if not wanted:
        raise ConfigError(f"{source}: task_dictionary includes no task")
    for task in wanted:
        if task not in tasks_available:
            raise ConfigError(f"{source}: task '{task}' (task_dictionary.include_{task}) is not "
                              f"available on {cfg.train_db_name}; available: {list(tasks_available)}")
    if cfg.ssl_type != "full" and len(wanted) < 2:
        raise ConfigError(f"{source}: ssl_type '{cfg.ssl_type}' needs at least two tasks")
    num_output = dict(tasks_available)
    if cfg.semseg_classes is not None:
        choices = SEMSEG_CLASS_CHOICES.get(cfg.train_db_name, (tasks_available.get("semseg"),))
        if cfg.semseg_classes not in choices:
            raise ConfigError(f"{source}: key 'semseg_classes' must be null or one of {list(choices)} "
                              f"on {cfg.train_db_name}, got {cfg.semseg_classes}")
        num_output["semseg"] = cfg.semseg_classes
    cfg.TASKS = EasyDict({"NAMES": wanted, "NUM_OUTPUT": {t: num_output[t] for t in wanted}})

    for task, metrics in cfg.reference_metrics.items():
        if task not in wanted or not isinstance(metrics, dict):
            raise ConfigError(f"{source}: reference_metrics.{task}: expected a mapping for one of {wanted}")

    if cfg.best_metric is None:
        first = wanted[0]
        headline = headline_metric(cfg.train_db_name, first)[0]
        cfg.best_metric = "delta_m" if cfg.reference_metrics else f"{first}.{headline}"
    elif cfg.best_metric == "delta_m" and not cfg.reference_metrics:
        raise ConfigError(f"{source}: best_metric 'delta_m' needs reference_metrics")
    elif cfg.best_metric != "delta_m":
        task, _, metric = cfg.best_metric.partition(".")
        if task not in wanted or not metric:
            raise ConfigError(f"{source}: best_metric must be 'delta_m' or '<task>.<metric>' with a task "
                              f"of {wanted}, got '{cfg.best_metric}'")

    positive = ("trBatch", "valBatch", "val_interval", "log_interval", "ckpt_interval", "num_timesteps",
                "eval_kwargs.edge_thresholds_train", "eval_kwargs.edge_thresholds_infer")
    for name in positive:
        value = cfg[name] if "." not in name else cfg.eval_kwargs[name.split(".")[1]]
        if value < 1:
            raise ConfigError(f"{source}: key '{name}' must be >= 1, got {value}")
    model_kwargs = cfg.model_kwargs
    for name in ("embed_dim", "fuse_stride", "token_stride", "num_heads"):
        if model_kwargs[name] < 1:
            raise ConfigError(f"{source}: key 'model_kwargs.{name}' must be >= 1, got {model_kwargs[name]}")
    for name in ("denoiser_depth", "prelim_blocks", "head_convs"):
        if model_kwargs[name] < 0:
            raise ConfigError(f"{source}: key 'model_kwargs.{name}' must be >= 0, got {model_kwargs[name]}")
    if model_kwargs.embed_dim % model_kwargs.num_heads:
        raise ConfigError(f"{source}: model_kwargs.embed_dim ({model_kwargs.embed_dim}) must be divisible "
                          f"by model_kwargs.num_heads ({model_kwargs.num_heads})")
    for name in ("edge_workers", "edge_images_train"):
        if cfg.eval_kwargs[name] < 0:
            raise ConfigError(f"{source}: key 'eval_kwargs.{name}' must be >= 0")
    if cfg.max_iter is not None and cfg.max_iter < 1:
        raise ConfigError(f"{source}: key 'max_iter' must be >= 1 or null, got {cfg.max_iter}")
    for name in ("train_size", "val_size"):
        if any(v < 32 for v in cfg[name]):
            raise ConfigError(f"{source}: key '{name}' must be at least 32 pixels, got {cfg[name]}")

    db_root = cfg.db_root or os.environ.get(DB_ROOT_ENV)
    if not db_root:
        raise ConfigError(f"{source}: no dataset root; set 'db_root' in the config, pass "
                          f"--opts db_root=DIR, or set ${DB_ROOT_ENV}")
    cfg.train_db_dir = os.path.join(db_root, DATASET_DIRNAME[cfg.train_db_name])
    cfg.val_db_dir = os.path.join(db_root, DATASET_DIRNAME[cfg.val_db_name])
    cfg.run_dir = os.path.join(cfg.output_dir, cfg.version_name)
    if cfg.eval_kwargs.edge_maxdist is not None:
        cfg.edge_maxdist = cfg.eval_kwargs.edge_maxdist
    else:
        cfg.edge_maxdist = EDGE_MAXDIST[cfg.val_db_name]
    return cfg


# Keys that may change when a run is continued (budget, logging, evaluation, where the
# data lives); any other difference means a different experiment in the same folder.
RESUMABLE_KEYS = ("max_iter", "epochs", "val_interval", "eval_at_start", "log_interval", "ckpt_interval",
                  "nworkers", "num_threads", "valBatch", "db_root", "output_dir", "eval_kwargs", "tb_images",
                  "channels_last", "compile", "label_cache")
DERIVED_KEYS = ("TASKS", "train_db_dir", "val_db_dir", "run_dir", "edge_maxdist")


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in FREE_FORM:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(old, new):
    """'key: old -> new' for every key outside RESUMABLE_KEYS / DERIVED_KEYS that differs.

    `old` is the plain config stored in a run's checkpoint; keys it lacks (added to the
    code later) count as their default.
    """
    skip = RESUMABLE_KEYS + DERIVED_KEYS
    old_flat, new_flat, defaults = _flatten(old), _flatten(new), _flatten(DEFAULTS)
    changes = []
    for key in sorted(set(old_flat) | set(new_flat)):
        if key.split(".")[0] in skip:
            continue
        before, after = old_flat.get(key, defaults.get(key)), new_flat.get(key, defaults.get(key))
        if before != after and not (isinstance(before, list) and tuple(before) == tuple(after or ())):
            changes.append(f"{key}: {before!r} -> {after!r}")
    return changes


def stored_config(cfg):
    """The config as written to a run folder / checkpoint: plain types, no derived fields."""
    return {k: copy.deepcopy(v) for k, v in _plain(cfg).items() if k not in DERIVED_KEYS}


def _plain(tree):
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_plain(v) for v in tree]
    return tree


def config_from_dict(raw, source, opts=None):
    """Validate a stored config (a checkpoint's `config`) like a YAML file; derived fields
    in it are recomputed, not trusted."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: no config stored in it; pass the training config file")
    cfg = copy.deepcopy(DEFAULTS)
    _merge(cfg, {k: v for k, v in raw.items() if k not in DERIVED_KEYS}, source)
    _merge(cfg, _parse_opts(opts), f"{source} (--opts)")
    return derive(EasyDict(cfg), source)


def load_config(path, opts=None):
    """Load `path`, apply `--opts` overrides, validate, derive. Raises ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    cfg = copy.deepcopy(DEFAULTS)
    _merge(cfg, raw, path)
    _merge(cfg, _parse_opts(opts), f"{path} (--opts)")
    return derive(EasyDict(cfg), path)
