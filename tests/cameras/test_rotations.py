"""Rotation helpers: property tests (hypothesis) for quaternion/matrix round trips and slerp."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vdm3d.cameras.io import opencv_from_opengl, opengl_from_opencv
from vdm3d.cameras.rotations import axis_angle_matrix, matrix_from_quat, orthonormalize, quat_from_matrix, slerp

D = torch.float64
quats = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: sum(v * v for v in q) > 1e-3).map(lambda q: torch.tensor(q, dtype=D))


@settings(max_examples=100, deadline=None)
@given(q=quats)
def test_matrix_is_a_rotation_and_quat_round_trips(q):
    R = matrix_from_quat(q)
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=D), atol=1e-12, rtol=0)
    assert abs(float(torch.linalg.det(R)) - 1) < 1e-12
    q2 = quat_from_matrix(R)
    qn = q / q.norm()
    qn = qn if qn[0] >= 0 else -qn
    assert float(q2[0]) >= 0
    torch.testing.assert_close(matrix_from_quat(q2), R, atol=1e-12, rtol=0)
    if float(qn[0]) > 1e-6:  # away from w = 0 the sign convention makes the quaternion unique
        torch.testing.assert_close(q2, qn, atol=1e-9, rtol=0)


def test_quat_from_matrix_half_turns():
    for axis in torch.eye(3, dtype=D):
        R = axis_angle_matrix(axis, torch.tensor(math.pi, dtype=D))
        torch.testing.assert_close(matrix_from_quat(quat_from_matrix(R)), R, atol=1e-12, rtol=0)


@settings(max_examples=60, deadline=None)
@given(q0=quats, q1=quats, t=st.floats(0, 1))
def test_slerp_constant_angular_speed(q0, q1, t):
    R0, R1 = matrix_from_quat(q0), matrix_from_quat(q1)
    Rt = matrix_from_quat(slerp(q0, q1, torch.tensor(t, dtype=D)))

    def angle(A, B):
        c = ((torch.trace(A.T @ B) - 1) / 2).clamp(-1, 1)
        return float(torch.acos(c))

    total = angle(R0, R1)
    if total > 3.1:  # near 180 degrees the shorter arc is ill-defined
        return
    assert abs(angle(R0, Rt) - t * total) < 1e-6
    assert abs(angle(Rt, R1) - (1 - t) * total) < 1e-6


@settings(max_examples=40, deadline=None)
@given(q=quats, noise=st.floats(0, 0.05))
def test_orthonormalize_recovers_rotation(q, noise):
    R = matrix_from_quat(q)
    g = torch.Generator().manual_seed(0)
    Rn = orthonormalize(R + noise * torch.randn(3, 3, generator=g, dtype=D))
    torch.testing.assert_close(Rn @ Rn.T, torch.eye(3, dtype=D), atol=1e-12, rtol=0)
    assert float((Rn - R).abs().max()) <= 3 * noise + 1e-12


@settings(max_examples=40, deadline=None)
@given(q=quats, t=st.lists(st.floats(-10, 10), min_size=3, max_size=3))
def test_opengl_opencv_involution(q, t):
    c2w = torch.eye(4, dtype=D)
    c2w[:3, :3], c2w[:3, 3] = matrix_from_quat(q), torch.tensor(t, dtype=D)
    torch.testing.assert_close(opencv_from_opengl(opengl_from_opencv(c2w)), c2w)
    gl = opengl_from_opencv(c2w)
    assert abs(float(torch.linalg.det(gl[:3, :3])) - 1) < 1e-9  # still a proper rotation
