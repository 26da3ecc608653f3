"""Evaluation on the validation split: training-time validation and `run_mode=infer`.

Every rank evaluates its shard; the meters' states are summed once across ranks, so the
metrics are those of the whole split. The preliminary predictions (before the refinement
stage) are scored next to the final ones (`metrics["prelim"]`).
"""
import os
import sys

import torch

from data.datasets import build_dataset
from data.loaders import make_val_loader
from data.transforms import content_windows
from engine.checkpoint import load_checkpoint, load_model_state
from engine.preflight import check_files, check_val_sizes
from engine.predict import Runtime, activated_maps, forward
from engine.step import to_device
from evaluation import build_evaluator, format_table
from evaluation.visualization import colorize, dataset_style, write_prediction
from models import build_model
from utils import distributed
from utils.errors import CheckpointError
from utils.files import atomic_write_json, atomic_write_text
from utils.logger import run_header
from utils.progress import progress_bar


def show_progress():
    """Progress bars only on an interactive terminal: redirected logs get the log lines alone."""
    return distributed.is_main_process() and sys.stderr.isatty()


@torch.no_grad()
def evaluate(model, loader, evaluator, runtime, style=None, prediction_dir=None, tb_images=None, tb_count=0):
    """Metrics of `model` on `loader` ({task: {metric: value}}, "delta_m", "prelim").

    runtime: an engine.predict.Runtime (device, autocast, memory format). prediction_dir:
    also write each image's predictions there (the files inference.py writes); tb_images:
    a list that receives (id, {task: RGB}) of the first `tb_count` images. Both are drawn
    with `style`, the dataset's palettes (`evaluation.visualization.dataset_style`).
    """
    model.eval()
    evaluator.reset()
    for batch in progress_bar(loader, show_progress(), desc="eval", leave=False, dynamic_ncols=True):
        batch = to_device(batch, runtime.device)
        outputs = forward(model, batch["image"], runtime)
        evaluator.update(outputs["final"], batch, prelim_outputs=outputs["prelim"])
        wanted = min(len(batch["meta"]["id"]), tb_count - len(tb_images)) if tb_images is not None else 0
        if prediction_dir is not None or wanted > 0:
            windows = content_windows(batch["meta"])
            count = len(windows) if prediction_dir is not None else wanted
            predictions = activated_maps(outputs["final"], windows[:count])
            if prediction_dir is not None:
                save_predictions(prediction_dir, predictions, batch["meta"]["id"], style)
            if wanted > 0:
                tb_images.extend((sample_id, {task: colorize(task, p, style=style) for task, p in per_task.items()})
                                 for sample_id, per_task in zip(batch["meta"]["id"][:wanted], predictions))
    distributed.all_reduce_sum(evaluator.state_tensors())
    return evaluator.compute()


def save_predictions(folder, predictions, sample_ids, style):
    """Per-image PNGs, the files inference.py writes: palette PNGs of label ids, grey
    probabilities, RGB normals, depth colour-mapped plus depth_mm/ in millimetres."""
    for sample_id, per_task in zip(sample_ids, predictions):
        for task, prediction in per_task.items():
            write_prediction(folder, task, sample_id, prediction, style=style)


def evaluate_checkpoint(cfg, checkpoint_path, device, logger):
    """run_mode=infer: the metrics of `checkpoint_path` on the validation split, written to
    <run folder>/infer/ (metrics.json, metrics.txt, predictions/ with save_predictions)."""
    if not checkpoint_path:
        raise CheckpointError("run_mode=infer needs --checkpoint CKPT")
    runtime = Runtime.of(cfg, device)
    model = runtime.place(build_model(cfg))
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
        metrics = evaluate(model, make_val_loader(cfg, val_set, device), evaluator, runtime,
                           style=dataset_style(cfg), prediction_dir=prediction_dir)
    finally:
        evaluator.close()
    table = format_table(metrics)
    if distributed.is_main_process():
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_json(os.path.join(out_dir, "metrics.json"),
                          {"iteration": iteration, "checkpoint": checkpoint_path, **metrics}, indent=2)
        atomic_write_text(os.path.join(out_dir, "metrics.txt"), table + "\n")
    logger.info(f"metrics of {checkpoint_path}:\n{table}\nwritten to {out_dir}")
    return metrics
