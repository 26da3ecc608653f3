"""Diffusion process (schedule, forward noising, posterior, reverse step), apart from networks."""
from models.diffusion.gaussian import GaussianDiffusion, make_betas


def create_diffusion(num_timesteps, beta_schedule="linear", beta_start=1e-3, beta_end=1e-2):
    """The one factory: a GaussianDiffusion with `num_timesteps` steps."""
    return GaussianDiffusion(make_betas(beta_schedule, num_timesteps, beta_start, beta_end))


__all__ = ["GaussianDiffusion", "create_diffusion", "make_betas"]
