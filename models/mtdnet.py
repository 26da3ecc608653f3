"""MTDNet, the paper's Multi-Task Denoising diffusion Network: the refinement stage.

Given the preliminary stage's per-task features f_t and predictions p_t, it refines each
(sample, task) pair it is asked for:

    c    = conv(concat of the detached p_t of all tasks)          multi-task conditioning
    x_T  = sqrt(abar_T) x_0 + sqrt(1 - abar_T) eps,  x_0 = f_t (feature diffusion) or p_t
    x_{t-1} = posterior step of x0_hat = denoiser(x_t, c, t)       t = T-1 .. 0, x0-parameterised
    final = head(x0_hat at t = 0)                                  (feature diffusion)

The reverse chain is unrolled and trained end to end with the task losses, as in the public
release (no noise-regression loss). The pairs arrive as `{task: sample indices}` (every
sample at evaluation, the labelled ones in training); all pairs of a step go through the
denoiser in one call (grouped by task, models/denoiser.py).

Difference from the release, off by default (`model_kwargs.refine_from_prelim`): the
refined map of the chosen tasks is the detached preliminary map plus the head's output,
the head starting at zero, so the refinement starts from p_t and learns a correction
(feature diffusion's head otherwise learns the map anew; for the normals, whose loss sees
only the direction, it stays behind the preliminary normals, README "The claim, measured").

The paper's ablations: `conditioning="none"` conditions each pair on its own
task's detached feature instead of c; without `diffusion` the same network refines
iteratively with no noise, the chain starting from x_0.

Its parameters keep the release's names at the top of DiffusionMTL's state dict
(`condition_conv.*`, `diffusion.*`, `denoiser.*`), see `FLAT_KEYS` in models/diffusion_mtl.py.
"""
import numpy as np
import torch
from torch import nn

from models.denoiser import Denoiser

DIFFUSED = ("feature", "prediction")  # what the chain diffuses: f_t or p_t


class MTDNet(nn.Module):
    """`forward(features, prelim, pairs) -> {task: refined prediction of its pairs}`.

    features / prelim: {task: (B, D or C_t, h, w)} of the whole batch; pairs: {task: (n_t,)
    sample indices} of the pairs to refine. The outputs are (n_t, C_t, h, w), in `pairs` order.

    eval_noise "zero": the reverse chain adds no noise at evaluation (deterministic);
    "seeded": a noise field drawn from (eval_seed, step, task), the same for every sample,
    so a sample's output does not depend on its batch.
    """

    def __init__(self, num_outputs, embed_dim, diffusion, num_timesteps, diffuse="feature",
                 conditioning="multitask", denoiser_depth=4, num_heads=4, mlp_ratio=4.0, token_stride=4,
                 head_convs=3, residual_norm=False, prelim_residual=(), eval_noise="zero", eval_seed=0):
        super().__init__()
        if diffuse not in DIFFUSED:
            raise ValueError(f"diffuse must be one of {DIFFUSED}, not {diffuse!r}")
        unknown = sorted(set(prelim_residual) - set(num_outputs))
        if unknown:
            raise ValueError(f"prelim_residual names tasks the model does not have: {unknown}")
        if prelim_residual and diffuse == "prediction":
            raise ValueError("prelim_residual is for the output head of feature diffusion; "
                             "prediction diffusion already refines p_t itself")
        self.tasks = list(num_outputs)
        self.num_timesteps = num_timesteps
        self.diffuse = diffuse
        self.eval_noise = eval_noise
        self.eval_seed = eval_seed
        # registration order = the state dict's key order (the release's)
        self.condition_conv = (nn.Conv2d(sum(num_outputs.values()), embed_dim, 3, padding=1)
                               if conditioning == "multitask" else None)
        self.diffusion = diffusion
        in_channels = num_outputs if diffuse == "prediction" else {t: embed_dim for t in self.tasks}
        self.denoiser = Denoiser(in_channels, num_outputs, embed_dim, denoiser_depth, num_heads, mlp_ratio,
                                 token_stride, head_convs, predicts_maps=diffuse == "prediction",
                                 residual_norm=residual_norm)
        # not in the release: these tasks' refined maps are p_t + head(x0), the head starting at
        # zero, so the refinement starts from the preliminary prediction and learns a correction
        self.prelim_residual = tuple(t for t in self.tasks if t in prelim_residual)
        for task in self.prelim_residual:
            nn.init.zeros_(self.denoiser.heads[task].weight)
            nn.init.zeros_(self.denoiser.heads[task].bias)

    # ----------------------------------------------------------------- condition
    def condition_tokens(self, features, prelim, pairs):
        """Condition tokens of every pair, stacked in pair order. -> (N, L, D)"""
        if self.condition_conv is None:  # ablation: the pair's own task feature
            return torch.cat([self.denoiser.tokenize(features[t].detach())[idx] for t, idx in pairs.items()])
        condition = self.condition_conv(torch.cat([prelim[t].detach() for t in self.tasks], dim=1))
        tokens = self.denoiser.tokenize(condition)  # (B, L, D), computed once for all tasks
        return tokens[torch.cat(list(pairs.values()))]

    # ----------------------------------------------------------------- reverse chain
    def noise(self, task, like, step):
        """Training: fresh noise. Evaluation: zeros, or the seeded field (see the class)."""
        if self.training:
            return torch.randn(like.shape, device=like.device, dtype=like.dtype)  # whatever the memory format
        if self.eval_noise == "zero":
            return torch.zeros_like(like)
        seed = np.random.SeedSequence([self.eval_seed, step, self.tasks.index(task)]).generate_state(1)[0]
        field = torch.randn(like.shape[1:], generator=torch.Generator().manual_seed(int(seed)))
        return field.to(device=like.device, dtype=like.dtype).expand_as(like)

    def reverse_chain(self, start, condition_tokens):
        """start: {task: x_0 of its pairs}. -> {task: x0_hat} after the T reverse steps."""
        if self.diffusion is None:  # ablation: plain iterative refinement
            x = start
            for t in reversed(range(self.num_timesteps)):
                x = self.denoiser(x, condition_tokens, t)
            return x
        last = self.num_timesteps - 1
        # x_T ~ q(x_T | x_0); the noise of the start is keyed as step T
        x = {k: self.diffusion.q_sample(v, last, self.noise(k, v, last + 1)) for k, v in start.items()}
        for t in reversed(range(self.num_timesteps)):
            x0_pred = self.denoiser(x, condition_tokens, t)
            if t == 0:  # the posterior mean at t = 0 is x0_pred itself
                return x0_pred
            x = {k: self.diffusion.p_step(x0_pred[k], x[k], t, self.noise(k, x[k], t)) for k in x}

    # ----------------------------------------------------------------- forward
    def forward(self, features, prelim, pairs):
        if not pairs:
            return {}
        tokens = self.condition_tokens(features, prelim, pairs)
        start = prelim if self.diffuse == "prediction" else features
        refined = self.reverse_chain({t: start[t][idx] for t, idx in pairs.items()}, tokens)
        # prediction diffusion's denoiser outputs maps at every step; feature diffusion's last x0 goes through the head
        if self.diffuse == "prediction":
            return refined
        refined = self.denoiser.head(refined)
        for task in self.prelim_residual:
            if task in refined:  # the preliminary map detached: its own loss alone trains it, as in the release
                refined[task] = prelim[task][pairs[task]].detach() + refined[task]
        return refined
