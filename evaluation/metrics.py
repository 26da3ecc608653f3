"""Streaming dense-prediction metrics (docs/metrics.md) whose states are sums.

Every meter keeps its state as a few CPU tensors (int64 counts, float64 sums) whose
shapes depend only on the configuration, so ranks can all-reduce them with SUM and
`compute()` gives the metric over the whole split. `update(prediction, target, sizes)`
takes activated predictions (`evaluation.postprocess.activate`), targets as in
docs/conventions.md, and `sizes` (B, 4): each sample's content window [top, left,
height, width] in its padded maps (`data.transforms.content_windows`), the only part
evaluated (the rest is padding).
"""
import math

import torch
import torch.nn.functional as F


def image_region(windows, height, width, device):
    """(B, H, W) bool: True inside each sample's content window ([top, left, height, width]
    rows, `data.transforms.content_windows`) of the (H, W) padded maps."""
    top, left, content_h, content_w = windows.to(device)[:, :, None].unbind(1)  # each (B, 1)
    rows = torch.arange(height, device=device)[None, :] - top  # (B, H)
    cols = torch.arange(width, device=device)[None, :] - left  # (B, W)
    rows = (rows >= 0) & (rows < content_h)
    cols = (cols >= 0) & (cols < content_w)
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


class PooledErrorMeter(StreamingMeter):
    """Base of the meters that pool per-pixel errors over every valid pixel of the split
    (not per image or per batch): the state is the float64 sum of each per-pixel term
    (`TERMS`) and the int64 pixel count; `compute()` turns the means into the metrics.
    A subclass defines `pixel_terms` and `metrics`."""

    TERMS = ()  # the summed per-pixel terms, in the order `pixel_terms` returns them
    NAMES = ()  # the metrics reported, in the order tables print them

    def __init__(self, ignore_index):
        self.ignore_index = ignore_index
        self.sums = torch.zeros(len(self.TERMS), dtype=torch.float64)
        self.count = torch.zeros(1, dtype=torch.int64)

    def pixel_terms(self, prediction, target, sizes):
        """One float64 (N,) tensor per entry of `TERMS`, N = the valid pixels of the batch."""
        raise NotImplementedError

    def metrics(self, means):
        """{metric: value} from {term: mean over the split's valid pixels}."""
        raise NotImplementedError

    def update(self, prediction, target, sizes):
        terms = self.pixel_terms(prediction, target, sizes)
        self.sums += torch.stack([term.sum() for term in terms]).cpu()
        self.count += terms[0].numel()

    def state_tensors(self):
        return [self.sums, self.count]

    def compute(self):
        count = int(self.count)
        if count == 0:
            return {name: math.nan for name in self.NAMES}
        values = self.metrics({term: total / count for term, total in zip(self.TERMS, self.sums.tolist())})
        return {name: values[name] for name in self.NAMES}


class NormalsMeter(PooledErrorMeter):
    """Angular error (degrees) between unit vectors, pooled over the valid pixels of the split.

    A pixel is valid when no target channel is the ignore value and the target vector is
    non-zero; both vectors are normalised and the dot product clamped to [-1, 1] before
    acos (in float64). Reports the mean ("mErr") and the root mean square ("rmse").
    """

    TERMS = ("error", "squared_error")
    NAMES = ("mErr", "rmse")

    def pixel_terms(self, prediction, target, sizes):
        # prediction, target: (B, 3, H, W)
        valid = image_region(sizes, *target.shape[2:], target.device) & (target != self.ignore_index).all(1)
        target = target.permute(0, 2, 3, 1)[valid].double()  # (N, 3)
        prediction = prediction.permute(0, 2, 3, 1)[valid].double()
        nonzero = target.norm(dim=1) > 0
        cosine = (F.normalize(prediction[nonzero], dim=1) * F.normalize(target[nonzero], dim=1)).sum(1)
        error = torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))
        return error, error.square()

    def metrics(self, means):
        return {"mErr": means["error"], "rmse": math.sqrt(means["squared_error"])}


def measured_depth(prediction, target, sizes, ignore_index):
    """Prediction and target (float64, 1-D) at the pixels with a measurement: inside the
    sample's region, target > 0 and not the ignore value. prediction (B, H, W), target (B, 1, H, W)."""
    target = target[:, 0]
    valid = image_region(sizes, *target.shape[1:], target.device)
    valid &= (target > 0) & (target != ignore_index)
    return prediction[valid].double(), target[valid].double()


class DepthMeter(PooledErrorMeter):
    """Depth errors pooled over the valid pixels of the split (MTAN / MTPSL, InvPT):
    absErr = mean |p - t|, relErr = mean |p - t| / t, rmse = sqrt(mean (p - t)^2), over the
    pixels whose target is > 0 (measured) and not the ignore value. Lower is better for all.
    The headline differs by dataset (`utils.tasks.headline_metric`): absErr on the MTAN
    layout (the paper's NYUD protocol), rmse on the multi-task (InvPT) layout.
    """

    TERMS = ("abs_error", "rel_error", "squared_error")
    NAMES = ("rmse", "absErr", "relErr")  # columns, in the order tables print them

    def pixel_terms(self, prediction, target, sizes):
        # prediction: (B, H, W); target: (B, 1, H, W), same unit (metres or inverse depth)
        prediction, truth = measured_depth(prediction, target, sizes, self.ignore_index)
        error = (prediction - truth).abs()
        return error, error / truth, error.square()

    def metrics(self, means):
        return {"absErr": means["abs_error"], "relErr": means["rel_error"], "rmse": math.sqrt(means["squared_error"])}


class InverseDepthMeter(DepthMeter):
    """Cityscapes depth (the MTAN preprocessing stores inverse depth): absErr and relErr,
    the two columns MTPSL and DiffusionMTL report, pooled over the valid pixels of the
    split (MTPSL averages per batch instead). An RMSE of inverse depth is not reported."""

    NAMES = ("absErr", "relErr")
