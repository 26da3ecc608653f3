"""evaluation.visualization: palettes, class names, colorize, per-task PNGs, overview figure."""
import numpy as np
import pytest
import torch
from PIL import Image

from data import metadata as meta
from evaluation import visualization as vis


def test_voc_palette_matches_the_standard_colour_map():
    assert meta.VOC_PALETTE.shape == (256, 3) and meta.VOC_PALETTE.dtype == np.uint8
    assert meta.VOC_PALETTE[0].tolist() == [0, 0, 0]
    assert meta.VOC_PALETTE[1].tolist() == [128, 0, 0]  # aeroplane
    assert meta.VOC_PALETTE[15].tolist() == [192, 128, 128]  # person
    assert meta.VOC_PALETTE[20].tolist() == [0, 64, 128]  # tvmonitor
    assert meta.VOC_PALETTE[255].tolist() == [224, 224, 192]  # ignore
    assert len({tuple(c) for c in meta.VOC_PALETTE.tolist()}) == 256


def test_parts_palette_is_distinct_and_differs_from_voc():
    colours = [tuple(c) for c in meta.PARTS_PALETTE[:7].tolist()]
    assert colours[0] == (0, 0, 0) and len(set(colours)) == 7
    assert not np.array_equal(meta.PARTS_PALETTE[1:7], meta.VOC_PALETTE[1:7])


def test_class_name_tables():
    assert len(meta.VOC_CLASSES) == 21 and meta.VOC_CLASSES[15] == "person"
    assert len(meta.PARTS_CLASSES) == 7 and meta.PARTS_CLASSES[1] == "head"
    assert len(meta.NYUD40_CLASSES) == 40 and meta.NYUD40_CLASSES[0] == "wall"
    assert meta.NYUD40_CLASSES[-1] == "otherprop"
    assert len(meta.NYUD13_CLASSES) == 13 and meta.NYUD13_CLASSES[0] == "bed"
    assert meta.CLASS_NAMES["NYUD_MTAN"]["semseg"] is meta.NYUD13_CLASSES


def test_colorize_labels_uses_the_task_palette_and_accepts_tensors():
    labels = torch.tensor([[0, 15], [255, 3]])
    assert vis.colorize("semseg", labels).tolist() == [[[0, 0, 0], [192, 128, 128]],
                                                       [[224, 224, 192], [128, 128, 0]]]
    parts = vis.colorize("human_parts", np.array([[1, 6]]))
    assert parts.dtype == np.uint8 and parts.tolist() == [[[230, 25, 75], [145, 30, 180]]]


def test_colorize_probabilities_normals_and_depth():
    sal = vis.colorize("sal", np.array([[0.0, 0.5, 1.0, 255.0]]))
    assert sal[0, :, 0].tolist() == [0, 128, 255, 224] and sal.shape == (1, 4, 3)

    normals = np.zeros((3, 1, 2), np.float32)
    normals[2, 0, 0] = 1.0  # facing the camera
    normals[0, 0, 1] = -1.0
    assert vis.colorize("normals", normals).tolist() == [[[128, 128, 255], [0, 128, 128]]]

    depth = vis.colorize("depth", np.array([[1.0, 3.0, 0.0]]))
    assert depth[0, 0].tolist() == vis.DEPTH_CMAP[255].tolist()  # nearest: bright end
    assert depth[0, 1].tolist() == vis.DEPTH_CMAP[0].tolist()  # farthest: dark end
    assert depth[0, 2].tolist() == [0, 0, 0]  # missing
    fixed = vis.colorize("depth", np.array([[2.0]]), depth_range=(1.0, 3.0))
    assert fixed[0, 0].tolist() == vis.DEPTH_CMAP[128].tolist()

    with pytest.raises(ValueError):
        vis.colorize("albedo", np.zeros((2, 2)))


def test_write_prediction_files(tmp_path):
    labels = np.array([[0, 1], [15, 20]])
    vis.write_prediction(str(tmp_path), "semseg", "a", labels)
    png = Image.open(tmp_path / "semseg" / "a.png")
    assert png.mode == "P" and np.array(png).tolist() == labels.tolist()  # values are class ids
    assert np.array(png.convert("RGB")).tolist() == vis.colorize("semseg", labels).tolist()

    paths = vis.write_prediction(str(tmp_path), "depth", "a", np.array([[1.2344, 0.0]], np.float32))
    assert [p.split("/")[-2] for p in paths] == ["depth", "depth_mm"]
    raw = Image.open(tmp_path / "depth_mm" / "a.png")
    assert raw.mode == "I;16" and np.array(raw).tolist() == [[1234, 0]]  # millimetres, 0 = invalid

    vis.write_prediction(str(tmp_path), "edge", "a", np.array([[0.0, 1.0]]))
    edge = Image.open(tmp_path / "edge" / "a.png")
    assert edge.mode == "L" and np.array(edge).tolist() == [[0, 255]]


def test_make_overview_has_every_tile_and_a_legend_of_present_classes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    semseg = np.zeros((60, 90), np.int64)
    semseg[:, 45:] = 15  # person on the right half
    predictions = {"semseg": semseg, "sal": rng.random((60, 90)), "depth": rng.random((60, 90)) + 0.5}
    overview = vis.make_overview(image, predictions, meta.CLASS_NAMES["PASCALContext"], tile_height=60)
    assert overview.dtype == np.uint8 and overview.ndim == 3 and overview.shape[2] == 3
    assert overview.shape[0] > 60 and overview.shape[1] >= 4 * 90
    colours = {tuple(c) for c in overview.reshape(-1, 3).tolist()}
    assert tuple(meta.VOC_PALETTE[15].tolist()) in colours
    assert tuple(meta.VOC_PALETTE[1].tolist()) not in colours  # aeroplane absent: no swatch
    again = vis.make_overview(image, predictions, meta.CLASS_NAMES["PASCALContext"], tile_height=60)
    assert np.array_equal(overview, again)

    fewer = vis.make_overview(image, {"semseg": semseg}, tile_height=60)
    assert fewer.shape[1] < overview.shape[1]
