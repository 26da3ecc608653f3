"""DiffusionMTL training and evaluation.

One process:      python main.py --config_exp configs/demo.yml --run_mode train
Several (DDP):    torchrun --nproc_per_node=N main.py --config_exp CFG --run_mode train
Evaluation:       python main.py --config_exp CFG --run_mode infer --trained_model CKPT

A training run writes everything under `cfg.run_dir` and, started again with the same
command, resumes from `last.pth` at the exact iteration it reached. Ctrl-C (or SIGTERM)
stops after the current iteration and saves `last.pth` first.
"""
import argparse
import json
import math
import os
import random
import shlex
import signal
import sys
import time

import cv2
import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import build_dataset
from evaluation import best_score, build_evaluator, format_table
from evaluation.postprocess import activate
from losses import build_loss
from models import build_model
from utils import distributed as dist_utils
from engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from utils.config import config_changes, load_config, stored_config
from utils.errors import CheckpointError, ConfigError, DataError, DiffusionMTLError
from utils.logger import setup_logger
from engine.step import TrainStep, autocast, build_optimizer, compile_model, memory_format
from evaluation.visualization import colorize, dataset_style, write_prediction


class Interrupted(Exception):
    """Ctrl-C / SIGTERM during training; last.pth has been saved."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every argument's default."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", required=True, help="YAML experiment config (see configs/)")
    parser.add_argument("--run_mode", choices=("train", "infer"), default="train",
                        help="train (resumes from <run folder>/last.pth when present) or infer "
                             "(evaluate --trained_model on the validation split)")
    parser.add_argument("--trained_model", default=None,
                        help="checkpoint to evaluate (infer) or to initialise the weights from (train)")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto",
                        help="auto: this process's GPU when there is one, else the CPU")
    parser.add_argument("--opts", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. max_iter=100 optimizer_kwargs.lr=1e-4")
    return parser.parse_args(argv)


def show_progress():
    """Progress bars only on an interactive terminal: redirected logs get the log lines alone."""
    return dist_utils.is_main_process() and sys.stderr.isatty()


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

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------
def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng():
    """This process's RNG states in types that `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state):
    random.setstate(_as_python_state(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _as_python_state(state):
    # Checkpoints store the Python RNG state with lists where `random` wants tuples.
    version, internal, gauss = state
    return version, tuple(internal), gauss


def build_scheduler(cfg, optimizer, total_iters):
    """Poly decay stepped once per iteration: lr = lr0 * (1 - it / total) ** power."""
    if cfg.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    power = cfg.scheduler_kwargs.power
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1.0 - it / total_iters) ** power)


def _worker_init(_):
    cv2.setNumThreads(0)  # OpenCV's own thread pool in every loader worker oversubscribes the CPU
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle (it saves first)


def make_train_loader(cfg, dataset, sampler, device):
    """The training DataLoader: persistent workers (no restart cost per epoch), pinned
    memory on GPU so batches copy asynchronously, and its own generator: starting an epoch
    (or a resumed one) must not draw from the global RNG that the diffusion noise uses."""
    workers = cfg.nworkers
    return DataLoader(dataset, batch_size=cfg.trBatch, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=True, worker_init_fn=_worker_init,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator())


def make_val_loader(cfg, dataset):
    sampler = dist_utils.ShardSampler(len(dataset))
    return DataLoader(dataset, batch_size=cfg.valBatch, sampler=sampler, num_workers=cfg.nworkers,
                      pin_memory=torch.cuda.is_available(), drop_last=False, worker_init_fn=_worker_init,
                      generator=torch.Generator())


