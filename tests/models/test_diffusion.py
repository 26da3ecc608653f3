"""The diffusion math against the DDPM equations, with hand-worked numbers."""
import math

import pytest
import torch

from models.diffusion import create_diffusion, make_betas


def test_official_schedule_two_steps():
    diffusion = create_diffusion(2, "linear", 1e-3, 1e-2)
    torch.testing.assert_close(diffusion.betas, torch.tensor([1e-3, 1e-2]))
    abar = torch.tensor([0.999, 0.999 * 0.99])
    torch.testing.assert_close(diffusion.alphas_cumprod, abar)
    torch.testing.assert_close(diffusion.alphas_cumprod_prev, torch.tensor([1.0, 0.999]))
    # posterior variance beta_t (1 - abar_{t-1}) / (1 - abar_t): 0 at t = 0
    torch.testing.assert_close(diffusion.posterior_variance,
                               torch.tensor([0.0, 1e-2 * 0.001 / (1 - 0.999 * 0.99)]))
    assert len(diffusion.state_dict()) == 12 and diffusion.num_timesteps == 2


def test_schedules():
    # latent-diffusion names: "linear" is linear in sqrt(beta), "sqrt_linear" linear in beta
    linear = make_betas("linear", 5, 1e-4, 1e-2)
    torch.testing.assert_close(linear.sqrt(), torch.linspace(1e-2, 1e-1, 5, dtype=torch.float64))
    torch.testing.assert_close(make_betas("sqrt_linear", 3, 0.1, 0.3),
                               torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    cosine = make_betas("cosine", 50, 0, 0)
    abar = torch.cumprod(1 - cosine, 0)
    assert (cosine > 0).all() and (cosine <= 0.999).all() and (abar[1:] < abar[:-1]).all()
    with pytest.raises(ValueError):
        make_betas("quadratic", 3, 0.1, 0.2)


def test_q_sample_and_inverse():
    diffusion = create_diffusion(4, "sqrt_linear", 0.1, 0.4)  # linear in beta
    x0, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    abar = (1 - 0.1) * (1 - 0.2) * (1 - 0.3)
    x_t = diffusion.q_sample(x0, 2, noise)
    torch.testing.assert_close(x_t, math.sqrt(abar) * x0 + math.sqrt(1 - abar) * noise)
    torch.testing.assert_close(diffusion.predict_start_from_noise(x_t, 2, noise), x0, atol=1e-5, rtol=1e-5)
    mean, variance, log_variance = diffusion.q_mean_variance(x0, 2)
    torch.testing.assert_close(mean, math.sqrt(abar) * x0)
    torch.testing.assert_close(variance, torch.tensor(1 - abar))
    torch.testing.assert_close(log_variance, torch.tensor(math.log(1 - abar)))


def test_posterior_and_reverse_step():
    diffusion = create_diffusion(3, "sqrt_linear", 0.1, 0.3)  # linear in beta
    x0, x_t, noise = torch.randn(5), torch.randn(5), torch.randn(5)
    betas = [0.1, 0.2, 0.3]
    abar = [0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7]
    t = 2  # DDPM eq. 7
    coef1 = betas[t] * math.sqrt(abar[t - 1]) / (1 - abar[t])
    coef2 = (1 - abar[t - 1]) * math.sqrt(1 - betas[t]) / (1 - abar[t])
    variance = betas[t] * (1 - abar[t - 1]) / (1 - abar[t])
    mean, var, _ = diffusion.q_posterior(x0, x_t, t)
    torch.testing.assert_close(mean, coef1 * x0 + coef2 * x_t)
    torch.testing.assert_close(var, torch.tensor(variance))
    expected = coef1 * x0 + coef2 * x_t + math.sqrt(variance) * noise
    torch.testing.assert_close(diffusion.p_step(x0, x_t, t, noise), expected)
    # the last step returns the x0 estimate, without noise
    torch.testing.assert_close(diffusion.p_step(x0, x_t, 0, noise), x0)
