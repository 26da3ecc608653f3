"""The denoiser computes what the public release computes, checked by hand.

The last test writes the whole official forward pass out as the release runs it (per
sample, per task, batch size 1, functional ops on the model's own weights) and compares
every task's final output with the vectorised model's, in eval mode and in train mode with
partial-label masks, with zero noise.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from models import build_model
from models.denoiser import CrossAttentionBlock, Denoiser, conv_stack

CONFIG = "configs/pascal/resnet18_feature_official.yml"
TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]


def test_tokens_sample_bilinearly_instead_of_averaging_blocks():
    # At scale 0.25 (align_corners False) the source coordinate of output pixel i is
    # (i + 0.5) * 4 - 0.5 = 4i + 1.5: the mean of rows/cols 4i+1 and 4i+2 of each 4x4 block.
    torch.manual_seed(0)
    denoiser = Denoiser({"a": 3}, {"a": 2}, 8, 1, 2, 2.0, token_stride=4, head_convs=1, predicts_maps=False)
    x = torch.randn(2, 3, 8, 12)
    tokens = denoiser.tokenize(x)  # (2, 2 * 3, 3)
    assert tokens.shape == (2, 6, 3)
    expected = torch.stack([x[:, :, 4 * i + 1:4 * i + 3, 4 * j + 1:4 * j + 3].mean((-2, -1))
                            for i in range(2) for j in range(3)], dim=1)
    torch.testing.assert_close(tokens, expected)
    block_means = torch.stack([x[:, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].mean((-2, -1))
                               for i in range(2) for j in range(3)], dim=1)
    assert not torch.allclose(tokens, block_means, atol=1e-3)
    # back to the map: bilinear x4 upsampling to the original size
    back = denoiser.untokenize(tokens, (8, 12))
    torch.testing.assert_close(back, F.interpolate(expected.transpose(1, 2).reshape(2, 3, 2, 3),
                                                   scale_factor=4, mode="bilinear", align_corners=False))


def test_token_grid_floors_and_rejects_maps_smaller_than_the_stride():
    denoiser = Denoiser({"a": 3}, {"a": 2}, 8, 1, 2, 2.0, token_stride=4, head_convs=1, predicts_maps=False)
    assert denoiser.tokenize(torch.randn(1, 3, 9, 14)).shape == (1, 2 * 3, 3)
    with pytest.raises(ValueError, match="smaller than the token stride"):
        denoiser.tokenize(torch.randn(1, 3, 3, 8))


def layer_norm(x, norm):
    mean = x.mean(-1, keepdim=True)
    variance = (x - mean).square().mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + 1e-5) * norm.weight + norm.bias


def mlp(x, module):
    hidden = x @ module.fc1.weight.T + module.fc1.bias
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
    return hidden @ module.fc2.weight.T + module.fc2.bias


def attention(queries, context, module, heads):
    n, lq, dim = queries.shape
    d = dim // heads
    q = (queries @ module.q.weight.T).view(n, lq, heads, d)
    kv = (context @ module.kv.weight.T).view(n, context.shape[1], 2, heads, d)
    k, v = kv[:, :, 0], kv[:, :, 1]
    weights = torch.softmax(torch.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(d), dim=-1)
    out = torch.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, lq, dim)
    return out @ module.proj.weight.T + module.proj.bias


def release_block(queries, context, block, heads):
    """The release's cross block, written out: kv MLP first, then attention to the updated kv."""
    context = context + mlp(layer_norm(context, block.norm2_kv), block.mlp_kv)
    queries = queries + attention(layer_norm(queries, block.norm1), layer_norm(context, block.norm_kv),
                                  block.attn, heads)
    queries = queries + mlp(layer_norm(queries, block.norm2), block.mlp)
    return queries, context


def test_cross_block_matches_the_written_out_formula():
    torch.manual_seed(0)
    block = CrossAttentionBlock(16, 4, 4.0)
    for parameter in block.parameters():  # non-trivial norms and biases
        torch.nn.init.normal_(parameter, std=0.5)
    queries, context = torch.randn(3, 6, 16), torch.randn(3, 6, 16)
    with torch.no_grad():
        got = block(queries, context)
        expected = release_block(queries, context, block, heads=4)
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)
    assert all(norm.eps == 1e-5 for norm in (block.norm1, block.norm_kv, block.norm2, block.norm2_kv))


