"""Networks: `build_model(cfg)` builds DiffusionMTL from a loaded config (utils.config)."""
from models.backbones import build_backbone
from models.diffusion import create_diffusion
from models.diffusion_mtl import DiffusionMTL

MODELS = {"DiffusionMTL": DiffusionMTL}


def build_model(cfg):
    """The network of cfg.model, with cfg.backbone, cfg.model_kwargs and cfg.num_timesteps."""
    backbone = build_backbone(cfg.backbone, **cfg.backbone_kwargs)
    kwargs = dict(cfg.model_kwargs)
    schedule = {k: kwargs.pop(k) for k in ("beta_schedule", "beta_start", "beta_end")}
    diffusion = create_diffusion(cfg.num_timesteps, **schedule) if kwargs.pop("diffusion") else None
    num_outputs = {t: cfg.TASKS.NUM_OUTPUT[t] for t in cfg.TASKS.NAMES}
    return MODELS[cfg.model](backbone, num_outputs, diffusion, cfg.num_timesteps, **kwargs)


__all__ = ["build_model", "build_backbone", "DiffusionMTL"]
