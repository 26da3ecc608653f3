"""DiffusionMTL on tiny configs: output contract, partial labels, determinism, ablations."""
import os
import re

import pytest
import torch

from models import build_model

CONFIG = "configs/pascal/resnet18_feature_official.yml"
TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]
CHANNELS = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}


@pytest.fixture
def tiny_model(tiny_cfg):
    """tiny_model(*opts, seed=0): the tiny ResNet-18 DiffusionMTL (conftest's tiny_cfg), seeded weights."""
    def build(*opts, seed=0):
        torch.manual_seed(seed)
        return build_model(tiny_cfg(*opts, config=CONFIG))
    return build


def count_denoiser_calls(model):
    """Record the number of pairs of every denoiser call."""
    calls = []
    model.refinement.denoiser.register_forward_hook(lambda module, args, out: calls.append(args[1].shape[0]))
    return calls


@pytest.mark.parametrize("backbone, variant, size", [
    ("resnet18", "feature", (64, 96)),
    ("resnet18", "prediction", (72, 72)),  # fused 9x9: tokens on a floor(9/2) grid
    ("vit_tiny_patch16_384", "feature", (96, 128)),
    ("vit_tiny_patch16_384", "prediction", (64, 64)),
])
def test_output_shapes(backbone, variant, size, tiny_model):
    model = tiny_model(f"backbone={backbone}", f"model_kwargs.variant={variant}").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    for key in ("final", "prelim"):
        assert list(out[key]) == TASKS
        assert {t: tuple(v.shape) for t, v in out[key].items()} == {t: (2, c, *size) for t, c in CHANNELS.items()}
    assert out["final"]["semseg"].abs().sum() > 0


def test_partial_labels_run_only_labelled_pairs(tiny_model):
    model = tiny_model().train()
    calls = count_denoiser_calls(model)
    task_mask = torch.tensor([[1, 0, 0, 0, 0],   # semseg
                              [1, 0, 1, 0, 0],   # semseg, sal
                              [0, 0, 0, 1, 0]], dtype=torch.bool)  # normals; nobody labels parts or edge
    out = model(torch.randn(3, 3, 64, 64), task_mask)
    assert calls == [4, 4]  # one call per reverse step over the 4 labelled pairs
    # the outputs hold the labelled pairs only, at image resolution, with their sample indices
    assert {t: idx.tolist() for t, idx in out["pairs"].items()} == {"semseg": [0, 1], "sal": [1], "normals": [2]}
    for head in ("final", "prelim"):
        assert {t: tuple(v.shape) for t, v in out[head].items()} == {
            "semseg": (2, 21, 64, 64), "sal": (1, 2, 64, 64), "normals": (1, 3, 64, 64)}

    params = dict(model.named_parameters())
    labelled_loss = sum(v.square().mean() for v in out["final"].values())
    labelled_loss.backward()
    for name, param in params.items():
        idle = any(f".{t}." in name for t in ("human_parts", "edge")) and name.startswith("refinement.denoiser.")
        if idle:
            assert param.grad is None, name
    assert params["refinement.denoiser.in_layers.sal.weight"].grad.abs().sum() > 0
    # the condition reads detached preliminary predictions: no gradient into the heads from it
    assert params["prelim_heads.edge.weight"].grad is None


def test_batch_without_labels_skips_the_refinement(tiny_model):
    model = tiny_model().train()
    calls = count_denoiser_calls(model)
    out = model(torch.randn(2, 3, 32, 32), torch.zeros(2, 5, dtype=torch.bool))
    assert calls == [] and out == {"final": {}, "prelim": {}, "pairs": {}}


