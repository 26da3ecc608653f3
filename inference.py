"""Predict every task for images of any size and write PNGs plus an overview figure.

    python inference.py --checkpoint best.pth --image_path photos/ --save_dir predictions/ \
        [--config_exp configs/pascal/X.yml]

The model's config is read from the checkpoint (training checkpoints carry it); pass
`--config_exp` (alias `--config_path`) for a checkpoint without one.

`--image_path` is an image file, a folder (its image files, not recursive) or a glob.
An image larger than `val_size` is shrunk to fit it (aspect ratio kept); then it is
normalised and padded exactly as validation pads (`data.transforms.pad_and_tensorize`: the
content centred), so an image of the validation set gets the prediction `run_mode=infer`
gives it. The raw outputs are cropped to the image's window and resized back to the
original size *before* argmax / activation. Outputs per image `<name>`:
`<save_dir>/<task>/<name>.png` (see `evaluation.visualization.write_prediction`),
`<save_dir>/depth_mm/<name>.png` (16-bit millimetres, depth only) and
`<save_dir>/overview/<name>.png` (every tile fits 240 x 480 pixels, whatever the image's
shape; the ground truth under the predictions for the dataset's validation images, or with
`--with_targets` for any image named after one). Unreadable images are reported and
skipped (exit 1); a bad config or checkpoint, or a torch / torchvision pair that does not
match, is one line on stderr (exit 2).
"""
import argparse
import glob
import os
import sys
import time

from utils.install import checked_imports

with checked_imports():  # a torch / torchvision pair that does not match: one line (exit 2), not a traceback
    import numpy as np
    import torch
    from PIL import Image, ImageOps
    from tqdm import tqdm

    from data.datasets import build_dataset
    from engine.checkpoint import load_checkpoint, load_model_state
    from engine.predict import Runtime, fit_size, predict_images, prepare  # noqa: F401  (fit_size, prepare: API)
    from evaluation.visualization import dataset_style, make_overview, write_prediction
    from models import build_model
    from utils.cli import HelpFormatter, add_checkpoint_argument, device_choice, require
    from utils.config import config_from_dict, load_config
    from utils.distributed import resolve_device
    from utils.errors import CheckpointError, ConfigError, DataError, DiffusionMTLError, ImageReadError, UsageError
    from utils.progress import progress_bar

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")
# No backbone initialisation (the checkpoint has every weight); ground truth read for the
# overview leaves no decoded-label cache behind.
INFERENCE_OPTS = ["backbone_kwargs.pretrained=", "label_cache=false"]


# ----------------------------------------------------------------------------- inputs

def find_images(image_path):
    """An image file, a folder's image files or a glob's files -> sorted list of paths."""
    if os.path.isfile(image_path):
        return [image_path]
    if os.path.isdir(image_path):
        paths = [os.path.join(image_path, n) for n in sorted(os.listdir(image_path))
                 if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(image_path, n))]
    else:
        paths = sorted(p for p in glob.glob(image_path, recursive=True) if os.path.isfile(p))
    if not paths:
        raise ImageReadError(f"no image files at {image_path} (a file, a folder or a glob; "
                             f"folders are searched for {', '.join(IMAGE_EXTENSIONS)})")
    return paths


def output_names(paths):
    """File stems, made unique (a.jpg + a.png, or dir1/a.jpg + dir2/a.jpg) so nothing is overwritten."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    root = os.path.commonpath([os.path.abspath(p) for p in paths])
    clashing = {s for s in stems if stems.count(s) > 1}
    names = []
    for path, stem in zip(paths, stems):
        if stem in clashing:
            relative = os.path.relpath(os.path.abspath(path), root)
            stem = relative.replace(os.sep, "__").replace(".", "_")
        names.append(stem)
    return names


def _to_uint8(array, full_scale):
    """Integer / float grey levels -> uint8; full-range data is scaled, not clipped."""
    array = array.astype(np.float64)
    if full_scale is None:  # unknown range: stretch what is there
        low, high = float(array.min()), float(array.max())
        full_scale, array = max(high - low, 1e-12), array - low
    return np.round(np.clip(array / full_scale, 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_rgb(image):
    """A decoded PIL image of any mode -> uint8 (H, W, 3)."""
    if image.mode.startswith("I;16"):
        gray = _to_uint8(np.asarray(image), 65535.0)
    elif image.mode == "I":  # 32-bit integers, usually 16-bit data
        values = np.asarray(image)
        gray = _to_uint8(values, 65535.0 if values.min() >= 0 and values.max() <= 65535 else None)
    elif image.mode == "F":
        values = np.nan_to_num(np.asarray(image))
        gray = _to_uint8(values, 1.0 if values.min() >= 0 and values.max() <= 1 else None)
    else:
        if "A" in image.getbands() or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image.alpha_composite(rgba)
        return np.asarray(image.convert("RGB"))
    return np.repeat(gray[..., None], 3, axis=2)


def read_image(path):
    """Any still image -> uint8 (H, W, 3) RGB, upright (EXIF orientation applied).

    16-bit grey levels are scaled by 255/65535; transparency is composited on white;
    grey and palette images are expanded to RGB. Raises ImageReadError with the reason.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except Exception as err:  # decoders raise many types (OSError, SyntaxError, ValueError, ...)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ImageReadError(f"{path}: cannot read image ({reason})") from None


