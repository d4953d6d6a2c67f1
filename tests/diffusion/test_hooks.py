"""Step hooks: x0 guidance pulls toward the target with GuidedVD's normalized step; latent blending."""

from __future__ import annotations

import pytest
import torch

from vdm3d.diffusion.guiders import CFG
from vdm3d.diffusion.hooks import LatentBlend, StepHook, StepState, X0Guidance, masked_image_loss
from vdm3d.diffusion.parameterizations import align_sigma
from vdm3d.diffusion.samplers import sample
from vdm3d.diffusion.schedules import DdimSchedule, EdmSchedule
from vdm3d.diffusion.testing import ConvDenoiser, GaussianDataDenoiser
from vdm3d.errors import ConfigError, InputError
from vdm3d.protocols import Conditioning

SHAPE = (2, 3, 3, 8, 8)


def _target_and_mask():
    g = torch.Generator().manual_seed(11)
    target = torch.rand(SHAPE[0], SHAPE[1], 8, 8, 3, generator=g)
    mask = torch.zeros(SHAPE[0], SHAPE[1], 8, 8)
    mask[..., :, :5] = 1.0  # trusted on the left part of every frame
    return target, mask


@pytest.mark.parametrize(("backbone", "weight", "ratio"), [("gaussian", 0.2, 0.5), ("conv", 2.0, 0.8)])
def test_x0_guidance_lowers_the_masked_loss_for_the_same_seed(backbone, weight, ratio):
    # weight 0.2 is GuidedVD's; the random conv net has a small CFG correction, hence a larger weight
    target, mask = _target_and_mask()
    bb = GaussianDataDenoiser(0.0, 0.3, null_mean=0.3) if backbone == "gaussian" else \
        ConvDenoiser(width=8, resolution=(8, 8))
    sig = DdimSchedule(12, "trailing").sigmas()
    cond = Conditioning(reference=torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(3)))

    def run(hooks):
        out = sample(bb, sig, cond=cond, shape=SHAPE, generator=torch.Generator().manual_seed(2), eta=1.0,
                     guider=CFG(scale=3.0), hooks=hooks)
        return masked_image_loss(bb.decode(out).clamp(0, 1), target, mask).item()

    plain = run([])
    guided = run([X0Guidance(target, mask, weight=weight)])
    assert guided < ratio * plain, (guided, plain)


def test_x0_guidance_step_is_normalized_and_points_down_the_gradient():
    # One hand-built step in VP/v units: the update's RMS (native units) is weight * RMS(CFG correction).
    class VpGaussian(GaussianDataDenoiser):
        prediction, process = "v", "vp"

    bb = VpGaussian(0.0, 0.5, null_mean=0.2)
    target, mask = _target_and_mask()
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(SHAPE, generator=g) * 2.0).requires_grad_(True)
    sigma, sigma_next = torch.tensor(2.0), torch.tensor(1.5)
    x0_c = bb.denoise(x, sigma.expand(2), bb.mean)
    x0_u = bb.denoise(x, sigma.expand(2), bb.null_mean)
    x0 = x0_u + 3.0 * (x0_c - x0_u)
    x_next = torch.randn(SHAPE, generator=g)
    state = StepState(step=0, steps=10, x=x, sigma=align_sigma(sigma, x),
                      sigma_next=align_sigma(sigma_next, x),
                      noise=torch.zeros(SHAPE), backbone=bb, cond=bb.mean, uncond=bb.null_mean, x0=x0,
                      x0_cond=x0_c, x0_uncond=x0_u, x_next=x_next)
    hook = X0Guidance(target, mask, weight=0.2)
    new = hook.after_step(state)
    c_t, c_next = (1 + 2.0**2) ** -0.5, (1 + 1.5**2) ** -0.5
    update_native = ((new - x_next) * c_next).detach()  # [B, F, C, h, w]
    native = state.native()
    correction = native.raw(x0.detach()) - native.raw(x0_u.detach())
    rms = lambda t: t.pow(2).mean(dim=(1, 2, 3, 4)).sqrt()  # noqa: E731
    torch.testing.assert_close(rms(update_native), 0.2 * rms(correction), rtol=1e-4, atol=1e-6)
    # direction: minus the loss gradient w.r.t. the native sample, through the (linear) denoiser
    z0 = x0.detach().requires_grad_(True)
    g0 = torch.autograd.grad(masked_image_loss(bb.decode(z0).clamp(0, 1), target, mask), z0)[0]
    k = 0.5 / (0.5 + 4.0)  # d x0 / d x for this Gaussian denoiser
    g_native = k * g0 / c_t
    cos = torch.nn.functional.cosine_similarity(update_native.flatten(), -g_native.flatten(), dim=0)
    assert cos > 0.9999


def test_x0_guidance_with_cfg_step_needs_guidance():
    target, mask = _target_and_mask()
    with pytest.raises(ConfigError, match="classifier-free"):
        sample(GaussianDataDenoiser(), EdmSchedule(3).sigmas(), shape=SHAPE,
               generator=torch.Generator().manual_seed(0), hooks=[X0Guidance(target, mask)])
    with pytest.raises(InputError, match="mask values"):
        LatentBlend(torch.zeros(SHAPE), torch.full((2, 3, 1, 8, 8), 2.0), 3)


def test_latent_blend_keeps_known_regions_on_the_noisy_target_path():
    g = torch.Generator().manual_seed(4)
    target = torch.randn(SHAPE, generator=g) * 0.5
    unobserved = torch.ones(SHAPE[0], SHAPE[1], 1, 8, 8)
    unobserved[..., :4, :] = 0.0  # top half known
    noise = torch.randn(SHAPE, generator=g)
    seen = []

    class Spy(StepHook):
        def before_denoise(self, state):
            seen.append((state.step, state.x.clone(), state.sigma))

    sig = EdmSchedule(10, sigma_max=80.0).sigmas()
    bb = GaussianDataDenoiser(0.0, 0.25)
    out = sample(bb, sig, noise=noise, generator=g, hooks=[LatentBlend(target, unobserved, 8), Spy()])
    for step, x, sigma in seen:
        known = (target + sigma * noise)[..., :4, :]
        if step < 8:
            torch.testing.assert_close(x[..., :4, :], known)
        else:
            assert not torch.allclose(x[..., :4, :], known)
    plain = sample(bb, sig, noise=noise, generator=torch.Generator().manual_seed(4))
    err = lambda y: (y - target)[..., :4, :].pow(2).mean().item()  # noqa: E731
    assert err(out) < 0.1 * err(plain)
    # pixels are independent under this denoiser, so the unobserved half follows the same path
    torch.testing.assert_close(out[..., 4:, :], plain[..., 4:, :])
