"""Backbones: an image -> a list of feature maps, with their channels and strides.

Every backbone exposes `out_channels` and `strides` (one entry per returned map).
`pretrained`: None / False for random weights; True for the standard ImageNet weights,
which torchvision (ResNet, cache $TORCH_HOME) or timm (ViT, Hugging Face hub cache
$HF_HOME) download once and cache, as their users expect; a path for a local file.
Weights in the cache are read from there without any network access; weights that are
not, on a machine whose download host does not answer, are an error within seconds
(the libraries would retry for about a minute) that names the local-file alternative.
"""
import os
import socket
import urllib.parse

import timm
import torch
import torchvision
from torch import nn

from utils.errors import CheckpointError, ConfigError

RESNET_CHANNELS = {"resnet18": [64, 128, 256, 512], "resnet50": [256, 512, 1024, 2048]}
VIT_NAMES = frozenset(timm.list_models(module="vision_transformer"))


def _check_file(path):
    if not os.path.isfile(path):
        raise ConfigError(f"backbone_kwargs.pretrained: file not found: {path}")


def _download_failed(name, library, cache, err):
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return CheckpointError(f"backbone_kwargs.pretrained: true: cannot get the ImageNet weights of {name} "
                           f"from {library} ({type(err).__name__}: {first[:200]}); without network access, "
                           f"put them in its cache ({cache}) or set backbone_kwargs.pretrained to a local file")


def _reachable(url, timeout=3.0):
    """Whether the host of `url` accepts a connection within `timeout` seconds. Behind a proxy
    the library connects through it: True, and the library decides."""
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    parsed = urllib.parse.urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout).close()
        return True
    except OSError:  # no route, no DNS, refused, timed out
        return False


def _offline(name, url, cache, fetch):
    host = urllib.parse.urlparse(url).hostname
    return CheckpointError(f"backbone_kwargs.pretrained: true: the ImageNet weights of {name} are not in the cache "
                           f"({cache}) and {host} does not answer (no network?); set backbone_kwargs.pretrained "
                           f"to a local file of them ({url}), or run `{fetch}` once on a machine with network "
                           f"and copy the cache")


