"""Camera accuracy: the similarity alignment undoes a known similarity; errors of known perturbations."""

import math

import numpy as np
import pytest
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.metrics.colmap_poses import align_similarity, pose_errors


def _path(n: int = 12) -> Cameras:
    """A straight dolly with a slow pan: centres on a line, so centres alone would leave a roll free."""
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    for i in range(n):
        a = 0.05 * i
        c2w[i, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        c2w[i, 2, 3] = 0.1 * i
    return Cameras.from_fov(60.0, 64, 64, c2w)


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = math.radians(deg)
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def test_alignment_undoes_a_similarity_and_scores_zero():
    cams = _path()
    c2w = cams.c2w.numpy()
    G, s, t = _rot([0.3, -1.0, 0.5], 70.0), 3.7, np.array([1.0, -2.0, 0.5])
    # COLMAP's frame: x_colmap = (G^T (x - t)) / s, so its poses are the requested ones under the inverse similarity
    moved = {}
    for i in range(len(cams)):
        p = np.eye(4)
        p[:3, :3] = G.T @ c2w[i, :3, :3]
        p[:3, 3] = G.T @ (c2w[i, :3, 3] - t) / s
        moved[i] = p
    scale, R, shift = align_similarity(np.stack(list(moved.values())), c2w)
    assert scale == pytest.approx(s) and np.allclose(R, G) and np.allclose(shift, t)
    err = pose_errors(moved, cams)
    assert err["registered"] == 1.0 and err["rotation_deg"] < 1e-5 and err["translation"] < 1e-9
    # one frame of N = 12 turned by 6 degrees about the shared y axis: the fitted rotation turns by 6 / N,
    # so the other 11 frames are off by 0.5 degrees and the turned one by 5.5: mean 2 * 6 * 11 / 144
    moved[5] = moved[5].copy()
    moved[5][:3, :3] = moved[5][:3, :3] @ _rot([0, 1, 0], 6.0)
    err = pose_errors(moved, cams)
    assert err["rotation_deg"] == pytest.approx(2 * 6.0 * 11 / 144, rel=1e-3) and err["translation"] < 0.05


def test_translation_error_is_in_path_units_and_relative_to_the_extent():
    cams = _path()
    c2w = cams.c2w.numpy()
    rec = {i: c2w[i].copy() for i in range(len(cams))}
    rec[0][:3, 3] += np.array([0.0, 0.24, 0.0])  # one centre off the line by 0.24: alignment cannot absorb it
    err = pose_errors(rec, cams)
    assert 0.01 < err["translation"] < 0.04  # 0.24 spread over the fit, mean over 12 frames
    assert err["translation_rel"] == pytest.approx(err["translation"] / 1.1)  # extent: 11 steps of 0.1
    few = pose_errors({0: rec[0], 1: rec[1]}, cams)  # fewer than 3 registered frames: not scored
    assert few["registered"] == pytest.approx(2 / 12) and math.isnan(few["rotation_deg"])
