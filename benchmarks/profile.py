"""Where the time of a training iteration and of an evaluation goes, phase by phase.

    python -m benchmarks.profile --config_exp CFG [--iters N] [--warmup W] [--threads T]
        [--device cpu|cuda] [--train_images M] [--val_images V] [--profile_iters P]
        [--eval_passes E] [--opts key=value ...]

Writes a synthetic dataset in the config's own on-disk layout at its `train_size`
(`data.synthetic`, into a temporary folder) and runs the training loop's own parts on it,
built as engine/loop.py's Trainer builds them: the batch stream (`data.loaders.TrainBatches`),
the model, loss, optimizer and schedule, and `engine.step.TrainStep`.

Training: W untimed, then N timed iterations of the loop's step (next batch, TrainStep,
scheduler step). The time is split, without changing any of that code, by forward hooks
on the model's modules (backbone, fusion conv, preliminary decoders and heads, the
refinement stage and its denoiser's parts), by wrapping the refinement stage's methods
(condition tokens, reverse chain, head) on the instance, by the loss module's hooks and
by wrapping torch.nn.utils.clip_grad_norm_ for the duration: the time between two marks
belongs to the innermost phase open (self time), so the phases partition the iteration.
Reported per phase: the median wall milliseconds, the share of the wall time, and the
same for this thread's CPU time (with one torch thread the step's work is on this thread,
so the CPU shares hold up on a busy machine where the wall times do not; waiting for
the loader costs wall time only). Then P more iterations under torch.profiler: the 15
operators with the most self CPU time.

Evaluation: engine.validation.evaluate itself on the validation loader
(`data.loaders.make_val_loader`) with the training-time evaluator (`build_evaluator(cfg,
"train")`, TensorBoard images included), E passes: loading batches, the model's forward,
per task the evaluator's update (activation, final and preliminary meters) and compute
(reading the meters' state, which waits for the boundary workers, and computing), timed
through wrappers set on the evaluator's meters and on the names evaluate() calls. The
first pass also starts the boundary-matching workers and fills the label cache.

The last line repeats every figure as JSON. On CUDA every mark synchronises the device,
which serialises the otherwise asynchronous step: compare shares, not speed.
"""
import argparse
import contextlib
import functools
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile

import engine.validation
import evaluation.evaluator
from benchmarks.throughput import phase, synchronize
from benchmarks.train_loop import synthetic_config, write_synthetic
from data.datasets import build_dataset
from data.loaders import TrainBatches, loader_workers, make_val_loader
from engine.checkpoint import capture_rng, restore_rng, seed_everything
from engine.predict import Runtime
from engine.step import TrainStep, build_optimizer, build_scheduler, to_device
from evaluation import build_evaluator
from evaluation.boundary import resolve_workers
from evaluation.visualization import dataset_style
from losses import build_loss
from models import build_model
from utils.cli import HelpFormatter
from utils.errors import DiffusionMTLError
from utils.threads import restored_threads, set_num_threads

# ---- The phases of a training iteration, in the order of the table
DATA = "data: next batch"
STEP_OTHER = "step: input layout, other"
FORWARD_OTHER = "forward: other"
BACKBONE = "forward: backbone"
TAP_RESIZE = "forward: tap resize + concat"
FUSE = "forward: fusion conv"
PRELIM_DECODERS = "forward: prelim decoders"
PRELIM_HEADS = "forward: prelim heads"
PRELIM_RESIZE = "forward: prelim resize + pairs"
CONDITION = "refinement: condition tokens"
CHAIN = "refinement: noise, q_sample, posterior"
DENOISER_IN = "refinement: denoiser input convs"
DENOISER_BLOCKS = "refinement: denoiser attention blocks"
DENOISER_OUT = "refinement: denoiser output convs"
DENOISER_OTHER = "refinement: denoiser other (t-emb, tokens)"
HEAD = "refinement: head"
REFINEMENT_OTHER = "refinement: other"
FINAL_RESIZE = "forward: final resize"
LOSS = "loss"
BACKWARD = "backward (with zero_grad)"
CLIP = "gradient clipping"
OPTIMIZER = "optimizer step"
SCHEDULER = "scheduler step"
TRAIN_PHASES = (DATA, STEP_OTHER, BACKBONE, TAP_RESIZE, FUSE, PRELIM_DECODERS, PRELIM_HEADS, PRELIM_RESIZE,
                CONDITION, CHAIN, DENOISER_IN, DENOISER_BLOCKS, DENOISER_OUT, DENOISER_OTHER, HEAD, REFINEMENT_OTHER,
                FINAL_RESIZE, FORWARD_OTHER, LOSS, BACKWARD, CLIP, OPTIMIZER, SCHEDULER)

