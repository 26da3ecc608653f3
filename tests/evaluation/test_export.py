"""Prediction PNGs for offline evaluation keep the values they encode."""
import numpy as np
from PIL import Image

from evaluation.export import save_prediction_png


def test_each_task_round_trips(tmp_path):
    cases = {
        "semseg": np.array([[0, 20], [7, 3]]),
        "sal": np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32),
        "normals": np.stack([np.full((2, 2), -1.0), np.zeros((2, 2)), np.ones((2, 2))]).astype(np.float32),
        "depth": np.array([[1.2345, 0.0], [10.0, 65.6]], dtype=np.float32),
    }
    for task, prediction in cases.items():
        save_prediction_png(str(tmp_path / f"{task}.png"), task, prediction)
    assert np.array_equal(np.array(Image.open(tmp_path / "semseg.png")), [[0, 20], [7, 3]])
    assert np.array_equal(np.array(Image.open(tmp_path / "sal.png")), [[0, 255], [128, 64]])
    normals = np.array(Image.open(tmp_path / "normals.png"))
    assert normals.shape == (2, 2, 3) and normals[0, 0].tolist() == [0, 128, 255]
    depth = np.array(Image.open(tmp_path / "depth.png"))
    assert depth.dtype == np.uint16 and depth.tolist() == [[1234, 0], [10000, 65535]]