def to_device(batch, device):
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def unwrap(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


def plain(cfg):
    """The config as plain JSON types (stored in checkpoints; loadable with weights_only)."""
    return json.loads(json.dumps(cfg))


# ---------------------------------------------------------------------------------------
# Evaluation (distributed: every rank evaluates its shard, the metric states are summed)
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(cfg, model, loader, evaluator, device, prediction_dir=None, tb_images=None):
    model.eval()
    evaluator.reset()
    layout = memory_format(cfg)
    bar = tqdm(loader, desc="eval", disable=not show_progress(), leave=False, dynamic_ncols=True)
    for batch in bar:
        batch = to_device(batch, device)
        with autocast(cfg, device):
            outputs = model(batch["image"].contiguous(memory_format=layout))
        final = {task: out.float() for task, out in outputs["final"].items()}
        evaluator.update(final, batch)
        if prediction_dir is not None:
            save_predictions(prediction_dir, final, batch, dataset_style(cfg))
        if tb_images is not None and len(tb_images) < cfg.tb_images:
            tb_images.extend(_first_images(cfg, final, batch, cfg.tb_images - len(tb_images)))
    dist_utils.all_reduce_sum(evaluator.state_tensors())
    return evaluator.compute()


def save_predictions(folder, final, batch, style):
    """Per-image PNGs, the files inference.py writes: palette PNGs of label ids, grey
    probabilities, RGB normals, depth colour-mapped plus depth_mm/ in millimetres
    (`style`: the dataset's palettes, `evaluation.visualization.dataset_style`)."""
    for task, output in final.items():
        prediction = activate(task, output).cpu()
        for i, sample_id in enumerate(batch["meta"]["id"]):
            height, width = (int(v) for v in batch["meta"]["size"][i])
            write_prediction(folder, task, sample_id, prediction[i, ..., :height, :width].numpy(), style=style)


def _first_images(cfg, final, batch, count):
    """(id, {task: uint8 HxWx3}) pairs for TensorBoard, drawn with evaluation.visualization."""
    images, style = [], dataset_style(cfg)
    for i in range(min(count, batch["image"].shape[0])):
        height, width = (int(v) for v in batch["meta"]["size"][i])
        drawn = {task: colorize(task, activate(task, out[i:i + 1])[0, ..., :height, :width].cpu().numpy(),
                                style=style)
                 for task, out in final.items()}
        images.append((batch["meta"]["id"][i], drawn))
    return images


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------
def train(cfg, args, device, logger):
    rank, world_size = dist_utils.get_rank(), dist_utils.get_world_size()
    seed_everything(cfg.seed * world_size + rank)
    last_path = os.path.join(cfg.run_dir, "last.pth")
    resume = load_checkpoint(last_path) if os.path.isfile(last_path) else None
    check_same_experiment(cfg, resume, last_path)
    if dist_utils.is_main_process():
        _write_yaml(os.path.join(cfg.run_dir, "config.yaml"), stored_config(cfg))

    train_set = build_dataset(cfg, "train")
    val_set = build_dataset(cfg, "val")
    check_files(train_set, val_set)
    sampler = dist_utils.ResumableDistributedSampler(len(train_set), cfg.trBatch, cfg.seed)
    train_loader = make_train_loader(cfg, train_set, sampler, device)
    val_loader = make_val_loader(cfg, val_set)
    iters_per_epoch = sampler.batches_per_epoch
    total_iters = cfg.max_iter or cfg.epochs * iters_per_epoch

    model = build_model(cfg).to(device=device, memory_format=memory_format(cfg))
    if args.trained_model:
        load_model_state(model, load_checkpoint(args.trained_model)["model"], source=args.trained_model)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, total_iters)
    criterion = build_loss(cfg)
    evaluator = build_evaluator(cfg, "train")

    start_iter, best, best_iteration, best_metrics = 0, -math.inf, None, None
    if resume is not None:
        ckpt, resume = resume, None  # the weights are copied into the model: no second copy held
        load_model_state(model, ckpt["model"], source=last_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_iter, best = ckpt["iteration"], ckpt["best_score"]
        best_iteration, best_metrics = ckpt.get("best_iteration"), ckpt.get("best_metrics")
        rng_states = ckpt["rng"]
        if len(rng_states) == world_size:
            restore_rng(rng_states[rank])
        else:
            logger.info("world size changed since the checkpoint: RNG streams are re-seeded")
            seed_everything((cfg.seed + start_iter) * world_size + rank)
        logger.info(f"resumed from {last_path} at iteration {start_iter}")

    if world_size > 1:
        if device.type == "cuda" and cfg.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # Partial labels leave the layers of tasks no sample of a batch labels unused: DDP must
        # then look for them; with full labels every parameter is used in every step.
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=cfg.ssl_type != "full")
    if cfg.compile:
        compile_model(unwrap(model))
    train_step = TrainStep(cfg, model, criterion, optimizer, device)

    writer = None
    if dist_utils.is_main_process():
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(os.path.join(cfg.run_dir, "tb"))
    logger.info(f"training {cfg.version_name}: {len(train_set)} train / {len(val_set)} val images, "
                f"{world_size} process(es) on {device}, {total_iters} iterations "
                f"({iters_per_epoch} per epoch), tasks {cfg.TASKS.NAMES}, ssl_type {cfg.ssl_type}")

    saved_at = start_iter

    def check_finite():
        """Stop (keeping the last good checkpoint) if any process had a non-finite step."""
        train_step.raise_if_diverged(last_path if os.path.isfile(last_path) else None, dist_utils.broadcast_flag)

    def checkpoint(path, iteration):
        nonlocal saved_at
        check_finite()
        rng_states = dist_utils.all_gather_objects(capture_rng())
        if dist_utils.is_main_process():
            save_checkpoint(path, {
                "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": None, "iteration": iteration,
                "best_score": best, "best_iteration": best_iteration, "best_metrics": best_metrics,
                "rng": rng_states, "config": plain(cfg),
            })
        dist_utils.barrier()
        if path == last_path:
            saved_at = iteration

    iteration = start_iter
    metrics = None
    if cfg.eval_at_start and start_iter == 0:
        # The untrained model's scores: the baseline that shows what training achieved.
        baseline = evaluate(cfg, model, val_loader, evaluator, device)
        logger.info(f"evaluation at iteration 0 (untrained):\n{format_table(baseline)}")
    bar = tqdm(total=total_iters, initial=start_iter, desc="train", dynamic_ncols=True, disable=not show_progress())
    started = time.time()
    with StopRequest() as stop:
        try:
            while iteration < total_iters:
                epoch, batch_in_epoch = divmod(iteration, iters_per_epoch)
                sampler.set_position(epoch, batch_in_epoch)
                if hasattr(train_set, "set_epoch"):
                    train_set.set_epoch(epoch)
                model.train()
                for batch in train_loader:
                    # No host synchronisation in the step: a non-finite update is skipped on the
                    # device and reported here at the log interval (and before any checkpoint).
                    loss, per_task, grad_norm = train_step(to_device(batch, device), batch["task_mask"],
                                                           iteration + 1)
                    scheduler.step()
                    iteration += 1
                    bar.update(1)

                    finished = iteration >= total_iters
                    if iteration % cfg.log_interval == 0 or iteration % cfg.val_interval == 0 or finished:
                        check_finite()
                    if writer is not None and iteration % cfg.log_interval == 0:
                        lr = optimizer.param_groups[0]["lr"]
                        writer.add_scalar("train/loss", loss.item(), iteration)
                        writer.add_scalar("train/lr", lr, iteration)
                        writer.add_scalar("train/grad_norm", grad_norm.item(), iteration)
                        for task, value in per_task.items():
                            writer.add_scalar(f"train/loss_{task}", value.item(), iteration)
                        rate = (iteration - start_iter) / max(time.time() - started, 1e-9)
                        # One column per task, '-' where no sample of the batch labels it.
                        columns = " ".join(f"{t} {per_task[t].item():7.4f}" if t in per_task else f"{t} {'-':>7}"
                                           for t in cfg.TASKS.NAMES)
                        logger.info(f"iter {iteration:{len(str(total_iters))}d}/{total_iters} "
                                    f"loss {loss.item():8.4f} lr {lr:.2e} ({rate:5.2f} it/s) | {columns}")
                        bar.set_postfix(loss=f"{loss.item():.3f}")

                    if iteration % cfg.val_interval == 0 or finished:
                        tb_images = [] if writer is not None else None
                        metrics = evaluate(cfg, model, val_loader, evaluator, device, tb_images=tb_images)
                        score = best_score(metrics, cfg.best_metric)
                        logger.info(f"evaluation at iteration {iteration}:\n{format_table(metrics)}")
                        if score > best:
                            best, best_iteration, best_metrics = score, iteration, metrics
                            checkpoint(os.path.join(cfg.run_dir, "best.pth"), iteration)
                            logger.info(f"new best {cfg.best_metric} = {score:.4f}: saved best.pth")
                        checkpoint(last_path, iteration)
                        if writer is not None:
                            _log_metrics(writer, metrics, iteration, tb_images)
                            _write_json(os.path.join(cfg.run_dir, "metrics.json"),
                                        {"iteration": iteration, "checkpoint": last_path, **metrics})
                        model.train()
                    elif iteration % cfg.ckpt_interval == 0:
                        checkpoint(last_path, iteration)
                    if finished:
                        break
                    stop_now = stop.signal is not None
                    if dist_utils.broadcast_flag(stop_now) if world_size > 1 else stop_now:
                        if saved_at != iteration:
                            checkpoint(last_path, iteration)
                        bar.close()
                        logger.info(f"interrupted at iteration {iteration}/{total_iters}: saved {last_path}; "
                                    f"run the same command to resume")
                        raise Interrupted
        except DataError as err:
            if world_size > 1 or iteration == saved_at:
                raise
            # A file went bad mid-run (the up-front check only sees missing files): keep the progress.
            checkpoint(last_path, iteration)
            raise DataError(f"{one_line(err)} (training stopped at iteration {iteration}; saved {last_path}: "
                            "fix the file and run the same command to resume)") from None
    bar.close()
    evaluator.close()
    if writer is not None:
        writer.close()
    if metrics is None:
        logger.info(f"nothing to do: {last_path} is already at iteration {start_iter} of {total_iters}")
    if dist_utils.is_main_process():
        logger.info(summary(cfg, args, iteration, total_iters, time.time() - started, metrics,
                            best_iteration, best_metrics))
    return metrics


