"""TSDF fusion against analytic truth: depth maps of a sphere and of a box, fused and meshed."""

import math

import numpy as np
import torch
import trimesh

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.geometry.tsdf import fuse_tsdf, remove_small_components, tsdf_mesh
from vdm3d.metrics.geometry import mesh_distance


def orbit(n=16, radius=2.5, size=64, fov=40.0):
    az = torch.arange(n) * 2 * math.pi / n
    el = torch.where(torch.arange(n) % 2 == 0, 0.6, -0.5)
    eye = radius * torch.stack([torch.cos(az) * torch.cos(el), torch.sin(az) * torch.cos(el), torch.sin(el)], -1)
    return Cameras.from_fov(fov, size, size, look_at(eye, torch.zeros(n, 3), torch.tensor([0, 0, 1.0]).expand(n, 3)))


def z_depth(cams, t_unit):
    """Ray parameter along unit directions -> z-depth (inf where there is no hit)."""
    _, d = cams.rays(normalize=False)
    return t_unit / d.norm(dim=-1)


def sphere_depth(cams, r):
    o, d = cams.rays()
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - r * r)
    t = torch.where(disc > 0, -b - disc.clamp_min(0).sqrt(), torch.full_like(b, float("inf")))
    return z_depth(cams, t)


def box_depth(cams, half):
    o, d = cams.rays()
    inv = 1 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t1, t2 = (-half - o) * inv, (half - o) * inv
    tnear = torch.minimum(t1, t2).amax(-1)
    tfar = torch.maximum(t1, t2).amin(-1)
    t = torch.where((tnear < tfar) & (tnear > 0), tnear, torch.full_like(tnear, float("inf")))
    return z_depth(cams, t)


def test_sphere_depth_fuses_to_the_sphere():
    cams, r = orbit(), 0.6
    mesh = tsdf_mesh(sphere_depth(cams, r), cams, torch.tensor([-1.0, -1, -1]), 2.0, resolution=64)
    radial = np.linalg.norm(mesh.vertices, axis=1)
    voxel = 2.0 / 64
    assert abs(radial.mean() - r) < 0.25 * voxel and radial.std() < 0.25 * voxel
    assert mesh.is_watertight and abs(mesh.volume - 4 / 3 * math.pi * r ** 3) < 0.03 * 4 / 3 * math.pi * r ** 3


def test_box_depth_fuses_to_the_box():
    cams = orbit(n=20)
    half = torch.tensor([0.5, 0.3, 0.4])
    mesh = tsdf_mesh(box_depth(cams, half), cams, torch.tensor([-0.8, -0.8, -0.8]), 1.6, resolution=64)
    truth = trimesh.creation.box(extents=(2 * half).numpy())
    d = mesh_distance(mesh, truth, tau=0.025)
    # marching cubes rounds the box's edges and corners by about a voxel (0.025): the rest is exact
    assert d.chamfer < 0.01 and d.fscore > 0.97
    assert mesh.is_watertight and abs(mesh.volume - truth.volume) < 0.05 * truth.volume


def test_unseen_interior_is_inside_and_unseen_exterior_outside():
    cams = orbit(n=8)
    vol = fuse_tsdf(sphere_depth(cams, 0.6), cams, torch.tensor([-1.0, -1, -1]), 2.0, resolution=32)
    assert float(vol.tsdf[16, 16, 16]) == -1.0  # centre of the sphere: deep behind every surface
    assert float(vol.tsdf[0, 0, 0]) == 1.0  # a grid corner: free space


def test_small_components_are_removed():
    big = trimesh.creation.icosphere(subdivisions=3)
    small = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    small.apply_translation([3, 0, 0])
    merged = trimesh.util.concatenate([big, small])
    cleaned = remove_small_components(merged, 0.1)
    assert len(cleaned.faces) == len(big.faces)
