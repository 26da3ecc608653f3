"""Boundary ODS F-measure with the BSDS protocol, in Python (docs/metrics.md).

Per image and threshold t (BSDS: N thresholds evenly spaced in (0, 1), 1/(N+1) ..
N/(N+1)): binarise p >= t, thin to 1 px (Guo-Hall, as skimage.morphology.thin), match
predicted and ground-truth boundary pixels one-to-one within maxDist x image diagonal,
and count
  cntR = matched GT pixels, sumR = GT pixels, cntP = matched predicted pixels,
  sumP = predicted pixels.
These counts are summed over the split; ODS F = max over t of F(R = cntR / sumR,
P = cntP / sumP), in percent.

Ground truth 255 (ignore) inside the image counts as non-boundary and predictions
there are zeroed before thresholding, so they are neither matched nor false positives.

The matching. The BSDS correspondence (pyEdgeEval's `correspond_pixels`) is a
min-cost assignment: a pair of pixels at most r = maxDist x diagonal apart (inclusive:
d^2 <= r^2) costs 100 x their distance (rounded), leaving a pixel unmatched costs
ceil(100 x 100 r), i.e. 100 times the dearest pair. One more pair saves that much, and
to make room it can only raise the cost of the other pairs along an augmenting path,
by less than 100 r per pair, so a cheaper assignment with fewer pairs needs an
augmenting path of about 100 pairs, each near the tolerance: in practice the number of
pairs is the size of a maximum bipartite matching between predicted and ground-truth
pixels joined when within r (tests/evaluation/test_boundary_parity.py checks it against
that assignment solved exactly on real photos), and the counts need nothing else.
pyEdgeEval links each pixel to only 6 randomly drawn outlier nodes, which can leave it a
few pairs short of the optimum (0.02 - 0.06% of matched pixels on our parity images,
varying with its seed); our count is never below its.

We compute that maximum exactly and deterministically: pairs come from the disc's
fixed pixel offsets on the grid; the matching of the previous threshold (restricted to
the pixels still predicted) is extended greedily along offsets in order of distance,
then a max flow (scipy's Dinic) on the residual graph adds the missing pairs. The
count does not depend on the starting matching, and nothing is random, so counts are
identical for any worker count.

Thinning is utils.thinning's (skimage's `thin`, pixel for pixel, tested).

A 512x512 image costs a second or two of CPU at 99 thresholds (benchmarks/boundary.py,
docs/metrics.md, "Boundary evaluation cost"); images are evaluated in a pool of worker processes (started
with forkserver, so it is safe inside a torchrun / CUDA process) that is created once
and reused; `update` only submits work, and the counts are collected when the state is
read.
"""
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import scipy.sparse
import torch
from scipy.sparse.csgraph import maximum_flow

from data.transforms import crop_to_content

from utils.processes import exit_with_parent
from utils.thinning import thin

# Rows of the count table.
CNT_R, SUM_R, CNT_P, SUM_P = range(4)


def bsds_thresholds(num_thresholds):
    """The BSDS thresholds: 1/(N+1) .. N/(N+1)."""
    return np.linspace(1.0 / (num_thresholds + 1), 1.0 - 1.0 / (num_thresholds + 1), num_thresholds)


# --------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------

def disc_offsets(radius):
    """(dy, dx) of the grid offsets with dy^2 + dx^2 <= radius^2 (inclusive, as the
    BSDS code), sorted by distance; and the integer radius ceil(radius)."""
    reach = math.ceil(radius)
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    squared = (dy * dy + dx * dx).ravel()
    keep = np.flatnonzero(squared.astype(np.float64) <= radius * radius)
    keep = keep[np.argsort(squared[keep], kind="stable")]
    return dy.ravel()[keep], dx.ravel()[keep], reach


def _greedy(neighbours, row_mate, col_mate, nearest_first):
    """Extend a matching (in place): free rows take free columns along the offsets in
    order of distance (`nearest_first`: table columns); each offset maps rows to
    distinct columns, so a whole offset is matched at once."""
    free = np.flatnonzero(row_mate < 0)
    for k in nearest_first:
        if len(free) == 0:
            break
        col = neighbours[free, k]
        hit = col >= 0
        hit[hit] = col_mate[col[hit]] < 0
        rows, col = free[hit], col[hit]
        row_mate[rows] = col
        col_mate[col] = rows
        free = free[~hit]


