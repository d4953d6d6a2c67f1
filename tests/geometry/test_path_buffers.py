"""Geometry buffers along a path: soft edges respond to occlusions and creases but not to planes,
consecutive flows and correspondences move textured renders onto each other, and temporal fusion along
them removes flicker without moving the content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.data.procedural import make_room, room_path
from vdm3d.geometry.edges import soft_edges
from vdm3d.geometry.flow import warp_backward
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.geometry.mesh_scene import MeshScene, Part, part_from_trimesh
from vdm3d.geometry.path_buffers import fuse_along_path, render_path
from vdm3d.metrics.video import warp_error

pytest.importorskip("moderngl")


def _cam(eye, target=(0.0, 0.0, 0.0), size=64):
    c2w = look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    return Cameras.from_fov(50.0, size, size, c2w.float())


def test_soft_edges_ignore_planes_at_grazing_angles():
    """A floor seen at a grazing angle: depth changes fast across the image, yet inverse depth is affine,
    so the soft edge map is 0 everywhere on it."""
    plane = Part.make(np.array([[-50, -50, 0], [50, -50, 0], [50, 50, 0], [-50, 50, 0]], np.float32),
                      np.array([[0, 1, 2], [0, 2, 3]]))
    b = render_buffers(MeshScene([plane]), _cam((0.0, -3.0, 0.4), (0.0, 5.0, 0.0)))
    soft = soft_edges(b.depth, b.normals, b.alpha)[0]
    inside = (b.alpha[0] > 0.999) & (torch.nn.functional.max_pool2d((b.alpha[0] < 0.999).float()[None, None], 7, 1, 3)[0, 0] == 0)
    assert inside.sum() > 500 and float(soft[inside].max()) < 1e-3


def test_soft_edges_find_silhouettes_and_creases_of_a_box():
    box = part_from_trimesh(trimesh.creation.box((1.0, 1.0, 1.0)))  # sharp creases: split normals
    b = render_buffers(MeshScene([box]), _cam((2.0, -1.6, 1.3)), ssaa=3)
    soft = soft_edges(b.depth, b.normals, b.alpha)[0]
    lines = b.edges[0] > 0.5  # the renderer's exact silhouette + crease lines
    assert lines.sum() > 80
    assert float(soft[lines].mean()) > 0.6  # soft edges lie on the true lines ...
    far = torch.nn.functional.max_pool2d(lines.float()[None, None], 9, 1, 4)[0, 0] == 0
    assert float(soft[far].mean()) < 0.02  # ... and vanish on faces and background away from them


def test_consecutive_flow_moves_each_frame_onto_the_next():
    scene = make_room(1_000_011)
    cams = room_path(scene, 6, 7, width=64, height=64, fov_deg=60.0, step=0.06)
    truth = render_buffers(scene, cams, ssaa=3).rgb
    p = render_path(scene, cams)
    assert p.flow.shape == (5, 64, 64, 2) and p.flow_valid.float().mean() > 0.6
    for t in range(5):
        pulled = warp_backward(truth[t + 1], p.flow[t])
        m = p.flow_valid[t]
        err = (pulled - truth[t]).abs().mean(-1)
        shifted = (truth[t + 1] - truth[t]).abs().mean(-1)  # no motion compensation
        assert float(err[m].mean()) < 0.45 * float(shifted[m].mean())
    # arc end back to its start: the same test through PathBuffers.warp
    warped, valid = p.warp(truth[0], 0, 5)
    assert float((warped - truth[5]).abs().mean(-1)[valid].mean()) < 0.5 * float((truth[0] - truth[5]).abs().mean(-1)[valid].mean())


def test_fusion_along_the_path_removes_flicker_and_keeps_the_truth():
    """Per-frame noise and brightness flicker on true renders: fusion (radius 4) brings the frames
    closer to the truth and cuts the warp error; on the truth itself it only resamples; radius 0 is off."""
    scene = make_room(1_000_011)
    cams = room_path(scene, 10, 7, width=64, height=64, fov_deg=60.0, step=0.04)
    truth = render_buffers(scene, cams, ssaa=3).rgb
    p = render_path(scene, cams)
    g = torch.Generator().manual_seed(0)
    flicker = torch.linspace(-0.08, 0.08, 10)[torch.randperm(10, generator=g)]
    noisy = (truth + 0.06 * torch.randn(truth.shape, generator=g) + flicker[:, None, None, None]).clamp(0, 1)
    fused = fuse_along_path(p, noisy, 4, 2.0)
    assert fuse_along_path(p, noisy, 0, 2.0) is noisy
    err_noisy = float((noisy - truth).abs().mean())
    err_fused = float((fused - truth).abs().mean())
    assert err_fused < 0.6 * err_noisy
    we_noisy, we_fused = warp_error(noisy, p.flow, p.flow_valid), warp_error(fused, p.flow, p.flow_valid)
    assert we_fused < 0.3 * we_noisy
    fused_truth = fuse_along_path(p, truth, 4, 2.0)
    assert warp_error(fused_truth, p.flow, p.flow_valid) <= warp_error(truth, p.flow, p.flow_valid)
    assert float((fused_truth - truth).abs().mean()) < 0.015  # bilinear resampling only (0.010)


def test_rendering_in_chunks_with_progress_gives_the_same_buffers():
    scene = make_room(1_000_011)
    cams = room_path(scene, 5, 7, width=32, height=32, fov_deg=60.0, step=0.06)
    calls = []
    whole = render_path(scene, cams)
    parts = render_path(scene, cams, progress=lambda done, total: calls.append((done, total)), chunk=2)
    assert calls == [(2, 5), (4, 5), (5, 5)]
    for name in ("depth", "normals", "alpha", "edges", "soft", "flow", "flow_valid"):
        # float32 rounding only: depth differs by ~3e-6, the flow derived from it by ~3e-5 px
        torch.testing.assert_close(getattr(parts, name), getattr(whole, name), atol=1e-4, rtol=1e-4)
