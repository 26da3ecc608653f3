"""Per-task losses on tiny tensors with hand-worked values."""
import math

import torch

from losses.task_losses import (balanced_cross_entropy, cross_entropy, depth_l1, normals_l1,
                                weighted_bce)

LN2, LN3 = math.log(2.0), math.log(3.0)


def test_cross_entropy_ignores_255_and_reduces_per_sample():
    # sample 0: logits [0, 0] target 0 -> ln 2; logits [ln 3, 0] target 0 -> -ln(3/4);
    #           third pixel ignored. Mean over 2 valid pixels.
    # sample 1: every pixel ignored -> exactly 0 (no NaN).
    output = torch.zeros(2, 2, 1, 3)
    output[0, 0, 0, 1] = LN3
    target = torch.tensor([[[0, 0, 255]], [[255, 255, 255]]])
    loss = cross_entropy(output, target, ignore_index=255)
    expected = (LN2 + math.log(4 / 3)) / 2
    torch.testing.assert_close(loss, torch.tensor([expected, 0.0]))


def test_balanced_cross_entropy_weights_by_inverse_frequency():
    # target [1, 0, 0, ignore], zero logits -> CE = ln 2 everywhere.
    # N = 3 valid, 1 foreground: w_fg = #bg/N = 2/3, w_bg = #fg/N = 1/3.
    # loss = (2/3 ln2 + 1/3 ln2 + 1/3 ln2) / 3 = 4/9 ln 2
    output = torch.zeros(1, 2, 1, 4)
    target = torch.tensor([[[1, 0, 0, 255]]])
    loss = balanced_cross_entropy(output, target, ignore_index=255)
    torch.testing.assert_close(loss, torch.tensor([4 / 9 * LN2]))


def test_balanced_cross_entropy_single_class_sample_is_zero():
    # all valid pixels background: w_bg = #fg / N = 0 (the field's behaviour)
    loss = balanced_cross_entropy(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64), 255)
    torch.testing.assert_close(loss, torch.tensor([0.0]))


def test_weighted_bce_uses_095_for_positives_and_005_for_negatives():
    # zero logits: positive -> 0.95 ln2, negative -> 0.05 ln2; the ignored pixel drops out.
    # pixel 4 is positive with logit ln 3: -0.95 log(sigmoid(ln 3)) = 0.95 ln(4/3).
    output = torch.zeros(1, 1, 1, 5)
    output[0, 0, 0, 4] = LN3
    target = torch.tensor([[[[1.0, 0.0, 0.0, 255.0, 1.0]]]])
    loss = weighted_bce(output, target, ignore_index=255, pos_weight=0.95)
    expected = (0.95 * LN2 + 0.05 * LN2 + 0.05 * LN2 + 0.95 * math.log(4 / 3)) / 4
    torch.testing.assert_close(loss, torch.tensor([expected]))


def test_weighted_bce_is_on_logits_not_probabilities():
    # a large positive logit on a boundary pixel costs ~0 (a probability fed as a logit would not)
    loss = weighted_bce(torch.full((1, 1, 1, 1), 20.0), torch.ones(1, 1, 1, 1), 255, 0.95)
    assert loss.item() < 1e-6


def test_normals_l1_sums_channels_and_divides_by_valid_pixels():
    # a 2x2 map; pixel (0, 0): (2, 0, 0) -> (1, 0, 0) vs (0, 1, 0): |1| + |-1| + 0 = 2
    # pixel (0, 1): (0, 0, 5) -> (0, 0, 1) vs (1, 0, 0): 1 + 0 + 1 = 2
    # pixel (1, 0): (0, 3, 4) -> (0, 0.6, 0.8) vs (0, 0, 1): 0 + 0.6 + 0.2 = 0.8
    # pixel (1, 1): target 255 -> ignored.
    # loss = (2 + 2 + 0.8) / 3 valid pixels = 1.6 (not / 9 channel entries)
    output = torch.tensor([[[2.0, 0.0], [0.0, 7.0]],
                           [[0.0, 0.0], [3.0, 7.0]],
                           [[0.0, 5.0], [4.0, 7.0]]]).unsqueeze(0)
    target = torch.tensor([[[0.0, 1.0], [0.0, 255.0]],
                           [[1.0, 0.0], [0.0, 255.0]],
                           [[0.0, 0.0], [1.0, 255.0]]]).unsqueeze(0)
    loss = normals_l1(output, target, ignore_index=255)
    torch.testing.assert_close(loss, torch.tensor([1.6]))


def test_depth_l1_over_measured_pixels():
    # valid: target 1.5 (err 0.5) and 2 (err 2); target 0 (missing) and 255 (padding) dropped.
    output = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    target = torch.tensor([1.5, 0.0, 255.0, 2.0]).view(1, 1, 1, 4)
    torch.testing.assert_close(depth_l1(output, target, ignore_index=255), torch.tensor([1.25]))


def test_losses_without_valid_pixels_are_zero_with_finite_gradients():
    cases = [
        (cross_entropy, torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 255), {}),
        (balanced_cross_entropy, torch.randn(1, 2, 2, 2), torch.full((1, 2, 2), 255), {}),
        (weighted_bce, torch.randn(1, 1, 2, 2), torch.full((1, 1, 2, 2), 255.0), {"pos_weight": 0.95}),
        (normals_l1, torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 255.0), {}),
        (depth_l1, torch.randn(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), {}),
    ]
    for loss_fn, output, target, kwargs in cases:
        output.requires_grad_(True)
        loss = loss_fn(output, target, ignore_index=255, **kwargs)
        loss.sum().backward()
        assert loss.item() == 0.0, loss_fn.__name__
        assert torch.isfinite(output.grad).all() and (output.grad == 0).all(), loss_fn.__name__
