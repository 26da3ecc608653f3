"""The one prediction path: images -> the model under the run's precision and memory
layout -> raw outputs -> cropped, resized and activated predictions.

Evaluation (metrics, saved prediction PNGs, TensorBoard images) and inference.py both go
through here, so a validation image gets the same prediction from `run_mode=infer` and from
inference.py whatever the config's `amp` and `channels_last`:

    images (uint8, any size) --prepare--> padded canvas (as validation pads)
          --forward (Runtime: device, autocast, memory format)--> raw outputs, float32
          --activated_maps (crop to content, resize, activate)--> per-image predictions
"""
from dataclasses import dataclass

import cv2
import torch
import torch.nn.functional as F

from data.transforms import content_windows, crop_to_content, pad_and_tensorize
from evaluation.postprocess import activate

# Devices where `amp: true` runs the model under bfloat16 autocast. Not the CPU: there
# bf16 convolutions are slower than float32 ones (and main.py says so when amp is set).
AUTOCAST_DEVICES = ("cuda",)


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs: the device, bf16 autocast (`amp`) and NHWC (`channels_last`)."""

    device: torch.device
    amp: bool = False
    channels_last: bool = False

    @classmethod
    def of(cls, cfg, device):
        return cls(torch.device(device), bool(cfg.amp), bool(cfg.channels_last))

    @property
    def memory_format(self):
        """NHWC (faster convolutions with cuDNN and oneDNN) or NCHW."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def autocast_enabled(self):
        return self.amp and self.device.type in AUTOCAST_DEVICES

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast_enabled)

    def place(self, model):
        """`model` on the device, in the memory format."""
        return model.to(device=self.device, memory_format=self.memory_format)

    def inputs(self, images):
        """A (B, 3, H, W) batch on the device, in the memory format."""
        return images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)


@torch.no_grad()
def forward(model, images, runtime):
    """The model's outputs for a padded batch, as float32: {"final": {task: (B, C, H, W)}, "prelim": ...}."""
    with runtime.autocast():
        outputs = model(runtime.inputs(images))
    return {key: {task: out.float() for task, out in outputs[key].items()} for key in ("final", "prelim")}


def activated_maps(outputs, windows, sizes=None):
    """Raw outputs {task: (B, C, H, W)} -> one {task: numpy prediction} per sample: cropped to
    the sample's window (a row of `data.transforms.content_windows`), resized (bilinear) to
    its entry of `sizes` when given, then activated (`evaluation.postprocess.activate`)."""
    predictions = []
    for index, window in enumerate(windows):
        per_task = {}
        for task, output in outputs.items():
            raw = crop_to_content(output[index:index + 1], window)
            if sizes is not None and tuple(raw.shape[-2:]) != tuple(sizes[index]):
                raw = F.interpolate(raw, size=tuple(sizes[index]), mode="bilinear", align_corners=False)
            per_task[task] = activate(task, raw)[0].cpu().numpy()
        predictions.append(per_task)
    return predictions


def fit_size(height, width, target):
    """Size (h, w) of the image shrunk to fit inside `target`, aspect ratio kept; an image
    that fits is not resized (validation never resizes, and training scales 0.5-2 around
    the native size)."""
    scale = min(1.0, target[0] / height, target[1] / width)
    return max(1, min(target[0], round(height * scale))), max(1, min(target[1], round(width * scale)))


def prepare(image, target):
    """uint8 (H, W, 3) -> the model's input (3, *target), normalised and padded as validation
    pads it, and the window [top, left, height, width] of the (resized) image in it."""
    height, width = fit_size(*image.shape[:2], target)
    if (height, width) != image.shape[:2]:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    sample = pad_and_tensorize({"image": image, "meta": {"id": ""}}, [], target, [])
    return sample["image"], content_windows(sample["meta"])[0]


def predict_images(model, images, size, runtime):
    """uint8 (H, W, 3) images -> one {task: activated numpy prediction at (H, W)} per image;
    `size` is the model's input canvas (the config's val_size)."""
    batch, windows = zip(*(prepare(image, size) for image in images))
    outputs = forward(model, torch.stack(batch), runtime)["final"]
    return activated_maps(outputs, windows, sizes=[image.shape[:2] for image in images])
