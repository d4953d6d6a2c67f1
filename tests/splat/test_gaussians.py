"""Gaussians container: activations, kNN initialization, parameter dicts, selection."""

import math

import pytest
import torch

from vdm3d.errors import InputError
from vdm3d.cameras.rotations import matrix_from_quat
from vdm3d.splat import PARAM_NAMES, Gaussians


def random_gaussians(n=20, degree=2, dtype=torch.float32):
    k = (degree + 1) ** 2
    return Gaussians(torch.randn(n, 3, dtype=dtype), torch.randn(n, 4, dtype=dtype),
                     0.3 * torch.randn(n, 3, dtype=dtype) - 1, torch.randn(n, dtype=dtype),
                     torch.randn(n, k, 3, dtype=dtype))


def test_quaternion_convention_is_wxyz():
    half = math.pi / 4  # 90 degrees about z
    R = matrix_from_quat(torch.tensor([math.cos(half), 0.0, 0.0, math.sin(half)]))
    torch.testing.assert_close(R @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))
    Rs = matrix_from_quat(torch.randn(100, 4, dtype=torch.float64) * 3)  # unnormalized input
    torch.testing.assert_close(Rs @ Rs.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3))
    torch.testing.assert_close(torch.linalg.det(Rs), torch.ones(100, dtype=torch.float64))


def test_covariance_eigenvalues_are_squared_scales():
    g = random_gaussians(dtype=torch.float64)
    eig = torch.linalg.eigvalsh(g.covariances)
    torch.testing.assert_close(eig, (g.scales ** 2).sort(-1).values)


def test_from_points_uses_knn_distances_and_colors():
    pts = torch.rand(300, 3, dtype=torch.float64)
    colors = (torch.rand(300, 3) * 255).to(torch.uint8)
    g = Gaussians.from_points(pts, colors, opacity=0.3, sh_degree=3)
    d2 = torch.cdist(pts, pts).pow(2)
    d2.fill_diagonal_(float("inf"))
    expect = d2.topk(3, largest=False).values.mean(1).sqrt()  # brute-force kNN
    torch.testing.assert_close(g.scales, expect[:, None].expand(300, 3))
    torch.testing.assert_close(g.opacities, torch.full((300,), 0.3, dtype=torch.float64))
    from vdm3d.splat import sh_to_rgb
    torch.testing.assert_close(sh_to_rgb(g.sh[:, 0]), colors.double() / 255)
    assert g.sh_degree == 3 and g.sh[:, 1:].abs().max() == 0


def test_parameters_round_trip_and_gradients_reach_the_leaves():
    g = random_gaussians(degree=3)
    params = g.parameters()
    assert tuple(params) == PARAM_NAMES
    assert params["sh_dc"].shape == (20, 1, 3) and params["sh_rest"].shape == (20, 15, 3)
    assert all(p.is_leaf and p.requires_grad for p in params.values())
    h = Gaussians.from_parameters(params)
    assert torch.equal(h.sh, g.sh) and torch.equal(h.means, g.means)
    (h.sh.sum() + h.means.sum()).backward()
    assert torch.equal(params["sh_rest"].grad, torch.ones(20, 15, 3))


def test_select_cat_and_degree_change():
    g = random_gaussians(n=10, degree=1)
    mask = torch.arange(10) % 3 == 0
    sub = g.select(mask)
    assert len(sub) == 4 and torch.equal(sub.means, g.means[mask])
    both = Gaussians.cat([sub, g])
    assert len(both) == 14 and torch.equal(both.sh[4:], g.sh)
    up = g.with_sh_degree(3)
    assert up.sh_degree == 3 and torch.equal(up.sh[:, :4], g.sh) and up.sh[:, 4:].abs().max() == 0
    with pytest.raises(InputError):
        Gaussians.cat([g, up])


def test_shape_mismatch_is_an_input_error():
    g = random_gaussians(n=5)
    # (under the tests' runtime type checking jaxtyping may object first; both are clear)
    with pytest.raises((InputError, TypeError), match="opacity_logits"):
        Gaussians(g.means, g.quats, g.log_scales, torch.zeros(4), g.sh)
    with pytest.raises(InputError, match="coefficients per channel"):
        Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, torch.zeros(5, 5, 3))


def test_transformed_renders_the_same_from_cameras_moved_alike():
    """A rigid move of the world (Gaussians and cameras alike) leaves every image as it was, view-dependent
    colour (SH degree 3) included; without rotating the SH bands the same check is off by 0.7."""
    from vdm3d.cameras.camera import Cameras
    from vdm3d.splat.render import render

    torch.manual_seed(0)
    n = 200
    g = Gaussians(torch.randn(n, 3) * 0.5, torch.randn(n, 4), torch.randn(n, 3) * 0.3 - 2.5, torch.randn(n),
                  torch.randn(n, 16, 3) * 0.3)
    c2w = torch.eye(4)
    c2w[2, 3] = -3.0
    cams = Cameras.from_fov(50.0, 48, 48, c2w[None])
    T = torch.eye(4)
    T[:3, :3] = matrix_from_quat(torch.tensor([0.3, -0.5, 0.8, 0.1]))
    T[:3, 3] = torch.tensor([1.0, -2.0, 0.5])
    before = render(g, cams).rgb
    after = render(g.transformed(T), cams.transformed(T)).rgb
    assert before.abs().mean() > 0.1  # the Gaussians are in view
    torch.testing.assert_close(after, before, atol=1e-4, rtol=0)
    moved = g.transformed(T)
    torch.testing.assert_close(moved.means, g.means @ T[:3, :3].T + T[:3, 3])
    torch.testing.assert_close(moved.sh[:, 0], g.sh[:, 0])  # the view-independent colour stays
    with pytest.raises(InputError, match="rigid"):
        g.transformed(torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
