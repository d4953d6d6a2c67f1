"""Hole-driven trajectory planning (GuidedVD §3.5) on hand-built cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.recon.planning import (Candidate, PlanConfig, between_views, center_depth, chain_order,
                                  forward_facing, hole_fraction, orbit_pivot, plan_paths, score_candidates,
                                  select_candidates, toward)
from vdm3d.splat.gaussians import Gaussians


def _camera(size: int = 32) -> Cameras:
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([0.3, -0.2, 0.1])
    return Cameras.from_fov(60.0, size, size, c2w[None])


def _wall(x_max: float, z: float = 2.0, spacing: float = 0.1) -> Gaussians:
    """An opaque grey wall at depth ``z`` (in front of :func:`_camera`) covering x < x_max only."""
    xs = torch.arange(-4.0, x_max, spacing)
    ys = torch.arange(-4.0, 4.0, spacing)
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    pts = torch.stack([gx.reshape(-1) + 0.3, gy.reshape(-1) - 0.2, torch.full((gx.numel(),), z + 0.1)], -1)
    return Gaussians.from_points(pts, torch.full_like(pts, 0.5), scales=torch.full((len(pts),), spacing),
                                 opacity=0.99, sh_degree=0)


def test_orbit_pivot_keeps_distance_and_looks_at_pivot():
    c2w = _camera().c2w[0].double()
    d = 1.7
    grid = torch.tensor([-30.0, -15.0, 0.0, 15.0, 30.0], dtype=torch.float64)
    theta, phi = [t.reshape(-1) for t in torch.meshgrid(grid, grid, indexing="ij")]
    poses = orbit_pivot(c2w, d, theta, phi)
    pivot = c2w[:3, 3] + d * c2w[:3, 2]
    to_pivot = pivot - poses[:, :3, 3]
    torch.testing.assert_close(to_pivot.norm(dim=-1), torch.full((25,), d, dtype=torch.float64))
    forward = poses[:, :3, 2]
    torch.testing.assert_close((forward * to_pivot).sum(-1) / d, torch.ones(25, dtype=torch.float64))
    torch.testing.assert_close(poses[12], c2w)  # (0, 0) is the training camera
    # the angle between the optical axes is the grid angle: cos = cos(theta) cos(phi)
    cos = (forward * c2w[:3, 2]).sum(-1)
    torch.testing.assert_close(cos, torch.cos(torch.deg2rad(theta)) * torch.cos(torch.deg2rad(phi)))
    # positive phi turns the view to the camera's right (+x in OpenCV) by exactly phi
    right = orbit_pivot(c2w, d, torch.zeros(1, dtype=torch.float64), torch.full((1,), 30.0, dtype=torch.float64))
    assert abs(float(right[0, :3, 2] @ c2w[:3, 0]) - math.sin(math.radians(30))) < 1e-12


def test_hole_fraction_erodes_isolated_pixels_and_keeps_border_holes():
    alpha = torch.ones(2, 32, 32)
    alpha[0, 10:20, 10:20] = 0.2  # a 10 x 10 hole: 6 x 6 after a 5 x 5 erosion
    alpha[0, 2, 28] = 0.0  # an isolated low pixel: not a hole
    alpha[1, :, :4] = 0.5  # a 4-column hole on the border shrinks from its inner side only
    holes = hole_fraction(alpha, 0.7, 5)
    torch.testing.assert_close(holes, torch.tensor([36 / 1024, 2 * 32 / 1024], dtype=torch.float64))
    assert float(hole_fraction(alpha, 0.7, 0)[0]) == (100 + 1) / 1024


def test_select_keeps_largest_holes_under_the_limit_per_pivot_scale():
    cfg = PlanConfig(pivot_scales=(1.0, 0.5), keep=(2, 1), max_hole_fraction=0.1)
    c = [Candidate(0, 1.0, 0.0, 0.0, 0.00), Candidate(0, 1.0, 0.0, 15.0, 0.05), Candidate(0, 1.0, 0.0, 30.0, 0.12),
         Candidate(0, 1.0, 15.0, 0.0, 0.08), Candidate(0, 1.0, 30.0, 0.0, 0.10),
         Candidate(0, 0.5, 0.0, 0.0, 0.02), Candidate(0, 0.5, 0.0, 30.0, 0.04),
         Candidate(1, 1.0, 0.0, 0.0, 0.01), Candidate(1, 0.5, 0.0, 0.0, 0.30)]
    picked = select_candidates(c, cfg)
    assert [(p.view, p.pivot_scale, p.hole_fraction) for p in picked] == [
        (0, 1.0, 0.08), (0, 1.0, 0.05), (0, 0.5, 0.04), (1, 1.0, 0.01)]


@pytest.mark.slow
def test_planner_turns_toward_the_missing_part_of_a_wall():
    cam = _camera()
    wall = _wall(x_max=1.2)  # the wall ends just right of the view
    assert abs(center_depth(wall, cam) - 2.0) < 0.02  # the camera is at z = 0.1, the wall at 2.1
    cfg = PlanConfig()
    cands = score_candidates(wall, cam, cfg)
    assert len(cands) == 75
    straight = [c for c in cands if c.pivot_scale == 1.0 and c.theta_deg == 0 and c.phi_deg == 0][0]
    looking_right = [c for c in cands if c.pivot_scale == 1.0 and c.theta_deg == 0 and c.phi_deg == 30][0]
    looking_left = [c for c in cands if c.pivot_scale == 1.0 and c.theta_deg == 0 and c.phi_deg == -30][0]
    assert looking_left.hole_fraction == 0.0
    assert looking_right.hole_fraction > straight.hole_fraction
    paths = plan_paths(wall, cam, frames=8, config=cfg)
    assert len(paths) == 6
    chosen = select_candidates(cands, cfg)
    # the kept candidates are the largest holes under 10 %, and at pivot scale 1 they look right
    assert all(c.hole_fraction < 0.1 for c in chosen)
    for scale, k in zip(cfg.pivot_scales, cfg.keep):
        under = sorted((c.hole_fraction for c in cands if c.pivot_scale == scale and c.hole_fraction < 0.1),
                       reverse=True)
        assert [c.hole_fraction for c in chosen if c.pivot_scale == scale] == under[:k]
    assert all(c.phi_deg > 0 for c in chosen if c.pivot_scale == 1.0 and c.hole_fraction > 0)
    for p, c in zip(paths, chosen):
        assert len(p) == 8
        torch.testing.assert_close(p.cameras.c2w[0], cam.c2w[0])  # frame 0 is the training view
        end = orbit_pivot(cam.c2w[0].double(), p.provenance["pivot_distance"],
                          torch.tensor([c.theta_deg], dtype=torch.float64),
                          torch.tensor([c.phi_deg], dtype=torch.float64))[0]
        torch.testing.assert_close(p.cameras.c2w[-1].double(), end, atol=1e-6, rtol=0)


def _sweep(n: int = 3, yaw_deg: float = 4.0) -> Cameras:
    """A forward-facing sweep: cameras along x, each turned by a few degrees toward a point ahead."""
    from vdm3d.cameras.rotations import axis_angle_matrix

    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    for i in range(n):
        c2w[i, :3, 3] = torch.tensor([float(i), 0.1 * i, 0.0], dtype=torch.float64)
        c2w[i, :3, :3] = axis_angle_matrix(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
                                           torch.tensor(math.radians(yaw_deg * (1 - i)), dtype=torch.float64))
    return Cameras.from_fov(60.0, 32, 24, c2w.float())


def test_forward_facing_tells_a_sweep_from_a_turn():
    assert forward_facing(_sweep(3, 4.0))  # axes within 4 deg of their mean
    assert not forward_facing(_sweep(3, 20.0))  # +-20 deg: the views look at different things
    assert forward_facing(_sweep(3, 20.0), max_angle_deg=25.0)


def test_toward_ends_at_the_target_and_mirrors_for_negative_reach():
    cams = _sweep(2, 6.0)
    a, b = cams[0:1], cams[1:2]
    full = toward(a, b, 1.0, 5)
    assert torch.equal(full.cameras.c2w[0], a.c2w[0])  # frame 0 is the training camera, exactly
    torch.testing.assert_close(full.cameras.c2w[-1], b.c2w[0], atol=1e-6, rtol=0)
    half = toward(a, b, 0.5, 5)
    torch.testing.assert_close(half.cameras.c2w[-1], full.cameras.c2w[2], atol=1e-6, rtol=0)  # the middle
    back = toward(a, b, -1.0, 5).cameras.c2w[-1].double()
    A, B = a.c2w[0].double(), b.c2w[0].double()
    torch.testing.assert_close(back[:3, 3], 2 * A[:3, 3] - B[:3, 3])  # the centre goes the other way ...
    # ... and the camera turns by the inverse of the relative rotation: R_back A^T = (B A^T)^-1
    torch.testing.assert_close(back[:3, :3] @ A[:3, :3].T, (B[:3, :3] @ A[:3, :3].T).T, atol=1e-6, rtol=0)


def test_between_views_covers_every_gap_from_both_sides_and_the_ends():
    cams = _sweep(3, 4.0)
    order = chain_order(cams)
    assert order in ([0, 1, 2], [2, 1, 0])
    paths = between_views(cams, 8, reach=0.5)
    pairs = sorted((p.provenance["view"], p.provenance["to_view"], p.provenance["reach"]) for p in paths)
    # both halves of each gap, and one outward path at each end of the chain
    assert pairs == [(0, 1, -0.5), (0, 1, 0.5), (1, 0, 0.5), (1, 2, 0.5), (2, 1, -0.5), (2, 1, 0.5)]
    for p in paths:
        v, nb, r = p.provenance["view"], p.provenance["to_view"], p.provenance["reach"]
        assert len(p) == 8 and torch.equal(p.cameras.c2w[0], cams.c2w[v])
        want = cams.centers[v] + r * (cams.centers[nb] - cams.centers[v])
        torch.testing.assert_close(p.cameras.centers[-1], want, atol=1e-5, rtol=0)
    # the two halves of a gap meet in its middle
    mid = [p.cameras.centers[-1] for p in paths if {p.provenance["view"], p.provenance["to_view"]} == {0, 1}
           and p.provenance["reach"] > 0]
    torch.testing.assert_close(mid[0], mid[1], atol=1e-5, rtol=0)
    assert len(between_views(cams, 8, ends=False)) == 4
