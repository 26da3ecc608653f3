"""Configuration: YAML -> validated, frozen EasyDict.

Every key is one row of `SCHEMA` (default, accepted values, meaning); `derive()` is the only
place computed fields are set, and the config it returns cannot be changed. Keys keep the
public release's names (trBatch, task_dictionary, ...) where they exist.
"""
import copy
import difflib
import os

import yaml
from easydict import EasyDict

from utils.errors import ConfigError
from utils.files import atomic_write_text
from utils.tasks import (DATASET_DIRNAME, DATASET_TASKS, EDGE_MAXDIST, RENAMED_METRICS, SEMSEG_CLASS_CHOICES,
                         TASK_ORDER, check_reference_metrics, headline_metric)

DB_ROOT_ENV = "DIFFUSIONMTL_DB_ROOT"
DATASETS = tuple(DATASET_TASKS)

NUMBER = (float,)  # ints are accepted for floats
OPTIONAL_INT, OPTIONAL_STR, OPTIONAL_FLOAT = (int, type(None)), (str, type(None)), (float, type(None))


class Key:
    """One config key: its default, what it accepts (types, or a list of choices), its meaning."""

    def __init__(self, default, help, types=None, choices=None):
        self.default, self.help, self.choices = default, help, choices
        self.types = types or (type(default),)


