"""engine/step.py: the step main.py runs, skipping non-finite updates without a host sync."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from losses import build_loss
from models import build_model
from engine.predict import Runtime
from engine.step import TrainingDiverged, TrainStep, build_optimizer, compile_model, is_fused

CONFIG = "configs/pascal/resnet18_feature_official.yml"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHANNELS = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}


@pytest.fixture
def setup(tiny_cfg):
    """setup(*opts, fused, seed) -> (cfg, model, optimizer, step) of the tiny ResNet-18 model."""
    def build(*opts, fused=True, seed=0):
        cfg = tiny_cfg("optimizer_kwargs.lr=1e-3", *opts, config=CONFIG)
        torch.manual_seed(seed)
        model = build_model(cfg).train()
        optimizer = build_optimizer(cfg, model, fused=fused)
        step = TrainStep.of(cfg, model, build_loss(cfg), optimizer, torch.device("cpu"))
        return cfg, model, optimizer, step
    return build


def make_batch(seed=0, size=64, task_mask=None):
    """Three samples; at 64 px ResNet-18's last stage is 2x2, so its BatchNorm statistics are
    not degenerate (at 32 px: 1x1 over 3 samples, where rounding noise dominates gradients).
    `task_mask` (3, 5): which (sample, task) pairs are labelled (default: each task by one sample)."""
    generator = torch.Generator().manual_seed(seed)
    if task_mask is None:
        task_mask = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 1, 1, 0], [0, 1, 0, 0, 1]], dtype=torch.bool)
    batch = {"image": torch.randn(3, 3, size, size, generator=generator), "task_mask": task_mask,
             "semseg": torch.randint(0, 21, (3, size, size), generator=generator),
             "human_parts": torch.randint(0, 7, (3, size, size), generator=generator),
             "sal": torch.randint(0, 2, (3, size, size), generator=generator),
             "normals": torch.nn.functional.normalize(torch.randn(3, 3, size, size, generator=generator), dim=1),
             "edge": (torch.rand(3, 1, size, size, generator=generator) > 0.8).float()}
    for index, task in enumerate(CHANNELS):
        batch[task][~task_mask[:, index]] = 255
    return batch


def snapshot(model, optimizer):
    """Parameters (not BatchNorm statistics: the forward pass updates those) and optimizer state."""
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    return weights, copy.deepcopy(optimizer.state_dict()["state"])


def assert_same(first, second):
    (weights, moments), (weights2, moments2) = first, second
    assert all(torch.equal(weights[k], weights2[k]) for k in weights)
    assert moments.keys() == moments2.keys()
    for index, state in moments.items():  # {param index: {"step" / "exp_avg" / ...: tensor}}
        assert all(torch.equal(value, moments2[index][name]) for name, value in state.items())


@pytest.mark.parametrize("keep_zero_grads", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_non_finite_step_is_skipped_and_reported(fused, keep_zero_grads, setup):
    cfg, model, optimizer, step = setup(f"keep_zero_grads={keep_zero_grads}", fused=fused)
    assert is_fused(optimizer) == fused
    batch = make_batch()
    loss, per_task, grad_norm = step(batch, batch["task_mask"], 1)
    assert torch.isfinite(loss) and loss > 0 and set(per_task) == set(CHANNELS)
    assert step.diverged() is None
    before = snapshot(model, optimizer)

    poisoned = dict(batch, image=batch["image"].clone())
    poisoned["image"][0, 0, 0, 0] = float("nan")
    loss, _, _ = step(poisoned, batch["task_mask"], 2)
    assert not torch.isfinite(loss)
    assert_same(before, snapshot(model, optimizer))  # weights, moments and step counts untouched
    assert step.diverged() == 2
    with pytest.raises(TrainingDiverged, match="iteration 2.*last good checkpoint is work/last.pth"):
        step.raise_if_diverged("work/last.pth")

    step(batch, batch["task_mask"], 3)  # later finite steps train again; the first bad one is kept
    assert not torch.equal(before[0]["prelim_heads.semseg.weight"], model.state_dict()["prelim_heads.semseg.weight"])
    assert step.diverged() == 2


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fused_and_foreach_optimizers_train_alike(optimizer, setup):
    # Adam's first updates are +-lr wherever a gradient is tiny, whatever its size, so its
    # comparison runs one step (rounding may flip such signs: compare most elements)
    steps = 3 if optimizer == "sgd" else 1
    weights = []
    for fused in (True, False):
        _, model, _, step = setup(f"optimizer={optimizer}", fused=fused)
        for iteration in range(steps):
            batch = make_batch(seed=iteration)
            step(batch, batch["task_mask"], iteration + 1)
        weights.append({name: p.detach() for name, p in model.named_parameters()})
    for key, value in weights[0].items():
        close = torch.isclose(value, weights[1][key], atol=1e-6, rtol=1e-4)
        assert close.float().mean() > (0.9999 if optimizer == "sgd" else 0.99), key


def test_gradient_clipping_and_loss_match_a_plain_step(setup):
    cfg, model, optimizer, step = setup(fused=False, seed=1)
    reference = copy.deepcopy(model)
    criterion = build_loss(cfg)
    batch = make_batch()
    torch.manual_seed(5)  # the same diffusion noise for both
    loss, _, grad_norm = step(batch, batch["task_mask"], 1)
    torch.manual_seed(5)
    expected, _ = criterion(reference(batch["image"], batch["task_mask"]), batch)
    expected.backward()
    norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), cfg.grad_clip_param.max_norm)
    # the step runs channels_last (the default), the reference NCHW: rounding differs
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_norm, norm, rtol=1e-3, atol=1e-4)


def test_channels_last_follows_the_config(setup):
    for value, expected in (("true", torch.channels_last), ("false", torch.contiguous_format)):
        cfg, model, _, step = setup(f"channels_last={value}")
        assert step.runtime.memory_format == expected
        assert Runtime.of(cfg, "cpu").memory_format == expected
    assert setup()[0].channels_last is True  # the default


def test_channels_last_step_matches_contiguous(setup):
    losses = []
    for value in ("false", "true"):
        _, _, _, step = setup(f"channels_last={value}", "optimizer=sgd", fused=False)
        batch = make_batch()
        torch.manual_seed(5)
        losses.append(step(batch, batch["task_mask"], 1)[0])
        losses.append(step(batch, batch["task_mask"], 2)[0])
    torch.testing.assert_close(losses[:2], losses[2:], atol=1e-4, rtol=1e-4)


def compiled_and_eager_losses():
    """Two SGD steps of the tiny model, eager then compiled. -> (eager losses, compiled losses)"""
    from tests.conftest import REPO, TINY_OPTS
    from utils.config import load_config
    losses, keys = [], []
    for compiled in (False, True):
        cfg = load_config(str(REPO / CONFIG), opts=["db_root=.", *TINY_OPTS, "optimizer=sgd"])
        torch.manual_seed(0)
        model = build_model(cfg).train()
        keys.append(list(model.state_dict()))
        if compiled:
            compile_model(model)
            assert list(model.state_dict()) == keys[0]  # keys unchanged by compile
        step = TrainStep.of(cfg, model, build_loss(cfg), build_optimizer(cfg, model, fused=False), torch.device("cpu"))
        torch.manual_seed(5)
        for iteration in range(2):
            batch = make_batch(seed=iteration)
            losses.append(step(batch, batch["task_mask"], iteration + 1)[0].item())
    return losses[:2], losses[2:]


@pytest.mark.slow
def test_compiled_model_gives_the_eager_loss():
    # In a subprocess: torch.compile leaves process-wide state (Inductor's compile worker
    # threads and environment variables) that later tests must not inherit.
    script = ("import json; from tests.engine.test_step import compiled_and_eager_losses; "
              "print(json.dumps(compiled_and_eager_losses()))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    eager, compiled = json.loads(proc.stdout.strip().splitlines()[-1])
    # compiled kernels fuse and reorder float32 arithmetic: agreement to rounding, not bits
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("keep_zero_grads", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_sgd_momentum_with_layers_that_start_late(fused, keep_zero_grads, setup):
    # step 1 labels only semseg; step 2 labels sal: its layers get their first gradient then
    # (and semseg's, with zero gradients kept, a step from momentum and weight decay).
    # The step runs NCHW like the reference, so both use the same convolution kernels
    # whatever the thread count (channels_last would pick other oneDNN kernels, whose
    # rounding differs by an amount that depends on the threads).
    cfg, model, optimizer, step = setup("optimizer=sgd", "optimizer_kwargs.lr=1e-2", "channels_last=false",
                                        f"keep_zero_grads={keep_zero_grads}", fused=fused)
    reference_model = copy.deepcopy(model)
    reference = torch.optim.SGD(reference_model.parameters(), lr=1e-2, momentum=0.9, weight_decay=1e-6)
    criterion = build_loss(cfg)
    for iteration, column in enumerate((0, 2)):
        batch = make_batch(seed=iteration)
        task_mask = torch.zeros(3, 5, dtype=torch.bool)
        task_mask[:, column] = True
        batch["task_mask"] = task_mask
        torch.manual_seed(iteration)
        step(batch, task_mask, iteration + 1)
        torch.manual_seed(iteration)
        loss, _ = criterion(reference_model(batch["image"], task_mask), batch)
        reference.zero_grad(set_to_none=not keep_zero_grads)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference_model.parameters(), cfg.grad_clip_param.max_norm)
        reference.step()
    assert step.diverged() is None
    # Same kernels, same order of operations: the same numbers, to the bit.
    for (name, param), expected in zip(model.named_parameters(), reference_model.parameters()):
        assert torch.equal(param, expected), name


def test_compile_model_handles_the_baseline_without_a_refinement_stage(setup):
    _, model, _, step = setup("model_kwargs.variant=baseline")
    assert model.refinement is None
    compile_model(model)  # compiles lazily: nothing runs until the first forward
    assert model.backbone._compiled_call_impl is not None


def adam_update(param, state, lr, weight_decay, decoupled, betas=(0.9, 0.999), eps=1e-8):
    """Adam's (AdamW's, `decoupled`) step on a zero gradient, from the optimizer state before it:
    (param, exp_avg, exp_avg_sq) after it, computed in float64."""
    param, m, v = (x.double() for x in (param, state["exp_avg"], state["exp_avg_sq"]))
    step = int(state["step"]) + 1
    if decoupled:
        param, grad = param * (1 - lr * weight_decay), torch.zeros_like(param)  # AdamW: decay the weights
    else:
        grad = weight_decay * param  # Adam: L2 decay enters the gradient, so the moments
    m = betas[0] * m + (1 - betas[0]) * grad
    v = betas[1] * v + (1 - betas[1]) * grad ** 2
    bias1, bias2 = 1 - betas[0] ** step, 1 - betas[1] ** step
    return param - lr / bias1 * m / (v.sqrt() / bias2 ** 0.5 + eps), m, v


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_unlabelled_tasks_move_by_adams_formula_only_with_zero_grads_kept(optimizer, fused, setup):
    # Step 1 labels every task but edge; step 2 is a one-label batch (semseg, human_parts,
    # semseg): sal and normals then have no labelled sample, edge never had one.
    first = torch.tensor([[1, 1, 1, 1, 0]] * 3, dtype=torch.bool)
    one_label = torch.tensor([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    lr, weight_decay = 1e-3, 0.1  # a decay large enough to tell Adam's from AdamW's in float32
    for keep in (True, False):
        cfg, model, adam, step = setup(f"optimizer={optimizer}", f"optimizer_kwargs.weight_decay={weight_decay}",
                                       f"keep_zero_grads={keep}", fused=fused)
        for iteration, task_mask in enumerate((first, one_label)):
            if iteration == 1:
                before = {name: (p.detach().clone(), copy.deepcopy(adam.state[p]))
                          for name, p in model.named_parameters()}
            batch = make_batch(seed=iteration, task_mask=task_mask)
            step(batch, task_mask, iteration + 1)
        assert step.diverged() is None
        unlabelled = {name: p for name, p in model.named_parameters() if {"sal", "normals"} & set(name.split("."))}
        never = {name: p for name, p in model.named_parameters() if "edge" in name.split(".")}
        assert "prelim_heads.sal.weight" in unlabelled and "prelim_heads.edge.weight" in never
        for name, param in never.items():  # no gradient yet: untouched, as torch 1.10 left it
            assert param.grad is None and not adam.state[param] and torch.equal(param, before[name][0]), name
        for name, param in unlabelled.items():
            old, state = before[name]
            if not keep:  # gradients set to None: no step at all
                assert param.grad is None and torch.equal(param, old), name
                assert int(adam.state[param]["step"]) == 1 == int(state["step"]), name
                continue
            assert param.grad is not None and not param.grad.any(), name  # a kept zero gradient
            expected, m, v = adam_update(old, state, lr, weight_decay, decoupled=optimizer == "adamw")
            assert int(adam.state[param]["step"]) == 2, name
            for key, moment in (("exp_avg", m), ("exp_avg_sq", v)):  # float32 rounding, where terms cancel too
                torch.testing.assert_close(adam.state[param][key].double(), moment, rtol=1e-5,
                                           atol=1e-6 * moment.abs().max().item())
            # float32 weights: to ~2 units in their last place (the update is ~ lr = 1e-3, the decay lr * wd * w)
            torch.testing.assert_close(param.double(), expected, rtol=3e-7, atol=1e-8)
            assert (param - old).abs().max() > 1e-4, name
