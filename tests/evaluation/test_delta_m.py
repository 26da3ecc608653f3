"""Delta_m: signs and averaging, the headline metric per dataset, old metric names, and the
paper's own Delta_m column recomputed from the shipped configs' reference_metrics."""
import itertools
from pathlib import Path

import pytest
import yaml

from evaluation import build_evaluator
from evaluation.delta_m import delta_m
from utils.tasks import check_reference_metrics
from evaluation.evaluator import best_score
from utils.config import load_config
from utils.errors import ConfigError
from utils.tasks import headline_metric

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_signs_follow_lower_is_better():
    metrics = {"semseg": {"mIoU": 60.0}, "normals": {"mErr": 12.0}, "depth": {"rmse": 0.6, "absErr": 0.4}}
    reference = {"semseg": {"mIoU": 50.0}, "normals": {"mErr": 15.0}, "depth": {"rmse": 0.5}}
    # semseg +(60-50)/50 = +20; normals -(12-15)/15 = +20; depth -(0.6-0.5)/0.5 = -20
    assert delta_m(metrics, reference, "NYUD") == pytest.approx((20 + 20 - 20) / 3)


def test_only_tasks_with_a_reference_count():
    metrics = {"semseg": {"mIoU": 45.0}, "edge": {"odsF": 70.0}}
    # edge has no reference; semseg -(5/50) = -10
    assert delta_m(metrics, {"semseg": {"mIoU": 50.0}}) == pytest.approx(-10.0)
    assert delta_m({"semseg": {"mIoU": 45.0}}, {}) is None


def test_depth_headline_per_dataset():
    assert headline_metric("NYUD_MTAN", "depth") == ("absErr", True)  # the paper's NYUD protocol (MTPSL)
    assert headline_metric("Cityscapes", "depth") == ("absErr", True)
    assert headline_metric("NYUD", "depth") == ("rmse", True)  # the multi-task (InvPT) layout
    metrics = {"depth": {"absErr": 0.5, "relErr": 0.2, "rmse": 0.9}}
    # NYUD_MTAN: -(0.5 - 0.4) / 0.4 = -25; the rmse reference is not its headline
    assert delta_m(metrics, {"depth": {"absErr": 0.4, "rmse": 0.6}}, "NYUD_MTAN") == pytest.approx(-25.0)
    assert delta_m(metrics, {"depth": {"absErr": 0.4, "rmse": 0.6}}, "NYUD") == pytest.approx(-50.0)


def test_a_reference_without_the_headline_metric_is_an_error():
    """A typo or an old name would otherwise drop the task from Delta_m silently."""
    metrics = {"semseg": {"mIoU": 40.0}, "depth": {"absErr": 0.5, "relErr": 0.2, "rmse": 0.9}}
    old = {"semseg": {"mIoU": 45.28}, "depth": {"abs_err": 0.4802}}
    message = "reference_metrics.depth: Delta_m on NYUD_MTAN compares depth.absErr, got ['abs_err'] " \
              "('abs_err' is now named 'absErr')"
    with pytest.raises(ConfigError) as info:
        delta_m(metrics, old, "NYUD_MTAN")
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        check_reference_metrics(old, "NYUD_MTAN", "configs/old.yml")
    assert str(info.value) == f"configs/old.yml: {message}"
    with pytest.raises(ConfigError, match=r"compares semseg.mIoU, got \['pixel_acc'\]$"):
        check_reference_metrics({"semseg": {"pixel_acc": 1.0}}, "NYUD_MTAN", "x.yml")
    check_reference_metrics({"semseg": {"mIoU": 45.28}, "depth": {"absErr": 0.48, "rmse": 0.6}}, "NYUD_MTAN", "x.yml")


def test_best_metric_with_the_old_depth_name_names_the_new_one():
    metrics = {"depth": {"absErr": 0.5, "relErr": 0.2, "rmse": 0.9}}
    with pytest.raises(ConfigError, match=r"'depth.abs_err' is not computed; available: .*'depth.absErr'"):
        best_score(metrics, "depth.abs_err")
    assert [best_score(metrics, f"depth.{name}") for name in ("absErr", "relErr", "rmse")] == [-0.5, -0.2, -0.9]


