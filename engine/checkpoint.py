"""Checkpoints: the one way to write and read them (atomic writes, `weights_only=True` reads)
and the `Checkpointer` of a training run.

A run folder holds `last.pth`, everything needed to continue bit for bit (weights,
optimizer, scheduler, every rank's RNG states, the best score so far), and `best.pth`,
what evaluation and inference need (weights, config, iteration, metrics): no optimizer
moments, so about a third of the size with Adam.
"""
import math
import os
import pickle
import random
import tempfile
import warnings
import zipfile

import numpy as np
import torch

from utils import distributed
from utils.config import as_plain, config_changes, stored_config
from utils.errors import CheckpointError, ConfigError


def save_checkpoint(path, state):
    """Write `state` to `path` atomically: a temporary file in the same folder, then rename.

    A run killed while writing leaves the previous file intact.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(prefix=".tmp_", suffix=".pth", dir=folder)
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(state, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _reason(err):
    """The real reason of a failed `torch.load`, without torch's advice to retry unsafely or
    its notes about miniz."""
    skip = ("weights only load failed", "re-running", "please file an issue", "check the documentation")
    for line in str(err).splitlines():
        line = line.replace("WeightsUnpickler error:", "").split(". This is an internal miniz error")[0].strip()
        if line and not line.lower().startswith(skip):
            return line
    return type(err).__name__


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint dict safely; raise CheckpointError for a missing/corrupt/foreign file.

    Only tensors and plain containers are read (`weights_only=True`): a file that needs
    anything else (code to run) is refused with the unpickler's reason, never retried
    unsafely; a file that cannot be read at all is called truncated or damaged.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = _reason(err)
        if "global" in reason.lower():  # a pickle that names functions or classes: it could run code
            raise CheckpointError(f"{path} is not a loadable checkpoint ({reason}); checkpoints are read "
                                  "as tensors and plain containers only, never as code") from None
        raise CheckpointError(f"{path} cannot be read: the file is truncated or damaged ({os.path.getsize(path):,} "
                              f"bytes; {reason}); delete it (a run folder's last.pth: the run then starts again "
                              "from iteration 0) or restore a copy") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path} is not a DiffusionMTL checkpoint (no 'model' state dict); "
                              "convert the public release's file with `python -m models.convert_official`")
    return state


def load_model_state(model, state_dict, source="checkpoint"):
    """Strictly load `state_dict` into `model`; name every mismatching key in the error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if keys:
                shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        raise CheckpointError(f"{source} does not match the model built from the config: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


# ---------------------------------------------------------------------------------------
# RNG states (every rank's, so a resumed run draws the same noise)
# ---------------------------------------------------------------------------------------
def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng():
    """This process's RNG states in types that `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    cached),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state):
    version, internal, gauss = state["python"]  # stored with lists where `random` wants tuples
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---------------------------------------------------------------------------------------
# The checkpointer of one training run
# ---------------------------------------------------------------------------------------
class Checkpointer:
    """last.pth / best.pth of `cfg.run_dir`, the best score so far, and resuming; `model` is
    the network itself (not its DistributedDataParallel wrapper).

    `before_save` runs before every write (the training step's divergence check, so no
    non-finite weights are ever saved). Every rank calls `save_*` (the RNG states are
    gathered); rank 0 writes.
    """

    def __init__(self, cfg, model, optimizer, scheduler, before_save=lambda: None):
        self.cfg, self.model, self.optimizer, self.scheduler = cfg, model, optimizer, scheduler
        self.before_save = before_save
        self.last_path = os.path.join(cfg.run_dir, "last.pth")
        self.best_path = os.path.join(cfg.run_dir, "best.pth")
        self.best_score, self.best_iteration, self.best_metrics = -math.inf, None, None
        self.saved_at = 0  # iteration held by last.pth
        self.evaluated_at = None  # iteration of the last evaluation

    def stored_run(self):
        """last.pth's contents, or None; a different experiment in the folder is a ConfigError."""
        if not os.path.isfile(self.last_path):
            return None
        state = load_checkpoint(self.last_path)
        changes = config_changes(state.get("config") or stored_config(self.cfg), stored_config(self.cfg))
        if changes:
            shown = "; ".join(changes[:4]) + (f" (+{len(changes) - 4} more)" if len(changes) > 4 else "")
            raise ConfigError(
                f"{self.cfg.run_dir} holds a run with a different config ({shown}); start a new run with --opts "
                f"version_name=NEW_NAME (or output_dir=DIR), or continue this one with its config "
                f"({os.path.join(self.cfg.run_dir, 'config.yaml')}) or delete {self.last_path}")
        return state

    def resume(self, state, logger):
        """Continue from last.pth's `state`: weights, optimizer, schedule, RNG; returns its iteration."""
        load_model_state(self.model, state["model"], source=self.last_path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.saved_at = state["iteration"]
        self.best_score = state["best_score"]
        self.best_iteration, self.best_metrics = state.get("best_iteration"), state.get("best_metrics")
        # Checkpoints from before `evaluated_at` was stored were written at an evaluation.
        self.evaluated_at = state.get("evaluated_at", state["iteration"])
        rank, world_size = distributed.get_rank(), distributed.get_world_size()
        if len(state["rng"]) == world_size:
            restore_rng(state["rng"][rank])
        else:
            logger.info("world size changed since the checkpoint: RNG streams are re-seeded")
            seed_everything((self.cfg.seed + self.saved_at) * world_size + rank)
        logger.info(f"resumed from {self.last_path} at iteration {self.saved_at}")
        return self.saved_at

    def save_last(self, iteration):
        """Everything needed to continue at `iteration` (all ranks call this)."""
        self.before_save()
        rng_states = distributed.all_gather_objects(capture_rng())
        if distributed.is_main_process():
            save_checkpoint(self.last_path, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": None, "iteration": iteration,
                "best_score": self.best_score, "best_iteration": self.best_iteration,
                "best_metrics": self.best_metrics, "evaluated_at": self.evaluated_at, "rng": rng_states,
                "config": as_plain(self.cfg)})
        distributed.barrier()
        self.saved_at = iteration

    def record_evaluation(self, iteration, metrics, score):
        """Note an evaluation; write best.pth when it is the best so far (or the first one,
        so a run that evaluated has a best.pth even when its score is NaN). True if best."""
        self.evaluated_at = iteration
        if score <= self.best_score and self.best_iteration is not None:
            return False
        self.best_score, self.best_iteration, self.best_metrics = score, iteration, metrics
        self.before_save()
        if distributed.is_main_process():
            save_checkpoint(self.best_path, {
                "model": self.model.state_dict(), "iteration": iteration, "best_score": score,
                "best_iteration": iteration, "best_metrics": metrics, "config": as_plain(self.cfg)})
        distributed.barrier()
        return True
