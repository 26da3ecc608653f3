"""Guo-Hall thinning to 1-px lines: the PASCAL edge labels (data.pascal_context) and the
thinned predictions of the boundary metric (evaluation.boundary) use this one routine.

Pixel for pixel the result of `skimage.morphology.thin`, about 10x faster: each
subiteration is one 3x3 correlation and a table lookup in OpenCV.
"""
import cv2
import numpy as np


def _thinning_tables():
    """Deletion tables of Guo & Hall's two-subiteration thinning (CACM 1989, algorithm A1),
    indexed by the 8-neighbourhood code sum(x_k << (k - 1)), x1 = east, counter-clockwise.

    A pixel is deleted when exactly one 4-connected run of background borders it (C = 1),
    2 <= N <= 3, and the subiteration's own condition holds: (x2 | x3 | ~x8) & x1 == 0 in the
    first, (x6 | x7 | ~x4) & x5 == 0 in the second. The same algorithm as
    `skimage.morphology.thin`, which tests/evaluation/test_boundary.py checks pixel for pixel
    (`test_thin_equals_skimage_thin`).
    """
    codes = np.arange(256)
    x = [None] + [(codes >> k) & 1 for k in range(8)] + [codes & 1]  # x[1..8], x[9] = x[1]
    crossings = sum((1 - x[2 * i - 1]) & (x[2 * i] | x[2 * i + 1]) for i in range(1, 5))
    n1 = sum(x[2 * k - 1] | x[2 * k] for k in range(1, 5))
    n2 = sum(x[2 * k] | x[2 * k + 1] for k in range(1, 5))
    common = (crossings == 1) & (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
    first = common & (((x[2] | x[3] | (1 - x[8])) & x[1]) == 0)
    second = common & (((x[6] | x[7] | (1 - x[4])) & x[5]) == 0)
    return first, second


# 1 where a pixel with that neighbourhood code survives the subiteration, 0 where it is deleted.
THINNING_KEEP = tuple((~table).astype(np.uint8) for table in _thinning_tables())
# Correlation kernel giving each pixel its neighbourhood code (bit k-1 = neighbour x_k).
NEIGHBOUR_CODES = np.array([[8, 4, 2], [16, 0, 1], [32, 64, 128]], np.float32)


def thin(mask):
    """Thin a binary (H, W) mask to 1-px lines; bool (H, W). Each subiteration codes every
    pixel's neighbourhood with one 3x3 correlation (outside the image is background) and
    deletes the pixels its table marks, until an iteration deletes nothing."""
    skeleton = np.asarray(mask, dtype=bool).astype(np.uint8)
    count = int(np.count_nonzero(skeleton))
    while True:
        for keep in THINNING_KEEP:
            codes = cv2.filter2D(skeleton, -1, NEIGHBOUR_CODES, borderType=cv2.BORDER_CONSTANT)
            np.bitwise_and(skeleton, cv2.LUT(codes, keep), out=skeleton)
        previous, count = count, int(np.count_nonzero(skeleton))
        if count == previous:
            return skeleton.view(bool)
