"""DiffusionMTL training and evaluation.

One process:      python main.py --config_exp configs/demo.yml --run_mode train
Several (DDP):    torchrun --nproc_per_node=N main.py --config_exp CFG --run_mode train
Evaluation:       python main.py --config_exp CFG --run_mode infer --trained_model CKPT

A training run writes everything under `cfg.run_dir` and, started again with the same
command, resumes from `last.pth` at the exact iteration it reached.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import cv2
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import build_dataset
from evaluation import best_score, build_evaluator, format_table
from evaluation.export import save_prediction_png
from evaluation.postprocess import activate
from losses import build_loss
from models import build_model
from utils import distributed as dist_utils
from utils.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from utils.config import load_config
from utils.errors import CheckpointError, DiffusionMTLError
from utils.logger import setup_logger
from utils.visualization import colorize


class TrainingDiverged(DiffusionMTLError):
    """The loss became NaN or infinite."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_exp", required=True, help="YAML config (see configs/)")
    parser.add_argument("--run_mode", choices=("train", "infer"), default="train")
    parser.add_argument("--trained_model", default=None,
                        help="checkpoint to evaluate (infer) or to initialise from (train)")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto")
    parser.add_argument("--opts", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. max_iter=100 optimizer_kwargs.lr=1e-4")
    return parser.parse_args(argv)


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


def build_optimizer(cfg, model):
    kwargs = cfg.optimizer_kwargs
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=kwargs.lr, weight_decay=kwargs.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=kwargs.lr, weight_decay=kwargs.weight_decay)
    return torch.optim.SGD(params, lr=kwargs.lr, momentum=kwargs.momentum, weight_decay=kwargs.weight_decay)


def build_scheduler(cfg, optimizer, total_iters):
    """Poly decay stepped once per iteration: lr = lr0 * (1 - it / total) ** power."""
    if cfg.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    power = cfg.scheduler_kwargs.power
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1.0 - it / total_iters) ** power)


def _worker_init(_):
    cv2.setNumThreads(0)  # OpenCV's own thread pool in every loader worker oversubscribes the CPU


def make_val_loader(cfg, dataset):
    sampler = dist_utils.ShardSampler(len(dataset))
    return DataLoader(dataset, batch_size=cfg.valBatch, sampler=sampler, num_workers=cfg.nworkers,
                      pin_memory=torch.cuda.is_available(), drop_last=False, worker_init_fn=_worker_init,
                      generator=torch.Generator())


def to_device(batch, device):
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def autocast(cfg, device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=bool(cfg.amp) and device.type == "cuda")


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
    bar = tqdm(loader, desc="eval", disable=not dist_utils.is_main_process(), leave=False, dynamic_ncols=True)
    for batch in bar:
        batch = to_device(batch, device)
        with autocast(cfg, device):
            outputs = model(batch["image"])
        final = {task: out.float() for task, out in outputs["final"].items()}
        evaluator.update(final, batch)
        if prediction_dir is not None:
            save_predictions(prediction_dir, final, batch)
        if tb_images is not None and len(tb_images) < cfg.tb_images:
            tb_images.extend(_first_images(cfg, final, batch, cfg.tb_images - len(tb_images)))
    dist_utils.all_reduce_sum(evaluator.state_tensors())
    return evaluator.compute()


def save_predictions(folder, final, batch):
    """Per-image PNGs for offline evaluation (label ids, probabilities, normals, depth in mm)."""
    for task, output in final.items():
        prediction = activate(task, output).cpu()
        os.makedirs(os.path.join(folder, task), exist_ok=True)
        for i, sample_id in enumerate(batch["meta"]["id"]):
            height, width = (int(v) for v in batch["meta"]["size"][i])
            save_prediction_png(os.path.join(folder, task, f"{sample_id}.png"), task,
                                prediction[i, ..., :height, :width].numpy())