# ---- The phases of an evaluation; per task: "update TASK: ..." and "compute TASK"
LOAD = "load batches"
MODEL = "model forward"
FORWARD_COPIES = "forward: input, float copies"
UPDATE_OTHER = "update: other (windows)"
COMPUTE_OTHER = "compute: other (delta_m)"
TB_IMAGES = "TensorBoard images"
EVAL_OTHER = "other (to_device, loop)"


def update_label(task, part):
    return f"update {task}: {part}"


def compute_label(task):
    return f"compute {task}"


# --------------------------------------------------------------------------------------
# Attributing time to nested phases
# --------------------------------------------------------------------------------------

class Clock:
    """Wall and CPU time, each moment charged to the innermost open phase (self time).

    `push(name)` opens a phase inside the current one, `pop(then=None)` closes it (and
    renames the phase it returns to, for the parts of a forward between two submodules).
    `sync` (the device's synchronisation) runs at every mark so queued work is charged
    where it was queued.
    """

    def __init__(self, sync=None):
        self.sync = sync
        self.stack = []
        self.wall, self.cpu = defaultdict(float), defaultdict(float)
        self._last = None

    def _charge(self):
        if self.sync is not None:
            self.sync()
        wall, cpu = time.perf_counter(), time.thread_time()
        if self.stack:
            self.wall[self.stack[-1]] += wall - self._last[0]
            self.cpu[self.stack[-1]] += cpu - self._last[1]
        self._last = wall, cpu

    def push(self, name):
        self._charge()
        self.stack.append(name)

    def pop(self, then=None):
        self._charge()
        self.stack.pop()
        if then is not None and self.stack:
            self.stack[-1] = then

    def switch(self, name):
        """The current phase goes on as `name`."""
        self._charge()
        self.stack[-1] = name

    def take(self):
        """({phase: wall s}, {phase: CPU s}) since the last take; starts afresh."""
        wall, cpu = dict(self.wall), dict(self.cpu)
        self.wall.clear()
        self.cpu.clear()
        return wall, cpu


