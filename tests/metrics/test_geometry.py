"""Chamfer distance and F-score against closed forms."""

import numpy as np
import trimesh

from vdm3d.metrics.geometry import mesh_distance, point_distance


def test_concentric_spheres_chamfer_is_the_radius_gap():
    a = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    b = trimesh.creation.icosphere(subdivisions=4, radius=1.1)
    d = mesh_distance(a, b, tau=0.05, num_points=20000)
    # nearest points on concentric spheres are radial: every distance is the gap 0.1 (plus sampling)
    assert abs(d.chamfer - 0.1) < 0.005
    assert d.fscore == 0.0
    assert mesh_distance(a, b, tau=0.15).fscore == 1.0


def test_point_sets_by_hand():
    pred = np.array([[0.0, 0, 0], [1, 0, 0]])
    gt = np.array([[0.0, 0, 0], [0, 3, 0]])
    d = point_distance(pred, gt, tau=0.5)
    assert d.accuracy == 0.5  # (0 + 1) / 2
    assert d.completeness == 1.5  # (0 + 3) / 2: the nearest prediction to (0, 3, 0) is the origin
    assert d.chamfer == 1.0 and d.precision == 0.5 and d.recall == 0.5 and d.fscore == 0.5
