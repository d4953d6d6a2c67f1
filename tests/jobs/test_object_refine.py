"""Masked score distillation: the soft visibility mask against closed forms, and a refine run."""

import dataclasses
import math

import pytest
import torch

from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.jobs.object_refine import points_and_normals, smoothstep, soft_visibility_mask


def sphere_depth(cams, r=0.6):
    o, d = cams.rays(normalize=False)
    dn = d / d.norm(dim=-1, keepdim=True)
    b = (o * dn).sum(-1)
    disc = b * b - ((o * o).sum(-1) - r * r)
    t = -b - disc.clamp_min(0).sqrt()
    return torch.where(disc > 0, t / d.norm(dim=-1), torch.zeros_like(t)), disc > 0


def test_smoothstep_values():
    x = torch.tensor([-1.0, 0.0, 0.25, 0.5, 2.0])
    torch.testing.assert_close(smoothstep(x, 0.0, 0.5), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_normals_from_depth_are_radial_on_a_sphere():
    cams = cameras_from_sv3d(torch.tensor([20.0]), torch.tensor([30.0]), 2.7, 40.0, 64, 64)
    depth, hit = sphere_depth(cams)
    pts, nrm = points_and_normals(depth, cams)
    inner = hit.clone()
    inner[:, 1:-1, 1:-1] &= hit[:, :-2, 1:-1] & hit[:, 2:, 1:-1] & hit[:, 1:-1, :-2] & hit[:, 1:-1, 2:]
    inner[:, [0, -1]] = False
    inner[:, :, [0, -1]] = False
    radial = pts / pts.norm(dim=-1, keepdim=True)
    assert float((radial * nrm).sum(-1)[inner].mean()) > 0.99
    assert float((pts.norm(dim=-1)[hit] - 0.6).abs().max()) < 1e-4


def test_visibility_mask_is_one_where_the_orbit_never_looks():
    orbit = cameras_from_sv3d(torch.zeros(12), torch.arange(12) * 30.0, 2.7, 40.0, 32, 32)  # equator ring
    pole = torch.tensor([[[[0.0, 0.0, 0.6]]]])
    up = torch.tensor([[[[0.0, 0.0, 1.0]]]])
    assert float(soft_visibility_mask(pole, up, orbit)) == 1.0  # every orbit camera sees it from below the horizon
    side = torch.tensor([[[[0.6, 0.0, 0.0]]]])
    out = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    assert float(soft_visibility_mask(side, out, orbit)) == 0.0  # head-on for the azimuth-0 camera
    # at latitude phi the best camera (same azimuth) sees v.n = cos(phi + angle to the camera) ...
    phi = math.radians(60)
    p = 0.6 * torch.tensor([[[[math.cos(phi), 0.0, math.sin(phi)]]]])
    n = p / 0.6
    v = torch.tensor([2.7, 0.0, 0.0]) - p.reshape(3)
    want = 1 - smoothstep(torch.tensor(float((v / v.norm() * n.reshape(3)).sum())), 0.0, 0.5)
    torch.testing.assert_close(soft_visibility_mask(p, n, orbit).reshape(()), want)


@pytest.mark.slow
def test_refine_runs_with_a_tiny_random_backbone():
    from vdm3d.io.foreground import Foreground
    from vdm3d.jobs.object import ObjectConfig
    from vdm3d.jobs.object_orbit import BackboneOrbit, orbit_plan
    from vdm3d.jobs.object_refine import refine
    from vdm3d.models.tiny import DenoiserConfig, TinyVAE, TinyVideoBackbone, VAEConfig, VideoDenoiser
    from vdm3d.splat.gaussians import Gaussians
    from vdm3d.views import Views

    torch.manual_seed(0)
    vae = TinyVAE(VAEConfig(channels=(8, 8)))
    net = VideoDenoiser(DenoiserConfig(channels=(16, 16), map_features=4, emb_dim=16, max_frames=8))
    bb = TinyVideoBackbone(vae, net, resolution=(32, 32), frames=4).eval().requires_grad_(False)
    plan = orbit_plan("v3d", 10.0, 2.7, 40.0, 32, frames=6)
    images = torch.ones(6, 32, 32, 3)
    orbit = Views(images, plan.cameras, alphas=torch.zeros(6, 32, 32), origin=("input",) + ("generated",) * 5)
    pts = torch.randn(200, 3) * 0.3
    g0 = Gaussians.from_points(pts, torch.rand(200, 3), opacity=0.5, sh_degree=0)
    fg = Foreground(images[0], torch.zeros(32, 32), "alpha")
    cfg = dataclasses.replace(ObjectConfig(), refine_steps=3, refine_frames=2)
    g1 = refine(cfg, g0, orbit, plan, fg, BackboneOrbit(bb), None)
    assert len(g1) == len(g0) and all(torch.isfinite(v).all() for v in g1.parameters().values())
    assert not torch.equal(g1.means, g0.means)
