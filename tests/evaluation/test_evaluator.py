"""MultiTaskEvaluator: cropping, streaming / rank-sum equivalence, delta_m, helpers."""
import copy

import pytest
import torch
from easydict import EasyDict

from evaluation import best_score, build_evaluator, format_table
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
