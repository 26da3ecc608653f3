"""Gaussian diffusion with an x0-parameterised reverse chain (DDPM, Ho et al. 2020).

Notation follows the DDPM paper with 0-based step indices t = 0..T-1:
    beta_t, alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s.
The network is not here: the reverse step takes the network's x0 estimate as input.
"""
import math

import torch
from torch import nn


def make_betas(schedule, num_timesteps, beta_start, beta_end):
    """Noise schedule beta_0..beta_{T-1} in float64. -> (T,)"""
    # Names as in latent diffusion (Rombach et al. 2022), which the public release uses.
    if schedule == "linear":  # linear in sqrt(beta) space: the release's setting
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    if schedule == "sqrt_linear":  # linear in beta
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    if schedule == "cosine":  # Nichol & Dhariwal 2021, eq. 17, s = 0.008; beta_start/end unused
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        alpha_bar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule '{schedule}'")


def _at(values, t, x):
    """values[t] shaped to broadcast against x (t is a Python int: one step for all)."""
    return values[t].to(x.dtype)


class GaussianDiffusion(nn.Module):
    """The schedule tables of DDPM as buffers, and the formulas that use them.

    The tables are buffers so they travel with the model (device, checkpoint); they are
    the same twelve tables the public checkpoint stores.
    """

    def __init__(self, betas):
        super().__init__()
        betas = betas.to(torch.float64)
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        # q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, variance), DDPM eq. 6-7
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        # the variance is 0 at t = 0: its log is clipped to the value at t = 1
        posterior_log_variance_clipped = posterior_variance.clone()
        if len(betas) > 1:
            posterior_log_variance_clipped[0] = posterior_variance[1]
        tables = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
            "log_one_minus_alphas_cumprod": (1 - alphas_cumprod).log(),
            "sqrt_recip_alphas_cumprod": (1 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": posterior_log_variance_clipped.log(),
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            "posterior_mean_coef2": (1 - alphas_cumprod_prev) * (1 - betas).sqrt() / (1 - alphas_cumprod),
        }
        for name, value in tables.items():
            self.register_buffer(name, value.to(torch.float32))

    @property
    def num_timesteps(self):
        return self.betas.shape[0]

    def q_mean_variance(self, x0, t):
        """Mean, variance and log-variance of q(x_t | x_0) (DDPM eq. 4)."""
        mean = _at(self.sqrt_alphas_cumprod, t, x0) * x0
        return mean, _at(1 - self.alphas_cumprod, t, x0), _at(self.log_one_minus_alphas_cumprod, t, x0)

    def q_sample(self, x0, t, noise):
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM eq. 4)."""
        return _at(self.sqrt_alphas_cumprod, t, x0) * x0 + _at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def predict_start_from_noise(self, x_t, t, noise):
        """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), the inverse of q_sample."""
        return _at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - _at(self.sqrt_recipm1_alphas_cumprod, t, x_t) * noise

    def q_posterior(self, x0, x_t, t):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7)."""
        mean = _at(self.posterior_mean_coef1, t, x0) * x0 + _at(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, _at(self.posterior_variance, t, x_t), _at(self.posterior_log_variance_clipped, t, x_t)

    def p_step(self, x0_pred, x_t, t, noise):
        """One reverse step x_t -> x_{t-1} with the network's x0 estimate (DDPM Alg. 2).

        No noise is added at t = 0, where the posterior mean equals x0_pred exactly.
        """
        mean, _, log_variance = self.q_posterior(x0_pred, x_t, t)
        if t == 0:
            return mean
        return mean + (0.5 * log_variance).exp() * noise