def timed(clock, label, fn, then=None):
    """`fn` with its calls charged to `label`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        clock.push(label)
        try:
            return fn(*args, **kwargs)
        finally:
            clock.pop(then)
    return wrapper


def hook(stack, module, clock, label, then=None):
    """Forward hooks on `module` charging its forward to `label`; removed when `stack` closes."""
    pre = module.register_forward_pre_hook(lambda mod, args: clock.push(label))
    post = module.register_forward_hook(lambda mod, args, output: clock.pop(then))
    stack.callback(pre.remove)
    stack.callback(post.remove)


def wrap(stack, owner, name, clock, label, then=None):
    """`owner.name` charged to `label` until `stack` closes (set on the instance or module)."""
    stack.enter_context(mock.patch.object(owner, name, timed(clock, label, getattr(owner, name), then)))


@contextlib.contextmanager
def instrumented_step(step, clock):
    """Marks around TrainStep's phases: the model's parts, the loss, clipping; the code stays as it is.

    The step runs inside a phase the caller opened; after the loss that phase becomes the
    backward (zero_grad included), after the clipping the optimizer step.
    """
    model = step.model
    with contextlib.ExitStack() as stack:
        hook(stack, model, clock, FORWARD_OTHER)
        hook(stack, model.backbone, clock, BACKBONE, then=TAP_RESIZE)
        hook(stack, model.fuse_conv, clock, FUSE, then=FORWARD_OTHER)
        for decoder in model.prelim_decoders.values():
            hook(stack, decoder, clock, PRELIM_DECODERS)
        for head in model.prelim_heads.values():
            hook(stack, head, clock, PRELIM_HEADS, then=PRELIM_RESIZE)
        refinement = model.refinement
        if refinement is not None:
            hook(stack, refinement, clock, REFINEMENT_OTHER, then=FINAL_RESIZE)
            wrap(stack, refinement, "condition_tokens", clock, CONDITION)
            wrap(stack, refinement, "reverse_chain", clock, CHAIN)
            denoiser = refinement.denoiser
            hook(stack, denoiser, clock, DENOISER_OTHER)
            wrap(stack, denoiser, "head", clock, HEAD)
            for layer in denoiser.in_layers.values():
                hook(stack, layer, clock, DENOISER_IN)
            for block in denoiser.blocks:
                hook(stack, block, clock, DENOISER_BLOCKS)
            for layer in [*denoiser.out_convs.values(), *(denoiser.out_norms or {}).values()]:
                hook(stack, layer, clock, DENOISER_OUT)
        hook(stack, step.criterion, clock, LOSS, then=BACKWARD)
        wrap(stack, torch.nn.utils, "clip_grad_norm_", clock, CLIP, then=OPTIMIZER)
        yield


@contextlib.contextmanager
def instrumented_evaluation(model, evaluator, clock):
    """Marks inside engine.validation.evaluate: the model, the evaluator's per-task work, the
    TensorBoard images; set on the instances and on the names evaluate() looks up."""
    with contextlib.ExitStack() as stack:
        hook(stack, model, clock, MODEL)
        wrap(stack, engine.validation, "forward", clock, FORWARD_COPIES)
        wrap(stack, engine.validation, "activated_maps", clock, TB_IMAGES)
        wrap(stack, engine.validation, "colorize", clock, TB_IMAGES)
        wrap(stack, evaluator, "update", clock, UPDATE_OTHER)
        wrap(stack, evaluator, "compute", clock, COMPUTE_OTHER)
        stack.enter_context(mock.patch.object(evaluation.evaluator, "activate", _timed_activate(clock)))
        for kind, meters in (("final", evaluator.meters), ("prelim", evaluator.prelim_meters)):
            for task, meter in meters.items():
                wrap(stack, meter, "update", clock, update_label(task, f"{kind} meter"))
                wrap(stack, meter, "state_tensors", clock, compute_label(task))
                wrap(stack, meter, "compute", clock, compute_label(task))
        yield


def _timed_activate(clock):
    activate = evaluation.evaluator.activate

    def timed_activate(task, output):
        clock.push(update_label(task, "activate"))
        try:
            return activate(task, output)
        finally:
            clock.pop()
    return timed_activate


class TimedLoader:
    """`loader` with the time spent getting each batch (worker start-up included) charged to LOAD."""

    def __init__(self, loader, clock):
        self.loader, self.clock = loader, clock

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.clock.push(LOAD)
        try:
            iterator = iter(self.loader)
        finally:
            self.clock.pop()
        while True:
            self.clock.push(LOAD)
            try:
                batch = next(iterator)
            except StopIteration:
                return
            finally:
                self.clock.pop()
            yield batch


# --------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------

def loop_iteration(stream, step, scheduler, iteration, device, clock=None):
    """One iteration as engine/loop.py's Trainer.train_step runs it (without its log line)."""
    if clock is not None:
        clock.push(DATA)
    batch = next(stream)
    batch_on_device = to_device(batch, device)
    if clock is not None:
        clock.switch(STEP_OTHER)
    loss = step(batch_on_device, batch["task_mask"], iteration)[0]
    if clock is not None:
        clock.switch(SCHEDULER)
    scheduler.step()
    if clock is not None:
        clock.pop()
    return loss


