"""engine.preflight: what a run checks before training, from file headers only."""
import numpy as np
import pytest
from PIL import Image

from data.datasets import build_dataset
from engine.preflight import check_train_sizes, check_val_sizes, image_size
from utils.config import load_config
from utils.errors import ConfigError, DataError


def test_image_size_reads_headers_of_png_jpeg_and_npy(tmp_path):
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 4, 3), np.uint8)).save(tmp_path / "b.jpg")
    np.save(tmp_path / "c.npy", np.zeros((6, 3, 3), np.float32))
    assert image_size(str(tmp_path / "a.png")) == (5, 7)
    assert image_size(str(tmp_path / "b.jpg")) == (9, 4)
    assert image_size(str(tmp_path / "c.npy")) == (6, 3)
    (tmp_path / "d.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="d.png: not a readable image"):
        image_size(str(tmp_path / "d.png"))


def test_val_size_smaller_than_the_validation_images_is_one_config_error(pascal_db):
    cfg = load_config("configs/demo.yml", [f"db_root={pascal_db.db_root}", "val_size=[48,64]"])
    with pytest.raises(ConfigError, match=r"val_size 48x64 is smaller than validation image .*\(64x64\); "
                                          r"the whole split fits in --opts val_size=\[64,64\]"):
        check_val_sizes(build_dataset(cfg, "val"), cfg.val_size)
    fits = load_config("configs/demo.yml", [f"db_root={pascal_db.db_root}", "val_size=[64,96]"])
    check_val_sizes(build_dataset(fits, "val"), fits.val_size)  # larger is fine: padded
    check_train_sizes(build_dataset(fits, "train"), fits.train_size)  # cropped and padded: any size


def test_unpadded_protocol_needs_the_exact_image_size(cityscapes_db):
    opts = [f"db_root={cityscapes_db.db_root}", "ssl_type=full"]
    cfg = load_config("configs/cityscapes/resnet18_onelabel.yml", opts + ["train_size=[32,64]", "val_size=[32,64]"])
    check_train_sizes(build_dataset(cfg, "train"), cfg.train_size)
    check_val_sizes(build_dataset(cfg, "val"), cfg.val_size)
    bigger = load_config("configs/cityscapes/resnet18_onelabel.yml", opts + ["train_size=[64,128]",
                                                                             "val_size=[64,128]"])
    with pytest.raises(ConfigError, match=r"differs from the size of validation image .*\(32x64\).*"
                                          r"val_size=\[32,64\]"):
        check_val_sizes(build_dataset(bigger, "val"), bigger.val_size)
    with pytest.raises(ConfigError, match=r"train_size=\[32,64\]"):
        check_train_sizes(build_dataset(bigger, "train"), bigger.train_size)
