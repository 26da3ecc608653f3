"""The multi-task-conditioned denoiser: (noisy map, condition, t) -> x0 estimate.

A plain network, unaware of noise schedules (those are in models/diffusion/). It runs on
(sample, task) *pairs*: the noisy maps arrive grouped by task, `{task: (n_task, C, h, w)}`
in the model's task order, and the condition tokens are stacked in the same order,
`(N, L, D)` with N = sum of n_task. Per-task layers run once per task group; the shared
cross-attention blocks run once over all N pairs.

Difference from the release, off by default (`model_kwargs.refine_residual_norm`): each
task's output stack becomes a residual block with a normalised branch,
    x0 = x + GroupNorm(stack(x))        instead of        x0 = stack(x),
as the preliminary decoder's BasicBlocks are (a residual around a BatchNorm-ed branch).
Without it the scale-invariant normals loss lets the plain stack amplify one feature
direction through the reverse chain: on the demo config the refined normals' head input
ends with 99% of its variance along one direction (z of the output ~500, x and y ~1), and
the refined normals stay a constant direction that the head cannot leave, although the
features hold the normals (benchmarks/normals_probe.py). With the switch (demo config, 1500
iterations) the refined normals reach 36.4 deg against 35.6 preliminary (46.8 against 34.6
without), and the other tasks' refinement gains turn positive. It keeps the branch from
collapsing; it does not bound the raw normals' magnitude (the residual stream still grows).
GroupNorm, not BatchNorm: a task group often holds a single pair.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal embedding of timesteps t (K,) -> (K, dim), as in DiT / "Attention is all you need"."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding (256) -> MLP -> embed_dim."""

    def __init__(self, embed_dim, frequency_dim=256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.frequency_dim))


class Mlp(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CrossAttention(nn.Module):
    """Multi-head attention of `queries` (N, Lq, D) over `context` (N, Lk, D)."""

    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries, context):
        n, lq, dim = queries.shape
        heads = self.num_heads
        q = self.q(queries).view(n, lq, heads, dim // heads).transpose(1, 2)  # (N, heads, Lq, d)
        k, v = self.kv(context).view(n, -1, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, Lq, d)
        return self.proj(out.transpose(1, 2).reshape(n, lq, dim))


class CrossAttentionBlock(nn.Module):
    """Pre-norm block: condition tokens attend to noisy-task tokens; both streams get an MLP.

    In the public release's order: the key/value stream is updated first,
        context = context + MLP_kv(LN2_kv(context)),
    and the queries attend to the *updated* context:
        queries = queries + Attn(LN1(queries), LN_kv(context)),
        queries = queries + MLP(LN2(queries)).
    LayerNorms use PyTorch's default eps (1e-5), as the release does.
    """

    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)  # queries (condition stream)
        self.norm_kv = nn.LayerNorm(dim)  # keys/values (noisy-task stream)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)
        self.norm2_kv = nn.LayerNorm(dim)
        self.mlp_kv = Mlp(dim, hidden)

    def forward(self, queries, context):
        context = context + self.mlp_kv(self.norm2_kv(context))
        queries = queries + self.attn(self.norm1(queries), self.norm_kv(context))
        queries = queries + self.mlp(self.norm2(queries))
        return queries, context


def conv_stack(dim, num_convs):
    """1x1 conv, then `num_convs` 3x3 convs, each followed by a ReLU (the release's stack
    ends with one, so the per-task output is non-negative before the head)."""
    layers = [nn.Conv2d(dim, dim, 1)]
    for _ in range(num_convs):
        layers += [nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class Denoiser(nn.Module):
    """Predicts x0 for every (sample, task) pair.

    in_channels: task -> channels of the diffused map (embed_dim for feature diffusion,
    the task's output channels for prediction diffusion). num_outputs: task -> C_task.
    With `predicts_maps` (prediction diffusion) the output head runs at every step, since
    x0 is a prediction map; otherwise the caller applies `head` after the last step.
    With `residual_norm` the output stacks are residual with a GroupNorm-ed branch (see the
    module docstring); the state dict then also holds `out_norms`.
    """

    def __init__(self, in_channels, num_outputs, embed_dim, depth, num_heads, mlp_ratio,
                 token_stride, head_convs, predicts_maps, residual_norm=False):
        super().__init__()
        self.token_stride = token_stride
        self.predicts_maps = predicts_maps
        self.t_embedder = TimestepEmbedder(embed_dim)
        self.in_layers = nn.ModuleDict({t: nn.Conv2d(c, embed_dim, 3, padding=1) for t, c in in_channels.items()})
        self.blocks = nn.ModuleList([CrossAttentionBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.out_convs = nn.ModuleDict({t: conv_stack(embed_dim, head_convs) for t in num_outputs})
        self.out_norms = (nn.ModuleDict({t: nn.GroupNorm(1, embed_dim) for t in num_outputs})
                          if residual_norm else None)
        self.heads = nn.ModuleDict({t: nn.Conv2d(embed_dim, c, 1) for t, c in num_outputs.items()})

    def token_grid(self, size):
        """The token grid of an (h, w) map: floor(h / token_stride) x floor(w / token_stride)."""
        grid = tuple(math.floor(n / self.token_stride) for n in size)
        if min(grid) < 1:
            raise ValueError(f"a {size[0]}x{size[1]} map is smaller than the token stride {self.token_stride}")
        return grid

    def tokenize(self, x):
        """(N, D, h, w) -> (N, L, D) tokens on a grid token_stride times coarser.

        As the release does: bilinear resizing by scale_factor 1/token_stride with
        align_corners False, which *samples* (at 0.25, each token is the mean of the
        central 2x2 pixels of its 4x4 block), it does not average the block.
        """
        self.token_grid(x.shape[-2:])
        if self.token_stride != 1:
            x = F.interpolate(x, scale_factor=1 / self.token_stride, mode="bilinear", align_corners=False)
        return x.permute(0, 2, 3, 1).flatten(1, 2)

    def untokenize(self, tokens, size):
        """(N, L, D) -> (N, D, h, w), bilinear upsampling back to `size` (x token_stride)."""
        x = tokens.unflatten(1, self.token_grid(size)).permute(0, 3, 1, 2)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def head(self, groups):
        """Per-task 1x1 output heads: {task: (n, D, h, w)} -> {task: (n, C_task, h, w)}."""
        return {t: self.heads[t](x) for t, x in groups.items()}

    def forward(self, noisy, condition_tokens, t):
        """noisy: {task: (n_task, C, h, w)}; condition_tokens: (N, L, D); t: int step."""
        timestep = torch.full((1,), t, device=condition_tokens.device)
        t_emb = self.t_embedder(timestep)[:, :, None, None]  # (1, D, 1, 1)
        x = torch.cat([self.in_layers[task](x) for task, x in noisy.items()]) + t_emb  # (N, D, h, w): residual
        queries, context = condition_tokens, self.tokenize(x)  # (N, L, D) each
        for block in self.blocks:
            queries, context = block(queries, context)
        x = x + self.untokenize(queries, x.shape[-2:])  # (N, D, h, w)
        chunks = dict(zip(noisy, x.split([v.shape[0] for v in noisy.values()])))
        out = {task: self.out_convs[task](chunk) for task, chunk in chunks.items()}
        if self.out_norms is not None:  # residual around a normalised branch (not in the release)
            out = {task: chunks[task] + self.out_norms[task](branch) for task, branch in out.items()}
        return self.head(out) if self.predicts_maps else out