# The whole schema, in one table: dotted key -> Key. Defaults, accepted values and the
# one-line help of `python main.py --config_keys` all come from here.
SCHEMA = {
    "version_name": Key("diffusionmtl", "run name; the run folder is output_dir/version_name"),
    "train_db_name": Key("PASCALContext", "training dataset", choices=DATASETS),
    "val_db_name": Key("PASCALContext", "validation dataset (the same as train_db_name)", choices=DATASETS),
    "db_root": Key(None, "folder holding the dataset folders; else $DIFFUSIONMTL_DB_ROOT", OPTIONAL_STR),
    "output_dir": Key("work_dirs", "folder of the run folders"),
    "seed": Key(0, "seed of the weights, the augmentation, the partial-label split and the noise"),
    "trBatch": Key(6, "training batch per process"),
    "valBatch": Key(6, "evaluation batch per process"),
    "nworkers": Key(2, "data-loader worker processes per process (capped at the usable cores)"),
    "label_cache": Key(True, "PASCAL-Context: keep the labels decoded from .mat files as PNGs in "
                             "output_dir/label_cache (parsing and thinning happen once)"),
    "num_threads": Key(None, "CPU threads per process; null: $DIFFUSIONMTL_NUM_THREADS, $OMP_NUM_THREADS, else "
                             "the usable cores / local processes, less room for loader workers", OPTIONAL_INT),
    "epochs": Key(100, "training length when max_iter is null"),
    "max_iter": Key(None, "training length in iterations (null: epochs)", OPTIONAL_INT),
    "val_interval": Key(1000, "iterations between evaluations (and at the last iteration)"),
    "eval_at_start": Key(False, "also evaluate the untrained model (a baseline for the log)"),
    "log_interval": Key(20, "iterations between log lines / TensorBoard scalars (also the first and last)"),
    "ckpt_interval": Key(500, "iterations between last.pth writes (also at every evaluation)"),
    "optimizer": Key("adam", "optimizer", choices=("adam", "adamw", "sgd")),
    "optimizer_kwargs.lr": Key(2e-5, "learning rate", NUMBER),
    "optimizer_kwargs.weight_decay": Key(1e-6, "weight decay", NUMBER),
    "optimizer_kwargs.momentum": Key(0.9, "SGD momentum", NUMBER),
    "scheduler": Key("poly", "learning-rate schedule (its granularity: scheduler_interval)",
                     choices=("poly", "constant")),
    "scheduler_kwargs.power": Key(0.9, "poly: lr = lr0 * (1 - it / total) ** power", NUMBER),
    "scheduler_interval": Key("iteration", "poly's 'it / total': iterations (down to 0 at the end) or whole "
                                           "epochs completed / the run's epochs (the release: constant within an "
                                           "epoch, never 0; an epoch = the loader's batches per epoch, resume-exact)",
                              choices=("iteration", "epoch")),
    "keep_zero_grads": Key(False, "true: zero_grad keeps zero tensors (set_to_none=False, as torch 1.10 ran the "
                                  "release): a parameter stepped once keeps getting momentum and weight-decay "
                                  "steps when no sample labels its task (a never-used one stays None); false: "
                                  "gradients set to None, unlabelled tasks' parameters stand still"),
    "model": Key("DiffusionMTL", "network", choices=("DiffusionMTL",)),
    "backbone": Key("resnet18", "backbone: resnet18 / resnet50 / any timm ViT name"),
    "backbone_kwargs.pretrained": Key(None, "true: timm / torchvision ImageNet weights (downloaded and cached by "
                                            "those libraries); a path: a local weight file; null / false: random",
                                      (bool, str, type(None))),
    "backbone_kwargs.drop_path_rate": Key(0.0, "ViT stochastic depth", NUMBER),
    "backbone_kwargs.num_taps": Key(4, "ViT: blocks tapped as feature maps"),
    "backbone_kwargs.patch_size": Key(None, "ViT: override the model's patch size", OPTIONAL_INT),
    "backbone_kwargs.depth": Key(None, "ViT: override the number of blocks", OPTIONAL_INT),
    "model_kwargs.embed_dim": Key(512, "channels of the fused map, decoders and denoiser"),
    "model_kwargs.fuse_stride": Key(8, "all backbone maps are resized to this stride"),
    "model_kwargs.prelim_blocks": Key(2, "residual blocks per preliminary decoder"),
    "model_kwargs.variant": Key("feature", "feature / prediction diffusion, or baseline (no refinement stage)",
                                choices=("feature", "prediction", "baseline")),
    "model_kwargs.conditioning": Key("multitask", "multitask: condition on all tasks' predictions; none (ablation)",
                                     choices=("multitask", "none")),
    "model_kwargs.diffusion": Key(True, "false: the same network as a plain iterative refiner (ablation)"),
    "model_kwargs.denoiser_depth": Key(4, "cross-attention blocks of the denoiser"),
    "model_kwargs.num_heads": Key(4, "attention heads"),
    "model_kwargs.mlp_ratio": Key(4.0, "MLP width / embed_dim", NUMBER),
    "model_kwargs.token_stride": Key(4, "denoiser tokens = fused map downsampled by this"),
    "model_kwargs.head_convs": Key(3, "3x3 convs in each task's output stack"),
    "model_kwargs.beta_schedule": Key("linear", "linear (in sqrt(beta), as latent diffusion names it) / "
                                                "sqrt_linear / cosine", choices=("linear", "sqrt_linear", "cosine")),
    "model_kwargs.beta_start": Key(1e-3, "first beta", NUMBER),
    "model_kwargs.beta_end": Key(1e-2, "last beta", NUMBER),
    "model_kwargs.eval_noise": Key("zero", "noise at evaluation: zero or seeded (deterministic either way)",
                                   choices=("zero", "seeded")),
    "model_kwargs.eval_seed": Key(0, "seed of eval_noise: seeded"),
    "model_kwargs.refine_residual_norm": Key(False, "true: each task's output conv stack in the refinement stage "
                                                     "becomes a residual block with a GroupNorm-ed branch (not in "
                                                     "the release: refined normals otherwise collapse)"),
    "model_kwargs.refine_from_prelim": Key("none", "tasks whose refined map is the detached preliminary map plus a "
                                                   "zero-initialised correction (not in the release): none / "
                                                   "normals / all; feature diffusion only",
                                           choices=("none", "normals", "all")),
    "num_timesteps": Key(2, "reverse diffusion steps"),
    **{f"task_dictionary.include_{task}": Key(False, f"train and evaluate {task}") for task in TASK_ORDER},
    "task_dictionary.edge_w": Key(0.95, "positive-class weight of the boundary BCE", NUMBER),
    **{f"loss_kwargs.loss_weights.{task}": Key(weight, f"loss weight of {task}", NUMBER)
       for task, weight in (("semseg", 1.0), ("human_parts", 2.0), ("sal", 5.0), ("depth", 1.0), ("normals", 10.0),
                            ("edge", 50.0))},
    "loss_kwargs.prelim_weight": Key(0.5, "weight of the preliminary predictions' loss", NUMBER),
    "grad_clip_param.max_norm": Key(10.0, "gradient-norm clipping", NUMBER),
    "grad_clip_param.norm_type": Key(2.0, "norm of the clipping", NUMBER),
    "ignore_index": Key(255, "label value that is not scored"),
    "semseg_classes": Key(None, "null: the dataset's label set; Cityscapes: 7 or 19", OPTIONAL_INT),
    "ssl_type": Key("onelabel", "partial labels: full / onelabel / randomlabels",
                    choices=("full", "onelabel", "randomlabels")),
    "partial_labels_file": Key(None, ".json (ours) or official .pth; else generated from seed", OPTIONAL_STR),
    "train_size": Key([512, 512], "training crop [H, W]"),
    "val_size": Key([512, 512], "evaluation canvas [H, W] (every validation image must fit)"),
    "amp": Key(False, "bf16 autocast (GPU only)"),
    "sync_bn": Key(True, "SyncBatchNorm when running distributed on GPU"),
    "channels_last": Key(True, "NHWC weights and inputs (faster convolutions with cuDNN and oneDNN)"),
    "compile": Key(False, "torch.compile backbone, decoders and denoiser blocks (a warm-up of minutes)"),
    "eval_kwargs.edge_thresholds_train": Key(9, "boundary thresholds during training"),
    "eval_kwargs.edge_thresholds_infer": Key(99, "boundary thresholds of run_mode=infer"),
    "eval_kwargs.edge_images_train": Key(0, "> 0: boundary ODS-F on the first N val images during training"),
    "eval_kwargs.edge_workers": Key(0, "boundary-matching processes; 0 = the CPU cores shared among local ranks"),
    "eval_kwargs.edge_maxdist": Key(None, "null = the dataset's standard tolerance", OPTIONAL_FLOAT),
    "eval_kwargs.save_predictions": Key(False, "run_mode=infer: write per-image PNGs"),
    "best_metric": Key(None, "delta_m or <task>.<metric> (semseg.mIoU); null: delta_m with reference_metrics, "
                             "else the first task's headline metric", OPTIONAL_STR),
    "reference_metrics": Key({}, "task -> {metric: value}: the Delta_m references (the paper's single-task "
                                 "models in the shipped configs)", (dict,)),
    "tb_images": Key(4, "images shown in TensorBoard per evaluation"),
}
FREE_FORM = ("reference_metrics",)  # a mapping whose inner keys are checked in derive()


