"""Feature reprojection against ground truth: the exact shift of a plane, the exact forward warp of a
procedural room (within 1 px where the surface is visible), view averaging, and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError
from vdm3d.geometry.reproject import EXTRA_CHANNELS, depth_planes, reproject_features
from vdm3d.geometry.warp import forward_warp
from vdm3d.views import Views

W, H, FOCAL = 16, 12, 10.0


def _camera(tx: float = 0.0, yaw_pi: bool = False) -> Cameras:
    K = torch.tensor([[FOCAL, 0.0, W / 2], [0.0, FOCAL, H / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64)
    if yaw_pi:  # looking backwards (-z): sees nothing in front of the other cameras
        c2w[0, 0] = c2w[2, 2] = -1.0
    c2w[0, 3] = tx
    return Cameras(K[None], c2w[None], W, H)


def _coordinates(cams: Cameras) -> torch.Tensor:
    """The source pixel coordinates as a feature map ``[2, H, W]`` (u, v of each pixel centre)."""
    return cams.pixel_grid().permute(2, 0, 1)


def _batch(*cams: Cameras) -> Cameras:
    return Cameras.cat(list(cams)).reshape(1, len(cams))


def test_depth_planes_are_uniform_in_inverse_depth_with_both_ends():
    d = depth_planes(torch.tensor([0.5]), torch.tensor([8.0]), 5)[0]
    torch.testing.assert_close(d[[0, -1]], torch.tensor([0.5, 8.0]))
    inv = 1 / d
    torch.testing.assert_close(inv[1:] - inv[:-1], torch.full((4,), (1 / 8 - 2) / 4))


def test_a_plane_reprojects_by_exactly_focal_times_baseline_over_depth():
    # target moved +1 along x looking at a plane at z = 5: its pixel u sees source pixel u + F / 5 = u + 2
    src, tgt = _camera(), _camera(1.0)
    feats = _coordinates(src)[None, None]  # [1, 1, 2, H, W]
    out = reproject_features(feats, _batch(src), _batch(tgt), torch.tensor([[5.0]], dtype=torch.float64))
    assert out.shape == (1, 1, 1, 2 + EXTRA_CHANNELS, H, W)
    u = tgt.pixel_grid()[..., 0]
    seen = out[0, 0, 0, 3]
    torch.testing.assert_close(seen[:, :W - 2], torch.ones(H, W - 2, dtype=torch.float64))
    assert not seen[:, W - 2:].any()  # beyond the source's right border
    torch.testing.assert_close(out[0, 0, 0, 0, :, :W - 2], u[:, :W - 2] + 2)
    torch.testing.assert_close(out[0, 0, 0, 1], tgt.pixel_grid()[..., 1] * seen)


def test_sources_that_do_not_see_a_point_are_left_out_of_the_mean():
    ahead, behind, tgt = _camera(), _camera(yaw_pi=True), _camera(0.5)
    feats = torch.stack([_coordinates(ahead), _coordinates(behind) + 100])[None]  # [1, 2, 2, H, W]
    depth = torch.tensor([[4.0]], dtype=torch.float64)
    both = reproject_features(feats, _batch(ahead, behind), _batch(tgt), depth)
    alone = reproject_features(feats[:, :1], _batch(ahead), _batch(tgt), depth)
    seen = alone[0, 0, 0, 3] > 0
    torch.testing.assert_close(both[0, 0, 0, :2][:, seen], alone[0, 0, 0, :2][:, seen])
    torch.testing.assert_close(both[0, 0, 0, 3][seen], torch.full_like(both[0, 0, 0, 3][seen], 0.5))
    assert not both[0, 0, 0, 2].any()  # one seeing source: no variance
    # a padded source (view_mask 0) counts for nothing, not even in the fraction
    masked = reproject_features(feats, _batch(ahead, ahead), _batch(tgt), depth,
                                view_mask=torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(masked, alone)


def test_two_sources_that_disagree_show_their_variance():
    a, b, tgt = _camera(), _camera(0.2), _camera(0.1)
    feats = torch.stack([torch.zeros(1, H, W), torch.ones(1, H, W)])[None].double()
    out = reproject_features(feats, _batch(a, b), _batch(tgt), torch.tensor([[3.0]], dtype=torch.float64))
    both = out[0, 0, 0, 2] == 1.0  # fraction seeing
    assert both.sum() > 0.5 * H * W
    torch.testing.assert_close(out[0, 0, 0, 0][both], torch.full_like(out[0, 0, 0, 0][both], 0.5))
    torch.testing.assert_close(out[0, 0, 0, 1][both], torch.full_like(out[0, 0, 0, 1][both], 0.25))


def test_gradients_reach_the_features():
    src, tgt = _camera(), _camera(0.3)
    feats = torch.rand(1, 1, 2, H, W, dtype=torch.float64, requires_grad=True)
    planes = torch.tensor([[2.0, 6.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: reproject_features(f, _batch(src), _batch(tgt), planes), (feats,))


def test_bad_shapes_are_named():
    src = _camera()
    with pytest.raises(InputError, match="sources"):
        reproject_features(torch.zeros(1, 2, 2, H, W), _batch(src), _batch(src), torch.ones(1, 1))
    with pytest.raises(InputError, match="depths"):
        reproject_features(torch.zeros(1, 1, 2, H, W), _batch(src), _batch(src), torch.ones(1, 1, 1))


@pytest.fixture(scope="module")
def room():
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.geometry.mesh_render import render_buffers

    scene = make_room(1_000_003)
    cams = room_path(scene, 12, 1_000_003 * 16, width=64, height=64, fov_deg=60.0, step=0.06).to(dtype=torch.float64)
    b = render_buffers(scene, cams[[0, 5]], ssaa=1)
    return cams[[0, 5]], b.rgb.double(), b.depth.double()


def test_the_input_image_reprojects_within_one_pixel_of_the_exact_forward_warp(room):
    # feature = the source's pixel coordinates, sample depth = the target's true depth: the result is the
    # source position every target pixel sees; the forward warp (z-buffered splatting of the source with
    # its own true depth) says which source pixel lands there; where the surface is visible from both,
    # the two agree to within a pixel
    cams, rgb, depth = room
    src, tgt = cams[:1], cams[1:]
    feats = torch.cat([_coordinates(src), rgb[0].permute(2, 0, 1)])[None, None]  # [1, 1, 5, H, W]
    out = reproject_features(feats, src.reshape(1, 1), tgt.reshape(1, 1), depth[1][None, None, None])
    coords, colour, seen = out[0, 0, 0, :2], out[0, 0, 0, 2:5], out[0, 0, 0, -1] > 0
    # Views hold images in [0, 1]: the pixel coordinates travel divided by 64 (exact in binary floating point)
    uv_image = torch.cat([src.pixel_grid() / 64, torch.zeros(64, 64, 1, dtype=torch.float64)], -1)[None]
    warp = forward_warp(Views(uv_image, src, depths=depth[:1]), tgt)
    visible = (warp.confidence[0] > 0) & (depth[1] > 0) & seen \
        & ((warp.depths[0] - depth[1]).abs() < 0.02 * depth[1])
    assert visible.float().mean() > 0.25
    err = (coords.permute(1, 2, 0) - 64 * warp.images[0, ..., :2]).abs().amax(-1)[visible]  # px, worse axis
    assert float(err.mean()) < 0.6  # measured 0.47: the warp snaps to source pixel centres, +-0.5 px
    assert float(err.max()) < 1.5
    assert float((err <= 1.0).float().mean()) > 0.99
    # and the reprojected colours are the target's own where it is visible
    mse = float(((colour.permute(1, 2, 0) - rgb[1]) ** 2)[visible].mean())
    assert -10 * math.log10(mse) > 25.0
