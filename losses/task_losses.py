"""Per-task losses, reduced per sample, as the public release defines them.

Every loss maps a raw model output (B, C, H, W) and its target (conventions.md) to a
(B,) tensor: the mean of the per-pixel loss over that sample's valid pixels. A sample
without valid pixels gets exactly 0 (the count is clamped to 1), so the multi-task
criterion can mask it out without producing NaNs.
"""
import torch
import torch.nn.functional as F


def _per_sample_mean(per_pixel, valid):
    """Sum of `per_pixel` over the valid entries of each sample / their count. -> (B,)"""
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    total = per_pixel.flatten(1).sum(1)
    count = valid.flatten(1).sum(1).clamp_min(1)
    return total / count


def cross_entropy(output, target, ignore_index):
    """Semseg / human_parts: pixel-wise cross-entropy; `ignore_index` pixels excluded."""
    # output (B, C, H, W) logits, target (B, H, W) int64
    per_pixel = F.cross_entropy(output.float(), target, ignore_index=ignore_index, reduction="none")
    return _per_sample_mean(per_pixel, target != ignore_index)


def balanced_cross_entropy(output, target, ignore_index):
    """Saliency: 2-class cross-entropy with each class weighted by the other's frequency.

    As the field does (TaskPrompter / DiffusionMTL), the weights come from the labels of
    the sample itself: over its valid pixels, w_fg = #bg / N and w_bg = #fg / N, and the
    weighted sum is divided by N (not by the sum of the weights). A sample whose valid
    pixels are all one class therefore contributes 0.
    """
    # output (B, 2, H, W) logits, target (B, H, W) int64 in {0, 1, ignore_index}
    valid = target != ignore_index
    per_pixel = F.cross_entropy(output.float(), target, ignore_index=ignore_index, reduction="none")
    foreground = (target == 1) & valid
    num_valid = valid.flatten(1).sum(1).clamp_min(1)  # (B,)
    num_fg = foreground.flatten(1).sum(1)
    weight_fg = (num_valid - num_fg) / num_valid  # (B,)
    weight_bg = num_fg / num_valid
    weight = torch.where(foreground, weight_fg[:, None, None], weight_bg[:, None, None])
    return _per_sample_mean(weight * per_pixel, valid)


def weighted_bce(output, target, ignore_index, pos_weight):
    """Edge: binary cross-entropy on logits, positives weighted `pos_weight`, negatives 1 - it."""
    # output (B, 1, H, W) logits, target (B, 1, H, W) float in {0, 1, ignore_index}
    output = output.float()
    valid = target != ignore_index
    positive = (target == 1).to(output.dtype)
    per_pixel = -(pos_weight * positive * F.logsigmoid(output)
                  + (1.0 - pos_weight) * (1.0 - positive) * F.logsigmoid(-output))
    return _per_sample_mean(per_pixel, valid)


def normals_l1(output, target, ignore_index):
    """Normals: L1 between the L2-normalised prediction and the target.

    |n_pred - n_gt| summed over the 3 channels and divided by the number of valid
    *pixels* (not pixels x 3), as the public release computes it: its weight 10 was
    tuned for this scale. A pixel is valid when none of its channels
    is `ignore_index`.
    """
    # output (B, 3, H, W) unnormalised vectors, target (B, 3, H, W)
    prediction = F.normalize(output.float(), p=2, dim=1)
    valid = (target != ignore_index).all(dim=1)  # (B, H, W)
    per_pixel = (prediction - target).abs().sum(dim=1)  # (B, H, W)
    return _per_sample_mean(per_pixel, valid)


def depth_l1(output, target, ignore_index):
    """Depth: L1 in metres over pixels with a measurement (target > 0, not `ignore_index`)."""
    # output (B, 1, H, W), target (B, 1, H, W) metres
    valid = (target > 0) & (target != ignore_index)
    return _per_sample_mean((output.float() - target).abs(), valid)


TASK_LOSSES = {
    "semseg": cross_entropy,
    "human_parts": cross_entropy,
    "sal": balanced_cross_entropy,
    "edge": weighted_bce,
    "normals": normals_l1,
    "depth": depth_l1,
}