# ----------------------------------------------------------------------------- model

def load_setup(config_path, checkpoint, opts, device):
    """(config, model): the config from `config_path`, else the one stored in the checkpoint."""
    state = load_checkpoint(checkpoint)
    if not config_path and not state.get("config"):
        raise CheckpointError(f"{checkpoint} carries no config; pass the training config with --config_exp CFG")

    def config(extra):
        if config_path:
            return load_config(config_path, opts=INFERENCE_OPTS + extra + list(opts))
        return config_from_dict(state["config"], f"the config stored in {checkpoint}",
                                opts=INFERENCE_OPTS + extra + list(opts))

    try:  # the dataset root is kept when there is one: ground truth for the overview comes from there
        cfg = config([])
    except ConfigError:  # e.g. no dataset root, which only the ground truth needs
        cfg = config(["db_root=."])
    return cfg, load_model(cfg, checkpoint, device, state)


def load_model(cfg, checkpoint, device, state=None):
    """Build the model of `cfg` and load `checkpoint` strictly (CheckpointError on mismatch)."""
    state = load_checkpoint(checkpoint) if state is None else state
    model = build_model(cfg)
    load_model_state(model, state["model"], source=checkpoint)
    return Runtime.of(cfg, device).place(model).eval()


def predict(model, cfg, images, device):
    """uint8 (H, W, 3) images -> one dict per image: task -> activated numpy prediction at (H, W),
    by the path evaluation takes (engine.predict: padding, autocast, memory format, crop, resize)."""
    return predict_images(model, images, cfg.val_size, Runtime.of(cfg, device))


# ----------------------------------------------------------------------------- ground truth

class GroundTruth:
    """The labels of the config's validation images, for the overview's ground-truth row.

    An image counts as a validation image by its file name (the sample id) with
    `--with_targets`, and without it when the file is the dataset's own image of that id
    (so a prediction on the dataset shows its labels, and a photo that happens to share a
    name does not). The dataset is the config's (`db_root`, `--opts db_root=DIR`).
    """

    def __init__(self, cfg, required):
        self.required, self.loader, self.index = required, None, {}
        self.root = cfg.val_db_dir
        self.unmatched = []  # with --with_targets: images named after no validation sample
        if not os.path.isdir(cfg.val_db_dir):
            if required:
                raise UsageError(f"--with_targets: the dataset folder {cfg.val_db_dir} is not there; pass --opts "
                                 f"db_root=DIR, DIR holding '{os.path.basename(cfg.val_db_dir)}'")
            return
        try:
            self.loader = build_dataset(cfg, "val").loader
        except DataError as err:
            if required:
                raise UsageError(f"--with_targets: cannot read the validation split of {cfg.val_db_dir} ({err})") from None
            return
        self.index = {sample_id: i for i, sample_id in enumerate(self.loader.ids)}
        self.tasks = cfg.TASKS.NAMES

    def _is_dataset_image(self, path, index):
        if not hasattr(self.loader, "files"):
            return False
        own = [p for p in self.loader.files(index, [])[0] if os.path.exists(p)]
        return any(os.path.samefile(path, p) for p in own)

    def get(self, path):
        """task -> ground-truth map of the image at `path` (drawn like a prediction), or None."""
        index = self.index.get(os.path.splitext(os.path.basename(path))[0])
        if index is None and self.required:
            self.unmatched.append(path)
        if index is None or not (self.required or self._is_dataset_image(path, index)):
            return None
        try:
            sample = self.loader.load(index)
        except DataError as err:
            tqdm.write(f"no ground truth for {path}: {err}", file=sys.stderr)
            return None
        return {task: np.moveaxis(sample[task], -1, 0) if task == "normals" else sample[task] for task in self.tasks}


# ----------------------------------------------------------------------------- outputs

