"""Where a training sample's time goes, and how many samples a DataLoader delivers.

    python -m benchmarks.loader --config CFG [--layout pascal|nyud|nyud_mtan|cityscapes]
        [--size S] [--samples N] [--workers W] [--passes P]

Writes a synthetic dataset (`data.synthetic`) in the config's layout at its `train_size`
(or S x S) into a temporary folder, then prints, as medians over the samples and passes:
- CPU ms per sample on one core (this process, one torch / OpenCV thread; CPU time, so
  other processes on a busy machine do not count): decoding the
  image; decoding each label (paired against an image-only load of the same sample, so
  it includes .mat parsing and boundary thinning); the training augmentation (scale,
  crop, flip, jitter) and the tensor conversion (normalise, pad, convert) for one-label
  samples (sample i labels task i mod T) and all-label samples; the whole sample
  (load + transform, as the training dataset computes it) for both, also as a mean
  (samples differ: only some images show people with parts);
- PASCAL-Context only: the same with a warm label cache (`PascalContext(cache_dir=..)`,
  what every epoch after the first costs);
- samples/s of a DataLoader with W workers over `build_dataset(cfg, "train")` (batch
  `trBatch`, persistent workers, after one warm-up batch per worker).
The last line repeats every figure as JSON.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from data.datasets import DATASETS, TRAIN_TRANSFORMS, build_dataset
from data.loaders import shutdown_workers, worker_init
from data.metadata import LAYOUT_OF, LAYOUTS
from data.synthetic import generate
from data.transforms import TrainTransform, pad_and_tensorize
from utils.cli import HelpFormatter
from utils.config import load_config
from utils.errors import DiffusionMTLError
from utils.tasks import DATASET_TASKS
from utils.threads import restored_threads


def _ms(seconds):
    return round(1e3 * statistics.median(seconds), 2)


def loader_samples_per_second(cfg, workers, n, warmup_batches=None):
    """Samples/s of a DataLoader over `build_dataset(cfg, "train")` (batch `cfg.trBatch`,
    `workers` persistent workers) over `n` samples, after one warm-up batch per worker.
    The dataset folder `cfg.train_db_dir` must exist (e.g. from `data.synthetic`). Where the
    dataset keeps a label cache, the first pass over the samples fills it (first-epoch speed)."""
    dataset = build_dataset(cfg, "train")
    batch = cfg.trBatch
    warmup = max(1, workers) if warmup_batches is None else warmup_batches
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers, drop_last=True,
                        worker_init_fn=worker_init if workers else None, persistent_workers=workers > 0)
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training samples make no batch of {batch}")
    needed = warmup + max(1, -(-n // batch))
    delivered, start = 0, None
    try:
        while delivered < needed:  # as many passes as `n` needs; the workers persist
            for _ in loader:
                delivered += 1
                if delivered == warmup:
                    start = time.perf_counter()
                if delivered == needed:
                    break
        return (needed - warmup) * batch / (time.perf_counter() - start)
    finally:
        shutdown_workers(loader)


def _one_label_tasks(tasks, index):
    return [tasks[index % len(tasks)]]


def stage_times(raw, transform, tasks, passes):
    """Median ms per sample of each stage, on this process (see the module docstring)."""
    times = {}

    def timed(key, fn):
        start = time.process_time()
        value = fn()
        times.setdefault(key, []).append(time.process_time() - start)
        return value

    for _ in range(passes):
        for index in range(len(raw)):
            timed("decode image", lambda: raw.load(index, []))
            base = times["decode image"][-1]
            for task in tasks:
                timed(f"decode {task}", lambda: raw.load(index, [task]))
                times[f"decode {task}"][-1] -= base  # paired: the label alone
            for setting, labelled in (("one-label", _one_label_tasks(tasks, index)), ("all labels", tasks)):
                task_mask = np.array([t in labelled for t in tasks])
                rng = np.random.default_rng([index, len(labelled)])
                total = time.process_time()
                sample = raw.load(index, labelled)
                sample["task_mask"] = task_mask
                if isinstance(transform, TrainTransform):
                    augmented = timed(f"augment {setting}", lambda: transform.augment(sample, rng, task_mask))
                    timed(f"tensors {setting}",
                          lambda: pad_and_tensorize(augmented, tasks, transform.size, task_mask))
                else:  # a dataset's own protocol transform: one figure
                    timed(f"transform {setting}", lambda: transform(sample, rng))
                times.setdefault(f"total {setting}", []).append(time.process_time() - total)
    stages = {key: _ms(values) for key, values in times.items()}
    for setting in ("one-label", "all labels"):  # what a loader's throughput depends on
        stages[f"mean total {setting}"] = round(1e3 * statistics.mean(times[f"total {setting}"]), 2)
    return stages


def _print_stages(title, stages):
    print(title)
    for key, value in stages.items():
        print(f"  {key:<24} {value:8.2f} ms")


def run(cfg, samples, workers, passes, cache_root):
    """Every figure of the benchmark for a config whose dataset folder exists."""
    tasks = list(cfg.TASKS.NAMES)
    name = cfg.train_db_name
    transform = TRAIN_TRANSFORMS.get(name, TrainTransform)(tasks, cfg.train_size)
    results = {"dataset": name, "train_size": list(cfg.train_size), "samples": samples, "tasks": tasks}
    raw = DATASETS[name](cfg.train_db_dir, "train", tasks)
    results["ms_per_sample"] = stage_times(raw, transform, tasks, passes)
    _print_stages(f"{name} {cfg.train_size[0]}x{cfg.train_size[1]}, {samples} samples x {passes} passes, "
                  f"median ms per sample on one core:", results["ms_per_sample"])
    if name == "PASCALContext":
        cached = DATASETS[name](cfg.train_db_dir, "train", tasks, cache_dir=cache_root)
        for index in range(len(cached)):  # the first epoch fills the cache
            cached.load(index)
        results["ms_per_sample_cached"] = stage_times(cached, transform, tasks, passes)
        _print_stages("with a warm label cache (epochs after the first):", results["ms_per_sample_cached"])
    rate = loader_samples_per_second(cfg, workers, max(samples, cfg.trBatch * 4))
    results["dataloader"] = {"workers": workers, "batch": cfg.trBatch, "samples_per_s": round(rate, 1)}
    print(f"DataLoader, {workers} workers, batch {cfg.trBatch}: {rate:.1f} samples/s")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", "--config", dest="config", required=True, help="YAML experiment config")
    parser.add_argument("--layout", choices=sorted(LAYOUTS),
                        help="dataset layout (default: the config's); all its tasks are measured")
    parser.add_argument("--size", type=int, help="square train_size (default: the config's)")
    parser.add_argument("--samples", type=int, default=24, help="synthetic training images")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--passes", type=int, default=3, help="passes over the samples for the stage medians")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides key=value")
    args = parser.parse_args(argv)
    with restored_threads():
        torch.set_num_threads(1)  # one core: no intra-op threads, no OpenCV pool
        cv2.setNumThreads(0)
        results = _measure(args)
    if results is None:
        return 2
    print(json.dumps(results))
    return 0


def _measure(args):
    """The stage medians, or None after printing a configuration error."""
    try:
        with tempfile.TemporaryDirectory(prefix="loader_bench_") as folder:
            opts = [f"db_root={folder}", f"output_dir={os.path.join(folder, 'work_dirs')}",
                    "partial_labels_file="] + args.opts
            if args.size:
                opts.append(f"train_size=[{args.size}, {args.size}]")
            if args.layout:
                name = LAYOUTS[args.layout]
                opts += [f"train_db_name={name}", f"val_db_name={name}", "reference_metrics={}", "best_metric="]
                opts += [f"task_dictionary.include_{t}={t in DATASET_TASKS[name]}"
                         for t in ("semseg", "human_parts", "sal", "depth", "normals", "edge")]
            cfg = load_config(args.config, opts)
            generate(LAYOUT_OF[cfg.train_db_name], folder, args.samples, 1, tuple(cfg.train_size), seed=0)
            results = run(cfg, args.samples, args.workers, args.passes, os.path.join(folder, "label_cache"))
    except DiffusionMTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    return results


if __name__ == "__main__":
    sys.exit(main())
