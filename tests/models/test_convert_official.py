"""The official config rebuilds the public model; its checkpoint converts key for key."""
import json
from pathlib import Path

import pytest
import torch

from models import build_model
from models.convert_official import DEFAULT_CONFIG, convert_state_dict, main, official_to_ours, target_shapes
from utils.config import load_config
from utils.errors import CheckpointError

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
SHAPES_FILE = REFERENCE / "official_pascal_resnet18_state_dict_shapes.json"
needs_reference = pytest.mark.skipif(not SHAPES_FILE.is_file(), reason="shared/reference is absent")


def official_model_on_meta():
    with torch.device("meta"):
        return build_model(load_config(str(DEFAULT_CONFIG), opts=["db_root=.", "backbone_kwargs.pretrained=null"]))


def test_official_parameter_count():
    state = official_model_on_meta().state_dict()
    assert len(state) == 410
    assert sum(v.numel() for v in state.values()) == 132_943_428


def fake_official_state():
    """The public checkpoint's keys and shapes, each tensor filled with its own value.

    A constant expanded to the shape keeps the files tiny while still telling every
    tensor apart, so a key copied to the wrong place is caught.
    """
    shapes = json.loads(SHAPES_FILE.read_text())
    state = {}
    for index, (key, shape) in enumerate(shapes.items()):
        dtype = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
        state[key] = torch.tensor(index + 1, dtype=dtype).expand(shape)
    return state


@needs_reference
@pytest.mark.parametrize("nesting", ["model", "state_dict", None])
def test_convert_cli_copies_every_tensor(tmp_path, nesting):
    official = fake_official_state()
    src, dst = tmp_path / "official.pth", tmp_path / "ours.pth"
    torch.save({nesting: official, "epoch": 99} if nesting else official, src)
    assert main(["--checkpoint", str(src), "--dst", str(dst)]) == 0

    converted = torch.load(dst, weights_only=True)["model"]
    model = official_model_on_meta()
    model.load_state_dict(converted, strict=True, assign=True)  # every key present, every shape right
    ours = model.state_dict()
    for key, value in official.items():
        assert torch.equal(ours[official_to_ours(key.removeprefix("module."))], value), key
    values = sorted(int(v.reshape(-1)[0]) for v in ours.values())
    assert values == list(range(1, len(official) + 1))  # each official tensor landed exactly once
    assert torch.equal(ours["denoiser.heads.semseg.weight"],
                       official["module.diffusion_model.denoiser.final_task_heads.semseg.linear_pred.weight"])
    assert torch.equal(ours["condition_conv.bias"], official["module.diffusion_model.pred_combinator.out_layer.bias"])
    assert torch.equal(ours["diffusion.posterior_mean_coef2"],
                       official["module.diffusion_model.posterior_mean_coef2"])


@needs_reference
def test_convert_rejects_mismatches(tmp_path, capsys):
    official = {k.removeprefix("module."): v for k, v in fake_official_state().items()}
    shapes = target_shapes(DEFAULT_CONFIG)

    wrong = dict(official)
    wrong["backbone_embed.weight"] = torch.zeros(512, 961, 3, 3)
    with pytest.raises(CheckpointError, match=r"1 official keys with a wrong shape: backbone_embed.weight"):
        convert_state_dict(wrong, shapes)

    extra = dict(official, **{"diffusion_model.denoiser.pos_embed": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"without a counterpart: diffusion_model.denoiser.pos_embed"):
        convert_state_dict(extra, shapes)

    missing = {k: v for k, v in official.items() if not k.startswith("preliminary_head.edge")}
    with pytest.raises(CheckpointError, match=r"2 model keys not in the checkpoint: prelim_heads.edge"):
        convert_state_dict(missing, shapes)

    src = tmp_path / "extra.pth"
    torch.save(extra, src)
    assert main(["--checkpoint", str(src), "--dst", str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "diffusion_model.denoiser.pos_embed" in err
    assert not (tmp_path / "out.pth").exists()
    assert main(["--checkpoint", str(tmp_path / "absent.pth"), "--dst", str(tmp_path / "out.pth")]) == 2
    assert "absent.pth" in capsys.readouterr().err
