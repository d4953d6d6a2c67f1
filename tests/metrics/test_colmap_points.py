"""V3D's COLMAP measure: pycolmap triangulates exact room frames at their known cameras onto the true
surface, and the Chamfer distance is the mean nearest-neighbour distance both ways."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vdm3d.metrics.colmap_points import chamfer_points, triangulate_known_poses

pytest.importorskip("pycolmap")


def test_chamfer_of_shifted_points_is_the_shift():
    a = np.random.default_rng(0).uniform(0, 100, size=(50, 3))
    assert chamfer_points(a, a) == 0.0
    assert math.isclose(chamfer_points(a, a + [0.0, 0.0, 0.01]), 0.01, rel_tol=1e-9)
    assert math.isnan(chamfer_points(a, np.zeros((0, 3))))


@pytest.mark.slow
def test_exact_room_frames_triangulate_onto_the_true_surface():
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.recon.depth_points import points_from_depths

    scene = make_room(1_000_000)
    cams = room_path(scene, 24, 1_000_000, width=64, height=64, fov_deg=60.0, step=0.12)[1:9]
    b = render_buffers(scene, cams, ssaa=3)
    pts = triangulate_known_poses(b.rgb, cams)
    surface, _ = points_from_depths(b.rgb, b.depth, cams)
    assert len(pts) > 60  # measured 141 from eight 64 px frames (upscaled 4x for SIFT)
    d = chamfer_points(pts, surface.numpy())
    assert d < 0.4, d  # measured 0.23 m in a room about 5 m across; a wrong pose convention gives metres
