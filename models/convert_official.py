"""Convert the public release's checkpoint into this project's checkpoint format.

    python -m models.convert_official --checkpoint official.pth --dst ours.pth \
        [--config configs/pascal/resnet18_feature_official.yml]

The source is read with `weights_only=True`; its state dict may sit at the top level or
under 'model' / 'state_dict', with or without DataParallel's 'module.' prefix. Every key
must map onto the model the config builds, with the same shape, and every key of that
model must be covered; anything else is an error. The output is {"model": state_dict}.
"""
import argparse
import pickle
import re
import sys
import zipfile
from pathlib import Path

import torch

from models import build_model
from utils.checkpoint_io import save_checkpoint
from utils.cli import HelpFormatter, add_checkpoint_argument, require
from utils.config import load_config
from utils.errors import CheckpointError, DiffusionMTLError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pascal" / "resnet18_feature_official.yml"

# Official key prefix -> ours; the first matching rule applies.
KEY_RULES = [
    (r"backbone\.", "backbone."),
    (r"backbone_embed\.", "fuse_conv."),
    (r"preliminary_dec\.", "prelim_decoders."),
    (r"preliminary_head\.(\w+)\.0\.", r"prelim_heads.\1."),
    (r"diffusion_model\.denoiser\.crossblocks\.", "denoiser.blocks."),
    (r"diffusion_model\.denoiser\.pre_layer\.", "denoiser.in_layers."),
    (r"diffusion_model\.denoiser\.task_heads\.", "denoiser.out_convs."),
    (r"diffusion_model\.denoiser\.final_task_heads\.(\w+)\.linear_pred\.", r"denoiser.heads.\1."),
    (r"diffusion_model\.denoiser\.t_embedder\.", "denoiser.t_embedder."),
    (r"diffusion_model\.pred_combinator\.out_layer\.", "condition_conv."),
    (r"diffusion_model\.(?=\w+$)", "diffusion."),  # the schedule tables
]


def _shown(items, limit=3):
    items = list(items)
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def load_official(path):
    """The official state dict: safe load, unwrap 'model' / 'state_dict', strip 'module.'."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line}") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: no state dict of tensors found (top level, 'model' or 'state_dict')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def official_to_ours(key):
    """Our name for an official key, or None when no rule matches."""
    for pattern, replacement in KEY_RULES:
        new, count = re.subn("^" + pattern, replacement, key)
        if count:
            return new
    return None


def convert_state_dict(official, target_shapes):
    """Rename `official` onto `target_shapes` (our key -> shape); CheckpointError on any mismatch."""
    converted, matched, unmatched, wrong_shape = {}, set(), [], []
    for key, value in official.items():
        ours = official_to_ours(key)
        if ours is None or ours not in target_shapes or ours in matched:
            unmatched.append(key)
            continue
        matched.add(ours)
        if tuple(value.shape) != tuple(target_shapes[ours]):
            wrong_shape.append(f"{key} {tuple(value.shape)} vs {tuple(target_shapes[ours])}")
        else:
            converted[ours] = value
    missing = [k for k in target_shapes if k not in matched]
    problems = [f"{len(keys)} {label}: {_shown(keys)}" for label, keys in (
        ("official keys without a counterpart", unmatched),
        ("official keys with a wrong shape", wrong_shape),
        ("model keys not in the checkpoint", missing)) if keys]
    if problems:
        raise CheckpointError("the checkpoint does not match the model: " + "; ".join(problems))
    return converted


def target_shapes(config_path):
    """Key -> shape of the model the config builds (on the meta device: nothing allocated)."""
    # the dataset root is irrelevant here, and the backbone's weights come from the checkpoint
    cfg = load_config(str(config_path), opts=["db_root=.", "backbone_kwargs.pretrained=null"])
    with torch.device("meta"):
        model = build_model(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    add_checkpoint_argument(parser, "the public release's .pth file; required", old=("--src",))
    parser.add_argument("--dst", required=True, help="where to write our checkpoint")
    parser.add_argument("--config_exp", "--config", dest="config", default=str(DEFAULT_CONFIG),
                        help="config of the target model")
    args = parser.parse_args(argv)
    require(parser, args, "checkpoint")
    try:
        converted = convert_state_dict(load_official(args.checkpoint), target_shapes(args.config))
        save_checkpoint(args.dst, {"model": converted})
    except DiffusionMTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: {len(converted)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
