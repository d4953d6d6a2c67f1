"""Forward warping: exact pixel shifts of a plane, the z-test, the numpy implementation it replaced,
and exact renders of a procedural object."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.data.procedural import make_object, orbit_cameras
from vdm3d.errors import InputError
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.geometry.warp import forward_warp
from vdm3d.views import Views

W, H, F = 16, 12, 10.0  # focal length in pixels


def _camera(tx: float = 0.0) -> Cameras:
    K = torch.tensor([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[0, 3] = tx
    return Cameras(K[None], c2w[None], W, H)


def _pattern() -> torch.Tensor:
    return torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_a_plane_moves_by_exactly_focal_times_baseline_over_depth():
    # a fronto-parallel plane at z = 5 seen by a camera moved 1 unit along +x: u' = u - F * 1 / 5 = u - 2
    rgb = _pattern()
    src = Views(rgb, _camera(), depths=torch.full((1, H, W), 5.0, dtype=torch.float64))
    out = forward_warp(src, _camera(1.0))
    assert torch.equal(out.images[0, :, :W - 2], rgb[0, :, 2:])  # every pixel two columns to the left
    assert torch.equal(out.confidence[0, :, :W - 2], torch.ones(H, W - 2, dtype=torch.float64))
    assert not out.confidence[0, :, W - 2:].any() and not out.images[0, :, W - 2:].any()  # out of view: holes
    torch.testing.assert_close(out.depths[0, :, :W - 2], torch.full((H, W - 2), 5.0, dtype=torch.float64))
    assert out.origin == ("rendered",)


def test_the_nearer_point_wins_a_pixel_whatever_the_source_order():
    # moving right (+x), the near column 4 (depth 2.5, shift -4) and the far column 2 (depth 5,
    # shift -2) both land on column 0, the near one later in source order; moving left, the near
    # column 7 (shift +4) and the far column 9 (shift +2) both land on column 11, the near one first
    for tx, near, far, target in ((1.0, 4, 2, 0), (-1.0, 7, 9, 11)):
        depth = torch.full((1, H, W), 5.0, dtype=torch.float64)
        depth[0, :, near] = 2.5
        rgb = _pattern()
        out = forward_warp(Views(rgb, _camera(), depths=depth), _camera(tx))
        assert torch.equal(out.images[0, :, target], rgb[0, :, near]), tx
        assert not torch.equal(rgb[0, :, near], rgb[0, :, far])
        torch.testing.assert_close(out.depths[0, :, target], torch.full((H,), 2.5, dtype=torch.float64))


def test_bad_sources_are_named():
    with pytest.raises(InputError, match="no depths"):
        forward_warp(Views(_pattern(), _camera()), _camera(1.0))
    two = Cameras.cat([_camera(0.5), _camera(1.0), _camera(2.0)])
    src = Views(_pattern().expand(2, H, W, 3), Cameras.cat([_camera(), _camera()]),
                depths=torch.ones(2, H, W, dtype=torch.float64))
    with pytest.raises(InputError, match="one per target camera"):
        forward_warp(src, two)


def _forward_warp_numpy(rgb, depth, K, c2w_src, c2w_dst, s=2):
    """The numpy implementation this module replaced (lexsort z-buffer), kept as the reference."""
    h, w = depth.shape
    offs = (np.arange(s) + 0.5) / s
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    uu = np.broadcast_to(u[:, :, None, None] + offs[None, None, None, :], (h, w, s, s)).reshape(-1)
    vv = np.broadcast_to(v[:, :, None, None] + offs[None, None, :, None], (h, w, s, s)).reshape(-1)
    src = np.repeat(np.arange(h * w), s * s)
    z = depth.reshape(-1)[src].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    uu, vv, z, src = uu[ok], vv[ok], z[ok], src[ok]
    K64 = torch.as_tensor(K, dtype=torch.float64)
    src_cam = Cameras(K64, torch.as_tensor(c2w_src, dtype=torch.float64), w, h)
    pts = src_cam.unproject(torch.from_numpy(np.stack([uu, vv], -1)), torch.from_numpy(z))
    dst = Cameras(K64.expand(len(c2w_dst), 3, 3), torch.as_tensor(c2w_dst, dtype=torch.float64), w, h)
    uv_all, z_all = dst.project(pts.expand(len(c2w_dst), -1, 3))
    colors = rgb.reshape(h * w, -1)
    warped = np.zeros((len(c2w_dst), h, w, rgb.shape[-1]), rgb.dtype)
    valid = np.zeros((len(c2w_dst), h, w), bool)
    for i in range(len(c2w_dst)):
        zc, uv = z_all[i].numpy(), uv_all[i].numpy()
        front = zc > 1e-6
        pu, pv = np.floor(uv[front, 0]).astype(np.int64), np.floor(uv[front, 1]).astype(np.int64)
        inside = (pu >= 0) & (pu < w) & (pv >= 0) & (pv < h)
        pix, depth_i, col = (pv * w + pu)[inside], zc[front][inside], src[front][inside]
        order = np.lexsort((depth_i, pix))
        first = np.ones(len(order), bool)
        first[1:] = pix[order][1:] != pix[order][:-1]
        win = order[first]
        warped[i].reshape(h * w, -1)[pix[win]] = colors[col[win]]
        valid[i].reshape(-1)[pix[win]] = True
    return warped, valid


def _render(views: int):
    cams = orbit_cameras(36, width=64, height=64, elevation_deg=15.0)[:views]
    return render_buffers(make_object(5), cams), cams


def test_matches_the_numpy_implementation_it_replaced():
    buf, cams = _render(4)
    rgb, depth = buf.rgb[0].double(), buf.depth[0].double()
    out = forward_warp(Views(rgb[None], cams[:1].to(dtype=torch.float64), depths=depth[None]),
                       cams.to(dtype=torch.float64))
    ref, valid = _forward_warp_numpy(rgb.numpy(), depth.numpy(), cams.Ks[0].double().numpy(),
                                     cams.c2w[0].double().numpy(), cams.c2w.double().numpy())
    assert np.array_equal(out.confidence.numpy() > 0, valid)
    assert np.array_equal(out.images.numpy(), ref)
    assert valid[1:].mean() > 0.1 and not valid.all()  # the views overlap, with holes


def test_warp_to_the_same_camera_is_the_identity_on_the_surface():
    buf, cams = _render(1)
    out = forward_warp(Views(buf.rgb, cams, depths=buf.depth), cams)
    surface = buf.depth[0] > 0
    assert torch.equal(out.confidence[0] > 0, surface)
    assert torch.equal(out.images[0][surface], buf.rgb[0][surface])


def test_warp_to_a_nearby_view_matches_its_render():
    buf, cams = _render(2)  # 10 degrees apart
    out = forward_warp(Views(buf.rgb[:1], cams[:1], depths=buf.depth[:1]), cams[1:])
    valid = out.confidence[0].numpy() > 0
    warped, target = out.images[0].numpy(), buf.rgb[1].numpy()
    alpha, edges = buf.alpha[1].numpy(), buf.edges[1].numpy()
    # score interior surface pixels (away from silhouettes and creases, where a 1 px shift is large)
    inner = valid & (alpha > 0.99) & ~ndi.binary_dilation(edges > 0, iterations=1)
    assert inner.sum() > 300  # hundreds of surface pixels are seen from both views
    mse = ((warped[inner] - target[inner]) ** 2).mean()
    assert 10 * np.log10(1 / mse) > 22.0
    sil = alpha > 0.5
    assert (valid & sil).sum() / sil.sum() > 0.85  # the warped coverage is close to the target's silhouette
