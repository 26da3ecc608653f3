"""Multi-task gain Delta_m (Maninis et al. 2019; README, Metrics).

Delta_m = mean over tasks t of (-1)^{l_t} (M_t - M_ref,t) / M_ref,t * 100, with M_t the
task's headline metric on the dataset (`utils.tasks.headline_metric`) and l_t = 1 when
lower is better. The shipped configs' `reference_metrics` are the paper's single-task
models, so a run's Delta_m is the number the paper's tables print.
"""
from utils.errors import ConfigError
from utils.tasks import RENAMED_METRICS, TASK_METRIC, headline_metric


def headline_reference(reference_metrics, dataset, task):
    """The reference value of `task`'s headline metric on `dataset`; None when the task has
    no reference. A reference without the headline metric (a typo, an old name such as
    `abs_err`, another column) is a ConfigError rather than a task silently left out."""
    given = reference_metrics.get(task)
    if not given:
        return None
    name = headline_metric(dataset, task)[0]
    if name not in given:
        renamed = [f" ('{old}' is now named '{RENAMED_METRICS[old]}')" for old in given if old in RENAMED_METRICS]
        raise ConfigError(f"reference_metrics.{task}: Delta_m on {dataset or 'this dataset'} compares "
                          f"{task}.{name}, got {sorted(given)}{''.join(renamed[:1])}")
    return given[name]


def check_reference_metrics(reference_metrics, dataset, source):
    """Raise ConfigError (prefixed with `source`, the config file) unless every task's
    reference names the task's headline metric on `dataset`."""
    for task in reference_metrics:
        try:
            headline_reference(reference_metrics, dataset, task)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None


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
        name, lower_is_better = headline_metric(dataset, task)
        sign = -1.0 if lower_is_better else 1.0
        gains.append(sign * (values[name] - reference) / reference * 100)
    if not gains:
        return None
    return sum(gains) / len(gains)
