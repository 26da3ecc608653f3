"""Boundary ODS-F: thinning, the matcher (against an independent maximum matching) and
hand-checkable cases. Parity with pyEdgeEval: test_boundary_parity.py."""
import math

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.sparse.csgraph import maximum_bipartite_matching
from skimage.morphology import thin

from evaluation.boundary import (BoundaryMeter, bsds_thresholds, disc_offsets, evaluate_image,
                                 match_count, ods_f)
from utils.thinning import thin as fast_thin


def square_outline(size=200):
    """A 1-px square outline (thinned once so that thinning leaves it unchanged)."""
    low, high = size // 4, size - size // 4 - 1
    outline = np.zeros((size, size), dtype=bool)
    outline[low:high, low] = outline[low:high, high - 1] = True
    outline[low, low:high] = outline[high - 1, low:high] = True
    return thin(outline)


def ods(probability, boundary, num_thresholds=9, max_dist=0.0075):
    thresholds = bsds_thresholds(num_thresholds)
    counts = evaluate_image(probability.astype(np.float32), boundary, thresholds, max_dist)
    return ods_f(torch.from_numpy(counts))


def test_bsds_thresholds():
    np.testing.assert_allclose(bsds_thresholds(9), np.arange(1, 10) / 10)
    np.testing.assert_allclose(bsds_thresholds(99)[[0, -1]], [0.01, 0.99])


def test_thin_equals_skimage_thin():
    rng = np.random.default_rng(0)
    masks = [rng.random(rng.integers(1, 40, 2)) < rng.uniform(0.05, 0.95) for _ in range(150)]
    blob = np.zeros((60, 80), dtype=bool)  # thick shapes: many iterations
    blob[5:50, 10:70] = True
    blob[20:30, 30:40] = False
    masks += [blob, np.ones((1, 1), dtype=bool), np.zeros((5, 5), dtype=bool), np.ones((9, 13), dtype=bool)]
    for mask in masks:
        np.testing.assert_array_equal(fast_thin(mask), thin(mask))


def brute_force_maximum(predicted, boundary, radius):
    """Maximum matching size over all pairs within `radius` px (explicit distances)."""
    pred_y, pred_x = np.nonzero(predicted)
    gt_y, gt_x = np.nonzero(boundary)
    if len(pred_y) == 0 or len(gt_y) == 0:
        return 0
    squared = (pred_y[:, None] - gt_y) ** 2 + (pred_x[:, None] - gt_x) ** 2
    pairs = scipy.sparse.csr_matrix(squared <= radius * radius)
    return int((maximum_bipartite_matching(pairs, perm_type="column") >= 0).sum())


def test_match_count_is_a_maximum_matching():
    rng = np.random.default_rng(1)
    for _ in range(150):
        height, width = rng.integers(4, 50, 2)
        predicted = rng.random((height, width)) < rng.uniform(0.01, 0.4)
        boundary = rng.random((height, width)) < rng.uniform(0.01, 0.4)
        max_dist = rng.uniform(0.005, 0.12)
        radius = max_dist * math.sqrt(height * height + width * width)
        assert match_count(predicted, boundary, max_dist) == brute_force_maximum(predicted, boundary, radius)


def test_warm_started_thresholds_give_the_maximum_at_each():
    # evaluate_image starts each threshold from the previous matching: the counts must
    # still be the maximum matching of each threshold's own thinned prediction
    rng = np.random.default_rng(2)
    for size in (40, 64):
        boundary = rng.random((size, size)) < 0.08
        probability = np.clip(np.roll(boundary, 1, axis=0) * 0.8 + rng.random((size, size)) * 0.6, 0, 1)
        thresholds = bsds_thresholds(15)
        counts = evaluate_image(probability.astype(np.float32), boundary, thresholds, 0.05)
        radius = 0.05 * math.sqrt(2 * size * size)
        expected = [brute_force_maximum(thin(probability >= t), boundary, radius) for t in thresholds]
        assert counts[0].tolist() == counts[2].tolist() == expected
        assert len(set(expected)) >= 5  # the thresholds really differ


def test_tolerance_is_inclusive():
    # 30x40 image, max_dist 0.04: radius 0.04 * 50 = 2 px exactly
    assert disc_offsets(2.0)[2] == 2 and len(disc_offsets(2.0)[0]) == 13  # d^2 in {0, 1, 2, 4}
    boundary = np.zeros((30, 40), dtype=bool)
    boundary[10, 10] = True
    at_radius, beyond = np.zeros_like(boundary), np.zeros_like(boundary)
    at_radius[10, 12] = True  # distance 2
    beyond[11, 12] = True  # distance sqrt(5)
    assert match_count(at_radius, boundary, 0.04) == 1
    assert match_count(beyond, boundary, 0.04) == 0


def test_matching_needs_augmenting_paths():
    # GT a, b; predictions p near both and q near a only: greedy nearest-first pairs
    # p with a (distance 0) and leaves q unmatched; the maximum is 2 (p-b, q-a).
    boundary = np.zeros((20, 20), dtype=bool)
    predicted = np.zeros_like(boundary)
    boundary[10, 10] = boundary[10, 12] = True  # a, b
    predicted[10, 10] = True  # p at a
    predicted[10, 8] = True  # q: 2 px from a, 4 from b
    max_dist = 2.0 / math.sqrt(800)  # radius 2 px
    assert match_count(predicted, boundary, max_dist) == 2


