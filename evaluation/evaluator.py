"""MultiTaskEvaluator: one streaming meter per task, reducible across ranks.

Usage (training-time validation and run_mode=infer alike):
    evaluator.reset()
    for batch in loader:
        outputs = model(images)
        evaluator.update(outputs["final"], batch, prelim_outputs=outputs["prelim"])
    for tensor in evaluator.state_tensors():   # distributed only
        all_reduce(tensor, SUM)                 # in place, or reduce a copy and
    metrics = evaluator.compute()               #   load_state_tensors(copies)

With `prelim_outputs`, the preliminary predictions (before the refinement stage) are
scored by a second set of meters, so every evaluation shows what the refinement added
(`compute()["prelim"]`, `refinement_gain`, `format_table`).
"""
import math

import torch

from data.transforms import content_windows
from evaluation.delta_m import delta_m
from evaluation.postprocess import activate
from utils.errors import ConfigError
from utils.tasks import LOWER_IS_BETTER, TASK_ORDER, metric_sign


class MultiTaskEvaluator:
    """Feeds each task's activated predictions to its meter; see module docstring."""

    def __init__(self, meters, reference_metrics, dataset=None, prelim_meters=None):
        self.meters = meters  # task -> meter (evaluation.metrics / evaluation.boundary)
        self.prelim_meters = prelim_meters or {}  # the same kinds of meter, for the preliminary predictions
        self.reference_metrics = reference_metrics
        self.dataset = dataset  # picks the headline metrics of Delta_m (utils.tasks.headline_metric)
        self.scored_prelim = False

    @torch.no_grad()
    def update(self, final_outputs, batch, prelim_outputs=None):
        """final_outputs (and prelim_outputs): task -> raw (B, C, H, W); batch: targets and meta
        (size and offset: where each sample's content lies, `data.transforms.content_windows`)."""
        if prelim_outputs is not None and not self.prelim_meters:
            raise ValueError("prelim_outputs given to an evaluator built without prelim_meters")
        windows = content_windows(batch["meta"])  # (B, 4): top, left, height, width
        for meters, outputs in ((self.meters, final_outputs), (self.prelim_meters, prelim_outputs)):
            if outputs is None:
                continue
            for task, meter in meters.items():
                prediction = activate(task, outputs[task])
                meter.update(prediction, batch[task].to(prediction.device), windows)
        self.scored_prelim |= prelim_outputs is not None

    def state_tensors(self):
        """The live state (int64 counts, float64 sums, on CPU), same shapes on every rank.

        Summing each tensor over ranks (in place) makes `compute()` cover all ranks' data.
        """
        return [tensor for meter in self._all_meters() for tensor in meter.state_tensors()]

    def load_state_tensors(self, tensors):
        """Overwrite the state with `tensors` (e.g. reduced copies on another device)."""
        own = self.state_tensors()
        if len(own) != len(tensors):
            raise ValueError(f"expected {len(own)} state tensors, got {len(tensors)}")
        for target, source in zip(own, tensors):
            target.copy_(source)

    def compute(self):
        """{task: {metric: value}} plus "delta_m" when reference metrics are configured, and
        "prelim" (the same layout, for the preliminary predictions) once they were scored."""
        metrics = self._compute(self.meters)
        if self.scored_prelim:
            metrics["prelim"] = self._compute(self.prelim_meters)
        return metrics

    def _compute(self, meters):
        metrics = {task: meter.compute() for task, meter in meters.items()}
        gain = delta_m(metrics, self.reference_metrics, self.dataset)
        if gain is not None:
            metrics["delta_m"] = gain
        return metrics

    def _all_meters(self):
        return [*self.meters.values(), *self.prelim_meters.values()]

    def reset(self):
        for meter in self._all_meters():
            meter.reset()
        self.scored_prelim = False

    def close(self):
        """Stop worker processes (boundary evaluation); the evaluator stays usable."""
        for meter in self._all_meters():
            if hasattr(meter, "close"):
                meter.close()


def refinement_gain(metrics):
    """What the refinement stage added: {task: {metric: final - prelim}} signed so that a
    positive value is an improvement (prelim - final for lower-is-better metrics), plus
    "delta_m" when both have one. {} when `metrics` has no "prelim" section."""
    prelim = metrics.get("prelim")
    if not prelim:
        return {}
    gain = {task: {name: metric_sign(name) * (value - prelim[task][name]) for name, value in values.items()}
            for task, values in metrics.items() if task in prelim and task != "delta_m"}
    if "delta_m" in metrics and "delta_m" in prelim:
        gain["delta_m"] = metrics["delta_m"] - prelim["delta_m"]
    return gain


def _gain_text(gain):
    return f"{gain:+.4f} " + ("better" if gain > 0 else "worse" if gain < 0 else "same")


def format_table(metrics):
    """An aligned text table of `compute()`'s result; with a "prelim" section, the final and
    preliminary values side by side and what the refinement changed (see refinement_gain)."""
    prelim, gain = metrics.get("prelim"), refinement_gain(metrics)
    rows = [("task", "metric", "final", "prelim", "refinement") if prelim else ("task", "metric", "value")]
    for task in sorted((t for t in metrics if t not in ("delta_m", "prelim")), key=TASK_ORDER.index):
        for name, value in metrics[task].items():
            extra = (f"{prelim[task][name]:.4f}", _gain_text(gain[task][name])) if prelim else ()
            rows.append((task, name, f"{value:.4f}", *extra))
    if "delta_m" in metrics:
        extra = (f"{prelim['delta_m']:+.4f}", _gain_text(gain["delta_m"])) if prelim else ()
        rows.append(("delta_m", "%", f"{metrics['delta_m']:+.4f}", *extra))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(f"{cell:<{width}}" if i < 2 else f"{cell:>{width}}" for i, (cell, width) in
                       enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def best_score(metrics, best_metric):
    """The model-selection score (higher is better) named by cfg.best_metric.

    'delta_m' or '<task>.<metric>'; metrics where lower is better are negated. NaN
    (nothing evaluated) becomes -inf so it never counts as an improvement.
    """
    if best_metric == "delta_m":
        if "delta_m" not in metrics:
            raise ConfigError("best_metric 'delta_m' needs reference_metrics for at least one task")
        value = metrics["delta_m"]
    else:
        task, _, name = best_metric.partition(".")
        if task not in metrics or task in ("delta_m", "prelim") or name not in metrics[task]:
            available = ["delta_m"] * ("delta_m" in metrics) + [
                f"{t}.{m}" for t, values in metrics.items() if t not in ("delta_m", "prelim") for m in values]
            raise ConfigError(f"best_metric '{best_metric}' is not computed; available: {available}")
        value = metrics[task][name]
        if name in LOWER_IS_BETTER:
            value = -value
    return -math.inf if math.isnan(value) else float(value)
