"""Per-image prediction files for offline evaluation (e.g. the field's MATLAB boundary tools)."""
import numpy as np
from PIL import Image


def prediction_to_png_array(task, prediction):
    """Activated prediction of one image -> the array written to its PNG.

    semseg / human_parts: uint8 class ids; sal / edge: uint8 probability x 255;
    normals: uint8 RGB (n + 1) / 2 x 255; depth: uint16 millimetres.
    """
    if task in ("semseg", "human_parts"):
        return prediction.astype(np.uint8)
    if task in ("sal", "edge"):
        return np.clip(np.rint(prediction * 255.0), 0, 255).astype(np.uint8)
    if task == "normals":
        return np.clip(np.rint((np.moveaxis(prediction, 0, -1) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if task == "depth":
        return np.clip(np.rint(prediction * 1000.0), 0, 65535).astype(np.uint16)
    raise KeyError(f"unknown task '{task}'")


def save_prediction_png(path, task, prediction):
    Image.fromarray(prediction_to_png_array(task, prediction)).save(path)
