"""Boundary ODS F-measure with the BSDS protocol, in Python (SPEC section 4).

Per image and threshold t (BSDS: N thresholds evenly spaced in (0, 1), 1/(N+1) ..
N/(N+1)): binarise p >= t, thin to 1 px (skimage morphology), match predicted and
ground-truth boundary pixels one-to-one within maxDist x image diagonal with
pyEdgeEval's `correspond_pixels` (the BSDS correspondence), and count
  cntR = matched GT pixels, sumR = GT pixels, cntP = matched predicted pixels,
  sumP = predicted pixels.
These counts are summed over the split; ODS F = max over t of F(R = cntR / sumR,
P = cntP / sumP), in percent.

Ground truth 255 (ignore) inside the image counts as non-boundary and predictions
there are zeroed before thresholding, so they are neither matched nor false positives.

The matcher (the BSDS C++ code inside pyEdgeEval) connects pixels to outlier nodes
drawn from a process-global random generator seeded from the clock, so a result varies
by a matched pixel or so between runs and with the calls made before in the same
process. We reseed that generator with a fixed seed before every call, which makes the
counts reproducible and independent of the worker count and of scheduling.

Matching costs about a second per threshold for a 512x512 image, so images are
evaluated in a pool of worker processes (started with forkserver, so it is safe
inside a torchrun / CUDA process) that is created once and reused; `update` only
submits work, and the counts are collected when the state is read.
"""
import ctypes
import functools
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from pyEdgeEval._lib import correspond_pixels
from skimage.morphology import thin

from utils.distributed import exit_with_parent

# Rows of the count table.
CNT_R, SUM_R, CNT_P, SUM_P = range(4)


_MATCH_SEED = 1  # any fixed non-zero seed (0 asks the library for a time-based one)


def _match_rng_reset():
    """A function reseeding the matcher's global random generator, or None if the
    compiled library does not export it (then counts vary slightly from run to run)."""
    library_path = sys.modules[correspond_pixels.__module__].__file__
    try:
        library = ctypes.CDLL(library_path)  # the already loaded library, not a copy
        generator = ctypes.addressof(ctypes.c_char.in_dll(library, "_ZN6Random4randE"))
        reseed = library._ZN6Random6reseedEm  # Random::reseed(seed) of the static Random::rand
    except (OSError, ValueError, AttributeError):
        return None
    reseed.argtypes, reseed.restype = [ctypes.c_void_p, ctypes.c_uint64], None
    return functools.partial(reseed, generator, _MATCH_SEED)


_RESET_MATCH_RNG = _match_rng_reset()


def bsds_thresholds(num_thresholds):
    """The BSDS thresholds: 1/(N+1) .. N/(N+1)."""
    return np.linspace(1.0 / (num_thresholds + 1), 1.0 - 1.0 / (num_thresholds + 1), num_thresholds)


def evaluate_image(probability, boundary, thresholds, max_dist):
    """(4, K) int64 counts [cntR, sumR, cntP, sumP] of one image at each threshold.

    probability: (H, W) float boundary probability; boundary: (H, W) bool ground truth.
    """
    counts = np.zeros((4, len(thresholds)), dtype=np.int64)
    num_boundary = int(boundary.sum())
    counts[SUM_R] = num_boundary
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
            if _RESET_MATCH_RNG is not None:
                _RESET_MATCH_RNG()
            match_pred, match_gt, _, _ = correspond_pixels(predicted, boundary, max_dist=max_dist)
            counts[CNT_P, k] = int((match_pred > 0).sum())
            counts[CNT_R, k] = int((match_gt > 0).sum())
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

    def update(self, prediction, target, sizes):
        # prediction: (B, H, W) boundary probability; target: (B, 1, H, W) {0, 1, ignore}
        prediction = prediction.float().cpu().numpy()
        target = target[:, 0].cpu().numpy()
        for probability, labels, (height, width) in zip(prediction, target, sizes.tolist()):
            if self.max_images and self.seen >= self.max_images:
                return
            self.seen += 1
            labels = labels[:height, :width]
            probability = np.where(labels == self.ignore_index, 0.0, probability[:height, :width])
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
