"""Boundary evaluation: our matcher against pyEdgeEval's BSDS correspondence, side by side.

    python -m benchmarks.boundary --size 512 --thresholds 99 --images N [--reference-images M]
        [--width W] [--max-dist D]

Images are real photos bundled with scikit-image (no download), resized to size x size
(size x W with --width; PASCAL-Context images are typically 375 x 500):
ground truth = thinned Canny edges, prediction = a soft boundary map (Sobel magnitude of
the noisy, blurred photo, scaled to [0, 1]; thick where edges are strong). Image i uses
photo i mod 20 with its own noise, flip and crop, so any N works.

For each image, `evaluation.boundary.evaluate_image` (ours: our thinning and matcher)
and `reference_counts` (the previous pipeline: skimage thinning and pyEdgeEval's
`correspond_pixels`, reseeded before every call) give the counts at every threshold.
Printed (one JSON line): CPU seconds per image of each (medians), their ratio, the largest difference of
matched counts (absolute and as a fraction of that count), ODS-F of each over the images,
and the core-hours a full PASCAL-Context val evaluation (5,105 images) would take at
that rate. --reference-images M < N runs pyEdgeEval on the first M images only (it is
slow); speed and differences then compare those M images.
"""
import argparse
import ctypes
import functools
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
from scipy import ndimage
from skimage import color, data, feature, filters, transform
from skimage.morphology import thin as skimage_thin

from evaluation.boundary import CNT_P, CNT_R, bsds_thresholds, evaluate_image, ods_f
from utils.cli import HelpFormatter

PASCAL_VAL_IMAGES = 5105
# Photos that ship inside scikit-image (skimage/data/*.png|jpg), nothing downloaded.
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text",
          "brick", "grass", "gravel", "clock", "hubble_deep_field", "immunohistochemistry", "retina",
          "microaneurysms", "cell", "logo", "colorwheel")


def photo(name):
    """A bundled scikit-image photo as a float grayscale image in [0, 1]."""
    image = getattr(data, name)()
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    image = image.astype(np.float64)
    return (image - image.min()) / max(image.max() - image.min(), 1e-12)


def boundary_pair(index, size, width=None):
    """(probability (size, width or size) float32, ground truth bool) for image `index`."""
    rng = np.random.default_rng(index)
    image = photo(PHOTOS[index % len(PHOTOS)])
    if index >= len(PHOTOS):  # further images: a random crop of 70-100 % and a flip
        height, width = image.shape
        crop = rng.uniform(0.7, 1.0)
        top = int(rng.integers(0, height - int(crop * height) + 1))
        left = int(rng.integers(0, width - int(crop * width) + 1))
        image = image[top:top + int(crop * height), left:left + int(crop * width)]
        if rng.random() < 0.5:
            image = image[:, ::-1]
    image = transform.resize(image, (size, width or size), anti_aliasing=True)
    boundary = skimage_thin(feature.canny(image, sigma=2.0))
    noisy = ndimage.gaussian_filter(image + rng.normal(0.0, 0.03, image.shape), 1.0)
    strength = filters.sobel(noisy)
    probability = np.clip(strength / max(np.percentile(strength, 99), 1e-12), 0.0, 1.0)
    return probability.astype(np.float32), boundary


def _reseed_function(correspond_pixels):
    """Reseeds pyEdgeEval's matcher's process-global random generator (outlier links) with a
    fixed seed, so its counts repeat; None if the compiled library does not export it."""
    library_path = sys.modules[correspond_pixels.__module__].__file__
    try:
        library = ctypes.CDLL(library_path)  # the already loaded library, not a copy
        generator = ctypes.addressof(ctypes.c_char.in_dll(library, "_ZN6Random4randE"))
        reseed = library._ZN6Random6reseedEm  # Random::reseed(seed) of the static Random::rand
    except (OSError, ValueError, AttributeError):
        return None
    reseed.argtypes, reseed.restype = [ctypes.c_void_p, ctypes.c_uint64], None
    return functools.partial(reseed, generator, 1)