# The paper's rows (SPEC, section 5; docs/metrics.md): (config, metrics of the row, Delta_m it prints).
# Figures are printed to 2 decimals, depth absErr to 4.
PAPER_ROWS = [
    ("pascal/resnet18_onelabel.yml", {"semseg": {"mIoU": 57.78}, "human_parts": {"mIoU": 58.98},
                                      "sal": {"maxF": 77.82}, "normals": {"mErr": 16.11}, "edge": {"odsF": 64.50}},
     3.65),
    ("pascal/resnet18_randomlabels.yml", {"semseg": {"mIoU": 62.55}, "human_parts": {"mIoU": 56.84},
                                          "sal": {"maxF": 80.44}, "normals": {"mErr": 14.85},
                                          "edge": {"odsF": 67.10}}, 4.27),
    ("nyud/mtan_resnet18_onelabel.yml", {"semseg": {"mIoU": 44.47}, "depth": {"absErr": 0.5059},
                                         "normals": {"mErr": 25.84}}, -2.27),
    ("nyud/mtan_resnet18_randomlabels.yml", {"semseg": {"mIoU": 46.82}, "depth": {"absErr": 0.4743},
                                             "normals": {"mErr": 24.75}}, -0.77),
    ("cityscapes/resnet18_onelabel.yml", {"semseg": {"mIoU": 75.67}, "depth": {"absErr": 0.0130}}, -2.13),
]


def shipped(config):
    with open(CONFIGS / config, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def rounding_interval(metrics, references, dataset):
    """Smallest and largest Delta_m of any metrics and references that print as the given
    ones (half a unit of the last printed digit either way): each task's term is monotone
    in its metric and its reference, so the extremes are at the corners."""
    low, high = 0.0, 0.0
    for task, values in metrics.items():
        name, lower_is_better = headline_metric(dataset, task)
        half = 0.00005 if name == "absErr" else 0.005
        terms = [delta_m({task: {name: values[name] + a}}, {task: {name: references[task][name] + b}}, dataset)
                 for a, b in itertools.product((-half, half), repeat=2)]
        low, high = low + min(terms), high + max(terms)
    return low / len(metrics), high / len(metrics)


@pytest.mark.parametrize("config, metrics, paper", PAPER_ROWS, ids=[row[0] for row in PAPER_ROWS])
def test_the_paper_delta_m_from_the_shipped_references(config, metrics, paper):
    cfg = shipped(config)
    ours = delta_m(metrics, cfg["reference_metrics"], cfg["val_db_name"])
    low, high = rounding_interval(metrics, cfg["reference_metrics"], cfg["val_db_name"])
    assert low <= paper <= high  # the paper's figure is what its rounded inputs allow
    if config.startswith("cityscapes"):
        # 75.67 / 0.0130 against 75.82 / 0.0125 give -2.10; the paper's -2.13 needs absErr
        # 0.013008 (rounding to 4 decimals allows -2.5 .. -1.7)
        assert ours == pytest.approx(-2.0989, abs=1e-4)
    else:
        assert ours == pytest.approx(paper, abs=0.02)


@pytest.mark.parametrize("vit, resnet", [("pascal/vitb_onelabel.yml", "pascal/resnet18_onelabel.yml"),
                                         ("pascal/vitb_randomlabels.yml", "pascal/resnet18_randomlabels.yml"),
                                         ("cityscapes/vitb_onelabel.yml", "cityscapes/resnet18_onelabel.yml")])
def test_vit_configs_compare_with_the_same_single_task_models(vit, resnet):
    assert shipped(vit)["reference_metrics"] == shipped(resnet)["reference_metrics"]


@pytest.mark.parametrize("config", sorted(str(path.relative_to(CONFIGS)) for path in CONFIGS.glob("*/*.yml")
                                          if "reference_metrics" in shipped(path.relative_to(CONFIGS))))
def test_shipped_references_name_what_the_meters_report(config):
    """Each reference is keyed by a metric its task's meter reports, in the meter's units
    (percent for mIoU / maxF / odsF, degrees for mErr), so Delta_m compares like with like."""
    cfg = load_config(str(CONFIGS / config), opts=["db_root=unused"])
    check_reference_metrics(cfg.reference_metrics, cfg.val_db_name, config)
    evaluator = build_evaluator(cfg, "infer")
    for task, references in cfg.reference_metrics.items():
        assert set(references) <= set(evaluator.meters[task].compute()), (config, task)
        name, _ = headline_metric(cfg.val_db_name, task)
        if name == "absErr":  # metres (NYUD) or inverse depth (Cityscapes)
            assert references[name] < 1.0
        else:  # percent (mIoU, maxF, odsF) or degrees (mErr), not fractions
            assert 1.0 < references[name] < 100.0
