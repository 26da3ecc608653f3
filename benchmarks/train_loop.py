"""The real training loop's speed: main.py's loader and training step on a synthetic dataset.

    python -m benchmarks.train_loop --config_exp CFG [--device cpu|cuda] [--iters N] [--warmup W]
        [--workers W] [--train_images M] [--opts key=value ...]

Writes a synthetic dataset in the config's own on-disk layout at its `train_size`
(`data.synthetic`, into a temporary folder), draws batches from the training loop's own
stream (`data.loaders.TrainBatches`: sampler, epochs, persistent workers) and runs its
training step (`engine.step.TrainStep`: forward, loss, backward, clipping, optimizer step)
for W untimed and N timed iterations. Prints images/s, the fraction of the wall time
spent waiting for the loader, peak memory and MFU (the training FLOPs per image, counted
with torch.utils.flop_counter, per second, over a large matmul's rate timed in the same
run), then the loader alone: samples/s with W workers and per worker. The last line
repeats every figure as JSON. `benchmarks.throughput` measures the model step alone on
random tensors.
"""
import argparse
import json
import sys
import tempfile
import time

import torch

from benchmarks.loader import loader_samples_per_second
from benchmarks.throughput import counted_flops, matmul_flops_per_s, peak_memory_mb, phase, synchronize
from data.datasets import build_dataset
from data.loaders import TrainBatches, loader_workers
from data.metadata import LAYOUT_OF
from data.synthetic import generate
from engine.predict import Runtime
from engine.step import TrainStep, build_optimizer, compile_model, to_device
from losses import build_loss
from models import build_model
from utils.cli import HelpFormatter
from utils.config import load_config
from utils.errors import DiffusionMTLError
from utils.threads import restored_threads, set_num_threads


def run(cfg, device, iters, warmup, matmul_size):
    stream = TrainBatches(cfg, build_dataset(cfg, "train"), device)
    model = Runtime.of(cfg, device).place(build_model(cfg)).train()
    if cfg.compile:
        compile_model(model)
    step = TrainStep.of(cfg, model, build_loss(cfg), build_optimizer(cfg, model), device)

    def one_step(iteration):
        started = time.perf_counter()
        batch = next(stream)
        waited = time.perf_counter() - started
        step(to_device(batch, device), batch["task_mask"], iteration)
        return waited

    phase(f"counting FLOPs, then {warmup - 1} warm-up and {iters} timed iterations ...")
    try:
        first = next(stream)  # FLOPs of one real batch, with attention on the countable math path
        flops = counted_flops(lambda: step(to_device(first, device), first["task_mask"], 0))
        for iteration in range(1, warmup):
            one_step(iteration)
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started, waited = time.perf_counter(), 0.0
        for iteration in range(warmup, warmup + iters):
            waited += one_step(iteration)
        synchronize(device)
        seconds = time.perf_counter() - started
    finally:
        stream.close()  # the loader's worker processes end here
    step.raise_if_diverged(None)

    dtype = torch.bfloat16 if (device.type == "cuda" and cfg.amp) else torch.float32
    phase("timing the yardstick matmul ...")
    matmul = matmul_flops_per_s(device, dtype, matmul_size)
    images_per_s = iters * cfg.trBatch / seconds
    return {"config": cfg.version_name, "device": str(device), "threads": torch.get_num_threads(),
            "batch": cfg.trBatch, "size": list(cfg.train_size), "ssl_type": cfg.ssl_type, "amp": bool(cfg.amp),
            "channels_last": bool(cfg.channels_last), "compile": bool(cfg.compile),
            "workers": loader_workers(cfg.nworkers)[0], "iters": iters, "images_per_s": round(images_per_s, 3),
            "data_wait_fraction": round(waited / seconds, 3), "peak_memory_mb": round(peak_memory_mb(device), 1),
            "gflop_per_image": round(flops / cfg.trBatch / 1e9, 2), "matmul_gflop_per_s": round(matmul / 1e9, 1),
            "mfu": round(flops / cfg.trBatch * images_per_s / matmul, 3)}


def synthetic_config(config, folder, opts):
    """The config with its data and run folder in `folder`, no pretrained download, a seeded split."""
    return load_config(config, opts=[f"db_root={folder}", f"output_dir={folder}", "backbone_kwargs.pretrained=null",
                                     "partial_labels_file=", *opts])


def write_synthetic(cfg, folder, n_train, n_val):
    """n_train + n_val generated images in the config's layout at its train_size, into `folder`."""
    if cfg.train_db_name not in LAYOUT_OF:
        raise DiffusionMTLError(f"no synthetic layout for {cfg.train_db_name}")
    phase(f"writing {n_train} + {n_val} synthetic {cfg.train_db_name} images of "
          f"{cfg.train_size[0]}x{cfg.train_size[1]} into {folder} ...")
    generate(LAYOUT_OF[cfg.train_db_name], folder, n_train, n_val, tuple(cfg.train_size), seed=0)


def main(argv=None):
    """Exit status 0 / 2; called as a function it gives the caller's thread counts back."""
    with restored_threads():
        return _main(argv)


def _main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", "--config", dest="config", required=True, help="YAML experiment config")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"],
                        help="where the model runs (default: cuda when available)")
    parser.add_argument("--iters", type=int, default=10, help="timed training iterations")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first (the first counts FLOPs)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the config's nworkers)")
    parser.add_argument("--train_images", type=int, default=None,
                        help="synthetic training images (default: 4 batches; the loader cycles over them)")
    parser.add_argument("--matmul_size", type=int, default=None, help="yardstick matmul size (8192 GPU, 2048 CPU)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="train_loop_") as folder:
        try:
            workers_opt = [] if args.workers is None else [f"nworkers={args.workers}"]
            cfg = synthetic_config(args.config, folder, [*args.opts, *workers_opt])
            # CPU threads sized exactly as main.py sizes them (config, environment, cores less loader workers).
            workers, workers_note = loader_workers(cfg.nworkers)
            threads, reason = set_num_threads(cfg.num_threads, workers)
            phase(f"{threads} CPU thread(s) ({reason})" + (f"; {workers_note}" if workers_note else ""))
            write_synthetic(cfg, folder, args.train_images or 4 * cfg.trBatch, 1)
            line = run(cfg, device, args.iters, max(args.warmup, 1),
                       args.matmul_size or (8192 if device.type == "cuda" else 2048))
            phase(f"timing the loader alone with {workers} worker(s) ...")
            samples = max(4 * max(workers, 1) * cfg.trBatch, cfg.trBatch)
            loader_rate = loader_samples_per_second(cfg, workers, samples)
        except DiffusionMTLError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    line["loader_samples_per_s"] = round(loader_rate, 2)
    line["loader_samples_per_s_per_worker"] = round(loader_rate / max(workers, 1), 2)
    print(f"train loop: {line['images_per_s']} img/s ({line['iters']} iterations of batch {line['batch']} on "
          f"{line['device']}), data wait {100 * line['data_wait_fraction']:.1f}% of the time, peak memory "
          f"{line['peak_memory_mb']} MB, {line['gflop_per_image']} GFLOP/image, MFU {line['mfu']} of a "
          f"{line['matmul_gflop_per_s']} GFLOP/s matmul")
    print(f"loader alone: {line['loader_samples_per_s']} samples/s with {workers} worker(s), "
          f"{line['loader_samples_per_s_per_worker']} per worker")
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
