"""Our boundary counts against the BSDS correspondence on real photos.

Photos ship inside scikit-image (benchmarks.boundary.photo); ground truth = thinned Canny
edges, predictions soft (thick) or thin, 100x100 to 512x512, with an ignore block and
empty maps. Two references:
- the BSDS assignment itself, solved exactly: pairs within the tolerance cost their
  distance (x100, rounded), an unmatched pixel costs 100 x the tolerance (x100) with an
  outlier available to every pixel; our counts must equal its matched pairs;
- pyEdgeEval's `correspond_pixels`, which links each pixel to only 6 random outliers and
  so can fall a few pairs short of that optimum: ours >= its counts everywhere, and the
  shortfall is a small fraction of the matched pixels.
Thinning (sumP) and sumR equal pyEdgeEval's pipeline exactly.
"""
import math

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from benchmarks.boundary import boundary_pair, reference_counts
from evaluation.boundary import (CNT_P, CNT_R, SUM_P, SUM_R, BoundaryMeter, disc_offsets,
                                 evaluate_image, ods_f, thin)


def thin_prediction(boundary, rng):
    """A 1-px prediction: the ground truth shifted by a pixel, a tenth dropped, noise added."""
    predicted = np.roll(boundary, 1, axis=1) & (rng.random(boundary.shape) > 0.1)
    predicted |= rng.random(boundary.shape) > 0.995
    return np.where(predicted, rng.uniform(0.3, 1.0, boundary.shape), 0.0).astype(np.float32)


def bsds_assignment_pairs(predicted, boundary, max_dist):
    """Matched pairs of the BSDS min-cost assignment with every outlier link: a full
    matching of (predicted + boundary copies) x (boundary + predicted copies) where a
    real pair costs its rounded distance x 100, a pixel to its own copy (unmatched) costs
    ceil(100 x 100 x tolerance), and copies of pixels within reach pair up for free."""
    height, width = predicted.shape
    radius = max_dist * math.sqrt(height * height + width * width)
    dy, dx, reach = disc_offsets(radius)
    pred_y, pred_x = np.nonzero(predicted)
    gt_y, gt_x = np.nonzero(boundary)
    num_pred, num_gt = len(pred_y), len(gt_y)
    if num_pred == 0 or num_gt == 0:
        return 0
    index = np.full((height + 2 * reach, width + 2 * reach), -1)
    index[gt_y + reach, gt_x + reach] = np.arange(num_gt)
    near = index[pred_y[:, None] + reach + dy, pred_x[:, None] + reach + dx]
    pred, k = np.nonzero(near >= 0)
    gt = near[pred, k]
    outlier = math.ceil(100 * radius * 100)
    rows = np.concatenate([pred, np.arange(num_pred), num_pred + np.arange(num_gt), num_pred + gt])
    cols = np.concatenate([gt, num_gt + np.arange(num_pred), np.arange(num_gt), num_gt + pred])
    cost = np.concatenate([np.rint(100 * np.hypot(dy[k], dx[k])), np.full(num_pred + num_gt, outlier),
                           np.zeros(len(pred))])
    size = num_pred + num_gt
    # + 1: stored zeros would drop out of the sparse matrix; a constant shift of a full matching
    graph = scipy.sparse.csr_matrix((cost + 1.0, (rows, cols)), shape=(size, size))
    _, col_of_row = min_weight_full_bipartite_matching(graph)
    return int((col_of_row[:num_pred] < num_gt).sum())


def cases():
    """(name, probability, boundary, thresholds, max_dist): 100x100 to 512x512."""
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(100, 100), (160, 240), (321, 481), (512, 512)]):
        probability, boundary = boundary_pair(index, height, width)
        # thick, soft predictions; pyEdgeEval is slow at low thresholds on large images
        low = 0.2 if height < 300 else 0.3 if height < 500 else 0.5
        thresholds = np.array([low, 0.7])
        yield f"soft-{height}x{width}", probability, boundary, thresholds, 0.0075
        yield f"thin-{height}x{width}", thin_prediction(boundary, rng), boundary, thresholds, 0.011
    probability, boundary = boundary_pair(7, 200, 300)
    # an ignore block, as BoundaryMeter prepares it: no prediction and no boundary inside
    ignore = np.zeros(boundary.shape, dtype=bool)
    ignore[40:140, 60:200] = True
    yield "ignore", np.where(ignore, 0.0, probability).astype(np.float32), boundary & ~ignore, np.array([0.2, 0.5]), 0.0075
    yield "empty-prediction", np.zeros_like(probability), boundary, np.array([0.5]), 0.0075
    yield "empty-boundary", probability, np.zeros_like(boundary), np.array([0.5]), 0.0075


@pytest.mark.slow
def test_counts_equal_the_bsds_assignment_and_pyedgeeval():
    matched = shortfall = 0
    ours_total = reference_total = 0
    for name, probability, boundary, thresholds, max_dist in cases():
        ours = evaluate_image(probability, boundary, thresholds, max_dist)
        for k, threshold in enumerate(thresholds):
            exact = bsds_assignment_pairs(thin(probability >= threshold), boundary, max_dist)
            assert ours[CNT_R, k] == ours[CNT_P, k] == exact, (name, threshold)
        reference = reference_counts(probability, boundary, thresholds, max_dist)
        np.testing.assert_array_equal(ours[[SUM_R, SUM_P]], reference[[SUM_R, SUM_P]], err_msg=name)
        assert (ours[[CNT_R, CNT_P]] >= reference[[CNT_R, CNT_P]]).all(), name
        matched += int(ours[CNT_R].sum())
        shortfall += int((ours[CNT_R] - reference[CNT_R]).sum())
        if name.startswith(("soft", "thin")):  # each: a low threshold and 0.7
            ours_total = ours_total + torch.from_numpy(ours)
            reference_total = reference_total + torch.from_numpy(reference)
        if name.startswith("empty"):
            assert ours[CNT_R].sum() == 0
    assert matched > 20000  # the cases really match pixels
    # measured: 0.02-0.06 % depending on the cases and pyEdgeEval's seed
    assert shortfall <= 0.001 * matched
    assert abs(ods_f(ours_total) - ods_f(reference_total)) < 0.1


def test_meter_counts_equal_evaluate_image_with_ignore():
    probability, boundary = boundary_pair(3, 96, 128)
    labels = boundary.astype(np.float32)
    labels[10:50, 20:90] = 255.0
    meter = BoundaryMeter(5, 0.0075, 255, workers=1)
    meter.update(torch.from_numpy(probability)[None], torch.from_numpy(labels)[None, None],
                 torch.tensor([[0, 0, 96, 128]]))
    ignore = labels == 255
    expected = evaluate_image(np.where(ignore, 0.0, probability).astype(np.float32), boundary & ~ignore,
                              meter.thresholds, 0.0075)
    np.testing.assert_array_equal(meter.state_tensors()[0].numpy(), expected)
    assert (boundary & ignore).any() and expected[1, 0] == (boundary & ~ignore).sum()