def check_same_experiment(cfg, resume, last_path):
    """A run folder holds one experiment: refuse to continue it with a config that changes it."""
    stored = (resume or {}).get("config")
    if not stored:
        return
    changes = config_changes(stored, stored_config(cfg))
    if changes:
        shown = "; ".join(changes[:4]) + (f" (+{len(changes) - 4} more)" if len(changes) > 4 else "")
        raise ConfigError(f"{cfg.run_dir} holds a run with a different config ({shown}); start a new run "
                          f"with --opts version_name=NEW_NAME (or output_dir=DIR), or continue this one with "
                          f"its config ({os.path.join(cfg.run_dir, 'config.yaml')}) or delete {last_path}")


def check_files(*datasets):
    """Every file the splits need exists (stat calls only), before any training time is spent."""
    for dataset in datasets:
        missing = dataset.missing_files()
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DataError(f"missing file {missing[0]}{more}: the dataset at {os.path.dirname(missing[0])} "
                            "is incomplete")


def one_line(err):
    """The message of a user-facing error on one line; an error raised again by a DataLoader
    worker carries the worker's traceback, of which only the original message is kept."""
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def headline(metrics):
    parts = [f"{task}.{name} {value:.2f}" for task, values in (metrics or {}).items() if isinstance(values, dict)
             for name, value in values.items() if isinstance(value, (int, float))]
    if isinstance((metrics or {}).get("delta_m"), (int, float)):
        parts.append(f"delta_m {metrics['delta_m']:+.2f}")
    return ", ".join(parts) or "(not evaluated)"


