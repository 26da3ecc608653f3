"""Dataset metadata: class names, palettes and the synthetic-layout names, one copy each.

Used by the loaders (class ids), the synthetic data writer (VOC colours of the PNG
masks), TensorBoard images and `inference.py` (evaluation.visualization), so a class has
the same name and colour everywhere.
"""
import numpy as np

from utils.tasks import IGNORE_INDEX

# `python -m data.synthetic --layout L` / `data.partial_labels --dataset L` name -> dataset name.
LAYOUTS = {"pascal": "PASCALContext", "nyud": "NYUD", "nyud_mtan": "NYUD_MTAN", "cityscapes": "Cityscapes"}
LAYOUT_OF = {dataset: layout for layout, dataset in LAYOUTS.items()}


def _voc_palette(num=256):
    """The PASCAL VOC colour map: the bits of the class id spread over R, G and B."""
    palette = np.zeros((num, 3), dtype=np.uint8)
    for index in range(num):
        code, rgb = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << shift
            code >>= 3
        palette[index] = rgb
    return palette


VOC_PALETTE = _voc_palette()  # (256, 3) uint8; 255 (ignore) is (224, 224, 192)
IGNORE_COLOR = tuple(int(v) for v in VOC_PALETTE[IGNORE_INDEX])

# Human parts: background black, then six colours that are far apart in hue, so
# adjacent parts (upper / lower arm) never look alike.
PARTS_PALETTE = np.zeros((256, 3), dtype=np.uint8)
PARTS_PALETTE[:7] = [
    (0, 0, 0),  # background
    (230, 25, 75),  # head
    (60, 180, 75),  # torso
    (255, 225, 25),  # upper arms
    (0, 130, 200),  # lower arms
    (245, 130, 48),  # upper legs
    (145, 30, 180),  # lower legs
]
PARTS_PALETTE[IGNORE_INDEX] = IGNORE_COLOR

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
PARTS_CLASSES = ("background", "head", "torso", "upper arms", "lower arms", "upper legs", "lower legs")
# The standard NYUv2 40-class list (Gupta et al., CVPR 2013), label ids 1..40 stored as 0..39.
NYUD40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refrigerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)
# The NYUv2 13-class list used by MTAN / MTPSL (Couprie et al. 2013), labels 0..12.
NYUD13_CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture",
    "sofa", "table", "tv", "wall", "window",
)
# Cityscapes train ids 0..18 and the 7 categories of the MTAN preprocessing (label_19 /
# label_7), with the dataset's official colours.
CITYSCAPES19 = (
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)), ("fence", (190, 153, 153)), ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)), ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)), ("car", (0, 0, 142)), ("truck", (0, 0, 70)), ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)),
)
CITYSCAPES7 = (
    ("flat", (128, 64, 128)), ("construction", (70, 70, 70)), ("object", (153, 153, 153)),
    ("nature", (107, 142, 35)), ("sky", (70, 130, 180)), ("human", (220, 20, 60)), ("vehicle", (0, 0, 142)),
)
CITYSCAPES19_CLASSES = tuple(name for name, _ in CITYSCAPES19)
CITYSCAPES7_CLASSES = tuple(name for name, _ in CITYSCAPES7)


def _table_palette(table):
    """(256, 3) palette with the table's colours first and the ignore colour at 255."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:len(table)] = [colour for _, colour in table]
    palette[IGNORE_INDEX] = IGNORE_COLOR
    return palette


CITYSCAPES19_PALETTE = _table_palette(CITYSCAPES19)
CITYSCAPES7_PALETTE = _table_palette(CITYSCAPES7)

CLASS_NAMES = {
    "PASCALContext": {"semseg": VOC_CLASSES, "human_parts": PARTS_CLASSES},
    "NYUD": {"semseg": NYUD40_CLASSES},
    "NYUD_MTAN": {"semseg": NYUD13_CLASSES},
    "Cityscapes": {"semseg": CITYSCAPES7_CLASSES},
}
PALETTES = {"semseg": VOC_PALETTE, "human_parts": PARTS_PALETTE}
