"""What the layout writers share: image and list files (a failed write is a DataError),
the 8-bit normal encoding, sensor depth with holes, and one random stream per image."""
import io

import cv2
import numpy as np
import scipy.io

from data.synthetic.objects import KINDS
from utils.errors import DataError


def _write_rgb(path, image, quality=None):
    flags = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality is not None else []
    if not cv2.imwrite(path, np.ascontiguousarray(image[..., ::-1]), flags):
        raise DataError(f"cannot write {path}")


def _write_gray(path, image):
    if not cv2.imwrite(path, image):
        raise DataError(f"cannot write {path}")


MAT_TIME = b"Thu Jan  1 00:00:00 1970"  # the fixed "Created on" of every .mat header (asctime's 24 characters)


def _write_mat(path, variables):
    """scipy.io.savemat with compression, byte for byte the same for the same data: scipy
    writes the current time into the 116-byte header text; it is replaced with MAT_TIME."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=True)
    data = buffer.getvalue()
    stamp = data.index(b"Created on: ", 0, 116) + len(b"Created on: ")
    try:
        with open(path, "wb") as handle:
            handle.write(data[:stamp] + MAT_TIME + data[stamp + len(MAT_TIME):])
    except OSError as err:
        raise DataError(f"cannot write {path} ({err.strerror})") from None


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def encode_normals(normals):
    """Unit vectors -> 8-bit RGB, v = (n + 1) / 2 * 255 (decoded as 2v/255 - 1)."""
    return np.clip(np.rint((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _depth_with_holes(scene, rng):
    """Sensor depth: glass (windows) and a few random blobs read 0 = missing."""
    depth = scene.depth.copy()
    depth[scene.kind == KINDS.index("window")] = 0
    holes = np.zeros(depth.shape, np.uint8)
    for _ in range(rng.integers(0, 3)):
        centre = (int(rng.integers(depth.shape[1])), int(rng.integers(depth.shape[0])))
        axes = (int(rng.integers(2, max(3, depth.shape[1] // 12))),
                int(rng.integers(2, max(3, depth.shape[0] // 12))))
        cv2.ellipse(holes, centre, axes, 0, 0, 360, 1, -1)
    depth[holes > 0] = 0
    return depth.astype(np.float32)


def _sample_rng(seed, split, index):
    """Each image has its own stream, so it does not depend on how many are generated."""
    return np.random.default_rng([seed, ("train", "val").index(split), index])
