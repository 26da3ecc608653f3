"""Figures of predictions, drawn with the palettes and class names of data.metadata.

TensorBoard images during training and the files written by `inference.py` both use
`colorize()`, so a class has the same colour everywhere. Inputs are single *activated*
predictions (`evaluation.postprocess.activate` output for one image, numpy or torch):
semseg / human_parts int (H, W); sal / edge probabilities (H, W); normals (3, H, W)
unit vectors; depth (H, W) metres (Cityscapes: inverse depth). Ground-truth maps work
too: 255 is shown in the ignore colour. Datasets that draw differently from the defaults
(Cityscapes: its own palettes, inverse depth) pass `style=dataset_style(cfg)`.
"""
import dataclasses
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data.metadata import (CITYSCAPES7_CLASSES, CITYSCAPES7_PALETTE, CITYSCAPES19_CLASSES, CITYSCAPES19_PALETTE,
                           CLASS_NAMES, IGNORE_COLOR, PALETTES)
from evaluation.export import prediction_to_png_array
from utils.tasks import IGNORE_INDEX, ordered_tasks

TASK_TITLES = {
    "semseg": "semantic segmentation", "human_parts": "human parts", "sal": "saliency",
    "depth": "depth", "normals": "surface normals", "edge": "boundaries",
}


