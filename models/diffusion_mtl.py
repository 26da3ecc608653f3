"""DiffusionMTL (Ye & Xu, CVPR 2024): multi-task denoising of preliminary decoder outputs.

    image -> backbone -> fused map (stride fuse_stride, embed_dim)
          -> per task: preliminary decoder -> feature f_t -> 1x1 head -> preliminary p_t
          -> refinement stage (models/mtdnet.py: multi-task condition, reverse chain, head)
          -> final prediction, upsampled to the image size.

Partial labels: with a `task_mask` the refinement stage runs only for the labelled
(sample, task) pairs, and the outputs hold only those pairs (`outputs["pairs"]` gives
their sample indices), so the maps are upsampled to the image size only where the loss
reads them. The paper's MTL baseline is this model without the refinement stage.

Difference from the release, off by default: `refine_residual_norm` makes each task's output
stack in the denoiser a residual block with a GroupNorm-ed branch, so that the refined
normals do not collapse to one direction (models/denoiser.py); `refine_from_prelim`
("normals" / "all") makes the chosen tasks' refined maps p_t + a learned correction
(models/mtdnet.py).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from models.mtdnet import MTDNet

VARIANTS = ("feature", "prediction", "baseline")
FROM_PRELIM = ("none", "normals", "all")  # refine_from_prelim: the tasks refined as p_t + correction
# The refinement stage's modules keep the release's names at the top of the state dict
# ("denoiser.blocks.0...", not "refinement.denoiser.blocks.0..."): checkpoints of either
# layout, and the converted official checkpoint, load unchanged.
REFINEMENT = "refinement."
FLAT_KEYS = ("condition_conv.", "diffusion.", "denoiser.")


def resize(x, size):
    """Bilinear resize of (B, C, h, w) to `size`; identity when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class DiffusionMTL(nn.Module):
    """See the module docstring; `forward(images, task_mask=None)` follows docs/conventions.md.

    variant "feature" / "prediction": the refinement stage (MTDNet) diffuses f_t / p_t;
    "baseline" (the paper's MTL baseline): no refinement stage, "final" is the preliminary
    prediction itself (the same dict). `conditioning`, `diffusion` and the denoiser's sizes
    go to MTDNet.
    """

    def __init__(self, backbone, num_outputs, diffusion, num_timesteps, embed_dim=512, fuse_stride=8,
                 prelim_blocks=2, variant="feature", conditioning="multitask", denoiser_depth=4,
                 num_heads=4, mlp_ratio=4.0, token_stride=4, head_convs=3, eval_noise="zero", eval_seed=0,
                 refine_residual_norm=False, refine_from_prelim="none"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        if refine_from_prelim not in FROM_PRELIM:
            raise ValueError(f"refine_from_prelim must be one of {FROM_PRELIM}, not {refine_from_prelim!r}")
        self.tasks = list(num_outputs)
        self.fuse_stride = fuse_stride

        self.backbone = backbone
        self.fuse_conv = nn.Conv2d(sum(backbone.out_channels), embed_dim, 3, padding=1)
        self.prelim_decoders = nn.ModuleDict({
            t: nn.Sequential(*[BasicBlock(embed_dim, embed_dim) for _ in range(prelim_blocks)]) for t in self.tasks})
        self.prelim_heads = nn.ModuleDict({t: nn.Conv2d(embed_dim, c, 1) for t, c in num_outputs.items()})
        self.refinement = None if variant == "baseline" else MTDNet(
            num_outputs, embed_dim, diffusion, num_timesteps, diffuse=variant, conditioning=conditioning,
            denoiser_depth=denoiser_depth, num_heads=num_heads, mlp_ratio=mlp_ratio, token_stride=token_stride,
            head_convs=head_convs, residual_norm=refine_residual_norm, eval_noise=eval_noise, eval_seed=eval_seed,
            prelim_residual={"none": (), "normals": ("normals",), "all": self.tasks}[refine_from_prelim])
        self.register_state_dict_post_hook(_flatten_refinement_keys)
        self.register_load_state_dict_pre_hook(_nest_refinement_keys)

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

    def pairs(self, task_mask, batch_size, device):
        """{task: sample indices (n_task,)} of the pairs to predict; tasks with no pair are left out.

        Every sample for every task without a mask. The indices are computed where
        `task_mask` lives: a CPU mask (as the data loader gives it) costs no device
        synchronisation.
        """
        if task_mask is None:
            every = torch.arange(batch_size, device=device)
            return {t: every for t in self.tasks}
        task_mask = task_mask.bool()
        _, sample_idx = task_mask.t().nonzero(as_tuple=True)  # task-major, samples ascending
        counts = task_mask.sum(0).tolist()
        return {t: idx.to(device, non_blocking=True)
                for t, idx in zip(self.tasks, sample_idx.split(counts)) if len(idx)}

    # ----------------------------------------------------------------- forward
    def forward(self, images, task_mask=None):
        """-> {"final": {task: map}, "prelim": {task: map}} at the image size, every sample;
        with a task_mask only the labelled pairs' rows, and "pairs" their sample indices."""
        size = images.shape[-2:]
        features, prelim = self.forward_preliminary(images)
        pairs = self.pairs(task_mask, len(images), images.device)
        selected = prelim if task_mask is None else {t: prelim[t][idx] for t, idx in pairs.items()}
        outputs = {"prelim": {t: resize(p, size) for t, p in selected.items()}}
        outputs["final"] = (outputs["prelim"] if self.refinement is None else
                            {t: resize(r, size) for t, r in self.refinement(features, prelim, pairs).items()})
        if task_mask is not None:
            outputs["pairs"] = pairs
        return outputs

    def compile_static_parts(self):
        """torch.compile the parts whose shapes do not change from step to step.

        The pair batching gives the denoiser a different number of pairs (and tasks) every
        step, so the whole forward would recompile; the backbone, the fusion conv and the
        preliminary decoders see the fixed batch, and the shared denoiser blocks are compiled
        with a dynamic pair dimension. `nn.Module.compile` keeps the state-dict keys.
        """
        self.backbone.compile()
        self.fuse_conv.compile()
        for decoder in self.prelim_decoders.values():
            decoder.compile()
        if self.refinement is not None:
            for block in self.refinement.denoiser.blocks:
                block.compile(dynamic=True)
        return self


def _flatten_refinement_keys(module, state_dict, prefix, local_metadata):
    """state_dict() hook: "refinement.denoiser.x" -> "denoiser.x" (the release's names)."""
    nested = prefix + REFINEMENT
    for key in [k for k in state_dict if k.startswith(nested)]:
        state_dict[prefix + key[len(nested):]] = state_dict.pop(key)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        for key in [k for k in metadata if k.startswith(nested)]:
            metadata[prefix + key[len(nested):]] = metadata.pop(key)


def _nest_refinement_keys(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                          error_msgs):
    """load_state_dict() hook: the release's "denoiser.x" -> "refinement.denoiser.x"."""
    if module.refinement is None:
        return  # the baseline: such keys are unexpected and reported as such
    for key in [k for k in state_dict if k.startswith(tuple(prefix + name for name in FLAT_KEYS))]:
        state_dict[prefix + REFINEMENT + key[len(prefix):]] = state_dict.pop(key)
