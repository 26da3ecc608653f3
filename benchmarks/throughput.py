"""Training and inference throughput of a config, printed as one JSON line.

    python -m benchmarks.throughput --config_exp CFG --batch B --size S [--device cpu|cuda] [--iters N]

Train step = main.py's (`engine.step.TrainStep`: forward, loss, backward, gradient
clipping, fused optimizer step, no host synchronisation) on a one-label batch (sample i
labels task i mod T), after one step on a batch that labels every task (so that, as in
a run under way, every layer has had a gradient: `keep_zero_grads` then steps them all). Inference runs every task for every sample. "prelim" is the
backbone + preliminary decoders alone, so the refinement's cost shows as a ratio.
FLOPs come from torch.utils.flop_counter during the warm-up iterations; the achieved
rate is compared with a large matmul timed between the measurements of the same run
(the best of those timings). Model times are medians over --iters iterations.
bf16 autocast on CUDA (`--opts amp=false` for fp32), fp32 on CPU. Synthetic inputs; no dataset is read.
CPU threads are sized as main.py sizes them for the config (room is left for its loader
workers although none runs here), so the step's figures are a training run's;
benchmarks.train_loop measures the real loop, loader included.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from data.loaders import loader_workers
from engine.predict import Runtime
from engine.step import TrainStep, build_optimizer
from losses import build_loss
from models import build_model
from utils.cli import HelpFormatter
from utils.config import load_config
from utils.errors import DiffusionMTLError
from utils.threads import restored_threads, set_num_threads


def phase(text):
    """Progress on stderr (the JSON line stays alone on stdout)."""
    print(text, file=sys.stderr, flush=True)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, iters, device):
    times = []
    for _ in range(iters):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def counted_flops(fn):
    """Run `fn` once (a warm-up) and return its FLOPs; attention on the math backend so it is counted."""
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        fn()
    return counter.get_total_flops()


def matmul_flops_per_s(device, dtype, n, iters=5):
    """Rate of an (n x n) @ (n x n) matmul, the yardstick of the achieved FLOP/s."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    return 2 * n ** 3 / median_seconds(lambda: a @ b, iters, device)


