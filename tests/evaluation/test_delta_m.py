"""Delta_m signs and averaging."""
import pytest

from evaluation.delta_m import delta_m


def test_signs_follow_lower_is_better():
    metrics = {"semseg": {"mIoU": 60.0}, "normals": {"mErr": 12.0}, "depth": {"rmse": 0.6, "abs_err": 0.4}}
    reference = {"semseg": {"mIoU": 50.0}, "normals": {"mErr": 15.0}, "depth": {"rmse": 0.5}}
    # semseg +(60-50)/50 = +20; normals -(12-15)/15 = +20; depth -(0.6-0.5)/0.5 = -20
    assert delta_m(metrics, reference) == pytest.approx((20 + 20 - 20) / 3)


def test_only_tasks_with_a_reference_count():
    metrics = {"semseg": {"mIoU": 45.0}, "edge": {"odsF": 70.0}}
    # edge has no reference; semseg -(5/50) = -10
    assert delta_m(metrics, {"semseg": {"mIoU": 50.0}}) == pytest.approx(-10.0)


def test_none_without_reference():
    assert delta_m({"semseg": {"mIoU": 45.0}}, {}) is None
    assert delta_m({"semseg": {"mIoU": 45.0}}, {"semseg": {"pixel_acc": 1.0}}) is None