def summary(cfg, args, iteration, total_iters, seconds, last_metrics, best_iteration, best_metrics):
    """Where the results are and what to run next, for the end of a run."""
    run_dir = cfg.run_dir
    if last_metrics is None and os.path.isfile(os.path.join(run_dir, "metrics.json")):
        with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as handle:
            last_metrics = json.load(handle)
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    best_path = os.path.join(run_dir, "best.pth")
    opts = f" --opts {shlex.join(args.opts)}" if args.opts else ""
    lines = [f"run finished: iteration {iteration}/{total_iters}, {seconds / 60:.1f} min this session; "
             f"run folder {run_dir}/",
             f"  last (iteration {(last_metrics or {}).get('iteration', iteration)}): {headline(last_metrics)}  "
             f"-> {os.path.join(run_dir, 'last.pth')}"]
    if best_iteration is not None:
        lines.append(f"  best {cfg.best_metric} (iteration {best_iteration}): {headline(best_metrics)}  -> {best_path}")
    lines += [f"  metrics {os.path.join(run_dir, 'metrics.json')}, log {os.path.join(run_dir, 'log.txt')}, "
              f"TensorBoard: tensorboard --logdir {os.path.join(run_dir, 'tb')}",
              f"  evaluate:    {python} main.py --config_exp {args.config_exp} --run_mode infer "
              f"--trained_model {best_path}{opts}",
              f"  your images: {python} inference.py --ckp_path {best_path} --image_path IMAGES "
              f"--save_dir {os.path.join(run_dir, 'predictions')}"]
    return "\n".join(lines)