def reference_counts(probability, boundary, thresholds, max_dist):
    """evaluate_image's (4, K) counts with skimage thinning and pyEdgeEval's correspondence
    (the pipeline evaluation.boundary used before its own matcher)."""
    from pyEdgeEval._lib import correspond_pixels

    reseed = _reseed_function(correspond_pixels)
    counts = np.zeros((4, len(thresholds)), dtype=np.int64)
    counts[1] = int(boundary.sum())
    previous_above = -1
    for k, threshold in enumerate(thresholds):
        above = probability >= threshold
        if int(above.sum()) == previous_above:  # nested sets: same count, same set
            counts[:, k] = counts[:, k - 1]
            continue
        previous_above = int(above.sum())
        predicted = skimage_thin(above)
        counts[3, k] = int(predicted.sum())
        if counts[1, k] > 0 and counts[3, k] > 0:
            if reseed is not None:
                reseed()
            match_pred, match_gt, _, _ = correspond_pixels(predicted, boundary, max_dist=max_dist)
            counts[CNT_P, k] = int((match_pred > 0).sum())
            counts[CNT_R, k] = int((match_gt > 0).sum())
    return counts


def timed(fn, *args):
    """fn(*args) and the CPU seconds it took (this process; the work is single-threaded,
    and CPU time is what core-hours count and what other jobs on a shared machine
    disturb least)."""
    start = time.process_time()
    result = fn(*args)
    return result, time.process_time() - start


def run(size, num_thresholds, num_images, reference_images, max_dist, width=None):
    thresholds = bsds_thresholds(num_thresholds)
    ours_total = torch.zeros(4, num_thresholds, dtype=torch.int64)
    reference_total = torch.zeros(4, num_thresholds, dtype=torch.int64)
    ours_subset = torch.zeros(4, num_thresholds, dtype=torch.int64)
    ours_seconds, reference_seconds = [], []
    largest, largest_fraction = 0, 0.0
    for index in range(num_images):
        probability, boundary = boundary_pair(index, size, width)
        ours, seconds = timed(evaluate_image, probability, boundary, thresholds, max_dist)
        ours_seconds.append(seconds)
        ours_total += torch.from_numpy(ours)
        if index < reference_images:
            reference, seconds = timed(reference_counts, probability, boundary, thresholds, max_dist)
            reference_seconds.append(seconds)
            reference_total += torch.from_numpy(reference)
            ours_subset += torch.from_numpy(ours)
            difference = np.abs(ours[[CNT_R, CNT_P]] - reference[[CNT_R, CNT_P]])
            largest = max(largest, int(difference.max()))
            largest_fraction = max(largest_fraction,
                                   float((difference / np.maximum(ours[[CNT_R, CNT_P]], 1)).max()))
    ours_median = statistics.median(ours_seconds)
    line = {
        "size": [size, width or size], "thresholds": num_thresholds, "images": num_images,
        "reference_images": reference_images, "max_dist": max_dist,
        "ours_s_per_image": round(ours_median, 4),
        "ours_odsF": round(ods_f(ours_total), 4),
        "pascal_val_core_hours_ours": round(ours_median * PASCAL_VAL_IMAGES / 3600, 3),
    }
    if reference_images:
        reference_median = statistics.median(reference_seconds)
        # speed on the same images: ours' median over the reference subset
        ours_on_subset = statistics.median(ours_seconds[:reference_images])
        line.update({
            "reference_s_per_image": round(reference_median, 4),
            "speedup": round(reference_median / ours_on_subset, 1),
            "largest_count_difference": largest,
            "largest_count_difference_fraction": round(largest_fraction, 6),
            "ours_odsF_on_reference_images": round(ods_f(ours_subset), 4),
            "reference_odsF": round(ods_f(reference_total), 4),
            "pascal_val_core_hours_reference": round(reference_median * PASCAL_VAL_IMAGES / 3600, 3),
        })
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="image height (and width)")
    parser.add_argument("--width", type=int, default=None, help="image width (default: --size)")
    parser.add_argument("--thresholds", type=int, default=99, help="ODS thresholds")
    parser.add_argument("--images", type=int, default=3, help="images matched by our matcher")
    parser.add_argument("--reference-images", type=int, default=None,
                        help="images also evaluated with pyEdgeEval (default: all)")
    parser.add_argument("--max-dist", type=float, default=0.0075, help="0.0075 PASCAL, 0.011 NYUD")
    args = parser.parse_args(argv)
    reference_images = args.images if args.reference_images is None else args.reference_images
    if args.size < 16 or (args.width is not None and args.width < 16) or args.thresholds < 1 or args.images < 1 or not 0 <= reference_images <= args.images:
        print("error: need --size (and --width) >= 16, --thresholds >= 1, --images >= 1, "
              "0 <= --reference-images <= --images", file=sys.stderr)
        return 2
    if not math.isfinite(args.max_dist) or args.max_dist <= 0:
        print("error: --max-dist must be > 0", file=sys.stderr)
        return 2
    print(json.dumps(run(args.size, args.thresholds, args.images, reference_images, args.max_dist, args.width)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
