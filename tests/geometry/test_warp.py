"""Forward warping against exact renders of the same procedural object."""

from __future__ import annotations

import numpy as np
import torch

from vdm3d.geometry.warp import forward_warp


def _render(views: int = 2):
    from vdm3d.data.procedural import make_object, orbit_cameras
    from vdm3d.geometry.mesh_render import render_buffers

    cams = orbit_cameras(36, width=64, height=64, elevation_deg=15.0)[:views]
    buf = render_buffers(make_object(5), cams)
    return buf, cams


def test_warp_to_the_same_camera_is_the_identity_on_the_surface():
    buf, cams = _render(1)
    rgb = (buf.rgb[0].numpy() * 255).round().astype(np.uint8)
    depth = buf.depth[0].numpy()
    K, c2w = cams.Ks[0].double().numpy(), cams.c2w.double().numpy()
    warped, valid = forward_warp(rgb, depth, K, c2w[0], c2w[:1])
    assert np.array_equal(valid[0], depth > 0)
    assert np.array_equal(warped[0][valid[0]], rgb[valid[0]])


def test_warp_to_a_nearby_view_matches_its_render():
    buf, cams = _render(2)  # 10 degrees apart
    rgb = buf.rgb.numpy()
    K, c2w = cams.Ks[0].double().numpy(), cams.c2w.double().numpy()
    warped, valid = forward_warp(rgb[0], buf.depth[0].numpy(), K, c2w[0], c2w[1:])
    target, alpha, edges = rgb[1], buf.alpha[1].numpy(), buf.edges[1].numpy()
    # score interior surface pixels (away from silhouettes and creases, where a 1 px shift is large)
    import scipy.ndimage as ndi

    inner = valid[0] & (alpha > 0.99) & ~ndi.binary_dilation(edges > 0, iterations=1)
    assert inner.sum() > 300  # hundreds of surface pixels are seen from both views
    mse = ((warped[0][inner] - target[inner]) ** 2).mean()
    assert 10 * np.log10(1 / mse) > 22.0
    # the warped coverage is close to the target's own silhouette
    sil = alpha > 0.5
    assert (valid[0] & sil).sum() / sil.sum() > 0.85
    assert torch.is_tensor(buf.rgb)