def test_pair_batching_matches_full_evaluation(tiny_model):
    model = tiny_model().eval()
    images = torch.randn(3, 3, 64, 64)
    task_mask = torch.tensor([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        full, partial = model(images), model(images, task_mask)
    for index, task in enumerate(TASKS):
        rows = task_mask[:, index]
        assert partial["pairs"][task].tolist() == rows.nonzero().flatten().tolist()
        torch.testing.assert_close(partial["final"][task], full["final"][task][rows], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(partial["prelim"][task], full["prelim"][task][rows])


@pytest.mark.parametrize("eval_noise", ["zero", "seeded"])
def test_evaluation_is_deterministic_and_batch_independent(eval_noise, tiny_model):
    model = tiny_model(f"model_kwargs.eval_noise={eval_noise}").eval()
    first, second = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        alone = model(first)["final"]
        again = model(first)["final"]
        in_batch = model(torch.cat([second, first]))["final"]
    for task in TASKS:
        assert torch.equal(alone[task], again[task])
        torch.testing.assert_close(in_batch[task][1:], alone[task], atol=1e-5, rtol=1e-4)


def test_seeded_noise_is_used_and_training_noise_is_random(tiny_model):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        zero = tiny_model("model_kwargs.eval_noise=zero").eval()(images)["final"]["sal"]
        seeded = tiny_model("model_kwargs.eval_noise=seeded").eval()(images)["final"]["sal"]
        model = tiny_model().train()
        one, two = model(images)["final"]["sal"], model(images)["final"]["sal"]
    assert not torch.allclose(zero, seeded)
    assert not torch.allclose(one, two)


def test_conditioning_none_ignores_other_tasks(tiny_model):
    images = torch.randn(2, 3, 64, 64)
    for conditioning, coupled in (("multitask", True), ("none", False)):
        model = tiny_model(f"model_kwargs.conditioning={conditioning}").eval()
        assert (model.refinement.condition_conv is None) == (not coupled)
        assert any(k.startswith("condition_conv.") for k in model.state_dict()) == coupled
        with torch.no_grad():
            before = model(images)["final"]["semseg"]
            model.prelim_heads["sal"].weight.add_(1.0)  # change another task's preliminary prediction
            after = model(images)["final"]["semseg"]
        assert torch.allclose(before, after) != coupled


def test_diffusion_off_is_a_noiseless_refiner(tiny_model):
    model = tiny_model("model_kwargs.diffusion=false").train()
    assert model.refinement.diffusion is None and not any(k.startswith("diffusion.") for k in model.state_dict())
    calls = count_denoiser_calls(model)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        first, second = model(images)["final"], model(images)["final"]
    assert calls == [10, 10, 10, 10]
    for task in TASKS:
        assert torch.equal(first[task], second[task])  # no noise even in training


@pytest.mark.parametrize("steps", [1, 3])
def test_number_of_steps(steps, tiny_model):
    model = tiny_model(f"num_timesteps={steps}").eval()
    calls = count_denoiser_calls(model)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert calls == [5] * steps
    assert model.refinement.diffusion.num_timesteps == steps


def test_baseline_has_no_refinement_stage(tiny_model):
    model = tiny_model("model_kwargs.variant=baseline").train()
    assert model.refinement is None
    assert not any(k.startswith(("denoiser.", "condition_conv.", "diffusion.")) for k in model.state_dict())
    images = torch.randn(2, 3, 64, 64)
    out = model(images, torch.ones(2, 5, dtype=torch.bool))
    assert out["final"] is out["prelim"]  # one prediction: the loss counts it once (losses/multitask.py)
    sum(v.square().mean() for v in out["final"].values()).backward()
    no_grad = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    with torch.no_grad():
        evaluated = model.eval()(images)
    assert {t: tuple(v.shape) for t, v in evaluated["final"].items()} == {
        t: (2, c, 64, 64) for t, c in CHANNELS.items()}
    assert all(evaluated["final"][t] is evaluated["prelim"][t] for t in TASKS)


def test_the_refinement_stage_keeps_the_releases_state_dict_names(tiny_model):
    """MTDNet is one submodule (`model.refinement`), but the state dict keeps the flat names
    of the release ("denoiser.*", "condition_conv.*", "diffusion.*"), so every checkpoint
    and the converted official one load unchanged; loading puts them back in the module."""
    model = tiny_model()
    keys = list(model.state_dict())
    assert not any(k.startswith("refinement.") for k in keys)
    nested = [n for n, _ in model.refinement.named_parameters()]
    assert [k for k in keys if k.startswith(("condition_conv.", "denoiser."))] == [
        k for k in nested if not k.startswith("diffusion.")] and "diffusion.betas" in keys
    # parameters are listed in the same order as before (the optimizer's state follows it)
    assert [n for n, _ in model.named_parameters()][-len(nested):] == [f"refinement.{n}" for n in nested]
    other = tiny_model(seed=1)
    other.load_state_dict(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    wrapped = torch.nn.Sequential(model).state_dict()  # any prefix (DDP's "module.")
    assert "0.denoiser.heads.semseg.weight" in wrapped and not any(".refinement." in k for k in wrapped)
    with pytest.raises(RuntimeError, match="Unexpected key.*denoiser"):
        tiny_model("model_kwargs.variant=baseline").load_state_dict(model.state_dict())


def test_nothing_outside_models_reads_the_variant():
    """The refinement stage is the model's business: the loss, the engine and the entry
    points see outputs, not variant names or the stage's parts. (Configs name the variant,
    and utils/config.py rejects switches a variant has no use for; benchmarks/normals_probe.py
    and benchmarks/profile.py hook into the stage's denoiser on purpose.)"""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = ["main.py", "inference.py"]
    for folder in ("engine", "losses", "evaluation", "data", "utils", "benchmarks"):
        paths += [os.path.relpath(os.path.join(d, n), root) for d, _, files in os.walk(os.path.join(root, folder))
                  for n in files if n.endswith(".py")]
    variant_test = re.compile(r"(model_kwargs|model|module)\.variant\s*(==|!=|\bin\b)")
    internals = re.compile(r"\.(denoiser|condition_conv|diffuse)\b")
    offenders = []
    for path in paths:
        with open(os.path.join(root, path), encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if ((variant_test.search(line) and path != "utils/config.py")
                        or (internals.search(line) and path not in ("benchmarks/normals_probe.py",
                                                                    "benchmarks/profile.py"))):
                    offenders.append(f"{path}:{number}: {line.strip()}")
    assert offenders == []
