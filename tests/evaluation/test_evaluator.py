"""MultiTaskEvaluator: cropping, streaming / rank-sum equivalence, delta_m, helpers."""
import copy

import pytest
import torch
from easydict import EasyDict

from evaluation import best_score, build_evaluator, format_table, refinement_gain
from utils.config import DEFAULTS, derive
from utils.errors import ConfigError

PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}


def make_cfg(db_name, channels, reference_metrics=None):
    raw = copy.deepcopy(DEFAULTS)
    raw.update(train_db_name=db_name, val_db_name=db_name, db_root="unused", ssl_type="full",
               reference_metrics=reference_metrics or {})
    for task in channels:
        raw["task_dictionary"][f"include_{task}"] = True
    raw["eval_kwargs"].update(edge_thresholds_train=3, edge_thresholds_infer=5, edge_workers=1)
    return derive(EasyDict(raw), "test")


def random_batch(channels, generator, batch_size=3, size=24):
    """Raw outputs and a padded batch with targets per docs/conventions.md."""
    outputs, batch = {}, {}
    for task, num in channels.items():
        outputs[task] = torch.randn(batch_size, num, size, size, generator=generator)
    shape = (batch_size, size, size)
    if "semseg" in channels:
        batch["semseg"] = torch.randint(0, channels["semseg"], shape, generator=generator)
    if "human_parts" in channels:
        batch["human_parts"] = torch.randint(0, 7, shape, generator=generator)
    if "sal" in channels:
        batch["sal"] = torch.randint(0, 2, shape, generator=generator)
    if "edge" in channels:
        batch["edge"] = (torch.rand(batch_size, 1, size, size, generator=generator) > 0.9).float()
    if "normals" in channels:
        normals = torch.randn(batch_size, 3, size, size, generator=generator)
        batch["normals"] = torch.nn.functional.normalize(normals, dim=1)
    if "depth" in channels:
        batch["depth"] = torch.rand(batch_size, 1, size, size, generator=generator) * 5
    sizes = torch.randint(size // 2, size + 1, (batch_size, 2), generator=generator)
    for task in channels:  # padding beyond each sample's size is ignore
        for b, (height, width) in enumerate(sizes.tolist()):
            batch[task][b, ..., height:, :] = 255
            batch[task][b, ..., :, width:] = 255
    batch["meta"] = {"id": [str(i) for i in range(batch_size)], "size": sizes}
    return outputs, batch


def flat(metrics):
    """{task: {metric: v}} -> {"task.metric": v} (pytest.approx takes flat mappings)."""
    return {f"{t}.{m}": v for t, values in metrics.items() for m, v in values.items()}


def split_batch(outputs, batch, index):
    part = {t: v[index] for t, v in batch.items() if t != "meta"}
    part["meta"] = {"size": batch["meta"]["size"][index]}
    return {t: v[index] for t, v in outputs.items()}, part


@pytest.mark.parametrize("db_name,channels", [("PASCALContext", PASCAL), ("NYUD", NYUD)])
def test_streaming_and_rank_sum_equal_one_pass(db_name, channels):
    cfg = make_cfg(db_name, channels)
    generator = torch.Generator().manual_seed(0)
    outputs, batch = random_batch(channels, generator)

    whole = build_evaluator(cfg, "train")
    whole.update(outputs, batch)
    expected = whole.compute()
    assert set(expected) == set(channels)

    streamed = build_evaluator(cfg, "train")  # two updates == one
    streamed.update(*split_batch(outputs, batch, slice(0, 1)))
    streamed.update(*split_batch(outputs, batch, slice(1, 3)))
    assert flat(streamed.compute()) == pytest.approx(flat(expected))

    rank0, rank1 = build_evaluator(cfg, "train"), build_evaluator(cfg, "train")  # all_reduce(SUM)
    rank0.update(*split_batch(outputs, batch, slice(0, 2)))
    rank1.update(*split_batch(outputs, batch, slice(2, 3)))
    for own, other in zip(rank0.state_tensors(), rank1.state_tensors()):
        assert own.dtype in (torch.int64, torch.float64) and own.shape == other.shape
        own += other
    assert flat(rank0.compute()) == pytest.approx(flat(expected))

    copy_target = build_evaluator(cfg, "train")
    copy_target.load_state_tensors([t.clone() for t in whole.state_tensors()])
    assert flat(copy_target.compute()) == pytest.approx(flat(expected))
    whole.reset()
    assert all((t == 0).all() for t in whole.state_tensors())


def test_padding_is_cropped_away():
    # a perfect prediction inside meta.size (every one of the 40 classes occurs there, since
    # mIoU averages over all classes), garbage (with valid-looking targets) outside
    cfg = make_cfg("NYUD", {"semseg": 40, "depth": 1})
    target = torch.randint(0, 40, (1, 8, 16))
    target[0, :4, :10] = torch.arange(40).view(4, 10)
    logits = torch.nn.functional.one_hot(target, 40).permute(0, 3, 1, 2).float()
    logits[..., 4:, :] = torch.randn(1, 40, 4, 16)
    depth = torch.rand(1, 1, 8, 16) + 1
    outputs = {"semseg": logits, "depth": depth.clone()}
    outputs["depth"][..., :, 10:] += 3
    batch = {"semseg": target, "depth": depth, "meta": {"size": torch.tensor([[4, 10]])}}
    evaluator = build_evaluator(cfg, "infer")
    evaluator.update(outputs, batch)
    metrics = evaluator.compute()
    assert metrics["semseg"]["mIoU"] == pytest.approx(100.0)
    assert metrics["depth"]["rmse"] == pytest.approx(0.0)


def test_prelim_section_scores_the_preliminary_outputs_with_the_same_meters():
    cfg = make_cfg("PASCALContext", PASCAL)
    generator = torch.Generator().manual_seed(1)
    final, batch = random_batch(PASCAL, generator)
    prelim, _ = random_batch(PASCAL, generator)

    both = build_evaluator(cfg, "train")
    both.update(final, batch, prelim_outputs=prelim)
    metrics = both.compute()
    alone = {}
    for key, outputs in (("final", final), ("prelim", prelim)):
        evaluator = build_evaluator(cfg, "train")
        evaluator.update(outputs, batch)
        alone[key] = evaluator.compute()
    assert set(metrics) == set(PASCAL) | {"prelim"}
    assert flat({t: metrics[t] for t in PASCAL}) == pytest.approx(flat(alone["final"]))
    assert flat(metrics["prelim"]) == pytest.approx(flat(alone["prelim"]))  # edge odsF included

    # the prelim meters' state travels with the rest (all_reduce, load_state_tensors)
    copy_target = build_evaluator(cfg, "train")
    copy_target.update(final, batch, prelim_outputs=final)  # marks prelim as scored
    copy_target.load_state_tensors([t.clone() for t in both.state_tensors()])
    assert flat(copy_target.compute()["prelim"]) == pytest.approx(flat(alone["prelim"]))
    both.reset()  # a later evaluation without prelim outputs has no prelim section
    both.update(final, batch)
    assert "prelim" not in both.compute()


def perfect_and_shifted_case():
    """NYUD semseg + depth, one 4x10 image holding each of the 40 classes once.

    final: perfect (mIoU 100, rmse 0). prelim: every pixel one class off (mIoU 0) and depth
    2 m too far (rmse 2). References mIoU 50, rmse 1: Delta_m final = (+100 + 100) / 2 = 100,
    prelim = (-100 - 100) / 2 = -100.
    """
    cfg = make_cfg("NYUD", {"semseg": 40, "depth": 1},
                   reference_metrics={"semseg": {"mIoU": 50.0}, "depth": {"rmse": 1.0}})
    target = torch.arange(40).view(1, 4, 10)
    depth = torch.rand(1, 1, 4, 10) + 1
    final = {"semseg": torch.nn.functional.one_hot(target, 40).permute(0, 3, 1, 2).float(), "depth": depth.clone()}
    prelim = {"semseg": final["semseg"].roll(1, dims=1), "depth": depth + 2}
    batch = {"semseg": target, "depth": depth, "meta": {"size": torch.tensor([[4, 10]])}}
    evaluator = build_evaluator(cfg, "infer")
    evaluator.update(final, batch, prelim_outputs=prelim)
    return evaluator.compute()


def test_refinement_gain_is_positive_when_better_for_either_direction():
    metrics = perfect_and_shifted_case()
    assert metrics["prelim"]["semseg"]["mIoU"] == pytest.approx(0.0)
    assert metrics["prelim"]["depth"]["rmse"] == pytest.approx(2.0)
    assert metrics["delta_m"] == pytest.approx(100.0) and metrics["prelim"]["delta_m"] == pytest.approx(-100.0)
    gain = refinement_gain(metrics)
    assert gain["semseg"]["mIoU"] == pytest.approx(100.0)
    assert gain["depth"]["rmse"] == pytest.approx(2.0)  # lower is better: prelim - final
    assert gain["delta_m"] == pytest.approx(200.0)
    # swapped roles: the refinement made everything worse
    swapped = {"semseg": metrics["prelim"]["semseg"], "depth": metrics["prelim"]["depth"],
               "prelim": {"semseg": metrics["semseg"], "depth": metrics["depth"]}}
    swapped_gain = refinement_gain(swapped)
    assert swapped_gain["semseg"] == {"mIoU": pytest.approx(-100.0)}
    assert swapped_gain["depth"]["rmse"] == pytest.approx(-2.0) and swapped_gain["depth"]["absErr"] == pytest.approx(-2.0)
    assert swapped_gain["depth"]["relErr"] < 0  # depends on the case's random depths; worse either way
    assert refinement_gain({"semseg": {"mIoU": 1.0}}) == {}


def test_format_table_shows_final_prelim_and_the_gain_in_words():
    lines = format_table(perfect_and_shifted_case()).splitlines()
    assert lines[0].split() == ["task", "metric", "final", "prelim", "refinement"]
    assert lines[2].split() == ["semseg", "mIoU", "100.0000", "0.0000", "+100.0000", "better"]
    assert lines[3].split() == ["depth", "rmse", "0.0000", "2.0000", "+2.0000", "better"]
    assert lines[4].split() == ["depth", "absErr", "0.0000", "2.0000", "+2.0000", "better"]
    assert lines[5].split()[:2] == ["depth", "relErr"] and lines[5].split()[-1] == "better"
    assert lines[6].split() == ["delta_m", "%", "+100.0000", "-100.0000", "+200.0000", "better"]
    plain = format_table({"depth": {"rmse": 2.0}}).splitlines()
    assert [line.split() for line in plain] == [["task", "metric", "value"], ["-" * 21], ["depth", "rmse", "2.0000"]]


def test_best_score_reads_the_final_metrics_only():
    metrics = perfect_and_shifted_case()
    assert best_score(metrics, "depth.rmse") == pytest.approx(0.0)
    assert best_score(metrics, "delta_m") == pytest.approx(100.0)
    with pytest.raises(ConfigError) as err:
        best_score(metrics, "prelim.delta_m")
    assert "prelim" not in str(err.value).split("available:")[1]