def share_rows(walls, cpus, order):
    """{phase: {median_ms, share, cpu_median_ms, cpu_share}} from per-iteration dicts."""
    names = [p for p in order if any(p in w for w in walls)] + sorted({p for w in walls for p in w} - set(order))
    total_wall = sum(sum(w.values()) for w in walls)
    total_cpu = sum(sum(c.values()) for c in cpus)
    return {name: {"median_ms": round(1e3 * statistics.median(w.get(name, 0.0) for w in walls), 3),
                   "share": round(sum(w.get(name, 0.0) for w in walls) / total_wall, 4),
                   "cpu_median_ms": round(1e3 * statistics.median(c.get(name, 0.0) for c in cpus), 3),
                   "cpu_share": round(sum(c.get(name, 0.0) for c in cpus) / max(total_cpu, 1e-12), 4)}
            for name in names}


def top_operators(prof, iters, count=15):
    """The `count` operators with the most self CPU time, per iteration."""
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"name": e.key, "calls_per_iter": round(e.count / iters, 2),
             "self_cpu_ms_per_iter": round(e.self_cpu_time_total / 1e3 / iters, 3),
             "share": round(e.self_cpu_time_total / total, 4)} for e in events[:count]]


def profile_training(cfg, device, iters, warmup, profile_iters):
    """The training iteration's phases (see the module docstring) and its top operators."""
    seed_everything(cfg.seed)  # as the Trainer does before building anything
    stream = TrainBatches(cfg, build_dataset(cfg, "train"), device)
    runtime = Runtime.of(cfg, device)
    model = runtime.place(build_model(cfg)).train()
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, cfg.max_iter or cfg.epochs * stream.batches_per_epoch,
                                stream.batches_per_epoch)
    if cfg.compile:
        model.compile_static_parts()
    step = TrainStep.of(cfg, model, build_loss(cfg), optimizer, device)
    clock = Clock(sync=(lambda: synchronize(device)) if device.type == "cuda" else None)
    iteration = 0
    try:
        phase(f"training: {warmup} warm-up and {iters} timed iterations ...")
        for iteration in range(1, warmup + 1):
            loop_iteration(stream, step, scheduler, iteration, device)
        walls, cpus = [], []
        with instrumented_step(step, clock):
            for iteration in range(warmup + 1, warmup + iters + 1):
                loop_iteration(stream, step, scheduler, iteration, device, clock)
                wall, cpu = clock.take()
                walls.append(wall)
                cpus.append(cpu)
        phase(f"training: {profile_iters} iterations under torch.profiler ...")
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for iteration in range(iteration + 1, iteration + profile_iters + 1):
                loop_iteration(stream, step, scheduler, iteration, device)
            synchronize(device)
    finally:
        stream.close()  # the loader's worker processes end here
    step.raise_if_diverged(None)
    totals = [sum(w.values()) for w in walls]
    return model, runtime, {
        "iters": iters, "iteration_ms_median": round(1e3 * statistics.median(totals), 2),
        "iteration_cpu_ms_median": round(1e3 * statistics.median(sum(c.values()) for c in cpus), 2),
        "phases": share_rows(walls, cpus, TRAIN_PHASES),
        "top_ops": top_operators(prof, profile_iters), "profile_iters": profile_iters}


