"""What a training run tells: log lines (console and log.txt), TensorBoard, metrics.json and
the final summary. Only rank 0 writes; a logging backend is added here and nowhere else."""
import json
import os
import shlex
import sys
import time

from engine.validation import show_progress
from evaluation import format_table, refinement_gain
from utils import distributed
from utils.files import atomic_write_json, atomic_write_text
from utils.progress import progress_bar


def _scalars(metrics, prefix):
    """(tag, value) of every number in a metrics dict, nested sections flattened."""
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}/{key}")
        elif isinstance(value, (int, float)):
            yield f"{prefix}/{key}", value


def headline(metrics):
    """One line of a metrics dict: 'semseg.mIoU 12.30, ..., delta_m +1.20'."""
    parts = [f"{task}.{name} {value:.4g}" for task, values in (metrics or {}).items()
             if isinstance(values, dict) and task != "prelim"
             for name, value in values.items() if isinstance(value, (int, float))]
    if isinstance((metrics or {}).get("delta_m"), (int, float)):
        parts.append(f"delta_m {metrics['delta_m']:+.2f}")
    return ", ".join(parts) or "(not evaluated)"


def gain_line(metrics):
    """What the refinement stage added at this evaluation (positive = better), per task."""
    gain = refinement_gain(metrics or {})
    parts = [f"{task}.{name} {value:+.4g}" for task, values in gain.items() if isinstance(values, dict)
             for name, value in values.items()]
    if "delta_m" in gain:
        parts.append(f"delta_m {gain['delta_m']:+.2f}")
    return ", ".join(parts)