def _nested(flat):
    tree = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


DEFAULTS = _nested({key: spec.default for key, spec in SCHEMA.items()})


def describe_keys():
    """The schema as text: one line per key (`python main.py --config_keys`)."""
    lines = []
    for key, spec in SCHEMA.items():
        accepted = ("one of " + " / ".join(map(str, spec.choices)) if spec.choices
                    else _type_name(spec.types))
        lines.append(f"{key} = {spec.default!r}  [{accepted}]\n    {spec.help}")
    return "\n".join(lines)


def _type_name(types):
    return " or ".join(t.__name__ if t is not type(None) else "null" for t in types)


def _check(key, value, source):
    """Check one leaf value against its schema entry (ints are accepted for floats)."""
    spec = SCHEMA[key]
    types = spec.types
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
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{source}: key '{key}' must be one of {list(spec.choices)}, got {value!r}")
    return value


def _check_item(key, value, default, source):
    """One element of a list-valued key (train_size, val_size): the type of the default's."""
    if isinstance(value, bool) or not isinstance(value, type(default)):
        raise ConfigError(f"{source}: key '{key}' must be a list of {type(default).__name__}, got {value!r}")
    return value


def _merge(base, update, source, prefix=""):
    """Merge `update` into `base` (a copy of DEFAULTS), rejecting unknown keys."""
    if not isinstance(update, dict):
        where = f"key '{prefix[:-1]}'" if prefix else "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping, got {update!r}")
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
            base[key] = [_check_item(full, v, base[key][0], source) for v in value]
        else:
            base[key] = _check(full, value, source)


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
    check_reference_metrics(cfg.reference_metrics, cfg.val_db_name, source)

    if cfg.best_metric is None:
        first = wanted[0]
        headline = headline_metric(cfg.train_db_name, first)[0]
        cfg.best_metric = "delta_m" if cfg.reference_metrics else f"{first}.{headline}"
    elif cfg.best_metric == "delta_m" and not cfg.reference_metrics:
        raise ConfigError(f"{source}: best_metric 'delta_m' needs reference_metrics")
    elif cfg.best_metric != "delta_m":
        task, _, metric = cfg.best_metric.partition(".")
        if metric in RENAMED_METRICS:
            raise ConfigError(f"{source}: best_metric '{cfg.best_metric}': the metric is now named "
                              f"'{task}.{RENAMED_METRICS[metric]}'")
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
    if model_kwargs.refine_from_prelim != "none":
        if model_kwargs.variant == "prediction":
            raise ConfigError(f"{source}: model_kwargs.refine_from_prelim is for feature diffusion's output head; "
                              "prediction diffusion (model_kwargs.variant) already refines the preliminary "
                              "prediction itself: set it to none")
        if model_kwargs.refine_from_prelim == "normals" and "normals" not in cfg.TASKS.NAMES:
            raise ConfigError(f"{source}: model_kwargs.refine_from_prelim is normals, but normals is not "
                              "among the tasks (task_dictionary.include_normals)")
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
    return _freeze(_as_config(cfg))


