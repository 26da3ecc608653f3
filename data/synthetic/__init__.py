"""Synthetic multi-task scenes written in the exact on-disk layouts of PASCAL-Context,
NYUD-v2 and Cityscapes (README, Datasets), for tests and for the CPU demo.

`generate(layout, out, n_train, n_val, size, seed)` writes one dataset; `python -m
data.synthetic` is its command line. Modules: `objects` (what objects look like), `scenes`
(camera, rendering and placement, shared by every layout), one writer per layout
(`pascal`; `nyud`; `mtan`: the NYUD-v2 13-class and Cityscapes arrays) and `writing` (what
the writers share).

    python -m data.synthetic --layout pascal --out demo_data --train 100 --val 20 --size 128
    python -m data.synthetic --layout cityscapes --out demo_data --train 100 --val 20   # 128x256

The dataset folder appears only when complete (written next to it, then renamed); an
existing non-empty one is replaced only with --force.
"""
import argparse
import os
import shutil
import tempfile

from data.metadata import LAYOUTS
from data.synthetic.mtan import _write_cityscapes, _write_nyud_mtan
from data.synthetic.nyud import _write_nyud
from data.synthetic.objects import KINDS, build_object
from data.synthetic.pascal import _write_pascal
from data.synthetic.scenes import OBJECT_HEIGHT, PERSON_HEIGHT, Camera, _place  # noqa: F401  _place: for tests
from utils.cli import HelpFormatter
from utils.errors import DataError
from utils.tasks import DATASET_DIRNAME

DEFAULT_SIZES = {"cityscapes": "128x256"}  # --size when not given; else 128

# layout (data.metadata.LAYOUTS) -> writer(root, counts, height, width, seed)
WRITERS = {"pascal": _write_pascal, "nyud": _write_nyud, "nyud_mtan": _write_nyud_mtan,
           "cityscapes": _write_cityscapes}


def parse_size(text):
    """'128' -> (128, 128); '96x128' -> (96, 128) as (H, W)."""
    try:
        values = [int(v) for v in str(text).lower().split("x")]
    except ValueError:
        raise DataError(f"size must be S or HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 16:
        raise DataError(f"size must be S or HxW with sides >= 16, got {text!r}")
    return tuple(values)


def generate(layout, out, n_train, n_val, size, seed, force=False):
    """Write a synthetic dataset of `layout` under the db_root `out`; return its folder.

    `size` is an int (square) or (H, W); same arguments, same files. The dataset is
    written into a hidden sibling folder and renamed into place when complete, so an
    interrupted run never leaves a half-written dataset at the target. An existing
    non-empty target is a DataError unless `force` (then it is replaced).
    """
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; choose one of {list(LAYOUTS)}")
    height, width = parse_size(size) if isinstance(size, (int, str)) else tuple(size)
    dataset, writer = LAYOUTS[layout], WRITERS[layout]
    root = os.path.join(out, DATASET_DIRNAME[dataset])
    if os.path.exists(root) and not os.path.isdir(root):
        raise DataError(f"{root} exists and is not a folder")
    if os.path.isdir(root) and os.listdir(root) and not force:
        raise DataError(f"{root} already exists and is not empty; pass --force to replace it")
    os.makedirs(out, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.partial-", dir=out)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o777 & ~umask)  # mkdtemp makes it private; the dataset is not
    try:
        writer(partial, {"train": n_train, "val": n_val}, height, width, seed)
        if os.path.isdir(root):  # empty, or replaced with force
            previous = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.old-", dir=out)
            os.rename(root, os.path.join(previous, "old"))
            os.rename(partial, root)
            shutil.rmtree(previous)
        else:
            os.rename(partial, root)
    except BaseException:  # KeyboardInterrupt included: leave nothing half-written behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--layout", choices=list(LAYOUTS), required=True, help="which on-disk layout to write")
    parser.add_argument("--out", required=True, help="db_root: the dataset folder is created inside")
    parser.add_argument("--train", type=int, default=100, help="training images")
    parser.add_argument("--val", type=int, default=20, help="validation images")
    parser.add_argument("--size", default=None, help="S (square) or HxW; none: 128, cityscapes 128x256")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty dataset folder")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size or DEFAULT_SIZES.get(args.layout, "128"))
        root = generate(args.layout, args.out, args.train, args.val, size, args.seed,
                        force=args.force)
    except DataError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {args.train} train + {args.val} val images to {root}")


__all__ = ["generate", "main", "parse_size", "DEFAULT_SIZES", "WRITERS", "KINDS", "Camera", "build_object",
           "OBJECT_HEIGHT", "PERSON_HEIGHT"]
