"""The online Gaussian cache on an exact procedural room view: growth, caps, depth alignment, refit."""

import pytest
import torch

from vdm3d.metrics.image import psnr
from vdm3d.recon.cache import CacheConfig, align_depth, cap_cache, fit_cache, grow_cache
from vdm3d.splat.render import render
from vdm3d.views import Views


@pytest.fixture(scope="module")
def room():
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.geometry.mesh_render import render_buffers

    scene = make_room(1_000_003)
    cams = room_path(scene, 6, 5, width=64, height=64, fov_deg=60.0, step=0.06)
    buf = render_buffers(scene, cams, ssaa=3)
    return cams, buf.rgb.float(), buf.depth.float()


def test_cache_of_one_view_renders_that_view_back_with_its_depth(room):
    cams, rgb, depth = room
    cache = grow_cache(None, rgb[:1], depth[:1], cams[:1], None, CacheConfig(), torch.Generator().manual_seed(0))
    assert len(cache) == int((depth[0] > 0).sum()) > 3000  # every pixel with a surface
    out = render(cache, cams[:1])
    seen = depth[0] > 0  # pixels with a surface (an opening shows nothing)
    mse = float(((out.rgb[0].clamp(0, 1) - rgb[0]) ** 2).mean(-1)[seen].mean())
    assert -10 * torch.log10(torch.tensor(mse)) > 22.0  # 23.5 dB: oblique walls blur (isotropic splats)
    rel = ((out.depth[0] - depth[0]).abs() / depth[0])[seen]
    assert float(rel.median()) < 0.02 and float((out.alpha[0][seen] > 0.5).float().mean()) > 0.99


def test_growth_is_capped_per_frame_and_in_total(room):
    cams, rgb, depth = room
    cfg = CacheConfig(per_frame=500, max_total=1200)
    gen = torch.Generator().manual_seed(0)
    cache = grow_cache(None, rgb[:2], depth[:2], cams[:2], None, cfg, gen)
    assert len(cache) == 1000
    cache = grow_cache(cache, rgb[2:4], depth[2:4], cams[2:4], None, cfg, gen)
    assert len(cache) == 1200
    lower = cache.opacity_logits.clone()
    lower[:10] = -5.0
    from vdm3d.splat.gaussians import Gaussians
    dimmed = Gaussians(cache.means, cache.quats, cache.log_scales, lower, cache.sh)
    kept = cap_cache(dimmed, 1190)
    assert torch.equal(kept.means, cache.means[10:])  # the least opaque go, the order stays


def test_align_depth_recovers_scale_and_shift_on_valid_pixels():
    ref = 1.0 + torch.rand(32, 32) * 3
    pred = (ref - 0.3) / 2.5
    mask = torch.rand(32, 32) > 0.5
    pred_bad = torch.where(mask, pred, torch.full_like(pred, 9.0))  # invalid pixels must not matter
    out, scale, shift = align_depth(pred_bad, ref, mask)
    assert scale == pytest.approx(2.5, rel=1e-5) and shift == pytest.approx(0.3, abs=1e-5)
    torch.testing.assert_close(out[mask], ref[mask])
    _, s, t = align_depth(pred, ref, torch.zeros_like(mask), fallback_scale=3.0)
    assert (s, t) == (3.0, 0.0)


def test_fit_moves_the_cache_toward_new_views(room):
    cams, rgb, depth = room
    cfg = CacheConfig(fit_steps=20, per_frame=1500)
    cache = grow_cache(None, rgb[:1], depth[:1], cams[:1], None, cfg, torch.Generator().manual_seed(0))
    target = Views(rgb[:3], cams[:3], depths=depth[:3])
    before = float(psnr(render(cache, cams[1:3]).rgb.clamp(0, 1), rgb[1:3]).mean())
    fitted = fit_cache(cache, target, cfg, seed=0)
    after = float(psnr(render(fitted, cams[1:3]).rgb.clamp(0, 1), rgb[1:3]).mean())
    assert len(fitted) == len(cache) and after > before + 0.5


def test_fit_with_frozen_gaussians_moves_only_the_new_ones(room):
    cams, rgb, depth = room
    cfg = CacheConfig(fit_steps=10, per_frame=800)
    g = torch.Generator().manual_seed(0)
    old = grow_cache(None, rgb[:1], depth[:1], cams[:1], None, cfg, g)
    grown = grow_cache(old, rgb[2:3], depth[2:3], cams[2:3], None, cfg, g)
    n = len(old)
    fitted = fit_cache(grown, Views(rgb[:3], cams[:3], depths=depth[:3]), cfg, seed=0, frozen=n)
    before, after = grown.parameters(), fitted.parameters()
    for k in before:  # the first n are bit-identical, the new ones moved
        assert torch.equal(after[k][:n], before[k][:n]), k
    assert (after["means"][n:] - before["means"][n:]).abs().max() > 1e-4
    assert (after["sh_dc"][n:] - before["sh_dc"][n:]).abs().max() > 1e-4
    free = fit_cache(grown, Views(rgb[:3], cams[:3], depths=depth[:3]), cfg, seed=0)
    assert (free.parameters()["means"][:n] - before["means"][:n]).abs().max() > 1e-4  # unfrozen: the old move too
