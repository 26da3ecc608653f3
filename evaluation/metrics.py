"""Streaming dense-prediction metrics (README, Metrics) whose states are sums.

Every meter keeps its state as a few CPU tensors (int64 counts, float64 sums) whose
shapes depend only on the configuration, so ranks can all-reduce them with SUM and
`compute()` gives the metric over the whole split. `update(prediction, target, sizes)`
takes activated predictions (`evaluation.postprocess.activate`), targets as in
docs/conventions.md, and `sizes` (B, 2): the original (H, W) of each sample, whose
top-left region is the only part evaluated (the rest is padding).
"""
import math

import torch
import torch.nn.functional as F


def image_region(sizes, height, width, device):
    """(B, H, W) bool: True inside each sample's original [:h, :w] region."""
    sizes = sizes.to(device)
    rows = torch.arange(height, device=device)[None, :] < sizes[:, :1]  # (B, H)
    cols = torch.arange(width, device=device)[None, :] < sizes[:, 1:]  # (B, W)
    return rows[:, :, None] & cols[:, None, :]


class StreamingMeter:
    """Base of the meters: their whole state is `state_tensors()` (defined by each meter),
    sums that add across batches and ranks."""

    def reset(self):
        for tensor in self.state_tensors():
            tensor.zero_()


class SegmentationMeter(StreamingMeter):
    """mIoU (%) from a confusion matrix accumulated over the split.

    IoU_c = TP / (TP + FP + FN), and the mean runs over *all* classes: a class that
    appears neither in the ground truth nor in the prediction anywhere in the split
    counts 0, as the field's evaluation code has it (on PASCAL val every
    class occurs, so this only matters on small or synthetic splits).
    """

    def __init__(self, num_classes, ignore_index):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)  # [gt, pred]

    def update(self, prediction, target, sizes):
        # prediction, target: int64 (B, H, W)
        valid = image_region(sizes, *target.shape[1:], target.device) & (target != self.ignore_index)
        pairs = target[valid] * self.num_classes + prediction[valid]
        counts = torch.bincount(pairs, minlength=self.num_classes ** 2)
        self.confusion += counts.view(self.num_classes, self.num_classes).cpu()

    def state_tensors(self):
        return [self.confusion]

    def compute(self):
        if not self.confusion.any():
            return {"mIoU": math.nan}
        confusion = self.confusion.double()
        true_pos = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - true_pos  # TP + FP + FN
        iou = torch.where(union > 0, true_pos / union.clamp_min(1), torch.zeros_like(union))
        return {"mIoU": iou.mean().item() * 100}


class SaliencyMeter(StreamingMeter):
    """maxF (%), beta^2 = 0.3, over thresholds on the foreground probability.

    As the field computes it: at each threshold t (0.05, 0.10, ..., 0.95)
    a pixel is predicted foreground when p >= t; true-positive, predicted-positive and
    actual-positive pixel counts are pooled over the whole split, precision and recall
    come from the pooled counts (0 where undefined), and maxF is the best F over the
    thresholds. The public release applies a second sigmoid to p before thresholding (a
    bug: every threshold <= 0.5 then selects every pixel); we threshold p itself.
    """

    BETA_SQUARED = 0.3

    def __init__(self, ignore_index, thresholds=None):
        if thresholds is None:
            thresholds = torch.arange(1, 20, dtype=torch.float64) / 20  # 0.05 .. 0.95
        self.thresholds = thresholds.float()
        self.ignore_index = ignore_index
        num_thresholds = len(self.thresholds)
        self.true_pos = torch.zeros(num_thresholds, dtype=torch.int64)
        self.predicted_pos = torch.zeros(num_thresholds, dtype=torch.int64)
        self.counts = torch.zeros(2, dtype=torch.int64)  # actual-positive pixels, valid pixels

    def update(self, prediction, target, sizes):
        # prediction: (B, H, W) foreground probability; target: int64 (B, H, W) {0, 1, ignore}
        num_bins = len(self.thresholds) + 1
        valid = image_region(sizes, *target.shape[1:], target.device) & (target != self.ignore_index)
        # bin k of a pixel = number of thresholds <= p; it is foreground at threshold j iff k > j
        bins = torch.bucketize(prediction.contiguous(), self.thresholds.to(prediction.device), right=True)
        bins, foreground = bins[valid], target[valid] == 1
        pixels = torch.bincount(bins, minlength=num_bins)
        fg_pixels = torch.bincount(bins[foreground], minlength=num_bins)
        # counts of pixels with bin > j, for every threshold j: (K,)
        self.predicted_pos += pixels.flip(0).cumsum(0).flip(0)[1:].cpu()
        self.true_pos += fg_pixels.flip(0).cumsum(0).flip(0)[1:].cpu()
        self.counts += torch.stack([foreground.sum(), pixels.sum()]).cpu()

    def state_tensors(self):
        return [self.true_pos, self.predicted_pos, self.counts]

    def compute(self):
        if int(self.counts[1]) == 0:
            return {"maxF": math.nan}
        true_pos = self.true_pos.double()
        precision = true_pos / self.predicted_pos.double().clamp_min(1)
        recall = true_pos / self.counts[0].double().clamp_min(1)
        denominator = self.BETA_SQUARED * precision + recall
        f_measure = (1 + self.BETA_SQUARED) * precision * recall / denominator.clamp_min(1e-12)
        return {"maxF": f_measure.max().item() * 100}