def test_perfect_prediction_scores_100():
    boundary = square_outline()
    assert ods(boundary, boundary) == pytest.approx(100.0)


def test_shift_within_tolerance_still_matches():
    # 200x200 image: tolerance 0.0075 * diagonal (282.8 px) = 2.1 px
    boundary = square_outline()
    assert ods(np.roll(boundary, 1, axis=1), boundary) == pytest.approx(100.0)
    # 3 px is beyond it: only the two horizontal sides (about half the pixels) still match
    assert 45 < ods(np.roll(boundary, 3, axis=1), boundary) < 55


def test_matching_does_not_depend_on_earlier_calls():
    # no random state: repeated calls agree (and the pool test below checks that other
    # processes agree too)
    rng = np.random.default_rng(0)
    boundary = square_outline(120)
    probability = np.roll(boundary, 1, axis=0) | (rng.random(boundary.shape) > 0.98)
    first = ods(probability, boundary)
    assert all(ods(probability, boundary) == first for _ in range(4))


def test_empty_prediction_scores_0():
    assert ods(np.zeros((200, 200)), square_outline()) == 0.0


def test_hand_worked_two_thresholds():
    # GT: a 10-px vertical line. Prediction: its upper 5 px at p = 0.9 and a far-away
    # 5-px line at p = 0.4. Thresholds 1/3, 2/3.
    # t = 1/3: 10 predicted, 5 matched -> P 1/2; 5 of 10 GT matched -> R 1/2; F 1/2
    # t = 2/3: 5 predicted, all matched -> P 1;  R 1/2; F = 2/3
    boundary = np.zeros((30, 30), dtype=bool)
    boundary[5:15, 10] = True
    probability = np.zeros((30, 30))
    probability[5:10, 10] = 0.9
    probability[20:25, 25] = 0.4
    counts = evaluate_image(probability.astype(np.float32), boundary, bsds_thresholds(2), 0.0075)
    # rows cntR, sumR, cntP, sumP
    assert counts.tolist() == [[5, 5], [10, 10], [5, 5], [10, 5]]
    assert ods_f(torch.from_numpy(counts)) == pytest.approx(200 / 3)


def test_meter_ignores_255_and_crops_to_size():
    boundary = square_outline(200)
    target = torch.from_numpy(boundary).float()[None, None]  # (1, 1, H, W)
    prediction = target[:, 0].clone()
    # a strong false positive inside an ignored block, and another in the padding
    target[0, 0, :20, :20] = 255.0
    prediction[0, 5:15, 10] = 1.0
    padded_prediction = torch.zeros(1, 210, 210)
    padded_prediction[0, 5:205, 5:205] = prediction[0]  # content centred: window [5, 5, 200, 200]
    padded_prediction[0, 207, :] = 1.0
    padded_target = torch.full((1, 1, 210, 210), 255.0)
    padded_target[..., 5:205, 5:205] = target
    meter = BoundaryMeter(9, 0.0075, 255, workers=1)
    meter.update(padded_prediction, padded_target, torch.tensor([[5, 5, 200, 200]]))
    assert meter.compute()["odsF"] == pytest.approx(100.0)


def test_worker_pool_matches_inline_and_streams():
    rng = np.random.default_rng(0)
    boundaries = [square_outline(120) for _ in range(3)]
    predictions = [np.roll(b, shift, axis=0) * rng.uniform(0.3, 1.0, b.shape)
                   for b, shift in zip(boundaries, (0, 1, 4))]
    target = torch.from_numpy(np.stack(boundaries)).float()[:, None]
    prediction = torch.from_numpy(np.stack(predictions)).float()
    sizes = torch.tensor([[0, 0, 120, 120]] * 3)

    inline = BoundaryMeter(5, 0.0075, 255, workers=1)
    inline.update(prediction, target, sizes)
    pooled = BoundaryMeter(5, 0.0075, 255, workers=2)
    try:
        pooled.update(prediction[:2], target[:2], sizes[:2])  # two updates == one
        pooled.update(prediction[2:], target[2:], sizes[2:])
        assert torch.equal(pooled.state_tensors()[0], inline.state_tensors()[0])
        pooled.reset()
        assert pooled.state_tensors()[0].sum() == 0
    finally:
        pooled.close()
    assert 0 < inline.compute()["odsF"] < 100


def test_max_images_limits_the_images_that_count():
    import torch

    from evaluation.boundary import BoundaryMeter

    target = torch.zeros(3, 1, 16, 16)
    target[:, :, 8, :] = 1
    prediction = torch.zeros(3, 16, 16)
    prediction[0, 8, :] = 1.0  # only the first image is predicted right
    sizes = torch.tensor([[0, 0, 16, 16]] * 3)
    limited = BoundaryMeter(3, 0.0075, 255, workers=1, max_images=1)
    limited.update(prediction, target, sizes)
    assert limited.compute()["odsF"] == pytest.approx(100.0)
    every = BoundaryMeter(3, 0.0075, 255, workers=1)
    every.update(prediction, target, sizes)
    assert every.compute()["odsF"] < 100.0
    limited.reset()
    limited.update(prediction[1:], target[1:], sizes[1:])
    assert limited.compute()["odsF"] == 0.0
