"""The training loop: for each iteration, step -> log -> maybe evaluate and save -> maybe stop.

A run writes everything under `cfg.run_dir` and, started again with the same command,
continues from last.pth at the exact iteration it reached (bit for bit on the CPU).
Ctrl-C (or SIGTERM) stops after the current iteration and saves last.pth first.
"""
import os
import signal

import torch
from torch.nn.parallel import DistributedDataParallel

from data.datasets import build_dataset
from data.loaders import TrainBatches, make_val_loader
from engine.checkpoint import Checkpointer, load_checkpoint, load_model_state, seed_everything
from engine.validation import evaluate, show_progress
from engine.preflight import check_files, check_train_sizes, check_val_sizes
from engine.report import Reporter
from engine.predict import Runtime
from engine.step import TrainStep, build_optimizer, build_scheduler, to_device
from evaluation import best_score, build_evaluator
from evaluation.visualization import dataset_style
from losses import build_loss
from models import build_model
from utils import distributed
from utils.config import stored_config, write_yaml
from utils.errors import ConfigError, DataError, one_line
from utils.logger import run_header


class Interrupted(Exception):
    """Ctrl-C / SIGTERM during training; last.pth has been saved."""


class StopRequest:
    """Turns the first Ctrl-C / SIGTERM into a request that the loop honours after the current
    iteration (saving last.pth); a second Ctrl-C stops at once."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signal = signum

    def requested(self):
        """True on every rank once any rank was asked to stop."""
        if distributed.get_world_size() > 1:
            return distributed.broadcast_flag(self.signal is not None)
        return self.signal is not None

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


class Trainer:
    """A training run of `cfg`: built in `__init__` (data, model, optimisation, the run
    folder's state), run by `train()`."""

    def __init__(self, cfg, device, logger, init_weights=None):
        self.cfg, self.device, self.logger = cfg, device, logger
        rank, world_size = distributed.get_rank(), distributed.get_world_size()
        seed_everything(cfg.seed * world_size + rank)

        # ---- Data: checked before any compute is spent
        self.train_set, self.val_set = build_dataset(cfg, "train"), build_dataset(cfg, "val")
        check_files(self.train_set, self.val_set)
        check_train_sizes(self.train_set, cfg.train_size)
        check_val_sizes(self.val_set, cfg.val_size)
        self.batches = TrainBatches(cfg, self.train_set, device)
        self.val_loader = make_val_loader(cfg, self.val_set, device)
        self.total_iters = cfg.max_iter or cfg.epochs * self.batches.batches_per_epoch

        # ---- Model and optimisation
        self.runtime = Runtime.of(cfg, device)
        model = self.runtime.place(build_model(cfg))
        if init_weights:
            load_model_state(model, load_checkpoint(init_weights)["model"], source=init_weights)
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_iters, self.batches.batches_per_epoch)
        self.checkpointer = Checkpointer(cfg, model, self.optimizer, self.scheduler, before_save=self.check_finite)
        stored = self.checkpointer.stored_run()  # a different experiment in the folder stops here
        if stored and stored["iteration"] > self.total_iters:
            raise ConfigError(past_budget(cfg, self.checkpointer, stored["iteration"], self.total_iters))
        if distributed.is_main_process():
            write_yaml(os.path.join(cfg.run_dir, "config.yaml"), stored_config(cfg))
        self.start_iter = self.checkpointer.resume(stored, logger) if stored else 0
        del stored  # the weights are in the model: no second copy held
        self.batches.seek(self.start_iter)
        # The checkpointer keeps the network itself; SyncBatchNorm and compilation change its
        # submodules in place, DistributedDataParallel only wraps it.
        if world_size > 1 and device.type == "cuda" and cfg.sync_bn:
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if cfg.compile:
            model.compile_static_parts()
        if world_size > 1:
            # Partial labels leave the layers of tasks no sample of a batch labels unused: DDP must
            # then look for them; with full labels every parameter is used in every step.
            model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                            find_unused_parameters=cfg.ssl_type != "full")
        self.model = model
        self.step = TrainStep.of(cfg, model, build_loss(cfg), self.optimizer, device)
        self.evaluator = build_evaluator(cfg, "train")
        self.style = dataset_style(cfg)
        self.reporter = Reporter(logger, cfg.run_dir, cfg.TASKS.NAMES, self.total_iters, self.start_iter,
                                 cfg.log_interval, cfg.best_metric)
        self.iteration, self.metrics = self.start_iter, None
        run_header(logger, f"training {cfg.version_name}: {len(self.train_set)} train / {len(self.val_set)} val "
                           f"images, {world_size} process(es) on {device}, {self.total_iters} iterations "
                           f"({self.batches.batches_per_epoch} per epoch), tasks {cfg.TASKS.NAMES}, "
                           f"ssl_type {cfg.ssl_type}")
        logger.info(f"{cfg.optimizer}, {cfg.scheduler} learning rate stepped per {cfg.scheduler_interval}; unlabelled "
                    f"tasks' parameters " + ("keep moving (zero gradients kept, as torch 1.10 ran the release)"
                                             if cfg.keep_zero_grads else "stand still (gradients set to None)"))

    # ------------------------------------------------------------------------- the loop
    def train(self):
        """Run to cfg's last iteration; returns the last evaluation's metrics (None: none ran)."""
        cfg = self.cfg
        if cfg.eval_at_start and self.start_iter == 0:
            # The untrained model's scores: the baseline that shows what training achieved.
            self.reporter.evaluation(0, self.evaluate(), untrained=True)
        self.model.train()
        self.reporter.start_clock()
        with StopRequest() as stop:
            for iteration in range(self.start_iter + 1, self.total_iters + 1):
                self.train_step(iteration)
                if iteration % cfg.val_interval == 0 or iteration == self.total_iters:
                    self.validate(iteration)
                elif iteration % cfg.ckpt_interval == 0:
                    self.checkpointer.save_last(iteration)
                if iteration < self.total_iters and stop.requested():
                    self.interrupt(iteration)
        if self.checkpointer.evaluated_at != self.iteration:
            self.validate(self.iteration)  # a finished run whose last evaluation did not happen
        elif self.start_iter >= self.total_iters:
            self.logger.info(f"nothing to do: {self.checkpointer.last_path} is already at iteration "
                             f"{self.start_iter} of {self.total_iters}")
        return self.metrics

    # ----------------------------------------------------------------- the loop's steps
    def train_step(self, iteration):
        """One optimisation step and its log line; a file that fails to load mid-run keeps
        the progress made (last.pth) before the error goes up."""
        try:
            batch = next(self.batches)
        except DataError as err:
            self.salvage(err)
        lr = self.optimizer.param_groups[0]["lr"]  # this iteration's (the scheduler then sets the next one's)
        loss, per_task, grad_norm = self.step(to_device(batch, self.device), batch["task_mask"], iteration)
        self.scheduler.step()
        self.iteration = iteration
        if self.reporter.due(iteration):
            self.check_finite()
        self.reporter.step(iteration, loss, per_task, grad_norm, lr)

    def validate(self, iteration):
        """Evaluate, keep best.pth and last.pth, report."""
        self.check_finite()
        tb_images = []
        try:
            self.metrics = self.evaluate(tb_images)
        except DataError as err:
            self.salvage(err)
        self.reporter.evaluation(iteration, self.metrics, tb_images)
        score = best_score(self.metrics, self.cfg.best_metric)
        if self.checkpointer.record_evaluation(iteration, self.metrics, score):
            self.logger.info(f"new best {self.cfg.best_metric} = {score:.4f}: saved best.pth")
        self.checkpointer.save_last(iteration)
        self.model.train()

    def evaluate(self, tb_images=None):
        return evaluate(self.model, self.val_loader, self.evaluator, self.runtime, style=self.style,
                        tb_images=tb_images, tb_count=self.cfg.tb_images)

    def check_finite(self):
        """Stop (keeping the last good checkpoint) if any process had a non-finite step."""
        last = self.checkpointer.last_path
        self.step.raise_if_diverged(last if os.path.isfile(last) else None, distributed.broadcast_flag)

    def interrupt(self, iteration):
        if self.checkpointer.saved_at != iteration:
            self.checkpointer.save_last(iteration)
        self.logger.info(f"interrupted at iteration {iteration}/{self.total_iters}: saved "
                         f"{self.checkpointer.last_path}; run the same command to resume")
        raise Interrupted

    def salvage(self, err):
        """A file went bad mid-run (the up-front checks see missing files only): keep the progress."""
        if distributed.get_world_size() > 1 or self.iteration == self.checkpointer.saved_at:
            raise err
        self.checkpointer.save_last(self.iteration)
        raise DataError(f"{one_line(err)} (training stopped at iteration {self.iteration}; saved "
                        f"{self.checkpointer.last_path}: fix the file and run the same command to resume)") from None

    def close(self):
        self.evaluator.close()
        self.reporter.close()
        self.batches.close()