class Config(EasyDict):
    """An EasyDict that refuses changes once frozen (`derive()` returns frozen configs): a
    value read anywhere is the value validated and logged at the start."""

    def __setattr__(self, name, value):
        if self.__dict__.get("_frozen"):
            raise TypeError(f"the config is read-only after derive(); cannot set '{name}' (use --opts)")
        super().__setattr__(name, value)

    __setitem__ = __setattr__

    def __delattr__(self, name):
        raise TypeError(f"the config is read-only; cannot delete '{name}'")

    __delitem__ = __delattr__

    def update(self, *args, **kwargs):
        raise TypeError("the config is read-only; use --opts")

    def pop(self, *args):
        raise TypeError("the config is read-only; use --opts")

    def __reduce__(self):  # copies and pickles are frozen configs too
        return _frozen_config, (dict(self),)


def _frozen_config(data):
    return _freeze(_as_config(data))


def _as_config(node):
    if isinstance(node, dict):
        return Config({key: _as_config(value) for key, value in node.items()})
    if isinstance(node, (list, tuple)):
        return [_as_config(value) for value in node]
    return node


def _freeze(node):
    if isinstance(node, Config):
        for value in node.values():
            _freeze(value)
        node.__dict__["_frozen"] = True
    elif isinstance(node, list):
        for value in node:
            _freeze(value)
    return node


def write_yaml(path, payload):
    """Atomic YAML write (a run folder's config.yaml)."""
    atomic_write_text(path, yaml.safe_dump(payload, sort_keys=False))


# Keys that may change when a run is continued (budget, logging, evaluation, where the
# data lives); any other difference means a different experiment in the same folder.
RESUMABLE_KEYS = ("max_iter", "epochs", "val_interval", "eval_at_start", "log_interval", "ckpt_interval",
                  "nworkers", "num_threads", "valBatch", "val_size", "db_root", "output_dir", "eval_kwargs",
                  "tb_images", "channels_last", "compile", "label_cache")
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
    return {k: v for k, v in as_plain(cfg).items() if k not in DERIVED_KEYS}


def as_plain(tree):
    """A config (or any part of it) as plain dicts and lists: what YAML, JSON and checkpoints
    loaded with weights_only hold."""
    if isinstance(tree, dict):
        return {k: as_plain(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [as_plain(v) for v in tree]
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