def _augment(neighbours, row_mate, col_mate):
    """Turn a matching into a maximum one (in place): a max flow (Dinic) on its residual
    graph (source -> free rows, rows -> columns by unmatched pairs, columns -> rows by
    matched pairs, free columns -> sink; capacities 1) is a set of augmenting paths.
    The table's offsets are in raster order, so each row's columns come sorted."""
    num_rows, num_cols = len(row_mate), len(col_mate)
    free_rows = np.flatnonzero(row_mate < 0).astype(np.int32)
    if len(free_rows) == 0 or not (col_mate < 0).any():
        return
    # Nodes: rows, columns, source, sink; built directly as sorted CSR (adjacency in node order).
    source, sink = num_rows + num_cols, num_rows + num_cols + 1
    unmatched = (neighbours >= 0) & (neighbours != row_mate[:, None])
    row_targets = neighbours[unmatched] + np.int32(num_rows)
    col_targets = np.where(col_mate >= 0, col_mate, sink).astype(np.int32)
    degree = np.concatenate([unmatched.sum(axis=1), np.ones(num_cols, dtype=np.int64), [len(free_rows), 0]])
    indptr = np.concatenate([[0], np.cumsum(degree)]).astype(np.int32)
    indices = np.concatenate([row_targets, col_targets, free_rows])
    size = num_rows + num_cols + 2
    graph = scipy.sparse.csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr), shape=(size, size))
    graph.has_sorted_indices = True
    result = maximum_flow(graph, source, sink, method="dinic")
    if result.flow_value == 0:
        return
    flow = result.flow
    used = np.flatnonzero(flow.data > 0)
    tail = np.searchsorted(flow.indptr, used, side="right") - 1
    head = flow.indices[used].astype(np.int64)
    dropped = (tail >= num_rows) & (tail < num_rows + num_cols) & (head < num_rows)  # column -> row
    added = (tail < num_rows) & (head >= num_rows) & (head < num_rows + num_cols)  # row -> column
    row_mate[head[dropped]] = -1
    col_mate[tail[dropped] - num_rows] = -1
    row_mate[tail[added]] = head[added] - num_rows
    col_mate[head[added] - num_rows] = tail[added]


