"""MultiTaskEvaluator: one streaming meter per task, reducible across ranks.

Usage (training-time validation and run_mode=infer alike):
    evaluator.reset()
    for batch in loader:
        evaluator.update(model(images)["final"], batch)
    for tensor in evaluator.state_tensors():   # distributed only
        all_reduce(tensor, SUM)                 # in place, or reduce a copy and
    metrics = evaluator.compute()               #   load_state_tensors(copies)
"""
import math

import torch

from evaluation.delta_m import delta_m
from evaluation.postprocess import activate
from utils.errors import ConfigError
from utils.tasks import TASK_ORDER

# Metric names where lower is better (best_score negates them).
LOWER_IS_BETTER = {"mErr", "rmse", "abs_err", "absErr", "relErr"}


class MultiTaskEvaluator:
    """Feeds each task's activated predictions to its meter; see module docstring."""

    def __init__(self, meters, reference_metrics, dataset=None):
        self.meters = meters  # task -> meter (evaluation.metrics / evaluation.boundary)
        self.reference_metrics = reference_metrics
        self.dataset = dataset  # picks the headline metrics of Delta_m (utils.tasks.headline_metric)

    @torch.no_grad()
    def update(self, final_outputs, batch):
        """final_outputs: task -> raw (B, C, H, W); batch: targets and meta.size (B, 2)."""
        sizes = torch.as_tensor(batch["meta"]["size"], dtype=torch.int64)  # (B, 2): original H, W
        for task, meter in self.meters.items():
            prediction = activate(task, final_outputs[task])
            meter.update(prediction, batch[task].to(prediction.device), sizes)

    def state_tensors(self):
        """The live state (int64 counts, float64 sums, on CPU), same shapes on every rank.

        Summing each tensor over ranks (in place) makes `compute()` cover all ranks' data.
        """
        return [tensor for meter in self.meters.values() for tensor in meter.state_tensors()]

    def load_state_tensors(self, tensors):
        """Overwrite the state with `tensors` (e.g. reduced copies on another device)."""
        own = self.state_tensors()
        if len(own) != len(tensors):
            raise ValueError(f"expected {len(own)} state tensors, got {len(tensors)}")
        for target, source in zip(own, tensors):
            target.copy_(source)

    def compute(self):
        """{task: {metric: value}} plus "delta_m" when reference metrics are configured."""
        metrics = {task: meter.compute() for task, meter in self.meters.items()}
        gain = delta_m(metrics, self.reference_metrics, self.dataset)
        if gain is not None:
            metrics["delta_m"] = gain
        return metrics

    def reset(self):
        for meter in self.meters.values():
            meter.reset()

    def close(self):
        """Stop worker processes (boundary evaluation); the evaluator stays usable."""
        for meter in self.meters.values():
            if hasattr(meter, "close"):
                meter.close()


def format_table(metrics):
    """An aligned text table of `compute()`'s result."""
    rows = [("task", "metric", "value")]
    for task in sorted((t for t in metrics if t != "delta_m"), key=TASK_ORDER.index):
        for name, value in metrics[task].items():
            rows.append((task, name, f"{value:.4f}"))
    if "delta_m" in metrics:
        rows.append(("delta_m", "%", f"{metrics['delta_m']:+.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{task:<{widths[0]}}  {name:<{widths[1]}}  {value:>{widths[2]}}" for task, name, value in rows]
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
        if task not in metrics or task == "delta_m" or name not in metrics[task]:
            available = ["delta_m"] * ("delta_m" in metrics) + [
                f"{t}.{m}" for t, values in metrics.items() if t != "delta_m" for m in values]
            raise ConfigError(f"best_metric '{best_metric}' is not computed; available: {available}")
        value = metrics[task][name]
        if name in LOWER_IS_BETTER:
            value = -value
    return -math.inf if math.isnan(value) else float(value)
