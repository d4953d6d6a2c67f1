"""Guiders: SV3D's triangle, SVD's ramp, CFG = 1 equals no guidance, rescale vs diffusers, windows."""

from __future__ import annotations

import pytest
import torch

from vdm3d.diffusion.guiders import CFG, sv3d_cfg, svd_cfg
from vdm3d.diffusion.parameterizations import NativeView
from vdm3d.diffusion.samplers import sample
from vdm3d.diffusion.schedules import EdmSchedule
from vdm3d.diffusion.testing import ConvDenoiser, GaussianDataDenoiser
from vdm3d.errors import ConfigError
from vdm3d.protocols import Conditioning


def test_sv3d_triangular_schedule_for_21_frames():
    w = sv3d_cfg().frame_scales(21)
    expected = torch.tensor([1.0 + 0.15 * f for f in range(11)] + [2.5 - 0.15 * f for f in range(1, 11)])
    torch.testing.assert_close(w, expected)
    assert w[10] == pytest.approx(2.5) and w[0] == w[20] == pytest.approx(1.0)


def test_svd_linear_ramp():
    torch.testing.assert_close(svd_cfg(1.0, 3.0).frame_scales(5), torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))
    torch.testing.assert_close(CFG(scale=4.5).frame_scales(3), torch.full((3,), 4.5))


def test_cfg_scale_one_equals_no_guidance():
    bb = ConvDenoiser(width=8, resolution=(8, 8))
    cond = Conditioning(reference=torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(1)))
    sig = EdmSchedule(6, sigma_max=80.0).sigmas()
    runs = [sample(bb, sig, cond=cond, shape=(1, 3, 3, 8, 8), generator=torch.Generator().manual_seed(5),
                   guider=gd) for gd in (None, CFG(scale=1.0), CFG(scale=2.0))]
    torch.testing.assert_close(runs[1], runs[0], atol=1e-5, rtol=1e-5)
    assert (runs[2] - runs[0]).abs().max() > 1e-2  # and guidance does something when it is not 1


def test_cfg_on_gaussian_data_samples_the_guided_mean_per_frame():
    # Both branches are exact Gaussian denoisers with the same variance, so CFG with weight w_f is
    # the exact denoiser of N(mu_u + w_f (mu_c - mu_u), var): frame means follow the triangle.
    bb = GaussianDataDenoiser(mean=0.4, var=0.5, null_mean=-0.2)
    n = 4000
    g = torch.Generator().manual_seed(0)
    x = sample(bb, EdmSchedule(50).sigmas(), shape=(n, 21, 1, 1, 1), generator=g, guider=sv3d_cfg())
    expected = -0.2 + sv3d_cfg().frame_scales(21) * 0.6
    assert (x.mean(dim=(0, 2, 3, 4)) - expected).abs().max() < 4 * (0.5 / n) ** 0.5


@pytest.mark.parametrize(("prediction", "process"),
                         [("v", "vp"), ("eps", "vp"), ("flow", "flow"), ("v", "edm")])
def test_rescale_matches_diffusers_rescale_noise_cfg(prediction, process):
    try:
        from diffusers.guiders.guider_utils import rescale_noise_cfg
    except ImportError:  # diffusers before 0.35 (pyproject allows 0.33): the same function, in its first home
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, 5, generator=g, dtype=torch.float64) * 3
    sigma = torch.tensor([2.0, 0.7], dtype=torch.float64)
    x0_c = torch.randn(x.shape, generator=g, dtype=torch.float64)
    x0_u = torch.randn(x.shape, generator=g, dtype=torch.float64)
    native = NativeView.from_ve(x, sigma, prediction, process)
    guider = CFG(scale=7.5, rescale=0.7)
    ours = native.raw(guider.combine(x0_c, x0_u, native))
    raw_c, raw_u = native.raw(x0_c), native.raw(x0_u)
    ref = rescale_noise_cfg(raw_u + 7.5 * (raw_c - raw_u), raw_c, guidance_rescale=0.7)
    torch.testing.assert_close(ours, ref)
    assert (ours - (raw_u + 7.5 * (raw_c - raw_u))).abs().max() > 1e-3


def test_window_skips_the_unconditional_branch_outside_it():
    bb = GaussianDataDenoiser(null_mean=1.0)
    sample(bb, EdmSchedule(10).sigmas(), shape=(1, 2, 3, 2, 2), generator=torch.Generator().manual_seed(0),
           guider=CFG(scale=3.0, start=0.5, stop=0.8))
    assert bb.calls == 10 + 3  # steps 5, 6, 7 are guided


def test_bad_windows_are_refused():
    with pytest.raises(ConfigError):
        CFG(start=0.8, stop=0.2)
    with pytest.raises(ConfigError):
        CFG(rescale=1.5)


def test_batched_branches_agree_with_two_calls_and_make_one_call_per_step():
    """CFG with both branches in one denoiser call on [x; x] equals the two-call loop (same numbers up to
    float rounding of a larger batch), with half the calls."""
    bb = ConvDenoiser(width=8, resolution=(8, 8))
    cond = Conditioning(reference=torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(1)))
    sig = EdmSchedule(5, sigma_max=80.0).sigmas()
    out = {}
    for batched in (True, False):
        bb.calls = 0
        out[batched] = sample(bb, sig, cond=cond, shape=(2, 21, 3, 8, 8), guider=sv3d_cfg(),
                              generator=torch.Generator().manual_seed(5), batch_guidance=batched)
        out[(batched, "calls")] = bb.calls
    torch.testing.assert_close(out[True], out[False], rtol=1e-5, atol=1e-5)
    assert out[(True, "calls")] == 5 and out[(False, "calls")] == 10
    unguided = sample(bb, sig, cond=cond, shape=(2, 21, 3, 8, 8), generator=torch.Generator().manual_seed(5))
    assert (out[True] - unguided).abs().max() > 1e-2  # guidance did something


@pytest.mark.parametrize("guider", [CFG(scale=1.0), CFG(scale=1.0, rescale=0.7),
                                    CFG(scale=1.0, min_scale=1.0, over_frames="triangular"),
                                    CFG(scale=3.0, min_scale=1.0, over_frames="linear")])
def test_unit_weights_skip_the_unconditional_branch(guider):
    """Where every frame's weight is 1 the null condition is neither encoded nor evaluated, and the
    result is exactly the conditional sample (a linear ramp over 1 frame has weight min_scale = 1)."""
    encoded = []

    class Spy(GaussianDataDenoiser):
        def condition(self, cond, *, null=False):
            encoded.append(null)
            return super().condition(cond, null=null)

    bb = Spy(mean=0.4, var=0.5, null_mean=-0.2)
    kw = dict(shape=(1, 1, 3, 2, 2), cond=Conditioning())
    out = sample(bb, EdmSchedule(6).sigmas(), guider=guider, generator=torch.Generator().manual_seed(0), **kw)
    ref = sample(bb, EdmSchedule(6).sigmas(), generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(out, ref)
    assert bb.calls == 12 and encoded == [False, False]
    if guider.scale != 1.0:
        assert not guider.unit(2)  # ...but over 2 frames the ramp reaches 3: guided again
