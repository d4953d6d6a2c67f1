"""Schedules against diffusers' schedulers and the published constants; per-element schedules."""

from __future__ import annotations

import pytest
import torch

from vdm3d.diffusion.parameterizations import sigma_from_alpha_bar, t_from_sigma
from vdm3d.diffusion.schedules import (
    DdimSchedule, EdmSchedule, FlowSchedule, alpha_bars, fill_and_revise, frozen_until,
    start_step_for_strength, strength_sigmas,
)
from vdm3d.errors import ConfigError


def test_edm_karras_sigmas():
    s = EdmSchedule(50).sigmas().double()
    assert s.shape == (51,) and s[-1] == 0
    assert s[0].item() == pytest.approx(700.0) and s[49].item() == pytest.approx(0.002)
    # equal steps in sigma^(1/rho)
    root = s[:-1] ** (1 / 7)
    diffs = root[1:] - root[:-1]
    torch.testing.assert_close(diffs, diffs.mean().expand_as(diffs), rtol=1e-4, atol=1e-6)


def test_edm_matches_diffusers_karras():
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler(use_karras_sigmas=True)
    sched.set_timesteps(25)
    ours = EdmSchedule(25, sigma_min=float(sched.sigmas[-2]), sigma_max=float(sched.sigmas[0])).sigmas()
    torch.testing.assert_close(ours, sched.sigmas.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_ddim_timesteps_and_sigmas_match_diffusers(spacing, steps):
    from diffusers import DDIMScheduler

    offset = 1 if spacing == "leading" else 0
    ref = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                        timestep_spacing=spacing, steps_offset=offset)
    ref.set_timesteps(steps)
    ours = DdimSchedule(steps, spacing, steps_offset=offset)
    assert torch.equal(ours.timesteps(), ref.timesteps)
    alpha_bar = torch.cat([ref.alphas_cumprod[ref.timesteps].double(), torch.ones(1).double()])
    expected = sigma_from_alpha_bar(alpha_bar)
    torch.testing.assert_close(ours.sigmas(), expected.float())


def test_zero_terminal_snr_matches_diffusers():
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                        rescale_betas_zero_snr=True)
    ours = alpha_bars(zero_terminal_snr=True)
    torch.testing.assert_close(ours[:-1].float(), ref.alphas_cumprod[:-1], rtol=1e-4, atol=1e-9)
    assert ours[-1] == 2.0**-24  # clamped so that sigma stays finite
    assert DdimSchedule(10, "trailing", zero_terminal_snr=True).sigmas()[0] == pytest.approx(4096.0, rel=1e-4)


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
def test_flow_times_match_diffusers(shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(50)
    ours = FlowSchedule(50, shift=shift)
    torch.testing.assert_close(ours.times(), ref.sigmas.float(), rtol=1e-5, atol=1e-6)
    # as VE sigmas, t = 1 is capped just below 1
    torch.testing.assert_close(t_from_sigma(ours.sigmas().double())[1:].float(), ref.sigmas[1:].float(),
                               rtol=1e-4, atol=1e-6)


def test_frozen_until_and_strength():
    s = EdmSchedule(10).sigmas()
    start = torch.tensor([0, 4, 10])
    sched = frozen_until(s, start)
    assert sched.shape == (11, 3)
    torch.testing.assert_close(sched[:, 0], s)
    torch.testing.assert_close(sched[:5, 1], s[4].expand(5))
    torch.testing.assert_close(sched[4:, 1], s[4:])
    assert bool((sched[:, 2] == 0).all())
    assert start_step_for_strength(50, 0.8) == 10 and start_step_for_strength(50, 1.0) == 0
    assert strength_sigmas(s, 0.6)[0] == s[4]
    with pytest.raises(ConfigError):
        start_step_for_strength(50, 0.0)
    with pytest.raises(ConfigError):
        frozen_until(s, torch.tensor([12]))


def test_worldwarp_fill_and_revise_schedule():
    s = FlowSchedule(50, shift=5.0).sigmas()
    valid = torch.zeros(1, 4, 1, 2, 2, dtype=torch.bool)
    valid[:, :, :, 0] = True
    sched = fill_and_revise(s, valid, strength=0.8, context_frames=1)
    k = 10  # min(int(0.2 * 50), 49)
    assert sched.shape == (51, 1, 4, 1, 2, 2)
    assert bool((sched[:, :, 0] == 0).all())                       # context stays clean
    torch.testing.assert_close(sched[:, 0, 1, 0, 1, 0], s)            # holes: full schedule
    torch.testing.assert_close(sched[: k + 1, 0, 1, 0, 0, 0], s[k].expand(k + 1))  # valid: wait at tau*
    torch.testing.assert_close(sched[k:, 0, 1, 0, 0, 0], s[k:])
