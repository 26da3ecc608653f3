"""DiffusionMTL (Ye & Xu, CVPR 2024): multi-task denoising of preliminary decoder outputs.

    image -> backbone -> fused map (stride fuse_stride, embed_dim)
          -> per task: preliminary decoder -> feature f_t -> 1x1 head -> preliminary p_t
          -> condition c = conv(concat of the detached p_t of all tasks)   (multi-task conditioning)
          -> per labelled (sample, task) pair: x_T = q_sample(f_t or p_t), then T reverse steps
             x0 = denoiser(x_t, c, t), x_{t-1} = posterior step (models/diffusion)
          -> final prediction (1x1 head for feature diffusion), upsampled to the image size.

The reverse chain is unrolled and trained end to end with the task losses, as in the public release.
Partial labels: the chain runs only for the pairs `task_mask` selects, all pairs of a step
in one denoiser call (pairs grouped by task, see models/denoiser.py), and the outputs hold
only those pairs (`outputs["pairs"]` gives their sample indices), so the preliminary and
final maps are upsampled to the image size only where the loss reads them.

Difference from the release, off by default: `refine_residual_norm` makes each task's output
stack in the denoiser a residual block with a GroupNorm-ed branch, so that the refined
normals do not collapse to one direction (models/denoiser.py).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from models.denoiser import Denoiser


def resize(x, size):
    """Bilinear resize of (B, C, h, w) to `size`; identity when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class DiffusionMTL(nn.Module):
    """See the module docstring; `forward(images, task_mask=None)` follows docs/conventions.md.

    conditioning "none" (ablation): no condition conv; each pair is conditioned on its own
    task's detached preliminary feature f_t instead of the predictions of all tasks.
    diffusion None (ablation): the same network as a plain iterative refiner; no noise,
    the chain starts from f_t (or p_t) and each step's output feeds the next.
    variant "baseline" (the paper's MTL baseline): no refinement stage at all (no condition
    conv, no denoiser); "final" is the preliminary prediction itself.
    """

    def __init__(self, backbone, num_outputs, diffusion, num_timesteps, embed_dim=512, fuse_stride=8,
                 prelim_blocks=2, variant="feature", conditioning="multitask", denoiser_depth=4,
                 num_heads=4, mlp_ratio=4.0, token_stride=4, head_convs=3, eval_noise="zero", eval_seed=0,
                 refine_residual_norm=False):
        super().__init__()
        self.tasks = list(num_outputs)
        self.num_timesteps = num_timesteps
        self.fuse_stride = fuse_stride
        self.variant = variant
        self.eval_noise = eval_noise
        self.eval_seed = eval_seed

        self.backbone = backbone
        self.fuse_conv = nn.Conv2d(sum(backbone.out_channels), embed_dim, 3, padding=1)
        self.prelim_decoders = nn.ModuleDict({
            t: nn.Sequential(*[BasicBlock(embed_dim, embed_dim) for _ in range(prelim_blocks)]) for t in self.tasks})
        self.prelim_heads = nn.ModuleDict({t: nn.Conv2d(embed_dim, c, 1) for t, c in num_outputs.items()})
        refines = variant != "baseline"
        self.condition_conv = (nn.Conv2d(sum(num_outputs.values()), embed_dim, 3, padding=1)
                               if refines and conditioning == "multitask" else None)
        self.diffusion = diffusion if refines else None
        in_channels = num_outputs if variant == "prediction" else {t: embed_dim for t in self.tasks}
        self.denoiser = Denoiser(in_channels, num_outputs, embed_dim, denoiser_depth, num_heads, mlp_ratio,
                                 token_stride, head_convs, predicts_maps=variant == "prediction",
                                 residual_norm=refine_residual_norm) if refines else None

    # ----------------------------------------------------------------- preliminary stage
    def forward_preliminary(self, images):
        """Backbone, fusion and preliminary decoders. -> ({task: f_t}, {task: p_t}) at the fused stride."""
        h, w = images.shape[-2:]
        size = (math.ceil(h / self.fuse_stride), math.ceil(w / self.fuse_stride))
        maps = [resize(m, size) for m in self.backbone(images)]
        fused = self.fuse_conv(torch.cat(maps, dim=1))  # (B, D, h/8, w/8)
        features = {t: self.prelim_decoders[t](fused) for t in self.tasks}
        prelim = {t: self.prelim_heads[t](features[t]) for t in self.tasks}  # (B, C_t, h/8, w/8)
        return features, prelim

    # ----------------------------------------------------------------- pairs and condition
    def _pairs(self, task_mask, batch_size, device):
        """{task: sample indices (n_task,)} of the pairs to refine; tasks with no pair are left out.

        The indices are computed where `task_mask` lives: a CPU mask (as the data loader
        gives it) costs no device synchronisation.
        """
        if task_mask is None:
            every = torch.arange(batch_size, device=device)
            return {t: every for t in self.tasks}
        task_mask = task_mask.bool()
        _, sample_idx = task_mask.t().nonzero(as_tuple=True)  # task-major, samples ascending
        counts = task_mask.sum(0).tolist()
        return {t: idx.to(device, non_blocking=True)
                for t, idx in zip(self.tasks, sample_idx.split(counts)) if len(idx)}

    def _condition_tokens(self, features, prelim, pairs):
        """Condition tokens of every pair, stacked in pair order. -> (N, L, D)"""
        if self.condition_conv is None:  # ablation: the pair's own task feature
            return torch.cat([self.denoiser.tokenize(features[t].detach())[idx] for t, idx in pairs.items()])
        condition = self.condition_conv(torch.cat([prelim[t].detach() for t in self.tasks], dim=1))
        tokens = self.denoiser.tokenize(condition)  # (B, L, D)
        return tokens[torch.cat(list(pairs.values()))]

    # ----------------------------------------------------------------- reverse chain
    def _noise(self, task, like, step):
        """Training: fresh noise. Evaluation: zeros, or a field drawn from (eval_seed, step, task)
        that is the same for every sample, so a sample's output does not depend on its batch."""
        if self.training:
            return torch.randn(like.shape, device=like.device, dtype=like.dtype)  # whatever the memory format
        if self.eval_noise == "zero":
            return torch.zeros_like(like)
        seed = np.random.SeedSequence([self.eval_seed, step, self.tasks.index(task)]).generate_state(1)[0]
        field = torch.randn(like.shape[1:], generator=torch.Generator().manual_seed(int(seed)))
        return field.to(device=like.device, dtype=like.dtype).expand_as(like)

    def _reverse_chain(self, start, condition_tokens):
        """start: {task: x0 = f_t or p_t of its pairs}. -> {task: refined x0} after T steps."""
        if self.diffusion is None:  # plain iterative refinement
            x = start
            for t in reversed(range(self.num_timesteps)):
                x = self.denoiser(x, condition_tokens, t)
            return x
        last = self.num_timesteps - 1
        # x_T ~ q(x_T | x_0); the noise of the start is keyed as step T
        x = {k: self.diffusion.q_sample(v, last, self._noise(k, v, last + 1)) for k, v in start.items()}
        for t in reversed(range(self.num_timesteps)):
            x0_pred = self.denoiser(x, condition_tokens, t)
            if t == 0:  # the posterior mean at t = 0 is x0_pred itself
                return x0_pred
            x = {k: self.diffusion.p_step(x0_pred[k], x[k], t, self._noise(k, x[k], t)) for k in x}

    # ----------------------------------------------------------------- forward
    def forward(self, images, task_mask=None):
        batch_size, _, height, width = images.shape
        size = (height, width)
        features, prelim = self.forward_preliminary(images)
        pairs = self._pairs(task_mask, batch_size, images.device)
        if self.denoiser is None:  # MTL baseline: the preliminary prediction is the output
            if task_mask is None:
                prelim = {t: resize(prelim[t], size) for t in self.tasks}
                return {"final": prelim, "prelim": prelim}
            prelim = {t: resize(prelim[t][idx], size) for t, idx in pairs.items()}
            return {"final": prelim, "prelim": prelim, "pairs": pairs}
        refined = {}
        if pairs:
            condition_tokens = self._condition_tokens(features, prelim, pairs)
            start_maps = prelim if self.variant == "prediction" else features
            refined = self._reverse_chain({t: start_maps[t][idx] for t, idx in pairs.items()}, condition_tokens)
            if self.variant == "feature":
                refined = self.denoiser.head(refined)

        if task_mask is None:  # every task for every sample
            return {"final": {t: resize(refined[t], size) for t in self.tasks},
                    "prelim": {t: resize(prelim[t], size) for t in self.tasks}}
        # Training: only the labelled pairs, so only what the loss reads is upsampled.
        return {"final": {t: resize(refined[t], size) for t in pairs},
                "prelim": {t: resize(prelim[t][idx], size) for t, idx in pairs.items()},
                "pairs": pairs}