def profile_evaluation(cfg, model, runtime, passes):
    """engine.validation.evaluate as training-time validation runs it, E passes, split by phase."""
    device = runtime.device
    clock = Clock(sync=(lambda: synchronize(device)) if device.type == "cuda" else None)
    val_set = build_dataset(cfg, "val")
    loader = TimedLoader(make_val_loader(cfg, val_set, device), clock)
    evaluator = build_evaluator(cfg, "train")
    results = []
    try:
        with instrumented_evaluation(model, evaluator, clock):
            for index in range(passes):
                phase(f"evaluation pass {index + 1}/{passes} on {len(val_set)} images ...")
                clock.push(EVAL_OTHER)
                engine.validation.evaluate(model, loader, evaluator, runtime, style=dataset_style(cfg),
                                           tb_images=[], tb_count=cfg.tb_images)
                clock.pop()
                results.append(clock.take())
    finally:
        evaluator.close()
    model.train()
    return {"images": len(val_set), "batches": len(loader), "passes": [eval_rows(wall, cpu, cfg.TASKS.NAMES)
                                                                        for wall, cpu in results]}


def eval_rows(wall, cpu, tasks):
    """One evaluation pass: totals per phase and per task."""
    order = [LOAD, MODEL, FORWARD_COPIES, UPDATE_OTHER, COMPUTE_OTHER, TB_IMAGES, EVAL_OTHER]
    order += [update_label(t, part) for t in tasks for part in ("activate", "final meter", "prelim meter")]
    order += [compute_label(t) for t in tasks]
    total_wall, total_cpu = sum(wall.values()), sum(cpu.values())
    names = [p for p in order if p in wall] + sorted(set(wall) - set(order))
    phases = {name: {"ms": round(1e3 * wall[name], 3), "share": round(wall[name] / total_wall, 4),
                     "cpu_ms": round(1e3 * cpu.get(name, 0.0), 3),
                     "cpu_share": round(cpu.get(name, 0.0) / max(total_cpu, 1e-12), 4)} for name in names}
    per_task = {}
    for task in tasks:
        parts = {part: 1e3 * wall.get(update_label(task, part), 0.0)
                 for part in ("activate", "final meter", "prelim meter")}
        per_task[task] = {**{f"update_{part.replace(' ', '_')}_ms": round(ms, 3) for part, ms in parts.items()},
                          "update_ms": round(sum(parts.values()), 3),
                          "compute_ms": round(1e3 * wall.get(compute_label(task), 0.0), 3)}
    return {"total_ms": round(1e3 * total_wall, 2), "cpu_ms": round(1e3 * total_cpu, 2), "phases": phases,
            "tasks": per_task}


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def print_report(line):
    train, evaluation_ = line["train"], line["eval"]
    print(f"training iteration ({line['config']}, batch {line['batch']}, {line['size'][0]}x{line['size'][1]}, "
          f"{line['device']}, {line['threads']} thread(s), {line['workers']} loader worker(s)): median "
          f"{train['iteration_ms_median']} ms wall, {train['iteration_cpu_ms_median']} ms CPU over {train['iters']}")
    width = max(len(name) for name in train["phases"]) + 2
    print(f"{'phase (medians; shares of the summed time)':<{width}}{'wall ms':>10}{'share':>8}{'CPU ms':>10}"
          f"{'share':>8}")
    for name, row in train["phases"].items():
        print(f"{name:<{width}}{row['median_ms']:>10.2f}{100 * row['share']:>7.1f}%"
              f"{row['cpu_median_ms']:>10.2f}{100 * row['cpu_share']:>7.1f}%")
    print(f"\ntop 15 operators by self CPU time ({train['profile_iters']} iterations under torch.profiler)")
    width = max([len(op["name"]) for op in train["top_ops"]] + [8]) + 2
    print(f"{'operator':<{width}}{'calls/it':>10}{'ms/it':>10}{'share':>8}")
    for op in train["top_ops"]:
        print(f"{op['name']:<{width}}{op['calls_per_iter']:>10g}{op['self_cpu_ms_per_iter']:>10.2f}"
              f"{100 * op['share']:>7.1f}%")
    last = evaluation_["passes"][-1]
    print(f"\nevaluation ({evaluation_['images']} images, {evaluation_['batches']} batches, "
          f"{line['edge_workers']} boundary worker(s)): pass totals "
          + ", ".join(f"{p['total_ms'] / 1e3:.2f} s" for p in evaluation_["passes"])
          + f"; the last pass, {last['total_ms'] / evaluation_['images']:.1f} ms/image:")
    width = max(len(name) for name in last["phases"]) + 2
    print(f"{'phase (totals of the pass)':<{width}}{'wall ms':>10}{'share':>8}{'CPU ms':>10}{'share':>8}")
    for name, row in last["phases"].items():
        print(f"{name:<{width}}{row['ms']:>10.1f}{100 * row['share']:>7.1f}%{row['cpu_ms']:>10.1f}"
              f"{100 * row['cpu_share']:>7.1f}%")
    if len(evaluation_["passes"]) > 1:  # what the first pass pays on top (worker start-up, label cache)
        first = evaluation_["passes"][0]["phases"]
        extra = sorted(((row["ms"] - last["phases"].get(name, {"ms": 0.0})["ms"], name) for name, row in first.items()),
                       reverse=True)[:3]
        print("the first pass's extra time: " + ", ".join(f"{name} +{ms / 1e3:.2f} s" for ms, name in extra))
    print(f"\n{'task (last pass, wall ms)':<26}{'activate':>10}{'final':>10}{'prelim':>10}{'update':>10}"
          f"{'compute':>10}")
    for task, row in last["tasks"].items():
        print(f"{task:<26}{row['update_activate_ms']:>10.1f}{row['update_final_meter_ms']:>10.1f}"
              f"{row['update_prelim_meter_ms']:>10.1f}{row['update_ms']:>10.1f}{row['compute_ms']:>10.1f}")


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def main(argv=None):
    """Exit status 0 / 2; called as a function it gives the caller's thread counts and
    random generators back (the training part seeds them as the Trainer does)."""
    rng = capture_rng()
    try:
        with restored_threads():
            return _main(argv)
    finally:
        restore_rng(rng)


