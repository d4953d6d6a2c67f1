"""Video metrics on ground truth: the true render of a moving camera is temporally consistent through
the exact flow, its own edges match the mesh's, and histogram distances hit their bounds."""

from __future__ import annotations

import pytest
import torch

from vdm3d.data.procedural.stylize import object_case
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.geometry.path_buffers import render_path
from vdm3d.metrics.video import color_histogram_distance, edge_fscore, warp_error

pytest.importorskip("moderngl")


@pytest.fixture(scope="module")
def orbit():
    case = object_case(1_000_021, 8, 64, deg_per_frame=5.0)
    return render_buffers(case.scene, case.cameras, ssaa=3).rgb, render_path(case.scene, case.cameras)


def test_warp_error_is_small_for_the_truth_and_large_for_flicker(orbit):
    truth, p = orbit
    gt = warp_error(truth, p.flow, p.flow_valid)
    flicker = truth.clone()
    flicker[1::2] = flicker[1::2].flip(-1)  # every other frame with its colour channels swapped
    assert gt < 0.03
    assert warp_error(flicker, p.flow, p.flow_valid) > 3 * gt
    frozen = truth[:1].expand_as(truth)  # a still image does not follow the camera
    assert warp_error(frozen, p.flow, p.flow_valid) > 1.5 * gt


def test_edge_fscore_of_the_line_art_itself_is_high_and_of_a_blank_video_zero(orbit):
    truth, p = orbit
    line_art = 1.0 - p.edges[..., None].expand(-1, -1, -1, 3)  # black lines on white
    assert edge_fscore(line_art, p.edges) > 0.8
    assert edge_fscore(torch.ones_like(truth), p.edges) == 0.0
    assert edge_fscore(truth, p.edges) > edge_fscore(truth.flip(1), p.edges)  # upside down matches worse


def test_histogram_distance_bounds():
    red = torch.zeros(2, 8, 8, 3)
    red[..., 0] = 1.0
    blue = torch.zeros(8, 8, 3)
    blue[..., 2] = 1.0
    assert color_histogram_distance(red, red[0]) == pytest.approx(0.0, abs=1e-6)
    assert color_histogram_distance(red, blue) == pytest.approx(1.0, abs=1e-6)
    half = torch.cat([red[0, :4], blue[4:]])  # half red, half blue
    assert 0.2 < color_histogram_distance(red, half) < 0.8
