"""Training losses: `build_loss(cfg)` returns the masked multi-task criterion."""
from functools import partial

from losses.multitask import MultiTaskLoss
from losses.task_losses import TASK_LOSSES


def build_loss(cfg):
    """MultiTaskLoss over cfg.TASKS.NAMES with the weights of cfg.loss_kwargs."""
    task_losses = {}
    for task in cfg.TASKS.NAMES:
        kwargs = {"ignore_index": cfg.ignore_index}
        if task == "edge":
            kwargs["pos_weight"] = cfg.task_dictionary.edge_w
        task_losses[task] = partial(TASK_LOSSES[task], **kwargs)
    return MultiTaskLoss(cfg.TASKS.NAMES, task_losses, cfg.loss_kwargs.loss_weights, cfg.loss_kwargs.prelim_weight)


__all__ = ["build_loss", "MultiTaskLoss", "TASK_LOSSES"]