def _main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", "--config", dest="config", required=True, help="YAML experiment config")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the model runs")
    parser.add_argument("--iters", type=int, default=30, help="timed training iterations")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training iterations first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 0: as main.py sizes them for the config")
    parser.add_argument("--train_images", type=int, default=None,
                        help="synthetic training images (default: 4 batches; the loader cycles over them)")
    parser.add_argument("--val_images", type=int, default=None, help="synthetic validation images (default: 4 batches)")
    parser.add_argument("--profile_iters", type=int, default=3, help="training iterations under torch.profiler")
    parser.add_argument("--eval_passes", type=int, default=2, help="evaluations (the first starts the workers)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if min(args.iters, args.profile_iters, args.eval_passes) < 1 or args.warmup < 0:
        print("error: --iters, --profile_iters and --eval_passes must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="profile_") as folder:
        try:
            cfg = synthetic_config(args.config, folder, args.opts)
            workers = loader_workers(cfg.nworkers)[0]
            if args.threads:
                torch.set_num_threads(args.threads)
            else:
                set_num_threads(cfg.num_threads, workers)
            write_synthetic(cfg, folder, args.train_images or 4 * cfg.trBatch, args.val_images or 4 * cfg.valBatch)
            model, runtime, train = profile_training(cfg, device, args.iters, args.warmup, args.profile_iters)
            evaluation_ = profile_evaluation(cfg, model, runtime, args.eval_passes)
        except DiffusionMTLError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    edge_workers = resolve_workers(cfg.eval_kwargs.edge_workers) if "edge" in cfg.TASKS.NAMES else 0
    line = {"config": cfg.version_name, "device": str(device), "threads": torch.get_num_threads(),
            "batch": cfg.trBatch, "val_batch": cfg.valBatch, "size": list(cfg.train_size), "workers": workers,
            "edge_workers": edge_workers, "train": train, "eval": evaluation_}
    print_report(line)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
