"""Property tests (hypothesis) of the splat scene's geometry: rigid moves, uniform scale, SH rotation, SH degree.

Every assertion compares against an exact truth: a rigid move of the scene and its cameras together, or a
uniform scale of both, is invisible in the image (depth scales with the world), and the SH rotation is the
change of basis under which a colour seen along ``R d`` equals the old one seen along ``d``. Float64 and the
dense reference renderer (plus the tiled torch one), so the tolerances are rounding, not approximation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.cameras.rotations import axis_angle_matrix, matrix_from_quat
from vdm3d.errors import InputError
from vdm3d.splat.gaussians import Gaussians, sh_rotation
from vdm3d.splat.render import render
from vdm3d.splat.sh import eval_sh, sh_basis

D = torch.float64
unit = st.floats(-1, 1, allow_nan=False)
quats = st.lists(unit, min_size=4, max_size=4).filter(lambda q: sum(v * v for v in q) > 1e-3)
axes = st.lists(unit, min_size=3, max_size=3).filter(lambda a: sum(v * v for v in a) > 1e-3)
# any rotation, and half turns give or take up to 1e-6 rad (where quaternion <-> matrix conversions lose digits)
rotations = st.one_of(
    quats.map(lambda q: matrix_from_quat(torch.tensor(q, dtype=D))),
    st.tuples(axes, st.floats(-1e-6, 1e-6)).map(
        lambda a: axis_angle_matrix(torch.tensor(a[0], dtype=D), torch.tensor(math.pi + a[1], dtype=D))))
translations = st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=3)


def rigid(R: torch.Tensor, t) -> torch.Tensor:
    T = torch.eye(4, dtype=D)
    T[:3, :3], T[:3, 3] = R, torch.tensor(t, dtype=D)
    return T


def scene(seed: int, degree: int, n: int = 24) -> tuple[Gaussians, Cameras]:
    """``n`` Gaussians about the origin with view-dependent colour, and two cameras 3 units away seeing them."""
    g = torch.Generator().manual_seed(seed)
    gs = Gaussians(torch.randn(n, 3, generator=g, dtype=D) * 0.4, torch.randn(n, 4, generator=g, dtype=D),
                   torch.randn(n, 3, generator=g, dtype=D) * 0.3 - 2.0, torch.randn(n, generator=g, dtype=D) + 1,
                   torch.randn(n, (degree + 1) ** 2, 3, generator=g, dtype=D) * 0.4)
    eyes = torch.tensor([[0.3, -3.0, 0.5], [2.5, 1.2, -1.0]], dtype=D)
    c2w = look_at(eyes, torch.zeros_like(eyes), torch.tensor([0.0, 0.0, 1.0], dtype=D).expand_as(eyes))
    return gs, Cameras.from_fov(55.0, 20, 16, c2w)


@settings(max_examples=60, deadline=None)
@given(R=rotations, degree=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_sh_rotation_keeps_every_colour_along_the_rotated_direction(R, degree, seed):
    """``sum_k (M c)_k Y_k(R d) == sum_k c_k Y_k(d)`` for every direction, and ``M`` is orthogonal (a rotation
    of each band), composes like ``R`` and is the identity for ``R = I``."""
    g = torch.Generator().manual_seed(seed)
    K = (degree + 1) ** 2
    M = sh_rotation(degree, R)
    d = torch.randn(200, 3, generator=g, dtype=D)
    d = d / d.norm(dim=-1, keepdim=True)
    c = torch.randn(K, 3, generator=g, dtype=D)
    torch.testing.assert_close(sh_basis(degree, d @ R.T) @ (M @ c), sh_basis(degree, d) @ c, atol=1e-12, rtol=0)
    torch.testing.assert_close(M @ M.T, torch.eye(K, dtype=D), atol=1e-12, rtol=0)
    R2 = matrix_from_quat(torch.randn(4, generator=g, dtype=D))
    torch.testing.assert_close(sh_rotation(degree, R2 @ R), sh_rotation(degree, R2) @ M, atol=1e-12, rtol=0)
    torch.testing.assert_close(sh_rotation(degree, torch.eye(3, dtype=D)), torch.eye(K, dtype=D), atol=1e-12, rtol=0)


@settings(max_examples=25, deadline=None)
@given(R=rotations, t=translations, degree=st.integers(0, 3), seed=st.integers(0, 2**16),
       backend=st.sampled_from(["torch_ref", "torch"]))
def test_a_rigid_move_of_scene_and_cameras_renders_the_same_images(R, t, degree, seed, backend):
    gs, cams = scene(seed, degree)
    T = rigid(R, t)
    before = render(gs, cams, backend=backend)
    after = render(gs.transformed(T), cams.transformed(T), backend=backend)
    assert float(before.alpha.amax()) > 0.5  # the Gaussians are in view
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name), atol=1e-9, rtol=0, msg=name)


@settings(max_examples=30, deadline=None)
@given(R=rotations, t=translations, degree=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_a_rigid_move_and_its_inverse_give_the_gaussians_back(R, t, degree, seed):
    """Same centres, covariances and colours from every direction (the quaternion may flip sign)."""
    gs, _ = scene(seed, degree)
    T = rigid(R, t)
    back = gs.transformed(T).transformed(torch.linalg.inv(T))
    torch.testing.assert_close(back.means, gs.means, atol=1e-12, rtol=0)
    torch.testing.assert_close(back.covariances, gs.covariances, atol=1e-12, rtol=0)
    torch.testing.assert_close(back.sh, gs.sh, atol=1e-12, rtol=0)
    torch.testing.assert_close(back.opacity_logits, gs.opacity_logits, atol=0, rtol=0)
    moved = gs.transformed(T)
    torch.testing.assert_close(moved.covariances, R @ gs.covariances @ R.T, atol=1e-12, rtol=0)
    d = torch.randn(len(gs), 3, dtype=D)
    d = d / d.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(eval_sh(degree, moved.sh, d @ R.T), eval_sh(degree, gs.sh, d), atol=1e-12, rtol=0)


@settings(max_examples=20, deadline=None)
@given(s=st.floats(0.1, 10.0), degree=st.integers(0, 3), seed=st.integers(0, 2**16),
       backend=st.sampled_from(["torch_ref", "torch"]))
def test_a_uniform_scale_of_scene_and_camera_centres_renders_the_same_image_at_scaled_depth(s, degree, seed,
                                                                                               backend):
    gs, cams = scene(seed, degree)
    big = Gaussians(gs.means * s, gs.quats, gs.log_scales + math.log(s), gs.opacity_logits, gs.sh)
    c2w = cams.c2w.clone()
    c2w[..., :3, 3] *= s
    before = render(gs, cams, backend=backend)
    after = render(big, Cameras(cams.Ks, c2w, cams.width, cams.height), backend=backend)
    torch.testing.assert_close(after.rgb, before.rgb, atol=1e-9, rtol=0)
    torch.testing.assert_close(after.alpha, before.alpha, atol=1e-9, rtol=0)
    torch.testing.assert_close(after.depth, before.depth * s, atol=1e-9 * s, rtol=0)


@settings(max_examples=30, deadline=None)
@given(low=st.integers(0, 3), high=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_with_sh_degree_pads_with_zeros_and_truncates_back(low, high, seed):
    low, high = min(low, high), max(low, high)
    gs, cams = scene(seed, low)
    up = gs.with_sh_degree(high)
    assert up.sh_degree == high and torch.equal(up.with_sh_degree(low).sh, gs.sh)
    assert torch.equal(up.sh[:, :(low + 1) ** 2], gs.sh) and not up.sh[:, (low + 1) ** 2:].any()
    torch.testing.assert_close(render(up, cams, backend="torch_ref").rgb, render(gs, cams, backend="torch_ref").rgb,
                               atol=1e-12, rtol=0)  # zero bands add no colour


@settings(max_examples=20, deadline=None)
@given(R=rotations, t=translations)
def test_a_mirror_or_a_scale_is_refused_by_gaussians_and_cameras_alike(R, t):
    """``transformed`` promises the same image; a mirror (det -1) cannot keep it (the SH bands and the
    camera's handedness flip) and neither can a scale, so both are refused by both halves of the scene."""
    gs, cams = scene(0, 1)
    for bad in (torch.diag(torch.tensor([-1.0, 1, 1, 1], dtype=D)) @ rigid(R, t),
                rigid(R * 1.01, t)):
        with pytest.raises(InputError, match="rigid"):
            gs.transformed(bad)
        with pytest.raises(InputError, match="rigid"):
            cams.transformed(bad)


def test_a_matrix_of_the_wrong_shape_or_last_row_is_refused_by_name():
    """A 3x3 rotation went to ``T[:3, 3]`` and raised IndexError ('index 3 is out of bounds'); a last row other
    than 0 0 0 1 (a projective matrix) was taken as rigid and dropped silently; Cameras.transformed took a mirror
    (det -1: a left-handed camera, refused by Cameras.validate) or a scale without a word."""
    gs, cams = scene(0, 1)
    projective = torch.eye(4, dtype=D)
    projective[3, 2] = 0.5
    for bad, says in ((torch.eye(3, dtype=D), r"got shape \(3, 3\)"),
                      (projective, r"last row \[0.0, 0.0, 0.5, 1.0\]"),
                      (torch.diag(torch.tensor([1.0, -1, 1, 1], dtype=D)), "det = -1.0000"),
                      (torch.diag(torch.tensor([2.0, 2, 2, 1], dtype=D)), r"max \|R R\^T - I\| = 3")):
        for who, move in (("Gaussians", gs.transformed), ("Cameras", cams.transformed)):
            with pytest.raises(InputError, match=f"{who}.transformed: the matrix must be a 4x4 rigid .*{says}"):
                move(bad)
