"""The `Checkpointer` of a training run, and the RNG states a resumed run restores.

A run folder holds `last.pth`, everything needed to continue bit for bit (weights,
optimizer, scheduler, every rank's RNG states, the best score so far), and `best.pth`,
what evaluation and inference need (weights, config, iteration, metrics): no optimizer
moments, so about a third of the size with Adam. The files are written and read by
`utils.checkpoint_io` (atomic writes, `weights_only=True` reads), whose functions are
importable from here too.
"""
import math
import os
import random

import numpy as np
import torch

from utils import distributed
from utils.checkpoint_io import load_checkpoint, load_model_state, save_checkpoint
from utils.config import as_plain, config_changes, stored_config
from utils.errors import ConfigError

__all__ = ["Checkpointer", "capture_rng", "load_checkpoint", "load_model_state", "restore_rng", "save_checkpoint",
           "seed_everything"]


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
