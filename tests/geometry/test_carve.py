"""Space carving against analytic truth: the visual hull of a sphere seen from an orbit."""

import math

import numpy as np
import pytest
import torch

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.errors import InputError
from vdm3d.geometry.carve import axes_center, carve, carve_occupancy, grid_points
from vdm3d.metrics.geometry import point_distance


def orbit(n=18, radius=2.5, elevations=(0.5, -0.5), target=(0.0, 0.0, 0.0), size=64, fov=40.0):
    az = torch.arange(n) * 2 * math.pi / n
    el = torch.tensor([elevations[i % len(elevations)] for i in range(n)])
    offset = torch.stack([torch.cos(az) * torch.cos(el), torch.sin(az) * torch.cos(el), torch.sin(el)], -1)
    t = torch.tensor(target).expand(n, 3)
    c2w = look_at(t + radius * offset, t, torch.tensor([0, 0, 1.0]).expand(n, 3))
    return Cameras.from_fov(fov, size, size, c2w)


def sphere_masks(cams, center, r):
    o, d = cams.rays()
    oc = o - torch.tensor(center)
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - r * r
    return (b * b - c > 0).float()


def test_axes_center_finds_the_look_at_target():
    cams = orbit(target=(0.3, -0.2, 0.4), elevations=(0.3,))
    torch.testing.assert_close(axes_center(cams), torch.tensor([0.3, -0.2, 0.4]), atol=1e-4, rtol=0)


def test_carved_sphere_is_close_to_the_true_sphere():
    center, r = (0.2, -0.1, 0.1), 0.6
    cams = orbit(n=24, elevations=(0.6, -0.6, 0.0), target=center)
    res = carve(sphere_masks(cams, center, r), cams, num_points=3000, resolution=64)
    # the visual hull contains the sphere: every sphere point is inside the occupied grid
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(2000, 3))
    inner = torch.tensor(np.array(center) + 0.9 * r * dirs / np.linalg.norm(dirs, axis=1, keepdims=True),
                         dtype=torch.float32)
    idx = torch.floor((inner - res.lo) / res.voxel).long()
    assert res.occupancy[idx[:, 0], idx[:, 1], idx[:, 2]].all()
    # and its surface samples lie close to the sphere (the hull of 24 views hugs it)
    radial = (res.points_world - torch.tensor(center)).norm(dim=-1)
    assert abs(float(radial.mean()) - r) < 0.03
    truth = np.array(center) + r * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    d = point_distance(res.points_world.numpy(), truth, tau=0.05)
    assert d.chamfer < 0.03 and d.fscore > 0.9
    assert res.mesh.is_watertight and abs(res.mesh.volume - 4 / 3 * math.pi * r ** 3) < 0.1 * 4 / 3 * math.pi * r ** 3
    # normals point outward
    assert float(((res.points_world - torch.tensor(center)) * res.normals_world).sum(-1).min()) > 0


def test_one_view_with_no_foreground_carves_everything_away():
    cams = orbit(n=6)
    masks = sphere_masks(cams, (0, 0, 0), 0.5) > 0.5
    masks[2] = False
    with pytest.raises(InputError, match="foreground in every view"):
        carve_occupancy(masks, cams, resolution=16)


def test_grid_points_are_voxel_centres():
    pts = grid_points(torch.tensor([0.0, 0.0, 0.0]), 0.5, 2)
    assert pts.shape == (8, 3)
    torch.testing.assert_close(pts[0], torch.tensor([0.25, 0.25, 0.25]))
    torch.testing.assert_close(pts[-1], torch.tensor([0.75, 0.75, 0.75]))
