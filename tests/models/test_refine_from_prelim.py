"""model_kwargs.refine_from_prelim: the chosen tasks' refined map is p_t + a zero-initialised correction.

"none" (the default, and every paper config) is the release's refinement stage; "normals" /
"all" make feature diffusion's refined map of those tasks the detached preliminary map plus
the head's output, the head starting at zero (models/mtdnet.py).
"""
import pytest
import torch

from losses.task_losses import normals_l1
from models import build_model
from utils.errors import ConfigError

TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]
OFFICIAL = "configs/pascal/resnet18_feature_official.yml"
ABLATIONS = {"feature": (), "no_diffusion": ("model_kwargs.diffusion=false",),
             "no_conditioning": ("model_kwargs.conditioning=none",)}


def seeded(cfg):
    torch.manual_seed(0)
    return build_model(cfg)


def images(n=2):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("config", [OFFICIAL, "configs/demo.yml"])
def test_off_by_default_and_in_the_paper_configs(config, tiny_cfg):
    assert tiny_cfg(config=config).model_kwargs.refine_from_prelim == "none"


@pytest.mark.parametrize("variant", list(ABLATIONS))
def test_normals_start_at_the_preliminary_normals_and_nothing_else_changes(variant, tiny_cfg):
    off = seeded(tiny_cfg(*ABLATIONS[variant])).eval()
    on = seeded(tiny_cfg(*ABLATIONS[variant], "model_kwargs.refine_from_prelim=normals")).eval()
    # the same parameters (the switch adds none), all equal but the zeroed normals head
    assert list(on.state_dict()) == list(off.state_dict())
    changed = [k for k, v in on.state_dict().items() if not torch.equal(v, off.state_dict()[k])]
    assert changed == ["denoiser.heads.normals.weight", "denoiser.heads.normals.bias"]
    with torch.no_grad():
        got, expected = on(images()), off(images())
    assert torch.equal(got["final"]["normals"], got["prelim"]["normals"])
    assert not torch.equal(expected["final"]["normals"], expected["prelim"]["normals"])
    for task in TASKS:
        assert torch.equal(got["prelim"][task], expected["prelim"][task])
        if task != "normals":
            assert torch.equal(got["final"][task], expected["final"][task]), task


def test_all_starts_every_task_at_its_preliminary_map_in_training_pairs(tiny_cfg):
    model = seeded(tiny_cfg("model_kwargs.refine_from_prelim=all")).train()
    task_mask = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 0, 1], [0, 0, 0, 0, 1]], dtype=torch.bool)
    out = model(images(3), task_mask)
    assert {t: v.tolist() for t, v in out["pairs"].items()} == {
        "semseg": [0], "human_parts": [1], "sal": [0, 1], "edge": [1, 2]}
    for task in out["pairs"]:
        assert torch.equal(out["final"][task], out["prelim"][task]), task


def test_the_correction_learns_and_the_preliminary_head_gets_only_its_own_loss(tiny_cfg):
    model = seeded(tiny_cfg("model_kwargs.refine_from_prelim=normals")).train()
    task_mask = torch.zeros(2, 5, dtype=torch.bool)
    task_mask[:, TASKS.index("normals")] = True
    target = torch.nn.functional.normalize(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)),
                                           dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    head = model.refinement.denoiser.heads["normals"]
    decoder = list(model.prelim_decoders["normals"].parameters())
    for step in range(2):
        optimizer.zero_grad(set_to_none=True)
        out = model(images(), task_mask)
        normals_l1(out["final"]["normals"], target, 255).mean().backward()
        assert head.weight.grad.abs().sum() > 0 and head.bias.grad.abs().sum() > 0
        # p_t enters detached: the final loss reaches the preliminary normals head through nothing
        assert model.prelim_heads["normals"].weight.grad is None
        # the chain starts from f_t: once the zero head has moved, the final loss reaches the decoder
        reaches_decoder = any(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder)
        assert reaches_decoder is (step == 1)
        optimizer.step()
    with torch.no_grad():
        out = model.eval()(images())
    assert not torch.equal(out["final"]["normals"], out["prelim"]["normals"])


def test_baseline_ignores_it(tiny_cfg):
    off = seeded(tiny_cfg("model_kwargs.variant=baseline")).eval()
    on = seeded(tiny_cfg("model_kwargs.variant=baseline", "model_kwargs.refine_from_prelim=normals")).eval()
    assert on.refinement is None
    state_off, state_on = off.state_dict(), on.state_dict()
    assert list(state_on) == list(state_off) and all(torch.equal(state_on[k], state_off[k]) for k in state_off)


@pytest.mark.parametrize("opts, message", [
    (("model_kwargs.variant=prediction", "model_kwargs.refine_from_prelim=normals"),
     "prediction diffusion (model_kwargs.variant) already refines the preliminary prediction itself"),
    (("task_dictionary.include_normals=false", "model_kwargs.refine_from_prelim=normals"),
     "normals is not among the tasks"),
    (("model_kwargs.refine_from_prelim=depth",), "must be one of ['none', 'normals', 'all']"),
])
def test_bad_settings_are_config_errors(opts, message, tiny_cfg):
    with pytest.raises(ConfigError, match="refine_from_prelim") as err:
        tiny_cfg(*opts)
    assert message in str(err.value)