def test_conv_stack_ends_non_negative():
    torch.manual_seed(0)
    stack = conv_stack(8, 3)
    assert [type(m).__name__ for m in stack] == ["Conv2d", "Conv2d", "ReLU", "Conv2d", "ReLU", "Conv2d", "ReLU"]
    assert [m.kernel_size for m in stack if isinstance(m, torch.nn.Conv2d)] == [(1, 1), (3, 3), (3, 3), (3, 3)]
    with torch.no_grad():
        out = stack(torch.randn(2, 8, 5, 5))
    assert (out >= 0).all() and (out > 0).any()


# ----------------------------------------------------------------------------- the whole chain
# conftest's tiny model with the release's denoiser shape: 4 heads and tokens at 1/4 (the
# constants of release_denoiser), two blocks and three output convs so that both loops run.
RELEASE_SHAPE = ["model_kwargs.embed_dim=32", "model_kwargs.num_heads=4", "model_kwargs.denoiser_depth=2",
                 "model_kwargs.head_convs=3", "model_kwargs.token_stride=4"]


def release_denoiser(model, task, noisy, condition, t):
    """One x0 prediction of the release's denoiser for one sample: noisy (1, D, h, w)."""
    den = model.refinement.denoiser
    frequencies = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
    args = torch.tensor([float(t)])[:, None] * frequencies[None]
    t_emb = den.t_embedder.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))  # (1, D)
    residual = den.in_layers[task](noisy) + t_emb[:, :, None, None]
    quarter = dict(scale_factor=0.25, mode="bilinear", align_corners=False)
    queries = F.interpolate(condition, **quarter).flatten(2).transpose(1, 2)
    context = F.interpolate(residual, **quarter).flatten(2).transpose(1, 2)
    for block in den.blocks:
        queries, context = release_block(queries, context, block, heads=4)
    h, w = residual.shape[-2:]
    x = queries.transpose(1, 2).reshape(1, -1, h // 4, w // 4)
    x = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False) + residual
    convs = [m for m in den.out_convs[task] if isinstance(m, torch.nn.Conv2d)]
    x = convs[0](x)
    for conv in convs[1:]:
        x = torch.relu(conv(x))
    return x


def release_forward(model, images, task_mask):
    """The official forward with zero noise, per sample and per task as the release loops."""
    betas = torch.linspace(1e-3 ** 0.5, 1e-2 ** 0.5, 2, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    coef1 = betas[1] * abar[0].sqrt() / (1 - abar[1])
    coef2 = (1 - abar[0]) * (1 - betas[1]).sqrt() / (1 - abar[1])
    features, prelim = model.forward_preliminary(images)
    condition = model.refinement.condition_conv(torch.cat([prelim[t].detach() for t in TASKS], dim=1))
    final = {}
    for index, task in enumerate(TASKS):
        outputs = []
        for b in range(images.shape[0]):
            if not task_mask[b, index]:
                continue
            x = abar[1].sqrt().float() * features[task][b:b + 1]  # x_T with eps = 0
            x0 = release_denoiser(model, task, x, condition[b:b + 1], 1)
            x = coef1.float() * x0 + coef2.float() * x  # posterior mean, no noise
            x0 = release_denoiser(model, task, x, condition[b:b + 1], 0)
            head = model.refinement.denoiser.heads[task](x0)
            outputs.append(F.interpolate(head, size=images.shape[-2:], mode="bilinear", align_corners=False))
        final[task] = outputs
    return final


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_official_forward_matches_the_release_computation(mode, monkeypatch, tiny_cfg):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*RELEASE_SHAPE, config=CONFIG))
    assert model.refinement.diffusion.betas.tolist() == pytest.approx([1e-3, 1e-2])
    images = torch.randn(3, 3, 64, 96)
    if mode == "eval":
        model.eval()
        task_mask = torch.ones(3, 5, dtype=torch.bool)
    else:
        model.train()
        monkeypatch.setattr(model.refinement, "noise", lambda task, like, step: torch.zeros_like(like))
        task_mask = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [1, 0, 1, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        state = {k: v.clone() for k, v in model.state_dict().items()}
        ours = model(images, task_mask if mode == "train" else None)["final"]
        model.load_state_dict(state)  # undo the BatchNorm running-stat update of train mode
        expected = release_forward(model, images, task_mask)
    for index, task in enumerate(TASKS):
        rows = task_mask[:, index]
        assert len(expected[task]) == int(rows.sum())
        if not len(expected[task]):
            assert task not in ours  # training outputs hold the labelled pairs only
            continue
        got = ours[task] if mode == "train" else ours[task][rows]
        want = torch.cat(expected[task])
        scale = want.abs().max()
        assert scale > 0
        torch.testing.assert_close(got, want, atol=1e-4 * float(scale), rtol=1e-4)