class NormalsMeter(StreamingMeter):
    """Angular error (degrees) between unit vectors, pooled over the valid pixels of the split.

    A pixel is valid when no target channel is the ignore value and the target vector is
    non-zero; both vectors are normalised and the dot product clamped to [-1, 1] before
    acos (in float64). Reports the mean ("mErr") and the root mean square ("rmse").
    """

    def __init__(self, ignore_index):
        self.ignore_index = ignore_index
        self.sums = torch.zeros(2, dtype=torch.float64)  # sum of error, sum of squared error
        self.count = torch.zeros(1, dtype=torch.int64)

    def update(self, prediction, target, sizes):
        # prediction, target: (B, 3, H, W)
        valid = image_region(sizes, *target.shape[2:], target.device) & (target != self.ignore_index).all(1)
        target = target.permute(0, 2, 3, 1)[valid].double()  # (N, 3)
        prediction = prediction.permute(0, 2, 3, 1)[valid].double()
        nonzero = target.norm(dim=1) > 0
        cosine = (F.normalize(prediction[nonzero], dim=1) * F.normalize(target[nonzero], dim=1)).sum(1)
        error = torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))
        self.sums += torch.stack([error.sum(), error.square().sum()]).cpu()
        self.count += error.numel()

    def state_tensors(self):
        return [self.sums, self.count]

    def compute(self):
        count = int(self.count)
        if count == 0:
            return {"mErr": math.nan, "rmse": math.nan}
        return {"mErr": self.sums[0].item() / count, "rmse": math.sqrt(self.sums[1].item() / count)}


def measured_depth(prediction, target, sizes, ignore_index):
    """Prediction and target (float64, 1-D) at the pixels with a measurement: inside the
    sample's region, target > 0 and not the ignore value. prediction (B, H, W), target (B, 1, H, W)."""
    target = target[:, 0]
    valid = image_region(sizes, *target.shape[1:], target.device)
    valid &= (target > 0) & (target != ignore_index)
    return prediction[valid].double(), target[valid].double()


class PixelSumsMeter(StreamingMeter):
    """Two per-pixel sums and the pixel count, pooled over the split (the depth meters)."""

    def __init__(self, ignore_index):
        self.ignore_index = ignore_index
        self.sums = torch.zeros(2, dtype=torch.float64)
        self.count = torch.zeros(1, dtype=torch.int64)

    def add(self, first, second):
        """Accumulate two per-pixel quantities of the same (N,) pixels."""
        self.sums += torch.stack([first.sum(), second.sum()]).cpu()
        self.count += first.numel()

    def means(self):
        """The two sums over the pixel count, or None before any pixel was seen."""
        count = int(self.count)
        return None if count == 0 else (self.sums[0].item() / count, self.sums[1].item() / count)

    def state_tensors(self):
        return [self.sums, self.count]


class DepthMeter(PixelSumsMeter):
    """Depth RMSE and mean absolute error (metres), pooled over valid pixels of the split.

    A pixel is valid when its target is > 0 (measured) and not the ignore value.
    """

    def update(self, prediction, target, sizes):
        # prediction: (B, H, W) metres; target: (B, 1, H, W) metres
        prediction, truth = measured_depth(prediction, target, sizes, self.ignore_index)
        error = prediction - truth
        self.add(error.square(), error.abs())

    def compute(self):
        means = self.means()
        if means is None:
            return {"rmse": math.nan, "abs_err": math.nan}
        return {"rmse": math.sqrt(means[0]), "abs_err": means[1]}


class InverseDepthMeter(PixelSumsMeter):
    """Cityscapes depth (the MTAN preprocessing stores inverse depth): absolute and
    relative error as MTPSL and DiffusionMTL report them, "absErr" and "relErr", pooled
    over the valid pixels of the split (MTPSL averages per batch instead).

    absErr = mean |p - t|, relErr = mean |p - t| / t over the pixels whose target is
    > 0 (measured) and not the ignore value. Lower is better for both.
    """

    def update(self, prediction, target, sizes):
        # prediction: (B, H, W); target: (B, 1, H, W), both inverse depth
        prediction, truth = measured_depth(prediction, target, sizes, self.ignore_index)
        error = (prediction - truth).abs()
        self.add(error, error / truth)

    def compute(self):
        means = self.means()
        if means is None:
            return {"absErr": math.nan, "relErr": math.nan}
        return {"absErr": means[0], "relErr": means[1]}
