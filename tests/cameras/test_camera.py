"""Cameras: projection round trips, gradients, rays, intrinsics edits, validation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vdm3d.cameras import Cameras, look_at, rigid_inverse
from vdm3d.errors import CameraError


def random_cameras(n: int, seed: int = 0, dtype=torch.float64) -> Cameras:
    g = torch.Generator().manual_seed(seed)
    eye = torch.randn(n, 3, generator=g, dtype=dtype) * 3 + torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
    target = torch.randn(n, 3, generator=g, dtype=dtype) * 0.3 + torch.tensor([0.7, 0.2, -0.4], dtype=dtype)
    c2w = look_at(eye, target, torch.tensor([0.0, 0.0, 1.0], dtype=dtype).expand(n, 3))
    f = 50 + 100 * torch.rand(n, generator=g, dtype=dtype)
    Ks = torch.zeros(n, 3, 3, dtype=dtype)
    Ks[:, 0, 0], Ks[:, 1, 1] = f, f * 1.1
    Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = 40.3, 29.7, 1
    return Cameras(Ks, c2w, 80, 60)


def test_project_known_point():
    cams = Cameras.from_fov(90.0, 100, 50, torch.eye(4))
    uv, z = cams.project(torch.tensor([[1.0, 0.5, 2.0]]))
    # fx = 50 / tan(45 deg) = 50: u = 50 * 1/2 + 50, v = 50 * 0.5/2 + 25
    assert torch.allclose(uv, torch.tensor([[75.0, 37.5]]))
    assert torch.allclose(z, torch.tensor([2.0]))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 5))
def test_project_unproject_round_trip(seed, n):
    cams = random_cameras(n, seed)
    g = torch.Generator().manual_seed(seed)
    uv = torch.rand(n, 17, 2, generator=g, dtype=torch.float64) * torch.tensor([80.0, 60.0], dtype=torch.float64)
    depth = 0.5 + 5 * torch.rand(n, 17, generator=g, dtype=torch.float64)
    points = cams.unproject(uv, depth)
    uv2, depth2 = cams.project(points)
    torch.testing.assert_close(uv2, uv, atol=1e-9, rtol=0)
    torch.testing.assert_close(depth2, depth, atol=1e-9, rtol=0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_w2c_is_inverse(seed):
    cams = random_cameras(4, seed)
    eye = torch.eye(4, dtype=torch.float64).expand(4, 4, 4)
    torch.testing.assert_close(cams.w2c @ cams.c2w, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(rigid_inverse(cams.w2c), cams.c2w, atol=1e-12, rtol=0)


def test_look_at_points_forward_and_up():
    c2w = look_at(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cams = Cameras.from_fov(60.0, 64, 64, c2w)
    torch.testing.assert_close(cams.forward, torch.tensor([0.0, 1.0, 0.0]))
    # a point above the target must appear in the upper half of the image (smaller v)
    uv, _ = cams.project(torch.tensor([[0.0, 0.0, 0.5]]))
    assert uv[0, 1] < 32 and abs(uv[0, 0] - 32) < 1e-5


def test_gradcheck_project_unproject():
    cams = random_cameras(2, 3)
    points = torch.randn(2, 5, 3, dtype=torch.float64) * 0.3 + torch.tensor([0.7, 0.2, -0.4], dtype=torch.float64)
    points.requires_grad_(True)
    c2w = cams.c2w.clone().requires_grad_(True)
    Ks = cams.Ks.clone().requires_grad_(True)

    def proj(p, K, T):
        uv, z = Cameras(K, T, 80, 60).project(p)
        return uv, z

    assert torch.autograd.gradcheck(proj, (points, Ks, c2w))
    uv = torch.rand(2, 5, 2, dtype=torch.float64).mul(50).requires_grad_(True)
    depth = torch.rand(2, 5, dtype=torch.float64).add(1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, K, T: Cameras(K, T, 80, 60).unproject(a, b), (uv, depth, Ks, c2w))


def test_rays_hit_unprojected_points():
    cams = random_cameras(2, 7)
    o, d = cams.rays(normalize=False)
    depth = torch.full((2, 60, 80), 2.5, dtype=torch.float64)
    pts_rays = o + d * depth[..., None]
    pts_unproj = cams.unproject(cams.pixel_grid().reshape(1, -1, 2).expand(2, -1, -1), depth.reshape(2, -1))
    torch.testing.assert_close(pts_rays.reshape(2, -1, 3), pts_unproj)
    pl = cams.plucker()
    assert pl.shape == (2, 60, 80, 6)
    # the moment o x d is orthogonal to d
    assert (pl[..., :3] * pl[..., 3:]).sum(-1).abs().max() < 1e-9


def test_resize_and_crop_keep_the_projection():
    cams = random_cameras(3, 11)
    p = torch.randn(3, 9, 3, dtype=torch.float64) * 0.2 + torch.tensor([0.7, 0.2, -0.4], dtype=torch.float64)
    uv, _ = cams.project(p)
    uv_half, _ = cams.resize(40, 30).project(p)
    torch.testing.assert_close(uv_half, uv * 0.5)
    uv_crop, _ = cams.crop(10, 5, 30, 30).project(p)
    torch.testing.assert_close(uv_crop, uv - torch.tensor([10.0, 5.0], dtype=torch.float64))


def test_indexing_and_cat():
    cams = random_cameras(5)
    assert cams[1:3].shape == (2,)
    assert cams[2].shape == ()
    both = Cameras.cat([cams[:2], cams[2:]])
    torch.testing.assert_close(both.c2w, cams.c2w)
    grid = cams[:4].reshape(2, 2)
    torch.testing.assert_close(grid[1].c2w, cams.c2w[2:4])


@pytest.mark.parametrize("field", ["nan", "nonortho", "focal", "bottom"])
def test_validate_names_frame_and_field(field):
    cams = random_cameras(4)
    Ks, c2w = cams.Ks.clone(), cams.c2w.clone()
    if field == "nan":
        c2w[2, 0, 3] = math.nan
        match = "frame 2 field c2w"
    elif field == "nonortho":
        c2w[1, :3, 0] *= 1.2
        match = "frame 1 field rotation"
    elif field == "focal":
        Ks[3, 0, 0] = -1
        match = "frame 3 field focal"
    else:
        c2w[0, 3, 0] = 0.5
        match = "frame 0 field c2w"
    with pytest.raises(CameraError, match=match):
        Cameras(Ks, c2w, 80, 60).validate()


def test_mirrored_cameras_see_the_reflected_points_at_the_flipped_pixels():
    """Cameras.mirrored(n, d): each camera reflected through the plane n . x = d (batch, off-origin plane,
    unnormalised normal, off-centre principal points) sees a point's reflection where it saw the point, flipped."""
    cams = random_cameras(4, seed=3)
    n, d = torch.tensor([0.3, -1.2, 0.4], dtype=torch.float64), 0.35
    mirror = cams.mirrored(n, d)
    unit = n / n.norm()
    points = torch.randn(4, 50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.5
    reflected = points - 2 * ((points @ unit) - d)[..., None] * unit
    uv, z = cams.project(points)
    uv_m, z_m = mirror.project(reflected)
    torch.testing.assert_close(uv_m[..., 0], 80 - uv[..., 0], atol=1e-9, rtol=0)
    torch.testing.assert_close(uv_m[..., 1], uv[..., 1], atol=1e-9, rtol=0)
    torch.testing.assert_close(z_m, z, atol=1e-9, rtol=0)
    assert bool((torch.linalg.det(mirror.c2w[:, :3, :3]) > 0).all())  # still rotations
    mirror.validate()
    torch.testing.assert_close(mirror.mirrored(n, d).c2w, cams.c2w, atol=1e-12, rtol=0)  # twice is the identity