def past_budget(cfg, checkpointer, reached, total_iters):
    """Why a run already past this command's last iteration is not continued, and what to do."""
    budget = f"max_iter={cfg.max_iter}" if cfg.max_iter else f"epochs={cfg.epochs}: {total_iters} iterations"
    model = checkpointer.best_path if os.path.isfile(checkpointer.best_path) else checkpointer.last_path
    return (f"{checkpointer.last_path} is already at iteration {reached}, past this command's last iteration "
            f"{total_iters} ({budget}); a run does not go back: train it further with max_iter above {reached}, "
            f"evaluate it with --run_mode infer --checkpoint {model}, or train {total_iters} iterations in "
            f"a new run folder (--opts version_name=NEW_NAME)")


def train(cfg, device, logger, init_weights=None, config_exp=None, opts=()):
    """Train `cfg` (from the weights of the checkpoint `init_weights` when given), then print
    the summary, whose commands repeat `config_exp` and `opts` (main.py's arguments)."""
    trainer = Trainer(cfg, device, logger, init_weights=init_weights)
    try:
        metrics = trainer.train()
    finally:
        trainer.close()
    if distributed.is_main_process():
        trainer.reporter.summary(trainer.iteration, trainer.checkpointer, metrics, config_exp, opts)
    return metrics


__all__ = ["Interrupted", "StopRequest", "Trainer", "train", "show_progress"]