def _log_metrics(writer, metrics, iteration, tb_images):
    for task, values in metrics.items():
        if isinstance(values, dict):
            for name, value in values.items():
                writer.add_scalar(f"val/{task}/{name}", value, iteration)
        elif values is not None:
            writer.add_scalar(f"val/{task}", values, iteration)
    for sample_id, drawn in tb_images or []:
        for task, image in drawn.items():
            writer.add_image(f"val_{sample_id}/{task}", image, iteration, dataformats="HWC")


def _write_yaml(path, payload):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        yaml.safe_dump(payload, handle, sort_keys=False)
    os.replace(tmp, path)


def _write_json(path, payload):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# run_mode=infer: evaluate a checkpoint on the validation split
# ---------------------------------------------------------------------------------------
def infer(cfg, args, device, logger):
    if not args.trained_model:
        raise CheckpointError("run_mode=infer needs --trained_model CKPT")
    model = build_model(cfg).to(device=device, memory_format=memory_format(cfg))
    ckpt = load_checkpoint(args.trained_model)
    load_model_state(model, ckpt["model"], source=args.trained_model)
    iteration = ckpt.get("iteration")
    del ckpt
    val_set = build_dataset(cfg, "val")
    check_files(val_set)
    out_dir = os.path.join(cfg.run_dir, "infer")
    prediction_dir = os.path.join(out_dir, "predictions") if cfg.eval_kwargs.save_predictions else None
    logger.info(f"evaluating {args.trained_model} on {len(val_set)} images "
                f"({cfg.eval_kwargs.edge_thresholds_infer} boundary thresholds)")
    evaluator = build_evaluator(cfg, "infer")
    metrics = evaluate(cfg, model, make_val_loader(cfg, val_set), evaluator, device, prediction_dir=prediction_dir)
    evaluator.close()
    table = format_table(metrics)
    if dist_utils.is_main_process():
        os.makedirs(out_dir, exist_ok=True)
        _write_json(os.path.join(out_dir, "metrics.json"),
                    {"iteration": iteration, "checkpoint": args.trained_model, **metrics})
        with open(os.path.join(out_dir, "metrics.txt"), "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
    logger.info(f"metrics of {args.trained_model}:\n{table}\nwritten to {out_dir}")
    return metrics


def main(argv=None):
    """Returns the exit status: 0 done, 2 config / data / checkpoint error, 130 interrupted."""
    args = parse_args(argv)
    try:
        # Evaluation loads every weight from the checkpoint: no backbone initialisation.
        infer_opts = ["backbone_kwargs.pretrained=null"] if args.run_mode == "infer" else []
        cfg = load_config(args.config_exp, list(args.opts) + infer_opts)
        threads, reason = dist_utils.set_num_threads(cfg.num_threads, cfg.nworkers)
        device = dist_utils.init_distributed(args.device)
        logger = setup_logger(cfg.run_dir, dist_utils.get_rank())
        logger.info(f"{threads} CPU thread(s) per process ({reason})")
        if args.run_mode == "train":
            train(cfg, args, device, logger)
        else:
            infer(cfg, args, device, logger)
    except DiffusionMTLError as err:
        dist_utils.report_error(one_line(err))
        return 2
    except Interrupted:
        return 130
    except KeyboardInterrupt:
        print("interrupted twice: stopped without saving (last.pth keeps its last save)", file=sys.stderr)
        return 130
    finally:
        dist_utils.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
