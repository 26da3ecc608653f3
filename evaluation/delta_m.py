"""Multi-task gain Delta_m (Maninis et al. 2019; docs/metrics.md).

Delta_m = mean over tasks t of (-1)^{l_t} (M_t - M_ref,t) / M_ref,t * 100, with M_t the
task's headline metric on the dataset (`utils.tasks.headline_metric`) and l_t = 1 when
lower is better. The shipped configs' `reference_metrics` are the paper's single-task
models, so a run's Delta_m is the number the paper's tables print.
"""
from utils.tasks import TASK_METRIC, headline_metric, headline_reference, metric_sign


def delta_m(metrics, reference_metrics, dataset=None):
    """Delta_m (%) over the tasks of `metrics` that have a reference; None when none has.

    metrics: {task: {metric: value}}; reference_metrics: the same layout (cfg.reference_metrics);
    dataset: cfg.val_db_name (e.g. depth is scored by absErr on the MTAN layouts), None for
    the defaults.
    """
    gains = []
    for task, values in metrics.items():
        if task not in TASK_METRIC:
            continue
        reference = headline_reference(reference_metrics, dataset, task)
        if reference is None:
            continue
        name = headline_metric(dataset, task)[0]
        gains.append(metric_sign(name) * (values[name] - reference) / reference * 100)
    if not gains:
        return None
    return sum(gains) / len(gains)