class Reporter:
    """Log lines at the first, every log_interval-th and the last iteration (with seconds per
    iteration and the time left), evaluations as tables, TensorBoard scalars and images,
    metrics.json after every evaluation."""

    def __init__(self, logger, run_dir, tasks, total_iters, start_iter, log_interval, best_metric):
        self.logger, self.run_dir, self.tasks = logger, run_dir, list(tasks)
        self.total_iters, self.start_iter = total_iters, start_iter
        self.log_interval, self.best_metric = log_interval, best_metric
        self.writer = None
        if distributed.is_main_process():
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(run_dir, "tb"))
        self.bar = progress_bar(shown=show_progress(), total=total_iters, initial=start_iter, desc="train",
                                dynamic_ncols=True)
        self.started = time.time()

    def start_clock(self):
        """Time the iterations from here (after any evaluation before the loop)."""
        self.started = time.time()

    def due(self, iteration):
        """Whether `iteration` gets a log line (so the loop checks the step's finiteness then)."""
        return (iteration == self.start_iter + 1 or iteration % self.log_interval == 0
                or iteration == self.total_iters)

    def step(self, iteration, loss, per_task, grad_norm, lr):
        """Log one training iteration (reads the step's tensors: a host synchronisation)."""
        self.bar.update(1)
        if not self.due(iteration):
            return
        loss_value = loss.item()
        self.bar.set_postfix(loss=f"{loss_value:.3f}")
        if self.writer is not None:
            for tag, value in (("train/loss", loss_value), ("train/lr", lr), ("train/grad_norm", grad_norm.item())):
                self.writer.add_scalar(tag, value, iteration)
            for task, value in per_task.items():
                self.writer.add_scalar(f"train/loss_{task}", value.item(), iteration)
        done = iteration - self.start_iter
        per_iter = (time.time() - self.started) / done
        left = per_iter * (self.total_iters - iteration)
        # One column per task, '-' where no sample of the batch labels it.
        columns = " ".join(f"{t} {per_task[t].item():7.4f}" if t in per_task else f"{t} {'-':>7}"
                           for t in self.tasks)
        self.logger.info(f"iter {iteration:{len(str(self.total_iters))}d}/{self.total_iters} loss {loss_value:8.4f} "
                         f"lr {lr:.2e} ({per_iter:.2f} s/it, {_duration(left)} left) | {columns}")

    def evaluation(self, iteration, metrics, tb_images=(), untrained=False):
        what = "iteration 0 (untrained)" if untrained else f"iteration {iteration}"
        self.logger.info(f"evaluation at {what}:\n{format_table(metrics)}")
        if self.writer is None:  # not rank 0
            return
        append_history(os.path.join(self.run_dir, HISTORY), iteration, metrics)
        if untrained:
            return
        for tag, value in _scalars({k: v for k, v in metrics.items() if k != "prelim"}, "val"):
            self.writer.add_scalar(tag, value, iteration)
        for tag, value in _scalars(metrics.get("prelim", {}), "val_prelim"):
            self.writer.add_scalar(tag, value, iteration)
        for sample_id, drawn in tb_images:
            for task, image in drawn.items():
                self.writer.add_image(f"val_{sample_id}/{task}", image, iteration, dataformats="HWC")
        atomic_write_json(os.path.join(self.run_dir, "metrics.json"),
                          {"iteration": iteration, "checkpoint": os.path.join(self.run_dir, "last.pth"), **metrics},
                          indent=2)

    def close(self):
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def summary(self, iteration, checkpointer, last_metrics, config_exp, opts=()):
        """Where the results are and what to run next, for the end of a run (`config_exp`,
        `opts`: the run's config file and overrides, repeated in the commands it prints)."""
        run_dir = self.run_dir
        metrics_path = os.path.join(run_dir, "metrics.json")
        if last_metrics is None and os.path.isfile(metrics_path):
            with open(metrics_path, encoding="utf-8") as handle:
                last_metrics = json.load(handle)
        python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
        # The checkpoint to evaluate: best.pth when an evaluation wrote one, else last.pth.
        model = checkpointer.best_path if os.path.isfile(checkpointer.best_path) else checkpointer.last_path
        opts = f" --opts {shlex.join(opts)}" if opts else ""
        lines = [f"run finished: iteration {iteration}/{self.total_iters}, "
                 f"{(time.time() - self.started) / 60:.1f} min this session; run folder {run_dir}/",
                 f"  last (iteration {(last_metrics or {}).get('iteration', iteration)}): {headline(last_metrics)}  "
                 f"-> {checkpointer.last_path}"]
        gain = gain_line(last_metrics)
        if gain:
            lines.append(f"  refinement stage added (final - preliminary, + = better): {gain}")
        if checkpointer.best_iteration is not None:
            lines.append(f"  best {self.best_metric} (iteration {checkpointer.best_iteration}): "
                         f"{headline(checkpointer.best_metrics)}  -> {checkpointer.best_path}")
        lines += [f"  metrics {metrics_path}, log {os.path.join(run_dir, 'log.txt')}, "
                  f"TensorBoard: tensorboard --logdir {os.path.join(run_dir, 'tb')}",
                  f"  evaluate:    {python} main.py --config_exp {config_exp} --run_mode infer "
                  f"--checkpoint {model}{opts}",
                  f"  your images: {python} inference.py --checkpoint {model} --image_path IMAGES "
                  f"--save_dir {os.path.join(run_dir, 'predictions')}"]
        self.logger.info("\n".join(lines))


HISTORY = "metrics.jsonl"  # one line per evaluation: {"iteration": N, <final metrics>, "prelim": {...}}


def append_history(path, iteration, metrics):
    """Record one evaluation in the run's history (metrics.jsonl).

    Lines of this iteration or later are dropped first: a run resumed from an earlier
    checkpoint evaluates those iterations again, and the history keeps one line per
    iteration, in order. Rewritten atomically (a reader never sees half a file).
    """
    kept = [line for line in read_history(path) if line["iteration"] < iteration]
    kept.append({"iteration": iteration, **metrics})
    atomic_write_text(path, "".join(json.dumps(line) + "\n" for line in kept))


def read_history(path):
    """The evaluations of a run folder's metrics.jsonl, oldest first ([] when there is none)."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