def _first_images(cfg, final, batch, count):
    """(id, {task: uint8 HxWx3}) pairs for TensorBoard, drawn with utils.visualization."""
    images = []
    for i in range(min(count, batch["image"].shape[0])):
        height, width = (int(v) for v in batch["meta"]["size"][i])
        drawn = {task: colorize(task, activate(task, out[i:i + 1])[0, ..., :height, :width].cpu().numpy())
                 for task, out in final.items()}
        images.append((batch["meta"]["id"][i], drawn))
    return images


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------
def train(cfg, args, device, logger):
    rank, world_size = dist_utils.get_rank(), dist_utils.get_world_size()
    seed_everything(cfg.seed * world_size + rank)

    train_set = build_dataset(cfg, "train")
    val_set = build_dataset(cfg, "val")
    sampler = dist_utils.ResumableDistributedSampler(len(train_set), cfg.trBatch, cfg.seed)
    train_loader = DataLoader(train_set, batch_size=cfg.trBatch, sampler=sampler, num_workers=cfg.nworkers,
                              pin_memory=device.type == "cuda", drop_last=True, worker_init_fn=_worker_init,
                              # Its own generator: starting an epoch (or a resumed one) must not
                              # draw from the global RNG that the diffusion noise uses.
                              generator=torch.Generator())
    val_loader = make_val_loader(cfg, val_set)
    iters_per_epoch = sampler.batches_per_epoch
    total_iters = cfg.max_iter or cfg.epochs * iters_per_epoch

    model = build_model(cfg).to(device)
    if args.trained_model:
        load_model_state(model, load_checkpoint(args.trained_model)["model"], source=args.trained_model)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, total_iters)
    criterion = build_loss(cfg)
    evaluator = build_evaluator(cfg, "train")

    start_iter, best = 0, -math.inf
    last_path = os.path.join(cfg.run_dir, "last.pth")
    if os.path.isfile(last_path):
        ckpt = load_checkpoint(last_path)
        load_model_state(model, ckpt["model"], source=last_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_iter, best = ckpt["iteration"], ckpt["best_score"]
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
        # Partial labels leave some task layers unused in a step: DDP must allow that.
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=True)

    writer = None
    if dist_utils.is_main_process():
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(os.path.join(cfg.run_dir, "tb"))
    logger.info(f"training {cfg.version_name}: {len(train_set)} train / {len(val_set)} val images, "
                f"{world_size} process(es) on {device}, {total_iters} iterations "
                f"({iters_per_epoch} per epoch), tasks {cfg.TASKS.NAMES}, ssl_type {cfg.ssl_type}")

    def checkpoint(path, iteration):
        rng_states = dist_utils.all_gather_objects(capture_rng())
        if dist_utils.is_main_process():
            save_checkpoint(path, {
                "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": None, "iteration": iteration,
                "best_score": best, "rng": rng_states, "config": plain(cfg),
            })
        dist_utils.barrier()

    iteration = start_iter
    metrics = None
    if cfg.eval_at_start and start_iter == 0:
        # The untrained model's scores: the baseline that shows what training achieved.
        baseline = evaluate(cfg, model, val_loader, evaluator, device)
        logger.info(f"evaluation at iteration 0 (untrained):\n{format_table(baseline)}")
    bar = tqdm(total=total_iters, initial=start_iter, desc="train", dynamic_ncols=True,
               disable=not dist_utils.is_main_process())
    started = time.time()
    while iteration < total_iters:
        epoch, batch_in_epoch = divmod(iteration, iters_per_epoch)
        sampler.set_position(epoch, batch_in_epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        model.train()
        for batch in train_loader:
            batch = to_device(batch, device)
            with autocast(cfg, device):
                outputs = model(batch["image"], batch["task_mask"])
                loss, per_task = criterion(outputs, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_param.max_norm,
                                                       cfg.grad_clip_param.norm_type)
            # Checked before the step, so the weights (and last.pth) stay finite.
            if dist_utils.broadcast_flag(not (torch.isfinite(loss) and torch.isfinite(grad_norm)).item()):
                raise TrainingDiverged(
                    f"loss is {loss.item()} (gradient norm {grad_norm.item()}) at iteration {iteration + 1}; "
                    f"stopping. The last good checkpoint is "
                    f"{last_path if os.path.isfile(last_path) else '(none yet)'}; lower optimizer_kwargs.lr "
                    "or check the data")
            optimizer.step()
            scheduler.step()
            iteration += 1
            bar.update(1)

            if writer is not None and iteration % cfg.log_interval == 0:
                lr = optimizer.param_groups[0]["lr"]
                writer.add_scalar("train/loss", loss.item(), iteration)
                writer.add_scalar("train/lr", lr, iteration)
                writer.add_scalar("train/grad_norm", grad_norm.item(), iteration)
                for task, value in per_task.items():
                    writer.add_scalar(f"train/loss_{task}", value.item(), iteration)
                rate = (iteration - start_iter) / max(time.time() - started, 1e-9)
                logger.info(f"iter {iteration}/{total_iters} loss {loss.item():.4f} lr {lr:.2e} "
                            f"({rate:.2f} it/s) " + " ".join(f"{t} {v.item():.4f}" for t, v in per_task.items()))
                bar.set_postfix(loss=f"{loss.item():.3f}")

            finished = iteration >= total_iters
            if iteration % cfg.val_interval == 0 or finished:
                tb_images = [] if writer is not None else None
                metrics = evaluate(cfg, model, val_loader, evaluator, device, tb_images=tb_images)
                score = best_score(metrics, cfg.best_metric)
                logger.info(f"evaluation at iteration {iteration}:\n{format_table(metrics)}")
                if writer is not None:
                    _log_metrics(writer, metrics, iteration, tb_images)
                    _write_json(os.path.join(cfg.run_dir, "metrics.json"), metrics)
                if score > best:
                    best = score
                    checkpoint(os.path.join(cfg.run_dir, "best.pth"), iteration)
                    logger.info(f"new best {cfg.best_metric} = {score:.4f}: saved best.pth")
                checkpoint(last_path, iteration)
                model.train()
            elif iteration % cfg.ckpt_interval == 0:
                checkpoint(last_path, iteration)
            if finished:
                break
    bar.close()
    evaluator.close()
    if writer is not None:
        writer.close()
    if metrics is None:
        logger.info(f"nothing to do: {last_path} is already at iteration {start_iter} of {total_iters}")
    return metrics


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
    model = build_model(cfg).to(device)
    load_model_state(model, load_checkpoint(args.trained_model)["model"], source=args.trained_model)
    val_set = build_dataset(cfg, "val")
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
        _write_json(os.path.join(out_dir, "metrics.json"), metrics)
        with open(os.path.join(out_dir, "metrics.txt"), "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
    logger.info(f"metrics of {args.trained_model}:\n{table}\nwritten to {out_dir}")
    return metrics


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config_exp, args.opts)
        device = dist_utils.init_distributed(args.device)
        logger = setup_logger(cfg.run_dir, dist_utils.get_rank())
        if args.run_mode == "train":
            train(cfg, args, device, logger)
        else:
            infer(cfg, args, device, logger)
    except DiffusionMTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        dist_utils.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
