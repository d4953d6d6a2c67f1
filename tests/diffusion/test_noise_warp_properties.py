"""Property tests (hypothesis) of flow-warped noise: whatever the flow, every frame stays i.i.d. N(0, 1).

For random smooth flows (a bicubic 3x3 random field, up to 8 flow pixels per frame: contractions, expansions
and noise leaving the frame), integer translations and the identity, each frame's values must have mean 0,
variance 1 and no correlation between horizontally or vertically neighbouring pixels or neighbouring channels,
each within 5 standard errors of the exact truth (a false alarm once in a million checks). The identity flow
gives back the very same noise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from vdm3d.diffusion.noise_warp import warped_noise

T, H, W, C = 5, 32, 32, 16
Z = 5.0  # standard errors


def smooth_flows(amp: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(T - 1, 2, 3, 3, generator=g, dtype=torch.float64) * amp
    return F.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).float()


def assert_standard_iid(frame: torch.Tensor) -> None:
    """``frame [C, h, w]``: sample mean, variance and neighbour products against 0, 1, 0 (float64 sums)."""
    v = frame.double()
    n = v.numel()
    assert abs(float(v.mean())) < Z / math.sqrt(n)
    assert abs(float((v * v).mean()) - 1) < Z * math.sqrt(2 / n)  # E x^2 = 1, Var x^2 = 2
    for a, b in ((v[:, :, 1:], v[:, :, :-1]), (v[:, 1:], v[:, :-1]), (v[1:], v[:-1])):
        assert abs(float((a * b).mean())) < Z / math.sqrt(a.numel())  # E xy = 0, Var xy = 1 if independent


@settings(max_examples=20, deadline=None)
@given(amp=st.floats(0.0, 8.0), flow_seed=st.integers(0, 2**16), seed=st.integers(0, 2**16),
       grid_scale=st.sampled_from([1, 2, 4]), downscale=st.sampled_from([1, 2, 4]))
def test_frames_stay_iid_standard_normal_under_random_smooth_flows(amp, flow_seed, seed, grid_scale, downscale):
    n = warped_noise(smooth_flows(amp, flow_seed), C, grid_scale=grid_scale, downscale=downscale,
                     generator=torch.Generator().manual_seed(seed))
    assert n.shape == (T, C, H // downscale, W // downscale)
    for t in range(T):
        assert_standard_iid(n[t])


@settings(max_examples=15, deadline=None)
@given(dx=st.integers(-40, 40), dy=st.integers(-40, 40), seed=st.integers(0, 2**16))
def test_frames_stay_iid_standard_normal_under_translations_of_any_size(dx, dy, seed):
    """Including shifts past the whole frame (all fresh noise) and sub-block shifts."""
    flows = torch.zeros(T - 1, H, W, 2)
    flows[..., 0], flows[..., 1] = dx, dy
    n = warped_noise(flows, C, grid_scale=2, downscale=2, generator=torch.Generator().manual_seed(seed))
    for t in range(T):
        assert_standard_iid(n[t])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), grid_scale=st.sampled_from([1, 2, 4]))
def test_the_identity_flow_keeps_the_noise(seed, grid_scale):
    n = warped_noise(torch.zeros(T - 1, H, W, 2), C, grid_scale=grid_scale, downscale=2,
                     generator=torch.Generator().manual_seed(seed))
    for t in range(1, T):
        torch.testing.assert_close(n[t], n[0], atol=1e-5, rtol=0)
