"""How long the raw normal vectors of trained runs are: preliminary, refined, and their difference.

    python -m benchmarks.normals_lengths RUN_DIR [RUN_DIR ...] [--checkpoint last.pth] [--threads 1]

The normals loss and metric see only the direction of the raw 3-vector, so its length is
free; a refined vector much longer than the preliminary one means the refinement head has
replaced p_t rather than corrected it (README, "Refined normals that keep up"). For each
run folder (a `config.yaml` and a checkpoint, as main.py writes them; the dataset under
the config's db_root) it runs the model in evaluation mode on the validation split and
prints, over the valid target pixels (every target channel not the ignore value, the
vector non-zero), the median length of the preliminary and of the final (refined) raw
normals, the median length of final - preliminary, and each one's mean angular error
(degrees, pixels of all images pooled, at the label resolution as the evaluation scores
them). Run folders of a benchmarks.ablation DIR are DIR/runs/<variant>_s<seed>.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

from data.datasets import build_dataset
from data.loaders import make_val_loader
from engine.step import to_device
from models import build_model
from utils.checkpoint_io import load_checkpoint, load_model_state
from utils.cli import HelpFormatter
from utils.config import load_config
from utils.errors import DiffusionMTLError
from utils.threads import restored_threads


@torch.no_grad()
def normals_lengths(cfg, model, device=torch.device("cpu")):
    """{"prelim", "final", "correction": median length; "prelim_err", "final_err": mean degrees}."""
    if "normals" not in cfg.TASKS.NAMES:
        raise DiffusionMTLError("the config has no normals task")
    model.eval()
    ignore = cfg.ignore_index
    lengths, errors = {"prelim": [], "final": [], "correction": []}, {"prelim": [], "final": []}
    for batch in make_val_loader(cfg, build_dataset(cfg, "val"), device):
        batch = to_device(batch, device)
        outputs = model(batch["image"])
        target = batch["normals"].float()
        valid = (target != ignore).all(1) & (target.norm(dim=1) > 0)  # (B, H, W)
        size = target.shape[-2:]
        raw = {key: F.interpolate(outputs[key]["normals"].float(), size=size, mode="bilinear", align_corners=False)
               for key in ("prelim", "final")}
        for key, vectors in (*raw.items(), ("correction", raw["final"] - raw["prelim"])):
            lengths[key].append(vectors.norm(dim=1)[valid])
        for key, vectors in raw.items():
            cosine = (F.normalize(vectors, dim=1) * F.normalize(target, dim=1)).sum(1).clamp(-1, 1)
            errors[key].append(torch.rad2deg(torch.acos(cosine))[valid])
    result = {key: torch.cat(v).median().item() for key, v in lengths.items()}
    result.update({f"{key}_err": torch.cat(v).double().mean().item() for key, v in errors.items()})
    return result


def run_lengths(run_dir, checkpoint_name):
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    model = build_model(cfg)
    load_model_state(model, load_checkpoint(os.path.join(run_dir, checkpoint_name))["model"],
                     source=os.path.join(run_dir, checkpoint_name))
    return normals_lengths(cfg, model)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (config.yaml + checkpoint)")
    parser.add_argument("--checkpoint", default="last.pth", help="checkpoint file name inside each run folder")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    results = {}
    with restored_threads():
        torch.set_num_threads(args.threads)
        width = max(len(r) for r in args.runs)
        print(f"{'run':<{width}} {'|prelim|':>9} {'|final|':>9} {'|final-prelim|':>15} {'prelim deg':>11} {'final deg':>10}")
        for run_dir in args.runs:
            try:
                r = results[run_dir] = run_lengths(run_dir, args.checkpoint)
            except (DiffusionMTLError, OSError) as err:
                print(f"error: {run_dir}: {err}", file=sys.stderr)
                return 2
            print(f"{run_dir:<{width}} {r['prelim']:9.2f} {r['final']:9.2f} "
                  f"{r['correction']:15.2f} {r['prelim_err']:11.2f} {r['final_err']:10.2f}", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
