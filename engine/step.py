"""One optimisation step, as the training loop runs it (and benchmarks/ measure it), and the
optimizer and learning-rate schedule it steps.

The step never waits for the device: the loss, the gradient norm and the per-task losses
stay tensors, and a non-finite step is skipped *on the device*. With a fused optimizer
(the default where PyTorch has one: Adam, AdamW, SGD on CPU and CUDA) the finiteness flag
goes to the optimizer as `found_inf`, the mechanism torch's GradScaler uses, so the
kernel leaves weights, moments and step counts untouched; otherwise the step checks the
flag on the host. Either way the weights stay finite, and `raise_if_diverged()` (a host
synchronisation, called at log intervals and before every checkpoint) reports the first
non-finite iteration, so no non-finite checkpoint is ever written.

`keep_zero_grads` chooses what `zero_grad` leaves behind. false (set_to_none=True, torch >= 2.0's
default): the layers of a task that no sample of a batch labels get no gradient and stand
still. true (set_to_none=False, the default of the torch 1.10 that the public release ran on):
a gradient, once created, is kept as zeros, so the optimizer steps that parameter in every
later iteration, by its momentum and weight decay; a parameter that has never had a gradient
stays None and untouched, as in torch 1.10.
"""
import math

import torch

from engine.predict import Runtime
from utils.errors import DiffusionMTLError

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class TrainingDiverged(DiffusionMTLError):
    """The loss or the gradient became NaN or infinite."""


def build_optimizer(cfg, model, fused=True):
    """cfg.optimizer over the trainable parameters; fused kernels where PyTorch has them."""
    kwargs = {"lr": cfg.optimizer_kwargs.lr, "weight_decay": cfg.optimizer_kwargs.weight_decay}
    if cfg.optimizer == "sgd":
        kwargs["momentum"] = cfg.optimizer_kwargs.momentum
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer_class = OPTIMIZERS[cfg.optimizer]
    if fused:
        try:
            optimizer = optimizer_class(params, fused=True, **kwargs)
        except (RuntimeError, ValueError):  # a device or dtype without fused kernels
            return optimizer_class(params, foreach=True, **kwargs)
        if cfg.optimizer == "sgd" and kwargs["momentum"]:
            # Fused SGD wants every momentum buffer or none, but with partial labels a task's
            # layers get their first gradient in a later step. Zero buffers are equivalent:
            # the first update of a buffer is then momentum * 0 + gradient = gradient.
            for param in params:
                optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
        return optimizer
    return optimizer_class(params, foreach=True, **kwargs)


def is_fused(optimizer):
    return bool(optimizer.defaults.get("fused"))


def compile_model(model):
    """torch.compile the model's parts whose shapes stay fixed (DiffusionMTL.compile_static_parts)."""
    return model.compile_static_parts()


class TrainStep:
    """`step(batch, task_mask, iteration) -> (loss, per_task, grad_norm)`, all device tensors.

    runtime: an engine.predict.Runtime (device, autocast, memory format); max_norm /
    norm_type: the gradient clipping (cfg.grad_clip_param); keep_zero_grads: see above.
    `TrainStep.of(cfg, ...)` reads them from a config.

    `batch` is on the device; `task_mask` is the loader's CPU copy (the model derives the
    pair indices from it without a device synchronisation).
    """

    def __init__(self, model, criterion, optimizer, runtime, max_norm, norm_type=2.0, keep_zero_grads=False):
        self.model, self.criterion, self.optimizer, self.runtime = model, criterion, optimizer, runtime
        self.max_norm, self.norm_type = max_norm, norm_type
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.set_to_none = not keep_zero_grads
        device = runtime.device
        self.fused = is_fused(optimizer)
        self.skip = torch.zeros((), device=device)  # 1.0: this step is not finite (found_inf)
        self.first_bad_iteration = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), device=device)
        self.bad_grad_norm = torch.zeros((), device=device)
        if self.fused:
            optimizer.found_inf = self.skip

    @classmethod
    def of(cls, cfg, model, criterion, optimizer, device):
        return cls(model, criterion, optimizer, Runtime.of(cfg, device), cfg.grad_clip_param.max_norm,
                   cfg.grad_clip_param.norm_type, cfg.keep_zero_grads)

    def __call__(self, batch, task_mask, iteration):
        images = batch["image"].contiguous(memory_format=self.runtime.memory_format)
        with self.runtime.autocast():
            outputs = self.model(images, task_mask)
            loss, per_task = self.criterion(outputs, batch)
        self.optimizer.zero_grad(set_to_none=self.set_to_none)  # zeros: one foreach (or fused) memset
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm, self.norm_type, foreach=True)
        loss = loss.detach()
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        self._record(bad, iteration, loss, grad_norm)
        if self.fused:
            self.skip.copy_(bad)  # the fused kernel skips the whole update when set
            self.optimizer.step()
        elif not bool(bad):  # host synchronisation: optimizers without found_inf support
            self.optimizer.step()
        return loss, per_task, grad_norm

    def _record(self, bad, iteration, loss, grad_norm):
        first = (self.first_bad_iteration < 0) & bad
        self.first_bad_iteration.copy_(torch.where(first, iteration, self.first_bad_iteration))
        self.bad_loss.copy_(torch.where(first, loss.float(), self.bad_loss))
        self.bad_grad_norm.copy_(torch.where(first, grad_norm.float(), self.bad_grad_norm))

    def diverged(self):
        """The first iteration (1-based) whose loss or gradient was not finite, or None (syncs)."""
        first = int(self.first_bad_iteration)
        return None if first < 0 else first

    def raise_if_diverged(self, last_checkpoint, any_rank=lambda flag: flag):
        """Stop the run, keeping the last good checkpoint, once a step was not finite.

        `any_rank` turns the local flag into "any process diverged" in a distributed run.
        """
        first = self.diverged()
        if any_rank(first is not None):
            where = (f"loss {self.bad_loss.item()}, gradient norm {self.bad_grad_norm.item()} at iteration {first}"
                     if first is not None else "on another process")
            raise TrainingDiverged(f"training diverged ({where}; that update was skipped); stopping. The last good "
                                   f"checkpoint is {last_checkpoint or '(none yet)'}; lower optimizer_kwargs.lr "
                                   "or check the data")


def build_scheduler(cfg, optimizer, total_iters, batches_per_epoch=None):
    """Poly decay, lr = lr0 * (1 - t / total) ** power, stepped once per iteration either way.

    `scheduler_interval: iteration`: t counts iterations, down to 0 at the end. `epoch` (the
    public release's schedule): t counts the epochs completed (`batches_per_epoch` iterations
    each, as data.loaders.TrainBatches counts them) out of the run's ceil(total_iters /
    batches_per_epoch); constant within an epoch, never 0. The scheduler's state is the
    iteration count, so a run resumed mid-epoch continues with its epoch's rate.
    """
    if cfg.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    power = cfg.scheduler_kwargs.power
    if cfg.scheduler_interval == "iteration":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1.0 - it / total_iters) ** power)
    if batches_per_epoch is None:
        raise ValueError("scheduler_interval: epoch needs batches_per_epoch")
    total_epochs = math.ceil(total_iters / batches_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: max(0.0, 1.0 - (it // batches_per_epoch) / total_epochs) ** power)


def to_device(batch, device):
    """A loader batch with its tensors on `device` (asynchronous copies from pinned memory)."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
