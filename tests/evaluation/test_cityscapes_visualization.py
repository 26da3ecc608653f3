"""Cityscapes drawing: the official colours for 7 / 19 classes, inverse depth drawn near-bright."""
import numpy as np
from easydict import EasyDict
from PIL import Image

from data import metadata as meta
from evaluation import visualization as vis


def cfg(dataset, num_classes=None):
    outputs = {"semseg": num_classes, "depth": 1} if num_classes else {"depth": 1}
    return EasyDict(val_db_name=dataset, TASKS={"NUM_OUTPUT": outputs})


def test_cityscapes_palettes_and_names():
    assert len(meta.CITYSCAPES19_CLASSES) == 19 and meta.CITYSCAPES19_CLASSES[13] == "car"
    assert meta.CITYSCAPES7_CLASSES == ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
    assert meta.CITYSCAPES19_PALETTE[0].tolist() == [128, 64, 128]  # road
    assert meta.CITYSCAPES19_PALETTE[18].tolist() == [119, 11, 32]  # bicycle
    assert meta.CITYSCAPES7_PALETTE[6].tolist() == [0, 0, 142]  # vehicle = car's colour
    for palette, count in ((meta.CITYSCAPES7_PALETTE, 7), (meta.CITYSCAPES19_PALETTE, 19)):
        assert len({tuple(c) for c in palette[:count].tolist()}) == count
        assert tuple(palette[255]) == meta.IGNORE_COLOR


def test_dataset_style_picks_the_label_set():
    seven, nineteen = vis.dataset_style(cfg("Cityscapes", 7)), vis.dataset_style(cfg("Cityscapes", 19))
    assert seven.palettes["semseg"] is meta.CITYSCAPES7_PALETTE and seven.inverse_depth
    assert nineteen.class_names["semseg"] is meta.CITYSCAPES19_CLASSES
    assert vis.dataset_style(cfg("Cityscapes")).class_names["semseg"] is meta.CITYSCAPES7_CLASSES  # depth only
    nyud = vis.dataset_style(cfg("NYUD_MTAN", 13))
    assert nyud.palettes["semseg"] is meta.VOC_PALETTE and not nyud.inverse_depth
    assert nyud.class_names["semseg"] is meta.NYUD13_CLASSES


def test_colorize_with_the_cityscapes_style():
    style = vis.dataset_style(cfg("Cityscapes", 19))
    drawn = vis.colorize("semseg", np.array([[13, 255]]), style=style)
    assert drawn.tolist() == [[[0, 0, 142], list(meta.IGNORE_COLOR)]]
    inverse = np.array([[0.5, 0.1, 0.0]])  # near, far, invalid
    rgb = vis.colorize("depth", inverse, style=style)
    assert rgb[0, 0].tolist() == vis.DEPTH_CMAP[255].tolist() and rgb[0, 1].tolist() == vis.DEPTH_CMAP[0].tolist()
    assert rgb[0, 2].tolist() == list(vis.MISSING_DEPTH_COLOR)
    metric = vis.colorize("depth", inverse)  # the default: smaller depth = nearer = bright
    assert metric[0, 1].tolist() == vis.DEPTH_CMAP[255].tolist()
    legend = [text for _, text in vis._legend("depth", inverse, None, style)]
    assert legend == ["near 0.500 (1/depth)", "far 0.100 (1/depth)"]


def test_write_prediction_and_overview_with_the_style(tmp_path):
    style = vis.dataset_style(cfg("Cityscapes", 7))
    labels = np.array([[0, 4], [6, 6]])
    path = vis.write_prediction(str(tmp_path), "semseg", "a", labels, style=style)[0]
    png = Image.open(path)
    assert png.mode == "P" and np.array(png).tolist() == labels.tolist()
    assert png.getpalette()[:6] == [128, 64, 128, 70, 70, 70]
    overview = vis.make_overview(np.zeros((2, 2, 3), np.uint8), {"semseg": labels, "depth": np.ones((2, 2))},
                                 style=style, tile_height=40)
    assert overview.dtype == np.uint8 and overview.shape[0] > 40
