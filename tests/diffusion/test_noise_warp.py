"""Warped noise stays standard Gaussian per frame and moves with the flow."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from vdm3d.diffusion.noise_warp import (
    init_noise_state, mix_new_noise, subsample_frames, upsample_flow, warp_noise_state, warped_noise,
)
from vdm3d.errors import ConfigError, InputError

T, H, W = 8, 32, 32


def zoom_rotate_flows(zoom: float, angle: float) -> torch.Tensor:
    """Forward flow of a similarity about the image center, repeated for T-1 frame pairs."""
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5 - H / 2, torch.arange(W) + 0.5 - W / 2, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    fx = zoom * (c * xx - s * yy) - xx
    fy = zoom * (s * xx + c * yy) - yy
    return torch.stack([fx, fy], -1).expand(T - 1, H, W, 2).clone()


def test_constant_translation_gives_shifted_copies():
    flows = torch.zeros(T - 1, H, W, 2)
    flows[..., 0] = 2.0   # 2 flow pixels right = 1 output pixel at downscale 2
    flows[..., 1] = -4.0  # 4 flow pixels up = 2 output pixels
    n = warped_noise(flows, 4, grid_scale=4, downscale=2, generator=torch.Generator().manual_seed(0))
    assert n.shape == (T, 4, 16, 16)
    for t in range(T - 1):
        before, after = n[t][:, 2:, :-1].flatten(), n[t + 1][:, :-2, 1:].flatten()
        corr = torch.corrcoef(torch.stack([before, after]))[0, 1]
        assert corr > 0.9, (t, corr)
        # the uncovered strip is new noise, uncorrelated with the old frame's opposite edge
        edge = torch.stack([n[t + 1][:, -2:].flatten(), n[t][:, -2:].flatten()])
        assert abs(torch.corrcoef(edge)[0, 1]) < 0.3


@pytest.mark.parametrize(("zoom", "angle"), [(1.04, 0.05), (1 / 1.04, -0.05)])
def test_every_frame_is_standard_gaussian_under_zoom_and_rotation(zoom, angle):
    n = warped_noise(zoom_rotate_flows(zoom, angle), 4, grid_scale=4, downscale=2,
                     generator=torch.Generator().manual_seed(1))
    count = n[0].numel()
    for t in range(T):
        v = n[t].flatten().double().numpy()
        assert abs(v.mean()) < 4 / count**0.5
        assert abs(v.var() - 1) < 4 * (2 / count) ** 0.5
        assert stats.kstest(v, "norm").pvalue > 0.01, t


def test_zoom_keeps_noise_coherent_between_frames():
    # Zooming in by 4% per frame: frame t+1 sampled at the flow-mapped positions resembles frame t.
    n = warped_noise(zoom_rotate_flows(1.04, 0.0), 2, grid_scale=4, downscale=1,
                     generator=torch.Generator().manual_seed(2))
    center = slice(8, 24)
    pair = torch.stack([n[3][:, center, center].flatten(), n[4][:, center, center].flatten()])
    corr = torch.corrcoef(pair)[0, 1]
    assert corr > 0.5  # fresh noise would give ~0


def test_single_step_preserves_unit_statistics_on_the_grid():
    g = torch.Generator().manual_seed(3)
    state = init_noise_state(8, 64, 64, g)
    flow = upsample_flow(zoom_rotate_flows(0.9, 0.2)[0], (64, 64))
    out = warp_noise_state(state, flow, g)
    assert abs(out.noise.mean()) < 0.02 and abs(out.noise.var() - 1) < 0.03
    assert bool((out.weight > 0).all())


def test_degradation_mix_and_temporal_subsampling():
    g = torch.Generator().manual_seed(4)
    base = torch.randn(20000, generator=g)
    mixed = mix_new_noise(base, 0.5, g)
    assert abs(mixed.var() - 1) < 0.03
    assert abs(torch.corrcoef(torch.stack([base, mixed]))[0, 1] - 0.5**0.5) < 0.02
    assert torch.equal(mix_new_noise(base, 0.0, g), base)
    frames = torch.arange(49.0).view(49, 1, 1, 1)
    assert subsample_frames(frames, 13).flatten().tolist() == [float(4 * i) for i in range(13)]


def test_bad_inputs():
    with pytest.raises(InputError, match="NaN"):
        warped_noise(torch.full((3, 8, 8, 2), float("nan")), 4)
    with pytest.raises(ConfigError, match="divisible"):
        warped_noise(torch.zeros(2, 10, 10, 2), 4, downscale=4)
    with pytest.raises(ConfigError, match="alpha"):
        mix_new_noise(torch.zeros(3), 1.5)
