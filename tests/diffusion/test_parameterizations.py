"""Parameterizations: round trips in float64, SV3D's v-scaling constants, diffusers' v and flow."""

from __future__ import annotations

import itertools

import pytest
import torch

from vdm3d.diffusion import parameterizations as P


@pytest.mark.parametrize(("process", "prediction"),
                         list(itertools.product(["edm", "vp", "flow"], ["eps", "v", "x0", "flow"])))
def test_target_round_trip_per_element_sigma(process, prediction):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 3, 4, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    sigma = torch.rand(2, 3, 1, 5, 5, generator=g, dtype=torch.float64) * 20 + 1e-3
    x = x0 + sigma * eps
    x_native, t_native = P.ve_to_native(x, sigma, process)
    a, b = P.native_coefficients(t_native, process)
    torch.testing.assert_close(x_native, a * x0 + b * eps)
    raw = P.training_target(x0, eps, sigma, prediction, process)
    torch.testing.assert_close(P.x0_from_prediction(raw, x_native, t_native, prediction, process), x0)
    x_back, sigma_back = P.native_to_ve(x_native, t_native, process)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(sigma_back, sigma)


def test_noise_level_conversions():
    sigma = torch.tensor([0.0, 0.002, 1.0, 14.6, 700.0], dtype=torch.float64)
    torch.testing.assert_close(P.sigma_from_alpha_bar(P.alpha_bar_from_sigma(sigma)), sigma)
    torch.testing.assert_close(P.sigma_from_t(P.t_from_sigma(sigma)), sigma)
    assert P.t_from_sigma(torch.tensor(float("inf"))).item() == 1.0
    torch.testing.assert_close(P.t_from_sigma(torch.tensor(1.0)), torch.tensor(0.5))


def test_sv3d_v_scaling_constants():
    s = torch.tensor([0.002, 0.5, 3.0, 700.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = P.edm_precondition(s, kind="v")
    torch.testing.assert_close(c_skip, 1 / (s**2 + 1))
    torch.testing.assert_close(c_out, -s / (s**2 + 1).sqrt())
    torch.testing.assert_close(c_in, 1 / (s**2 + 1).sqrt())
    torch.testing.assert_close(c_noise, 0.25 * s.log())
    # D = c_skip x + c_out F with F the v target is the exact x0
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, generator=g, dtype=torch.float64)
    eps = torch.randn(4, generator=g, dtype=torch.float64)
    v = P.training_target(x0, eps, s, "v", "edm")
    torch.testing.assert_close(c_skip * (x0 + s * eps) + c_out * v, x0)
    # EDM loss weight on D equals 1 / c_out^2: unit weight on the raw output
    torch.testing.assert_close(P.edm_loss_weight(s), 1 / c_out**2)


def test_eps_and_karras_preconditioning():
    s = torch.tensor([0.1, 2.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = P.edm_precondition(s, sigma_data=0.5, kind="edm")
    torch.testing.assert_close(c_skip, 0.25 / (s**2 + 0.25))
    torch.testing.assert_close(c_out, s * 0.5 / (s**2 + 0.25).sqrt())
    c_skip, c_out, c_in, c_noise = P.edm_precondition(s, kind="eps")
    torch.testing.assert_close(c_out, -s)
    torch.testing.assert_close(c_noise, s)


def test_matches_diffusers_v_and_flow_definitions():
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          prediction_type="v_prediction")
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(3, 4, 8, 8, generator=g)
    eps = torch.randn(x0.shape, generator=g)
    timesteps = torch.tensor([10, 500, 990])
    alpha_bar = sched.alphas_cumprod[timesteps].view(3, 1, 1, 1)
    sigma = P.sigma_from_alpha_bar(alpha_bar)
    x_native, t_native = P.ve_to_native(x0 + sigma * eps, sigma, "vp")
    torch.testing.assert_close(x_native, sched.add_noise(x0, eps, timesteps), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(P.training_target(x0, eps, sigma, "v", "vp"),
                               sched.get_velocity(x0, eps, timesteps), atol=1e-5, rtol=1e-5)

    flow = FlowMatchEulerDiscreteScheduler()
    t = torch.tensor([0.25])
    x_t = flow.scale_noise(x0[:1], t * 1000, eps[:1])
    x_native, _ = P.ve_to_native(x0[:1] + P.sigma_from_t(t) * eps[:1], P.sigma_from_t(t), "flow")
    torch.testing.assert_close(x_native, x_t, atol=1e-5, rtol=1e-5)


def test_training_sigmas_are_lognormal_and_seeded():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    s1 = P.edm_training_sigmas(20000, p_mean=0.7, p_std=1.6, generator=g1)
    s2 = P.edm_training_sigmas(20000, p_mean=0.7, p_std=1.6, generator=g2)
    assert torch.equal(s1, s2)
    assert abs(s1.log().mean().item() - 0.7) < 0.05 and abs(s1.log().std().item() - 1.6) < 0.05


@pytest.mark.parametrize("process", ["edm", "vp", "flow"])
@pytest.mark.parametrize("prediction", ["eps", "v", "x0", "flow"])
def test_raw_from_x0_inverts_x0_from_prediction(process, prediction):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 4, 4, generator=g, dtype=torch.float64) * 3
    sigma = torch.tensor([0.3, 5.0], dtype=torch.float64)  # per batch, left-aligned
    x_native, t_native = P.ve_to_native(x, sigma, process)
    x0 = torch.randn(x.shape, generator=g, dtype=torch.float64)
    raw = P.raw_from_x0(x0, x_native, t_native, prediction, process)
    torch.testing.assert_close(P.x0_from_prediction(raw, x_native, t_native, prediction, process), x0)
    torch.testing.assert_close(x_native, P.native_scale(P.align_sigma(sigma, x), process) * x)


def test_batch_sigma_meets_the_batch_axis():
    x = torch.zeros(2, 3, 4, 5, 2)  # last axis has the batch size: plain broadcasting would misalign
    sigma = torch.tensor([1.0, 3.0])
    x_native, t_native = P.ve_to_native(x + 1.0, sigma, "vp")
    assert t_native.shape == (2, 1, 1, 1, 1)
    torch.testing.assert_close(x_native[1], torch.full((3, 4, 5, 2), 1 / 10**0.5))