class BoundaryMatcher:
    """Maximum matchings of one image's ground-truth boundary against predictions.

    `count(predicted)` returns the number of pairs of a maximum one-to-one matching of
    predicted and ground-truth pixels within max_dist x the image diagonal (inclusive):
    the pairs BSDS's correspondence returns (module docstring). Consecutive calls (the
    thresholds of one image) start from the previous matching, restricted to the pixels
    still predicted: it stays a valid matching and is usually close to a maximum one,
    so the greedy pass and the flow have little left to do. The count never depends on
    the starting matching.
    """

    def __init__(self, boundary, max_dist):
        height, width = boundary.shape
        dy, dx, reach = disc_offsets(max_dist * math.sqrt(height * height + width * width))
        raster = np.lexsort((dx, dy))
        self.nearest_first = np.argsort(raster)  # the table's columns (raster order) by distance
        # pixels are addressed by flat index; the table reads a copy of the image with a
        # border of `reach` pixels, so every offset stays inside it
        self.width, self.reach, self.stride = width, reach, width + 2 * reach
        self.steps = (dy[raster] * self.stride + dx[raster]).astype(np.int64)
        self.boundary_flat = np.flatnonzero(boundary)
        # scratch maps (all -1 between calls): padded pixel -> column; pixel -> row / column
        self.column_at = np.full((height + 2 * reach) * self.stride, -1, dtype=np.int32)
        self.row_of = np.full(height * width, -1, dtype=np.int32)
        self.column_of = np.full(height * width, -1, dtype=np.int32)
        self.pairs = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))  # (predicted, gt) flat pixel

    def _padded(self, flat):
        return flat + 2 * self.reach * (flat // self.width) + self.reach * (self.stride + 1)

    def _neighbour_table(self, rows_flat, cols_flat):
        """(n, K) int32: for each row pixel, the column pixel at offset k, or -1."""
        padded_cols = self._padded(cols_flat)
        self.column_at[padded_cols] = np.arange(len(cols_flat), dtype=np.int32)
        table = self.column_at[self._padded(rows_flat)[:, None] + self.steps]
        self.column_at[padded_cols] = -1
        return table

    def count(self, predicted):
        predicted_flat = np.flatnonzero(predicted)
        if len(self.boundary_flat) == 0 or len(predicted_flat) == 0:
            self.pairs = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
            return 0
        # rows: the side with fewer pixels (smaller table); the disc is symmetric
        flip = len(predicted_flat) > len(self.boundary_flat)
        rows_flat, cols_flat = (self.boundary_flat, predicted_flat) if flip else (predicted_flat, self.boundary_flat)
        neighbours = self._neighbour_table(rows_flat, cols_flat)
        reachable = np.flatnonzero((neighbours >= 0).any(axis=1))  # rows with a pixel in reach
        neighbours = neighbours[reachable]
        rows_flat = rows_flat[reachable]
        row_mate = np.full(len(rows_flat), -1, dtype=np.int64)
        col_mate = np.full(len(cols_flat), -1, dtype=np.int64)
        # start from the previous matching, where both pixels are still here
        self.row_of[rows_flat] = np.arange(len(rows_flat), dtype=np.int32)
        self.column_of[cols_flat] = np.arange(len(cols_flat), dtype=np.int32)
        previous_rows, previous_cols = self.pairs[::-1] if flip else self.pairs
        row, col = self.row_of[previous_rows], self.column_of[previous_cols]
        self.row_of[rows_flat] = -1
        self.column_of[cols_flat] = -1
        kept = (row >= 0) & (col >= 0)
        row_mate[row[kept]] = col[kept]
        col_mate[col[kept]] = row[kept]
        _greedy(neighbours, row_mate, col_mate, self.nearest_first)
        _augment(neighbours, row_mate, col_mate)
        matched = np.flatnonzero(row_mate >= 0)
        pairs = (rows_flat[matched], cols_flat[row_mate[matched]])
        self.pairs = pairs[::-1] if flip else pairs
        return len(matched)


def match_count(predicted, boundary, max_dist):
    """Pairs in a maximum matching of predicted and ground-truth boundary pixels (bool
    (H, W) maps) within max_dist x the image diagonal (inclusive); see BoundaryMatcher."""
    return BoundaryMatcher(boundary, max_dist).count(predicted)


def evaluate_image(probability, boundary, thresholds, max_dist):
    """(4, K) int64 counts [cntR, sumR, cntP, sumP] of one image at each threshold.

    probability: (H, W) float boundary probability; boundary: (H, W) bool ground truth.
    """
    counts = np.zeros((4, len(thresholds)), dtype=np.int64)
    num_boundary = int(boundary.sum())
    counts[SUM_R] = num_boundary
    matcher = BoundaryMatcher(boundary, max_dist)
    previous_above = -1
    for k, threshold in enumerate(thresholds):
        above = probability >= threshold
        num_above = int(above.sum())
        if num_above == previous_above:  # thresholded sets are nested: same count, same set
            counts[:, k] = counts[:, k - 1]
            continue
        previous_above = num_above
        predicted = thin(above)
        counts[SUM_P, k] = int(predicted.sum())
        if num_boundary > 0 and counts[SUM_P, k] > 0:
            counts[CNT_P, k] = counts[CNT_R, k] = matcher.count(predicted)
    return counts


def ods_f(counts):
    """ODS F (%) from summed counts (4, K); precision / recall are 0 where undefined."""
    counts = counts.double()
    recall = counts[CNT_R] / counts[SUM_R].clamp_min(1)
    precision = counts[CNT_P] / counts[SUM_P].clamp_min(1)
    f_measure = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return f_measure.max().item() * 100


def resolve_workers(requested):
    """`requested` > 0 as is; 0 = the CPU cores available to this process, shared among
    the processes torchrun started on this node (LOCAL_WORLD_SIZE)."""
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


class BoundaryMeter:
    """Streaming ODS F: per-threshold counts summed over images (and ranks)."""

    def __init__(self, num_thresholds, max_dist, ignore_index, workers=1, max_images=0):
        self.thresholds = bsds_thresholds(num_thresholds)
        self.max_images = max_images  # > 0: only the first max_images images (per rank) count
        self.seen = 0
        self.max_dist = max_dist
        self.ignore_index = ignore_index
        self.workers = workers
        self.counts = torch.zeros(4, num_thresholds, dtype=torch.int64)
        self._pool = None
        self._pending = []

    def update(self, prediction, target, windows):
        # prediction: (B, H, W) boundary probability; target: (B, 1, H, W) {0, 1, ignore};
        # windows: (B, 4) each sample's content window (data.transforms.content_windows)
        prediction = prediction.float().cpu().numpy()
        target = target[:, 0].cpu().numpy()
        for probability, labels, window in zip(prediction, target, windows.tolist()):
            if self.max_images and self.seen >= self.max_images:
                return
            self.seen += 1
            labels = crop_to_content(labels, window)
            probability = np.where(labels == self.ignore_index, 0.0, crop_to_content(probability, window))
            self._submit(probability.astype(np.float32), labels == 1)

    def _submit(self, probability, boundary):
        if self.workers == 1:
            counts = evaluate_image(probability, boundary, self.thresholds, self.max_dist)
            self.counts += torch.from_numpy(counts)
            return
        if self._pool is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            # The workers exit when this process dies, even by kill -9 (they are the forkserver's children).
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method),
                                             initializer=exit_with_parent, initargs=(os.getpid(),))
        self._pending.append(self._pool.submit(evaluate_image, probability, boundary,
                                               self.thresholds, self.max_dist))
        # Bound the images held in memory while the workers catch up.
        while len(self._pending) > 4 * self.workers:
            self.counts += torch.from_numpy(self._pending.pop(0).result())

    def _collect(self):
        """Wait for the submitted images and add their counts."""
        while self._pending:
            self.counts += torch.from_numpy(self._pending.pop(0).result())

    def state_tensors(self):
        self._collect()
        return [self.counts]

    def reset(self):
        self._collect()
        self.counts.zero_()
        self.seen = 0

    def compute(self):
        self._collect()
        return {"odsF": ods_f(self.counts)}

    def close(self):
        """Stop the worker processes (a later update starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = []
