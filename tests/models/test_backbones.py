"""Backbones: maps, channels and strides; weights only from local files."""
import pytest
import torch

from models.backbones import build_backbone
from utils.errors import CheckpointError, ConfigError


def test_resnet18_stages():
    backbone = build_backbone("resnet18").eval()
    assert backbone.out_channels == [64, 128, 256, 512] and backbone.strides == [4, 8, 16, 32]
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]
    assert not any(k.startswith("fc.") for k in backbone.state_dict())


def test_resnet_pretrained_from_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # a torchvision file, classifier included
    backbone = build_backbone("resnet18", pretrained=str(path))
    torch.testing.assert_close(backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="resnet18"):
        build_backbone("resnet18", pretrained=str(path))


def test_vit_taps_non_square():
    backbone = build_backbone("vit_tiny_patch16_384", num_taps=4).eval()
    assert backbone.taps == [2, 5, 8, 11]
    assert backbone.out_channels == [192] * 4 and backbone.strides == [16] * 4
    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        maps = backbone(images)
        # the last tap is the classifier's normalised patch tokens
        tokens = backbone.vit.forward_features(images)[:, backbone.vit.num_prefix_tokens:]
    assert [tuple(m.shape) for m in maps] == [(2, 192, 6, 8)] * 4
    torch.testing.assert_close(maps[-1], tokens.transpose(1, 2).reshape(2, 192, 6, 8))


def test_vit_pretrained_from_file(tmp_path):
    reference = build_backbone("vit_tiny_patch16_384", num_taps=2)
    path = tmp_path / "vit_tiny.pth"
    torch.save(reference.vit.state_dict(), path)
    loaded = build_backbone("vit_tiny_patch16_384", num_taps=2, pretrained=str(path))
    torch.testing.assert_close(loaded.vit.blocks[3].mlp.fc1.weight, reference.vit.blocks[3].mlp.fc1.weight)
    torch.testing.assert_close(loaded.vit.pos_embed, reference.vit.pos_embed)


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(ConfigError, match="unknown backbone 'resnet7'"):
        build_backbone("resnet7")
    missing = str(tmp_path / "nowhere.pth")
    for name in ("resnet18", "vit_tiny_patch16_384"):
        with pytest.raises(ConfigError, match="nowhere.pth"):
            build_backbone(name, pretrained=missing)
    with pytest.raises(ConfigError, match="num_taps"):
        build_backbone("vit_tiny_patch16_384", num_taps=13)


def test_vit_patch_size_and_depth_overrides():
    backbone = build_backbone("vit_tiny_patch16_384", num_taps=3, patch_size=8, depth=6).eval()
    assert len(backbone.vit.blocks) == 6 and backbone.strides == [8, 8, 8]
    assert backbone.taps == [1, 3, 5]
    maps = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, 192, 8, 12)] * 3
    with pytest.raises(ConfigError, match="patch_size"):
        build_backbone("resnet18", patch_size=8)


def _offline(monkeypatch, cache):
    """No network for this test: empty caches and a proxy on a closed port."""
    for var in ("TORCH_HOME", "HF_HOME"):
        monkeypatch.setenv(var, str(cache))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_pretrained_true_loads_torchvision_weights_from_its_cache(tmp_path, monkeypatch):
    import torchvision

    _offline(monkeypatch, tmp_path)
    cached = torchvision.models.resnet18(weights=None)
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(cached.state_dict(), folder / url.rsplit("/", 1)[1])  # what torchvision's download leaves
    backbone = build_backbone("resnet18", pretrained=True)
    torch.testing.assert_close(backbone.layer3[0].conv1.weight, cached.layer3[0].conv1.weight)
    assert not torch.equal(build_backbone("resnet18", pretrained=False).layer3[0].conv1.weight,
                           cached.layer3[0].conv1.weight)


def test_pretrained_true_without_network_is_one_clear_error(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(CheckpointError) as err:
        build_backbone("resnet18", pretrained=True)
    message = str(err.value)
    assert "cannot get the ImageNet weights of resnet18" in message and "\n" not in message
    assert "local file" in message
