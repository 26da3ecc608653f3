"""Cityscapes metrics: inverse-depth absErr / relErr pooled over the split, Delta_m on the
paper's references, 19-class mIoU, model selection on a lower-is-better name."""
import copy

import pytest
import torch
from easydict import EasyDict

from evaluation import best_score, build_evaluator
from evaluation.delta_m import delta_m
from evaluation.metrics import InverseDepthMeter
from utils.config import DEFAULTS, derive
from utils.errors import ConfigError

REFERENCES = {"semseg": {"mIoU": 75.82}, "depth": {"absErr": 0.0125}}  # the paper's single-task models


def cityscapes_cfg(**overrides):
    raw = copy.deepcopy(DEFAULTS)
    raw.update(train_db_name="Cityscapes", val_db_name="Cityscapes", db_root="unused",
               reference_metrics=copy.deepcopy(REFERENCES), train_size=[128, 256], val_size=[128, 256])
    raw["task_dictionary"].update(include_semseg=True, include_depth=True)
    raw.update(overrides)
    return derive(EasyDict(raw), "test")


def test_inverse_depth_errors_are_pooled_over_valid_pixels():
    meter = InverseDepthMeter(ignore_index=255)
    # image 1: 0 = invalid, 255 = ignore, the last column is padding (size 2x2)
    target = torch.tensor([[[[0.1, 0.2, 0.9], [0.0, 0.5, 0.9], [255.0, 255.0, 0.9]]]])
    prediction = torch.tensor([[[0.15, 0.1, 0.0], [0.3, 0.5, 0.0], [0.7, 0.7, 0.0]]])
    meter.update(prediction, target, torch.tensor([[0, 0, 3, 2]]))
    # errors 0.05, 0.1, 0 over targets 0.1, 0.2, 0.5
    assert meter.compute()["absErr"] == pytest.approx(0.15 / 3)
    assert meter.compute()["relErr"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    # image 2: one valid pixel, error 0.2 on 0.4; pooled, not averaged per batch
    meter.update(torch.tensor([[[0.6]]]), torch.tensor([[[[0.4]]]]), torch.tensor([[0, 0, 1, 1]]))
    assert meter.compute() == pytest.approx({"absErr": 0.35 / 4, "relErr": 1.5 / 4})
    meter.reset()
    assert all(value != value for value in meter.compute().values())  # NaN when nothing was seen


def test_delta_m_uses_abs_err_for_cityscapes_depth():
    metrics = {"semseg": {"mIoU": 75.67}, "depth": {"absErr": 0.0130, "relErr": 0.3}}
    # semseg (75.67 - 75.82) / 75.82 = -0.1978%; depth -(0.0130 - 0.0125) / 0.0125 = -4%
    assert delta_m(metrics, REFERENCES, "Cityscapes") == pytest.approx((-0.15 / 75.82 * 100 - 4.0) / 2)
    with pytest.raises(ConfigError, match=r"Delta_m on this dataset compares depth.rmse, got \['absErr'\]"):
        delta_m(metrics, REFERENCES)  # without the dataset, depth's headline is rmse


def test_evaluator_on_a_cityscapes_config():
    cfg = cityscapes_cfg()
    assert cfg.TASKS.NUM_OUTPUT == {"semseg": 7, "depth": 1} and cfg.best_metric == "delta_m"
    evaluator = build_evaluator(cfg, "infer")
    semseg = torch.zeros(1, 7, 2, 2)
    semseg[0, 3] = 1.0  # predicts class 3 everywhere
    outputs = {"semseg": semseg, "depth": torch.full((1, 1, 2, 2), 0.2)}
    batch = {"semseg": torch.tensor([[[3, 3], [255, 1]]]), "depth": torch.tensor([[[[0.1, 0.25], [0.0, 0.4]]]]),
             "meta": {"size": torch.tensor([[2, 2]])}}
    evaluator.update(outputs, batch)
    metrics = evaluator.compute()
    # class 3: TP 2, FP 1 -> 2/3; class 1: FN 1 -> 0; the mean is over all 7 classes
    assert metrics["semseg"]["mIoU"] == pytest.approx(2 / 3 / 7 * 100)
    assert metrics["depth"]["absErr"] == pytest.approx((0.1 + 0.05 + 0.2) / 3)
    assert metrics["depth"]["relErr"] == pytest.approx((1.0 + 0.2 + 0.5) / 3)
    assert best_score(metrics, "depth.absErr") == pytest.approx(-metrics["depth"]["absErr"])
    assert best_score(metrics, "depth.relErr") == pytest.approx(-metrics["depth"]["relErr"])
    assert best_score(metrics, "delta_m") == pytest.approx(metrics["delta_m"])


def test_nineteen_classes_with_the_config_key():
    cfg = cityscapes_cfg(semseg_classes=19)
    assert cfg.TASKS.NUM_OUTPUT["semseg"] == 19
    assert build_evaluator(cfg, "train").meters["semseg"].num_classes == 19
    assert cityscapes_cfg(semseg_classes=7).TASKS.NUM_OUTPUT["semseg"] == 7
    with pytest.raises(ConfigError, match="semseg_classes.*7, 19"):
        cityscapes_cfg(semseg_classes=13)
    with pytest.raises(ConfigError, match="semseg_classes"):
        raw = copy.deepcopy(DEFAULTS)
        raw.update(db_root="unused", semseg_classes=19)
        raw["task_dictionary"].update(include_semseg=True, include_sal=True)
        derive(EasyDict(raw), "test")


def test_default_best_metric_without_references():
    cfg = cityscapes_cfg(reference_metrics={}, ssl_type="full")
    assert cfg.best_metric == "semseg.mIoU"
    raw = copy.deepcopy(DEFAULTS)
    raw.update(train_db_name="Cityscapes", val_db_name="Cityscapes", db_root="unused", ssl_type="full")
    raw["task_dictionary"].update(include_depth=True)
    assert derive(EasyDict(raw), "test").best_metric == "depth.absErr"
