"""Why refined surface normals end worse than the preliminary ones: magnitudes through training.

    python -m benchmarks.normals_probe --data /tmp/probe_data [--config_exp configs/demo.yml]
        [--iters 1500] [--record_every 250] [--eval_every 500] [--probe_images 8] [--json OUT]
        [--opts key=value ...]

Trains the config in-process with the training loop's own pieces (`TrainBatches`,
`TrainStep`, `build_loss`, optimizer and schedule of engine/step.py), on a generated
PASCAL-layout dataset written once into --data (`data.synthetic.generate`, 240 train / 60
val images at the config's train_size, seed 0) and reused when it is already there.
Every --record_every iterations it runs the model in evaluation mode (deterministic
noise) on the first --probe_images validation images and prints, per task:
  - prelim   mean |f_t| of the preliminary feature (the diffused map: p_t for prediction diffusion);
  - x_in/s   mean |.| of the denoiser's input at each reverse step s (T-1 .. 0);
  - x0/s     mean |.| of the denoiser's x0 estimate at each reverse step;
  - head in  mean |.| of the refinement head's input, its mean spatial std per channel (how
             much of the map is a per-image constant) and the share of its centred variance
             along its first principal direction (1: collapsed to one direction; the same
             share is given for the preliminary feature); feature diffusion only;
  - final    mean |.| of the raw final output; for normals per channel x / y / z, the mean
             spatial std of the unit direction and the same for the preliminary normals;
  - probe    for normals, the angular error of the best linear map (least squares) from the
             preliminary feature and from the refinement head's input to the target normals:
             what the features hold, whatever the head has learned;
  - train    for normals, the angular error of the final and preliminary normals on the first
             --probe_images training images labelled for normals (augmented as in training): the fit;
  - |W| of the preliminary head, the refinement head and the refinement stage's conv layers,
    and the mean |grad| of the refinement normals head after the last training step
    (set against Adam's eps, 1e-8).
Every --eval_every iterations (and at the end) it runs the project's validation
(`engine.validation.evaluate`) and prints every task's headline metric, final vs
preliminary. The last line is every record as JSON (also written to --json).
Keep the CPU cheap: --opts num_threads=1 is the default thread count here.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from data.datasets import build_dataset
from data.loaders import TrainBatches, make_val_loader
from data.synthetic import generate
from engine.checkpoint import seed_everything
from engine.predict import Runtime
from engine.validation import evaluate
from engine.step import TrainStep, build_optimizer, build_scheduler, to_device
from evaluation import build_evaluator
from losses import build_loss
from models import build_model
from utils.cli import HelpFormatter
from utils.config import load_config
from utils.errors import DiffusionMTLError
from utils.tasks import headline_metric
from utils.threads import restored_threads, set_num_threads


def ensure_data(folder, size):
    """The generated PASCAL-layout dataset under `folder` (written on the first call)."""
    if not os.path.isdir(os.path.join(folder, "PASCALContext")):
        print(f"writing 240 / 60 generated PASCAL images of {size[0]}x{size[1]} into {folder} ...", file=sys.stderr)
        generate("pascal", folder, 240, 60, tuple(size), seed=0)


def mean_abs(x):
    return x.abs().mean().item()


def linear_probe_error(features, target, ignore_index):
    """Mean angular error (degrees) of the best linear map (least squares, with a bias) from
    `features` (B, D, h, w), upsampled to the target's size, to the target normals (B, 3, H, W):
    how much of the normals the features hold, whatever the head has learned."""
    features = F.interpolate(features.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    valid = (target != ignore_index).all(1) & (target.norm(dim=1) > 0)  # (B, H, W)
    x = features.permute(0, 2, 3, 1)[valid].double()  # (N, D)
    y = target.permute(0, 2, 3, 1)[valid].double()  # (N, 3)
    x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    fit = x @ torch.linalg.lstsq(x, y).solution
    cosine = (F.normalize(fit, dim=1) * F.normalize(y, dim=1)).sum(1).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cosine)).mean().item()


@torch.no_grad()
def training_fit(model, images, normals, ignore_index):
    """(final, preliminary) normals error on training images labelled for normals: the fit."""
    model.eval()
    try:
        out = model(images)
    finally:
        model.train()
    return (angular_error(out["final"]["normals"], normals, ignore_index),
            angular_error(out["prelim"]["normals"], normals, ignore_index))


def angular_error(prediction, target, ignore_index):
    """Mean angular error (degrees) of (B, 3, H, W) predictions over the valid target pixels."""
    valid = (target != ignore_index).all(1) & (target.norm(dim=1) > 0)
    cosine = (F.normalize(prediction.permute(0, 2, 3, 1)[valid].double(), dim=1)
              * F.normalize(target.permute(0, 2, 3, 1)[valid].double(), dim=1)).sum(1).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cosine)).mean().item()


def top_direction_share(x):
    """Fraction of the centred variance of (B, D, h, w) features (over images and pixels) that
    lies along their first principal direction: 1/D for isotropic features, 1 for collapsed."""
    a = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double()
    a = a - a.mean(0)
    eigenvalues = torch.linalg.eigvalsh(a.T @ a / len(a))
    return (eigenvalues[-1] / eigenvalues.sum().clamp_min(1e-30)).item()


def direction_std(x):
    """Mean over images and channels of the spatial std of the unit direction of (B, 3, H, W)."""
    return F.normalize(x.float(), dim=1).flatten(2).std(dim=2).mean().item()


@torch.no_grad()
def record(model, images, normals, ignore_index):
    """Magnitudes of one evaluation-mode forward on `images`: {task: {name: value}};
    `normals` (B, 3, H, W): their targets, for the linear probes."""
    steps, head_inputs = [], {}
    denoiser = model.refinement.denoiser  # the refinement stage's internals (models/mtdnet.py)
    hooks = [denoiser.register_forward_hook(
        lambda module, args, out: steps.append(({t: mean_abs(v) for t, v in args[0].items()},
                                                {t: mean_abs(v) for t, v in out.items()})))]
    if not denoiser.predicts_maps:  # feature diffusion: the heads run after the chain
        for task, head in denoiser.heads.items():
            hooks.append(head.register_forward_pre_hook(
                lambda module, args, task=task: head_inputs.__setitem__(task, args[0].detach().clone())))
    model.eval()
    try:
        features, _ = model.forward_preliminary(images)
        out = model(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train()
    diffused = out["prelim"] if denoiser.predicts_maps else features
    result = {}
    for task in model.tasks:
        row = {"prelim": mean_abs(diffused[task]), "prelim top-1 variance share": top_direction_share(features[task])}
        for i, (inputs, x0) in enumerate(steps):
            step = model.refinement.num_timesteps - 1 - i
            row[f"x_in/{step}"], row[f"x0/{step}"] = inputs[task], x0[task]
        if task in head_inputs:
            x = head_inputs[task]
            row["head_in"] = mean_abs(x)
            row["head_in_spatial_std"] = x.flatten(2).std(dim=2).mean().item()
            row["head_in top-1 variance share"] = top_direction_share(x)
        final = out["final"][task]
        row["final"] = mean_abs(final)
        if task == "normals":
            for c, axis in enumerate("xyz"):
                row[f"final_{axis}"] = mean_abs(final[:, c])
                row[f"prelim_{axis}"] = mean_abs(out["prelim"][task][:, c])
            row["final_dir_std"] = direction_std(final)
            row["prelim_dir_std"] = direction_std(out["prelim"][task])
            row["probe_mErr prelim feature"] = linear_probe_error(features[task], normals, ignore_index)
            if task in head_inputs:
                row["probe_mErr head_in"] = linear_probe_error(head_inputs[task], normals, ignore_index)
        row["|W| prelim head"] = model.prelim_heads[task].weight.norm().item()
        row["|W| refine head"] = denoiser.heads[task].weight.norm().item()
        row["|W| out convs"] = sum(p.norm().item() ** 2 for n, p in denoiser.out_convs[task].named_parameters()
                                   if n.endswith("weight")) ** 0.5
        row["|W| in layer"] = denoiser.in_layers[task].weight.norm().item()
        grad = denoiser.heads[task].weight.grad
        row["mean|grad| refine head"] = None if grad is None else grad.abs().mean().item()
        result[task] = row
    return result


def headline(cfg, metrics):
    """{task: (metric, final, prelim)} of an evaluation."""
    table = {}
    for task in cfg.TASKS.NAMES:
        name, _ = headline_metric(cfg.val_db_name, task)
        table[task] = (name, metrics[task][name], metrics["prelim"][task][name])
    return table


def print_record(iteration, rows):
    print(f"-- iteration {iteration}: magnitudes on the probe images")
    for task, row in rows.items():
        cells = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if v is not None)
        print(f"   {task}: {cells}")


def print_eval(iteration, table):
    cells = "; ".join(f"{task} {name} {final:.2f} (prelim {prelim:.2f})"
                      for task, (name, final, prelim) in table.items())
    print(f"== iteration {iteration}: validation final vs preliminary: {cells}")


def run(cfg, args):
    seed_everything(cfg.seed)
    device = torch.device("cpu")
    train_set, val_set = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    batches = TrainBatches(cfg, train_set, device)
    val_loader = make_val_loader(cfg, val_set, device)
    probe_samples = [val_set[i] for i in range(args.probe_images)]
    probe_images = torch.stack([sample["image"] for sample in probe_samples])
    probe_normals = torch.stack([sample["normals"] for sample in probe_samples])
    normals_column = cfg.TASKS.NAMES.index("normals")
    labelled = [i for i in range(len(train_set)) if train_set.task_masks[i][normals_column]]
    train_samples = [train_set[i] for i in labelled[:args.probe_images]]
    train_images = torch.stack([sample["image"] for sample in train_samples])
    train_normals = torch.stack([sample["normals"] for sample in train_samples])
    model = build_model(cfg).train()
    if model.refinement is None:
        raise DiffusionMTLError("the probe needs a refinement stage (not model_kwargs.variant=baseline)")
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, args.iters)
    step = TrainStep.of(cfg, model, build_loss(cfg), optimizer, device)
    evaluator = build_evaluator(cfg, "train")
    log = {"records": {}, "evaluations": {}}
    started = time.perf_counter()
    try:
        for iteration in range(args.iters + 1):
            if iteration:
                batch = next(batches)
                step(to_device(batch, device), batch["task_mask"], iteration)
                scheduler.step()
            if iteration % args.record_every == 0 or iteration == args.iters:
                log["records"][iteration] = record(model, probe_images, probe_normals, cfg.ignore_index)
                log["records"][iteration]["normals"]["train mErr final"], \
                    log["records"][iteration]["normals"]["train mErr prelim"] = training_fit(
                        model, train_images, train_normals, cfg.ignore_index)
                print_record(iteration, log["records"][iteration])
            if iteration and (iteration % args.eval_every == 0 or iteration == args.iters):
                table = headline(cfg, evaluate(model, val_loader, evaluator, Runtime.of(cfg, device)))
                model.train()
                log["evaluations"][iteration] = table
                print_eval(iteration, table)
                print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        evaluator.close()
    step.raise_if_diverged(None)
    return log


def main(argv=None):
    with restored_threads():
        return _main(argv)


def _main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", "--config", dest="config", default="configs/demo.yml",
                        help="YAML experiment config")
    parser.add_argument("--data", required=True, help="folder of the generated dataset (written once, then reused)")
    parser.add_argument("--iters", type=int, default=1500, help="training iterations (the poly schedule's length)")
    parser.add_argument("--record_every", type=int, default=250, help="iterations between magnitude records")
    parser.add_argument("--eval_every", type=int, default=500, help="iterations between validations")
    parser.add_argument("--probe_images", type=int, default=8, help="validation images the magnitudes are taken on")
    parser.add_argument("--json", default=None, help="also write the records to this file")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    try:
        data = os.path.abspath(args.data)
        cfg = load_config(args.config, opts=[f"db_root={data}", f"output_dir={os.path.join(data, 'work_dirs')}",
                                             "backbone_kwargs.pretrained=null", "nworkers=0", "num_threads=1",
                                             *args.opts])
        threads, reason = set_num_threads(cfg.num_threads)
        print(f"{threads} CPU thread(s) ({reason}); {args.iters} iterations of {cfg.version_name}, "
              f"model_kwargs {dict(cfg.model_kwargs)}", file=sys.stderr)
        ensure_data(data, cfg.train_size)
        log = run(cfg, args)
    except DiffusionMTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(log)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
