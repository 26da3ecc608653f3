"""Evaluation on the validation split: training-time validation and `run_mode=infer`.

Every rank evaluates its shard; the meters' states are summed once across ranks, so the
metrics are those of the whole split. The preliminary predictions (before the refinement
stage) are scored next to the final ones (`metrics["prelim"]`).
"""
import json
import os
import sys

import torch

from data.datasets import build_dataset
from data.loaders import make_val_loader
from data.transforms import content_windows, crop_to_content
from engine.checkpoint import load_checkpoint, load_model_state
from engine.preflight import check_files, check_val_sizes
from engine.step import autocast, memory_format, to_device
from evaluation import build_evaluator, format_table
from evaluation.postprocess import activate
from evaluation.visualization import colorize, dataset_style, write_prediction
from models import build_model
from utils import distributed
from utils.errors import CheckpointError
from utils.logger import run_header
from utils.progress import progress_bar


def show_progress():
    """Progress bars only on an interactive terminal: redirected logs get the log lines alone."""
    return distributed.is_main_process() and sys.stderr.isatty()


@torch.no_grad()
def evaluate(cfg, model, loader, evaluator, device, prediction_dir=None, tb_images=None):
    """Metrics of `model` on `loader` ({task: {metric: value}}, "delta_m", "prelim").

    prediction_dir: also write each image's predictions there (the files inference.py
    writes); tb_images: a list that receives (id, {task: RGB}) of the first cfg.tb_images.
    """
    model.eval()
    evaluator.reset()
    layout, style = memory_format(cfg), dataset_style(cfg)
    for batch in progress_bar(loader, show_progress(), desc="eval", leave=False, dynamic_ncols=True):
        batch = to_device(batch, device)
        with autocast(cfg, device):
            outputs = model(batch["image"].contiguous(memory_format=layout))
        final = {task: out.float() for task, out in outputs["final"].items()}
        prelim = {task: out.float() for task, out in outputs["prelim"].items()}
        evaluator.update(final, batch, prelim_outputs=prelim)
        if prediction_dir is not None:
            save_predictions(prediction_dir, final, batch["meta"], style)
        if tb_images is not None and len(tb_images) < cfg.tb_images:
            tb_images.extend(drawn_images(final, batch["meta"], cfg.tb_images - len(tb_images), style))
    distributed.all_reduce_sum(evaluator.state_tensors())
    return evaluator.compute()


def save_predictions(folder, final, meta, style):
    """Per-image PNGs, the files inference.py writes: palette PNGs of label ids, grey
    probabilities, RGB normals, depth colour-mapped plus depth_mm/ in millimetres."""
    windows = content_windows(meta)  # each sample's content in the padded canvas
    for task, output in final.items():
        prediction = activate(task, output).cpu()
        for i, sample_id in enumerate(meta["id"]):
            content = crop_to_content(prediction[i], windows[i]).numpy()
            write_prediction(folder, task, sample_id, content, style=style)


def drawn_images(final, meta, count, style):
    """(id, {task: uint8 HxWx3}) of the first `count` samples, for TensorBoard."""
    images, windows = [], content_windows(meta)
    for i in range(min(count, len(meta["id"]))):
        drawn = {task: colorize(task, crop_to_content(activate(task, out[i:i + 1])[0], windows[i]).cpu().numpy(),
                                style=style)
                 for task, out in final.items()}
        images.append((meta["id"][i], drawn))
    return images


def write_json(path, payload):
    """Atomic JSON write (a reader never sees half a file)."""
    write_text(path, json.dumps(payload, indent=2))


def write_text(path, text):
    """Atomic text write: a temporary file in the same folder, then renamed over `path`."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def evaluate_checkpoint(cfg, checkpoint_path, device, logger):
    """run_mode=infer: the metrics of `checkpoint_path` on the validation split, written to
    <run folder>/infer/ (metrics.json, metrics.txt, predictions/ with save_predictions)."""
    if not checkpoint_path:
        raise CheckpointError("run_mode=infer needs --trained_model CKPT")
    model = build_model(cfg).to(device=device, memory_format=memory_format(cfg))
    state = load_checkpoint(checkpoint_path)
    load_model_state(model, state["model"], source=checkpoint_path)
    iteration = state.get("iteration")
    del state
    val_set = build_dataset(cfg, "val")
    check_files(val_set)
    check_val_sizes(val_set, cfg.val_size)
    out_dir = os.path.join(cfg.run_dir, "infer")
    prediction_dir = os.path.join(out_dir, "predictions") if cfg.eval_kwargs.save_predictions else None
    edge = f" ({cfg.eval_kwargs.edge_thresholds_infer} boundary thresholds)" if "edge" in cfg.TASKS.NAMES else ""
    run_header(logger, f"evaluating {checkpoint_path} on {len(val_set)} images{edge}")
    evaluator = build_evaluator(cfg, "infer")
    try:
        metrics = evaluate(cfg, model, make_val_loader(cfg, val_set, device), evaluator, device,
                           prediction_dir=prediction_dir)
    finally:
        evaluator.close()
    table = format_table(metrics)
    if distributed.is_main_process():
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, "metrics.json"), {"iteration": iteration, "checkpoint": checkpoint_path,
                                                           **metrics})
        with open(os.path.join(out_dir, "metrics.txt"), "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
    logger.info(f"metrics of {checkpoint_path}:\n{table}\nwritten to {out_dir}")
    return metrics