def _torchvision_resnet(name):
    """torchvision's default ImageNet weights, downloaded and cached by torchvision."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    checkpoints = os.path.join(torch.hub.get_dir(), "checkpoints")
    cached = os.path.join(checkpoints, os.path.basename(urllib.parse.urlparse(weights.url).path))
    if not os.path.isfile(cached) and not _reachable(weights.url):
        raise _offline(name, weights.url, checkpoints,
                       f"python -c \"import torchvision; torchvision.models.{name}(weights='DEFAULT')\"")
    try:
        return getattr(torchvision.models, name)(weights=weights)
    except Exception as err:  # URLError, socket errors, a corrupt cache file, ...
        raise _download_failed(name, "torchvision", "$TORCH_HOME/hub/checkpoints", err) from None


def _timm_hub_weights(name):
    """(cached file or None, download URL) of timm's default weights for `name` on the
    Hugging Face hub; (None, None) when they are not on the hub."""
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as err:  # e.g. a pretrained tag timm does not know
        raise ConfigError(f"backbone '{name}': {err}") from None
    if cfg is None or not cfg.hf_hub_id:
        return None, None
    from huggingface_hub import constants, try_to_load_from_cache

    filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for filename in filenames:
        path = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(path, str):
            return path, None
    return None, f"{constants.ENDPOINT}/{cfg.hf_hub_id}/resolve/main/{filenames[0]}"


class ResNetBackbone(nn.Module):
    """torchvision ResNet without its classifier: the 4 stages at strides 4/8/16/32."""

    def __init__(self, name, pretrained=None):
        super().__init__()
        net = _torchvision_resnet(name) if pretrained is True else getattr(torchvision.models, name)(weights=None)
        if pretrained and pretrained is not True:
            _check_file(pretrained)
            try:
                state = torch.load(pretrained, map_location="cpu", weights_only=True)
            except Exception as err:  # any unreadable or unsafe pickle
                raise CheckpointError(f"{pretrained}: cannot load ResNet weights: {err}") from None
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            try:
                missing, unexpected = net.load_state_dict(state, strict=False)
            except RuntimeError as err:  # shape mismatches
                raise CheckpointError(f"{pretrained}: not a torchvision {name} state dict: "
                                      f"{str(err).splitlines()[-1].strip()}") from None
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise CheckpointError(f"{pretrained}: not a torchvision {name} state dict "
                                      f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = RESNET_CHANNELS[name]
        self.strides = [4, 8, 16, 32]

    def forward(self, images):
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        maps = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            maps.append(x)
        return maps


class ViTBackbone(nn.Module):
    """A timm ViT tapped at `num_taps` evenly spaced blocks, each a stride-16 map.

    Any input size works: timm resamples the position embeddings (dynamic_img_size).
    The final norm is applied to the last tap, as in the classifier's features.
    """

    def __init__(self, name, num_taps=4, pretrained=None, drop_path_rate=0.0, patch_size=None, depth=None):
        super().__init__()
        kwargs = {"num_classes": 0, "dynamic_img_size": True, "drop_path_rate": drop_path_rate}
        # Architecture overrides (e.g. the demo's small-patch, shallow ViT); timm resamples a
        # pretrained patch embedding to a different patch size.
        if patch_size is not None:
            kwargs["patch_size"] = patch_size
        if depth is not None:
            kwargs["depth"] = depth
        if not pretrained:
            self.vit = timm.create_model(name, pretrained=False, **kwargs)
        elif pretrained is True:
            cached, url = _timm_hub_weights(name)
            if cached:  # timm's default pretrained tag for `name`, from the hub cache: no network needed
                self.vit = self._from_file(name, cached, kwargs)
            elif url and not _reachable(url):
                from huggingface_hub import constants

                raise _offline(name, url, constants.HF_HUB_CACHE,
                               f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\"")
            else:
                try:  # downloaded into the hub cache by timm
                    self.vit = timm.create_model(name, pretrained=True, **kwargs)
                except Exception as err:  # hub errors, or weights that do not fit the overrides
                    raise _download_failed(name, "timm", "$HF_HOME", err) from None
        else:
            _check_file(pretrained)
            self.vit = self._from_file(name, pretrained, kwargs)
        depth = len(self.vit.blocks)
        if not 1 <= num_taps <= depth:
            raise ConfigError(f"backbone_kwargs.num_taps must be in 1..{depth} for {name}, got {num_taps}")
        self.taps = [round((i + 1) * depth / num_taps) - 1 for i in range(num_taps)]
        self.vit.prune_intermediate_layers(self.taps, prune_norm=False, prune_head=True)
        self.out_channels = [self.vit.embed_dim] * num_taps
        self.strides = [self.vit.patch_embed.patch_size[0]] * num_taps

    @staticmethod
    def _from_file(name, path, kwargs):
        """timm's `name` with the weights of a local file (timm's own .npz reader for the
        original JAX checkpoints)."""
        overlay = {"file": path, "source": "", "custom_load": path.endswith(".npz")}
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"{path}: cannot load {name} weights: {err}") from None

    def forward(self, images):
        maps = self.vit.forward_intermediates(images, indices=self.taps, norm=False,
                                             output_fmt="NCHW", intermediates_only=True)
        last = self.vit.norm(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return maps[:-1] + [last]


def build_backbone(name, pretrained=None, drop_path_rate=0.0, num_taps=4, patch_size=None, depth=None):
    """ResNet-18/50 (torchvision; always its 4 stages, num_taps unused) or any timm ViT by name
    (e.g. vit_small_patch16_384), optionally with another patch size or number of blocks.
    `pretrained`: None / False (random), True (the library's ImageNet weights) or a file."""
    if name in RESNET_CHANNELS:
        for key, value in (("drop_path_rate", drop_path_rate), ("patch_size", patch_size), ("depth", depth)):
            if value:
                raise ConfigError(f"backbone_kwargs.{key} is not supported by {name}; remove it")
        return ResNetBackbone(name, pretrained)
    if name.split(".")[0] in VIT_NAMES:
        return ViTBackbone(name, num_taps, pretrained, drop_path_rate, patch_size, depth)
    raise ConfigError(f"unknown backbone '{name}': use one of {sorted(RESNET_CHANNELS)} "
                      f"or a timm ViT name such as vit_small_patch16_384")
