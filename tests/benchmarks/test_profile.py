"""benchmarks.profile: its clock charges self time, its marks leave the training step's
numbers unchanged, and on a tiny config it reports every phase with shares that add up."""
import copy
import json
import time
from pathlib import Path

import pytest
import torch

from benchmarks.profile import (BACKBONE, BACKWARD, CLIP, DATA, DENOISER_BLOCKS, FINAL_RESIZE, FUSE, LOAD, LOSS,
                                MODEL, OPTIMIZER, PRELIM_DECODERS, Clock, instrumented_step, main)
from benchmarks.throughput import synthetic_batch
from engine.step import TrainStep, build_optimizer
from losses import build_loss
from models import build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_clock_charges_each_moment_to_the_innermost_phase(monkeypatch):
    now = iter(range(100))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(now)))
    monkeypatch.setattr(time, "thread_time", lambda: 0.0)
    clock = Clock()
    clock.push("outer")  # t=0
    clock.push("inner")  # t=1: outer 1
    clock.pop(then="after")  # t=2: inner 1, outer goes on as "after"
    clock.pop()  # t=3: after 1
    clock.push("again")  # t=4: no phase open, nothing charged
    clock.pop()  # t=5
    wall, cpu = clock.take()
    assert wall == {"outer": 1.0, "inner": 1.0, "after": 1.0, "again": 1.0}
    assert cpu == {"outer": 0.0, "inner": 0.0, "after": 0.0, "again": 0.0}
    assert clock.take() == ({}, {})


def test_marks_change_nothing_in_the_step(tiny_cfg):
    """The instrumented TrainStep gives the same loss, gradient norm and weights as the plain one."""
    cfg = tiny_cfg()
    clip = torch.nn.utils.clip_grad_norm_
    torch.manual_seed(0)
    plain_model = build_model(cfg).train()
    timed_model = copy.deepcopy(plain_model)
    batch = synthetic_batch(cfg, 4, 64, torch.device("cpu"))
    results = []
    for model, instrument in ((plain_model, False), (timed_model, True)):
        step = TrainStep.of(cfg, model, build_loss(cfg), build_optimizer(cfg, model), "cpu")
        clock = Clock()
        torch.manual_seed(1)  # the diffusion noise
        if instrument:
            with instrumented_step(step, clock):
                clock.push("step")
                results.append(step(batch, batch["task_mask"], 1))
                clock.pop()
        else:
            results.append(step(batch, batch["task_mask"], 1))
    (loss, _, grad_norm), (timed_loss, _, timed_grad_norm) = results
    assert torch.equal(loss, timed_loss) and torch.equal(grad_norm, timed_grad_norm)
    for (name, weight), timed_weight in zip(plain_model.named_parameters(), timed_model.parameters()):
        assert torch.equal(weight, timed_weight), name
    wall, _ = clock.take()
    assert {BACKBONE, FUSE, PRELIM_DECODERS, DENOISER_BLOCKS, FINAL_RESIZE, LOSS, BACKWARD, CLIP,
            OPTIMIZER} <= set(wall)
    # the marks are gone afterwards
    assert not timed_model._forward_hooks and not timed_model.backbone._forward_pre_hooks
    assert "condition_tokens" not in vars(timed_model.refinement)
    assert torch.nn.utils.clip_grad_norm_ is clip


@pytest.mark.slow
def test_report_splits_the_iteration_and_the_evaluation(capsys, tiny_opts):
    assert main(["--config_exp", str(CONFIGS / "demo.yml"), "--iters", "2", "--warmup", "1", "--profile_iters", "1",
                 "--val_images", "3", "--opts", *tiny_opts]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["threads"] == 1 and report["batch"] == 2 and report["size"] == [64, 64]

    train = report["train"]
    phases = train["phases"]
    assert {DATA, BACKBONE, FUSE, PRELIM_DECODERS, DENOISER_BLOCKS, FINAL_RESIZE, LOSS, BACKWARD, CLIP,
            OPTIMIZER} <= set(phases)
    for key in ("share", "cpu_share"):
        assert all(0 <= row[key] <= 1 for row in phases.values())
        assert sum(row[key] for row in phases.values()) == pytest.approx(1, abs=0.01)
    assert phases[BACKBONE]["median_ms"] > 0 and train["iteration_ms_median"] > 0
    assert len(train["top_ops"]) == 15 and all(op["self_cpu_ms_per_iter"] >= 0 for op in train["top_ops"])

    evaluation = report["eval"]
    assert evaluation["images"] == 3 and evaluation["batches"] == 2 and len(evaluation["passes"]) == 2
    for run in evaluation["passes"]:
        assert {LOAD, MODEL} <= set(run["phases"])
        assert all(0 <= row["share"] <= 1 for row in run["phases"].values())
        assert sum(row["share"] for row in run["phases"].values()) == pytest.approx(1, abs=0.01)
        assert set(run["tasks"]) == {"semseg", "human_parts", "sal", "normals", "edge"}
        for task, row in run["tasks"].items():
            assert row["update_final_meter_ms"] > 0 and row["update_prelim_meter_ms"] > 0, task
            assert row["compute_ms"] > 0, task
    assert "top 15 operators" in out and "evaluation (3 images" in out


def test_cuda_without_a_gpu_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["--config_exp", str(CONFIGS / "demo.yml"), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