def synthetic_batch(cfg, batch_size, size, device, every_task=False):
    """Random images and targets (docs/conventions.md); sample i labels task i mod T (or
    every task with `every_task`)."""
    height = width = size
    num_tasks = len(cfg.TASKS.NAMES)
    task_mask = torch.zeros(batch_size, num_tasks, dtype=torch.bool)
    task_mask[torch.arange(batch_size), torch.arange(batch_size) % num_tasks] = True
    if every_task:
        task_mask[:] = True
    batch = {"image": torch.randn(batch_size, 3, height, width), "task_mask": task_mask}
    for task in cfg.TASKS.NAMES:
        channels = cfg.TASKS.NUM_OUTPUT[task]
        if task in ("semseg", "human_parts", "sal"):
            batch[task] = torch.randint(0, channels, (batch_size, height, width))
        elif task == "normals":
            batch[task] = torch.nn.functional.normalize(torch.randn(batch_size, 3, height, width), dim=1)
        elif task == "edge":
            batch[task] = (torch.rand(batch_size, 1, height, width) > 0.9).float()
        else:  # depth, metres
            batch[task] = torch.rand(batch_size, 1, height, width) * 10
    for index, task in enumerate(cfg.TASKS.NAMES):  # unlabelled targets are 255, never 0
        batch[task][~task_mask[:, index]] = 255
    return {k: v.to(device) for k, v in batch.items()}


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def run(cfg, batch_size, size, device, iters, warmup, matmul_size):
    runtime = Runtime.of(cfg, device)
    amp, channels_last, layout = runtime.autocast_enabled, runtime.channels_last, runtime.memory_format
    dtype = torch.bfloat16 if amp else torch.float32
    model = runtime.place(build_model(cfg))
    step = TrainStep.of(cfg, model, build_loss(cfg), build_optimizer(cfg, model), device)
    # One step on a batch that labels every task first: in a real run every task's layers
    # have had a gradient after a few iterations, and with keep_zero_grads the optimizer
    # then steps them all in every later iteration (the cost that setting adds).
    labelled = synthetic_batch(cfg, batch_size, size, device, every_task=True)
    step(labelled, labelled["task_mask"].cpu(), 1)
    batch = synthetic_batch(cfg, batch_size, size, device)
    task_mask = batch["task_mask"].cpu()  # as the loader gives it
    images = batch["image"].contiguous(memory_format=layout)
    matmul_rates = []

    def train_step():
        step(batch, task_mask, 1)

    def inference():
        with torch.inference_mode(), runtime.autocast():
            model(images)

    def preliminary():
        with torch.inference_mode(), runtime.autocast():
            model.forward_preliminary(images)

    result = {}
    for name, fn, train in (("train", train_step, True), ("infer", inference, False),
                            ("prelim", preliminary, False)):
        phase(f"timing {name} ({iters} iterations of batch {batch_size} at {size}x{size}) ...")
        model.train(train)
        matmul_rates.append(matmul_flops_per_s(device, dtype, matmul_size))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        flops = counted_flops(fn)
        for _ in range(warmup - 1):
            fn()
        seconds = median_seconds(fn, iters, device)
        result[name] = {"images_per_s": batch_size / seconds, "flops_per_image": flops / batch_size,
                        "flops_per_s": flops / seconds, "peak_memory_mb": peak_memory_mb(device)}
    matmul_rates.append(matmul_flops_per_s(device, dtype, matmul_size))
    matmul = max(matmul_rates)  # the best of the timings spread over the run: other load only slows it

    line = {"config": cfg.version_name, "backbone": cfg.backbone, "variant": cfg.model_kwargs.variant,
            "device": str(device), "dtype": str(dtype).removeprefix("torch."), "optimizer_fused": step.fused,
            "threads": torch.get_num_threads(),
            "batch": batch_size, "size": size, "iters": iters, "channels_last": channels_last,
            "matmul_gflop_per_s": round(matmul / 1e9, 2)}
    for name, values in result.items():
        line[f"{name}_images_per_s"] = round(values["images_per_s"], 4)
        line[f"{name}_gflop_per_image"] = round(values["flops_per_image"] / 1e9, 3)
        line[f"{name}_matmul_fraction"] = round(values["flops_per_s"] / matmul, 3)
        line[f"{name}_peak_memory_mb"] = round(values["peak_memory_mb"], 1)
    line["decoder_flop_ratio"] = round(result["infer"]["flops_per_image"] / result["prelim"]["flops_per_image"], 3)
    line["decoder_time_ratio"] = round(result["prelim"]["images_per_s"] / result["infer"]["images_per_s"], 3)
    return line


def main(argv=None):
    """Exit status 0 / 2; called as a function it gives the caller's thread counts back."""
    with restored_threads():
        return _main(argv)


def _main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", "--config", dest="config", required=True, help="YAML experiment config")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--size", type=int, default=256, help="square input size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"],
                        help="where the model runs")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations (the first counts FLOPs)")
    parser.add_argument("--channels_last", choices=["true", "false"], default=None,
                        help="NHWC weights and inputs (default: the config's channels_last)")
    parser.add_argument("--matmul_size", "--matmul-size", type=int, default=None, help="yardstick matmul size (8192 GPU, 2048 CPU)")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides key=value")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    try:
        # no dataset is read and the weights do not matter for speed: no backbone download
        # bf16 autocast on CUDA unless --opts says otherwise
        opts = ["db_root=.", "backbone_kwargs.pretrained=null", f"amp={str(args.device == 'cuda').lower()}",
                *args.opts]
        if args.channels_last is not None:
            opts.append(f"channels_last={args.channels_last}")
        cfg = load_config(args.config, opts=opts)
    except DiffusionMTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # CPU threads sized exactly as main.py sizes them for this config (config, environment,
    # cores less room for its loader workers), so the figures are those of a training run.
    threads, reason = set_num_threads(cfg.num_threads, loader_workers(cfg.nworkers)[0])
    phase(f"{threads} CPU thread(s) ({reason})")
    matmul_size = args.matmul_size or (8192 if args.device == "cuda" else 2048)
    with torch.random.fork_rng(devices=[]):  # seeded weights and inputs; the caller's generator untouched
        torch.manual_seed(0)
        line = run(cfg, args.batch, args.size, torch.device(args.device), args.iters, max(args.warmup, 1),
                   matmul_size)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