def save_outputs(save_dir, name, image, predictions, style, targets=None):
    """Write every task's PNG and the overview figure of one image (`style`: the dataset's
    palettes and class names, `evaluation.visualization.dataset_style`; `targets`: its
    ground truth, drawn under the predictions)."""
    for task, prediction in predictions.items():
        write_prediction(save_dir, task, name, prediction, style=style)
    overview_dir = os.path.join(save_dir, "overview")
    os.makedirs(overview_dir, exist_ok=True)
    overview = make_overview(image, predictions, style=style, targets=targets)
    Image.fromarray(overview).save(os.path.join(overview_dir, f"{name}.png"))


def run(model, cfg, paths, save_dir, device, batch_size=1, progress=True, ground_truth=None):
    """Predict and save every path; unreadable images are reported and skipped. With
    `ground_truth` (a GroundTruth) the overviews of validation images show their labels.

    Returns (number of images written, list of error messages).
    """
    style = dataset_style(cfg)
    failures, written, pending = [], 0, []

    def flush():
        nonlocal written
        names, sources, images = zip(*pending)
        for name, source, image, predictions in zip(names, sources, images, predict(model, cfg, images, device)):
            targets = ground_truth.get(source) if ground_truth is not None else None
            save_outputs(save_dir, name, image, predictions, style, targets)
        written += len(pending)
        pending.clear()

    with progress_bar(shown=progress and sys.stderr.isatty(), total=len(paths), unit="img", file=sys.stderr) as bar:
        for path, name in zip(paths, output_names(paths)):
            try:
                pending.append((name, path, read_image(path)))
            except ImageReadError as err:
                failures.append(str(err))
                tqdm.write(f"skipped {err}", file=sys.stderr)
            if len(pending) == batch_size:
                flush()
            bar.update(1)
        if pending:
            flush()
    return written, failures


# ----------------------------------------------------------------------------- entry point

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", "--config_path", dest="config_path", default=None,
                        help="the training config (YAML); default: the config stored in the checkpoint")
    add_checkpoint_argument(parser, "checkpoint with a 'model' state dict (e.g. best.pth); required",
                            old=("--ckp_path",))
    parser.add_argument("--image_path", required=True, help="an image file, a folder or a glob (quote it)")
    parser.add_argument("--save_dir", required=True, help="output folder (created; existing files are replaced)")
    parser.add_argument("--device", type=device_choice, default="auto", metavar="{auto,cpu,cuda,cuda:N}",
                        help="auto: the GPU when there is one, else the CPU; cuda / cuda:N: that GPU (an error "
                             "without one)")
    parser.add_argument("--batch_size", type=int, default=1, help="images per forward pass")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. val_size=[512,512]")
    parser.add_argument("--with_targets", action="store_true",
                        help="show the ground truth under the predictions in the overview for images named after "
                             "a validation sample of the config's dataset (db_root); without it, only for the "
                             "dataset's own image files")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar (none is drawn into a "
                                                                     "redirected stderr anyway)")
    args = parser.parse_args(argv)
    require(parser, args, "checkpoint")
    if args.batch_size < 1:
        parser.error("--batch_size must be >= 1")
    return args


def check_save_dir(save_dir, create=False):
    """Say in one line why `save_dir` cannot be the output folder; create it when asked."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise UsageError(f"--save_dir {save_dir} exists and is not a folder; choose a folder for the outputs")
    if not create:
        return
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--save_dir {save_dir}: cannot create the folder ({err.strerror})") from None
    if not os.access(save_dir, os.W_OK):
        raise UsageError(f"--save_dir {save_dir}: the folder is not writable")


def main(argv=None):
    """Returns the exit status: 0 all written, 1 some images unreadable, 2 unusable setup."""
    args = parse_args(argv)
    try:
        check_save_dir(args.save_dir)
        paths = find_images(args.image_path)
        device = resolve_device(args.device)
        cfg, model = load_setup(args.config_path, args.checkpoint, args.opts, device)
        ground_truth = GroundTruth(cfg, required=args.with_targets)
        check_save_dir(args.save_dir, create=True)
        start = time.perf_counter()
        written, failures = run(model, cfg, paths, args.save_dir, device,
                                args.batch_size, progress=not args.no_progress, ground_truth=ground_truth)
    except DiffusionMTLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"{written} images in {elapsed:.1f} s ({written / max(elapsed, 1e-9):.2f} images/s) -> {args.save_dir}")
    if ground_truth.unmatched:
        print(f"--with_targets: {len(ground_truth.unmatched)} of {written} images are named after no validation "
              f"sample of {ground_truth.root} (e.g. {ground_truth.unmatched[0]}): no ground truth drawn for them")
    if failures:
        print(f"{len(failures)} of {len(paths)} images could not be read (reasons above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