def _depth_colormap():
    """256-entry LUT interpolated from nine samples of the viridis colour map."""
    anchors = np.array([
        (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
        (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
    ], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    ramp = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(ramp, positions, anchors[:, c]) for c in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


DEPTH_CMAP = _depth_colormap()  # (256, 3) uint8; index 255 = near (bright), 0 = far (dark)
MISSING_DEPTH_COLOR = (0, 0, 0)


@dataclasses.dataclass(frozen=True)
class Style:
    """How one dataset's maps are drawn: class names and palettes per task, and whether
    depth is inverse depth (larger = nearer, e.g. Cityscapes)."""
    class_names: dict = dataclasses.field(default_factory=dict)
    palettes: dict = dataclasses.field(default_factory=lambda: dict(PALETTES))
    inverse_depth: bool = False


DEFAULT_STYLE = Style()

# dataset -> number of semseg classes -> style, for datasets that differ from the default
_DATASET_STYLES = {
    "Cityscapes": {
        7: Style({"semseg": CITYSCAPES7_CLASSES}, {"semseg": CITYSCAPES7_PALETTE}, inverse_depth=True),
        19: Style({"semseg": CITYSCAPES19_CLASSES}, {"semseg": CITYSCAPES19_PALETTE}, inverse_depth=True),
    },
}


def dataset_style(cfg):
    """The Style of `cfg.val_db_name` with its number of semseg classes."""
    styles = _DATASET_STYLES.get(cfg.val_db_name)
    if styles is None:
        return Style(dict(CLASS_NAMES.get(cfg.val_db_name, {})))
    num_classes = cfg.TASKS.NUM_OUTPUT.get("semseg", min(styles))
    return styles[num_classes]


def _to_numpy(prediction):
    if hasattr(prediction, "detach"):  # a torch tensor, possibly on the GPU or in bf16
        prediction = prediction.detach().cpu()
        prediction = (prediction.float() if prediction.is_floating_point() else prediction).numpy()
    return np.asarray(prediction)


def depth_limits(depth):
    """(near, far) in metres over the valid (finite, > 0, not ignore) pixels; None if none."""
    depth = _to_numpy(depth)
    valid = depth[np.isfinite(depth) & (depth > 0) & (depth != IGNORE_INDEX)]
    if valid.size == 0:
        return None
    return float(valid.min()), float(valid.max())


def colorize(task, prediction, depth_range=None, style=None):
    """One activated prediction (or ground-truth map) -> uint8 (H, W, 3) RGB.

    `depth_range` = (smallest, largest) depth value fixes the depth colour scale (e.g.
    to compare images); by default each map is scaled to its own valid range. Near is
    bright: the smallest depth, or the largest inverse depth with `style.inverse_depth`.
    """
    style = style or DEFAULT_STYLE
    prediction = _to_numpy(prediction)
    if task in style.palettes:
        labels = prediction.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"{task}: class ids must be in 0..255, got {labels.min()}..{labels.max()}")
        return style.palettes[task][labels]
    if task in ("sal", "edge"):
        ignore = prediction == IGNORE_INDEX
        rgb = np.repeat(prediction_to_png_array(task, prediction)[..., None], 3, axis=2)
        rgb[ignore] = IGNORE_COLOR
        return rgb
    if task == "normals":
        ignore = np.all(prediction == IGNORE_INDEX, axis=0)
        rgb = prediction_to_png_array(task, prediction)
        rgb[ignore] = IGNORE_COLOR
        return rgb
    if task == "depth":
        depth = prediction.astype(np.float64)
        valid = np.isfinite(depth) & (depth > 0) & (depth != IGNORE_INDEX)
        limits = depth_range or depth_limits(depth)
        rgb = np.empty(depth.shape + (3,), dtype=np.uint8)
        rgb[:] = MISSING_DEPTH_COLOR
        if limits is not None:
            near, far = limits
            scaled = (far - np.where(valid, depth, far)) / max(far - near, 1e-6)  # smallest -> 1
            if style.inverse_depth:
                scaled = 1.0 - scaled  # largest inverse depth = nearest -> 1
            index = np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.int64)
            rgb[valid] = DEPTH_CMAP[index[valid]]
        return rgb
    raise ValueError(f"unknown task '{task}'")


def write_prediction(save_dir, task, name, prediction, style=None):
    """Write one activated prediction as `save_dir/<task>/<name>.png`.

    The stored values are those of `evaluation.export` (so offline evaluation can read
    these files), viewable as they are: semseg / human_parts are palette PNGs whose
    pixel values are the class ids; sal / edge 8-bit grey probabilities; normals RGB
    (n + 1) / 2 * 255; depth is colour-mapped, and its values go to
    `save_dir/depth_mm/<name>.png` as 16-bit millimetres (0 = invalid, clipped at
    65.535 m). Returns the written paths.
    """
    if task not in TASK_TITLES:
        raise ValueError(f"unknown task '{task}'")
    style = style or DEFAULT_STYLE
    paths = [os.path.join(save_dir, task, f"{name}.png")]
    prediction = _to_numpy(prediction)
    values = Image.fromarray(prediction_to_png_array(task, prediction))
    if task in style.palettes:
        values.putpalette(style.palettes[task].reshape(-1).tolist())  # "L" -> "P", values unchanged
        images = [values]
    elif task == "depth":
        images = [Image.fromarray(colorize(task, prediction, style=style)), values]
        paths.append(os.path.join(save_dir, "depth_mm", f"{name}.png"))
    else:
        images = [values]
    for image, path in zip(images, paths):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image.save(path)
    return paths


# ----------------------------------------------------------------------------- overview

_FONT = ImageFont.load_default()
_LINE = _FONT.getbbox("Ag")[3] + 4  # text line height in pixels
_PAD = 6
_SWATCH = _LINE - 4
_MIN_COLUMN = 150  # legends need this much width even for tall, narrow images
_MAX_ASPECT = 2.0  # a tile is at most this many times as wide as tall: a 3 x 2000 image makes no 160,000-pixel tile
_MAX_LEGEND = 12  # classes listed per task, largest area first


def _fit_text(draw, text, width):
    """Shorten `text` with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=_FONT) <= width:
        return text
    while text and draw.textlength(text + "...", font=_FONT) > width:
        text = text[:-1]
    return text + "..."


def _legend(task, prediction, names, style):
    """Legend entries: list of (colour or None, text)."""
    if task in style.palettes:
        labels = _to_numpy(prediction).astype(np.int64).reshape(-1)
        labels = labels[labels != IGNORE_INDEX]
        counts = np.bincount(labels, minlength=1)
        present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
        entries = []
        for class_id in present[:_MAX_LEGEND]:
            name = names[class_id] if names is not None and class_id < len(names) else f"class {class_id}"
            share = 100.0 * counts[class_id] / max(labels.size, 1)
            entries.append((tuple(int(v) for v in style.palettes[task][class_id]), f"{name} {share:.1f}%"))
        if len(present) > _MAX_LEGEND:
            entries.append((None, f"+{len(present) - _MAX_LEGEND} more"))
        return entries
    if task == "depth":
        limits = depth_limits(prediction)
        if limits is None:
            return [(None, "no valid depth")]
        if style.inverse_depth:
            return [(tuple(int(v) for v in DEPTH_CMAP[255]), f"near {limits[1]:.3f} (1/depth)"),
                    (tuple(int(v) for v in DEPTH_CMAP[0]), f"far {limits[0]:.3f} (1/depth)")]
        return [(tuple(int(v) for v in DEPTH_CMAP[255]), f"near {limits[0]:.2f} m"),
                (tuple(int(v) for v in DEPTH_CMAP[0]), f"far {limits[1]:.2f} m")]
    if task in ("sal", "edge"):
        return [((255, 255, 255), "probability 1"), ((0, 0, 0), "probability 0")]
    if task == "normals":
        return [(None, "RGB = (n + 1) / 2")]
    return []


def _fit(rgb, height, width, nearest):
    """`rgb` resized to fit a `height` x `width` box, aspect ratio kept (at least one pixel a side)."""
    scale = min(height / rgb.shape[0], width / rgb.shape[1])
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return Image.fromarray(rgb).resize(size, Image.NEAREST if nearest else Image.BILINEAR)


def _cell(title, rgb, entries, tile_height, nearest):
    """One titled tile with its legend: (title, PIL image, legend entries)."""
    return title, _fit(rgb, tile_height, round(_MAX_ASPECT * tile_height), nearest), entries


def make_overview(image, predictions, class_names=None, tile_height=240, style=None, targets=None):
    """The input and every task side by side, titled, with a legend under each tile; with
    `targets` (task -> ground-truth map, e.g. a validation sample's labels) a second row holds
    the ground truth under each prediction.

    image: uint8 (H, W, 3); predictions: task -> one activated prediction of that image;
    class_names: task -> class-name list (e.g. `CLASS_NAMES[dataset]`) for the legends
    of semseg / human_parts, by default those of `style`. Every tile fits a `tile_height` x
    2 * `tile_height` box, whatever the image's shape, so the figure stays a few thousand
    pixels wide at most. Returns uint8 (H', W', 3).
    """
    style = style or DEFAULT_STYLE
    class_names = class_names or style.class_names
    tasks = ordered_tasks(predictions)
    rows = [[_cell("input", np.asarray(image, dtype=np.uint8), [], tile_height, nearest=False)]]
    for task in tasks:
        rows[0].append(_cell(TASK_TITLES[task], colorize(task, predictions[task], style=style),
                             _legend(task, predictions[task], class_names.get(task), style), tile_height,
                             nearest=task in style.palettes))
    if targets:
        rows.append([None] + [_cell("ground truth", colorize(task, targets[task], style=style),
                                    _legend(task, targets[task], class_names.get(task), style), tile_height,
                                    nearest=True) if task in targets else None for task in tasks])
    widths = [max([_MIN_COLUMN] + [row[c][1].width for row in rows if row[c] is not None])
              for c in range(len(rows[0]))]
    heights = [_LINE + max(cell[1].height for cell in row if cell) + _PAD
               + max(len(cell[2]) for cell in row if cell) * _LINE + _PAD for row in rows]
    canvas = Image.new("RGB", (sum(widths) + _PAD * (len(widths) + 1), _PAD + sum(heights)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    row_top = _PAD
    for row, row_height in zip(rows, heights):
        tile_bottom = row_top + _LINE + max(cell[1].height for cell in row if cell)
        left = _PAD
        for cell, column in zip(row, widths):
            if cell is not None:
                title, tile, entries = cell
                draw.text((left, row_top), _fit_text(draw, title, column), fill=(0, 0, 0), font=_FONT)
                canvas.paste(tile, (left + (column - tile.width) // 2, row_top + _LINE))
                top = tile_bottom + _PAD
                for colour, text in entries:
                    x = left
                    if colour is not None:
                        draw.rectangle([x, top + 1, x + _SWATCH - 1, top + _SWATCH], fill=colour,
                                       outline=(0, 0, 0))
                        x += _SWATCH + 4
                    draw.text((x, top), _fit_text(draw, text, column - (x - left)), fill=(0, 0, 0), font=_FONT)
                    top += _LINE
            left += column + _PAD
        row_top += row_height
    return np.asarray(canvas)
