"""Evaluation: `build_evaluator(cfg, mode)` returns a streaming MultiTaskEvaluator."""
from evaluation.boundary import BoundaryMeter, resolve_workers
from evaluation.evaluator import MultiTaskEvaluator, best_score, format_table, refinement_gain
from evaluation.metrics import DepthMeter, InverseDepthMeter, NormalsMeter, SaliencyMeter, SegmentationMeter
from evaluation.postprocess import activate
from utils.distributed import get_world_size

MODES = ("train", "infer")


def _boundary_meter(cfg, mode):
    num_thresholds = cfg.eval_kwargs[f"edge_thresholds_{mode}"]
    # edge_images_train > 0 limits training-time validation to the first N images (default: all).
    limit = cfg.eval_kwargs.edge_images_train if mode == "train" else 0
    per_rank = -(-limit // get_world_size())
    return BoundaryMeter(num_thresholds, cfg.edge_maxdist, cfg.ignore_index,
                         workers=resolve_workers(cfg.eval_kwargs.edge_workers), max_images=per_rank)


# Depth meter per dataset: Cityscapes stores inverse depth, scored as MTPSL does.
DEPTH_METERS = {"Cityscapes": InverseDepthMeter}

# task -> fn(cfg, mode) -> meter
_METERS = {
    "semseg": lambda cfg, mode: SegmentationMeter(cfg.TASKS.NUM_OUTPUT["semseg"], cfg.ignore_index),
    "human_parts": lambda cfg, mode: SegmentationMeter(cfg.TASKS.NUM_OUTPUT["human_parts"], cfg.ignore_index),
    "sal": lambda cfg, mode: SaliencyMeter(cfg.ignore_index),
    "normals": lambda cfg, mode: NormalsMeter(cfg.ignore_index),
    "depth": lambda cfg, mode: DEPTH_METERS.get(cfg.val_db_name, DepthMeter)(cfg.ignore_index),
    "edge": _boundary_meter,
}


def build_evaluator(cfg, mode):
    """Evaluator for cfg.TASKS.NAMES; `mode` ('train' / 'infer') picks the boundary thresholds.

    A second set of meters scores the preliminary predictions (`update(..., prelim_outputs=)`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    meters, prelim_meters = ({task: _METERS[task](cfg, mode) for task in cfg.TASKS.NAMES} for _ in range(2))
    return MultiTaskEvaluator(meters, cfg.reference_metrics, dataset=cfg.val_db_name, prelim_meters=prelim_meters)


__all__ = ["build_evaluator", "MultiTaskEvaluator", "activate", "best_score", "format_table", "refinement_gain"]
