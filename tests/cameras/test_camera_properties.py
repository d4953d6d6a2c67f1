"""Property tests (hypothesis) of cameras and camera paths against exact truths: random cameras (any rotation,
half turns included; non-square pixels; principal points anywhere) survive every writable file format, a
rigid move of the world and of the cameras keeps every projection, resizing scales projections exactly, and
paths resampled, extended or interpolated go through the cameras they were made from."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vdm3d.cameras.camera import Cameras, intrinsics
from vdm3d.cameras.extend import extend_cameras
from vdm3d.cameras.formats import CameraFile, read_camera_file, write_camera_file
from vdm3d.cameras.rotations import axis_angle_matrix, matrix_from_quat
from vdm3d.cameras.speed import retime
from vdm3d.cameras.trajectory import Trajectory, interpolate_keyframes

D = torch.float64
I3 = torch.eye(3, dtype=D)


def random_rotations(g: torch.Generator, n: int, half_turn: bool) -> torch.Tensor:
    R = matrix_from_quat(torch.randn(n, 4, generator=g, dtype=D))
    if half_turn:  # where quaternion <-> matrix conversions lose digits
        R[0] = axis_angle_matrix(torch.randn(3, generator=g, dtype=D), torch.tensor(math.pi - 1e-9, dtype=D))
    return R


def random_cameras(seed: int, n: int, width: int, height: int, half_turn: bool = False) -> Cameras:
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=D).repeat(n, 1, 1)
    c2w[:, :3, :3] = random_rotations(g, n, half_turn)
    c2w[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=D) * 10
    fx = torch.rand(n, generator=g, dtype=D) * 200 + 20
    fy = fx * (0.5 + torch.rand(n, generator=g, dtype=D))
    cx, cy = torch.rand(n, generator=g, dtype=D) * width, torch.rand(n, generator=g, dtype=D) * height
    return Cameras(intrinsics(fx, fy, cx, cy), c2w, width, height)


sizes = st.tuples(st.integers(8, 400), st.integers(8, 400))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 5), size=sizes, half_turn=st.booleans(),
       name=st.sampled_from(["t.json", "transforms.json", "sparse", "cams.txt"]))
def test_random_cameras_survive_every_writable_format(seed, n, size, half_turn, name):
    """vdm3d JSON and transforms.json exactly, COLMAP to rounding, RealEstate10K (intrinsics divided by the
    size, 3x4 w2c) to 1e-9."""
    cams = random_cameras(seed, n, *size, half_turn)
    cf = CameraFile(Trajectory(cams, 12.0), [f"img_{i}.png" for i in range(n)], [i * 83333 for i in range(n)],
                    "https://x/y")
    with tempfile.TemporaryDirectory() as tmp:
        write_camera_file(Path(tmp) / name, cf)
        back = read_camera_file(Path(tmp) / name, width=size[0], height=size[1]).trajectory.cameras.to(D)
    assert (back.width, back.height) == size
    torch.testing.assert_close(back.c2w, cams.c2w, atol=1e-9, rtol=0)
    torch.testing.assert_close(back.Ks, cams.Ks, atol=1e-9 * 400, rtol=0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), half_turn=st.booleans())
def test_a_rigid_move_of_world_and_cameras_keeps_every_projection(seed, half_turn):
    cams = random_cameras(seed, 3, 64, 48)
    g = torch.Generator().manual_seed(seed + 1)
    T = torch.eye(4, dtype=D)
    T[:3, :3], T[:3, 3] = random_rotations(g, 1, half_turn)[0], torch.randn(3, generator=g, dtype=D) * 100
    pts = torch.randn(3, 10, 3, generator=g, dtype=D) * 5
    moved = cams.transformed(T)
    uv, z = cams.project(pts)
    uv2, z2 = moved.project(pts @ T[:3, :3].T + T[:3, 3])
    torch.testing.assert_close(uv2, uv, atol=1e-6, rtol=1e-9)
    torch.testing.assert_close(z2, z, atol=1e-9, rtol=0)
    torch.testing.assert_close(moved.transformed(torch.linalg.inv(T)).c2w, cams.c2w, atol=1e-12, rtol=0)
    moved.validate()  # still rigid cameras


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), size=sizes, new=sizes)
def test_resizing_scales_every_projection_and_resizing_back_restores_the_intrinsics(seed, size, new):
    """Pixel edges at 0 and W: a point at ``u`` in a W-wide image sits at ``u * W' / W`` in a W'-wide one
    (pixel centres at +0.5 map to the new centres only where the scale is whole, as they should)."""
    cams = random_cameras(seed, 2, *size)
    small = cams.resize(*new)
    pts = torch.randn(2, 10, 3, dtype=D) * 5
    uv, z = cams.project(pts)
    uv2, z2 = small.project(pts)
    scale = torch.tensor([new[0] / size[0], new[1] / size[1]], dtype=D)
    torch.testing.assert_close(uv2, uv * scale, atol=1e-7, rtol=1e-9)
    torch.testing.assert_close(z2, z, atol=0, rtol=0)
    torch.testing.assert_close(small.resize(*size).Ks, cams.Ks, atol=1e-10, rtol=0)
    left, top = seed % size[0], seed % size[1]
    uv3, _ = cams.crop(left, top, 5, 5).project(pts)
    torch.testing.assert_close(uv3, uv - torch.tensor([left, top], dtype=D), atol=1e-9, rtol=1e-12)


def smooth_path(seed: int, n: int, max_turn_deg: float) -> Cameras:
    """``n`` cameras whose consecutive rotations differ by less than ``max_turn_deg`` (as a video's)."""
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=D).repeat(n, 1, 1)
    R = matrix_from_quat(torch.randn(4, generator=g, dtype=D))
    for i in range(n):
        c2w[i, :3, :3] = R
        axis = torch.randn(3, generator=g, dtype=D)
        R = axis_angle_matrix(axis, torch.tensor(math.radians(max_turn_deg), dtype=D) * torch.rand((), generator=g,
                                                                                                  dtype=D)) @ R
    c2w[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=D).cumsum(0)
    fx = 50 + torch.rand(n, generator=g, dtype=D) * 10
    return Cameras(intrinsics(fx, fx * 1.1, torch.full_like(fx, 32.0), torch.full_like(fx, 24.0)), c2w, 64, 48)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 8), m=st.integers(1, 5), turn=st.floats(0.0, 179.99))
def test_retime_goes_through_the_path_and_keeps_rotations_rigid(seed, n, m, turn):
    cams = smooth_path(seed, n, turn)
    slow = retime(cams, 1.0 / m)  # m new frames per old one: every m-th is an old camera
    assert len(slow) == (n - 1) * m + 1
    torch.testing.assert_close(slow.c2w[::m], cams.c2w, atol=1e-9, rtol=0)
    torch.testing.assert_close(slow.Ks[::m], cams.Ks, atol=1e-9, rtol=0)
    R = slow.R
    torch.testing.assert_close(R @ R.transpose(1, 2), I3.expand_as(R), atol=1e-12, rtol=0)
    assert bool((torch.linalg.det(R) > 0).all())
    fast = retime(cams, float(m))  # every m-th camera
    torch.testing.assert_close(fast.c2w, cams.c2w[::m], atol=1e-9, rtol=0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 6), extra=st.integers(1, 12), turn=st.floats(0.0, 179.99),
       mode=st.sampled_from(["extrapolate", "loop"]))
def test_a_path_of_one_repeated_step_is_continued_by_that_step(seed, n, extra, turn, mode):
    g = torch.Generator().manual_seed(seed)
    step = torch.eye(4, dtype=D)
    step[:3, :3] = axis_angle_matrix(torch.randn(3, generator=g, dtype=D), torch.tensor(math.radians(turn), dtype=D))
    step[:3, 3] = torch.randn(3, generator=g, dtype=D)
    c2w = [smooth_path(seed, 1, 0).c2w[0]]
    for _ in range(n + extra - 1):
        c2w.append(c2w[-1] @ step)
    full = Cameras(smooth_path(seed, 1, 0).Ks[0].expand(n + extra, 3, 3), torch.stack(c2w), 64, 48)
    out = extend_cameras(full[:n], extra, mode)
    torch.testing.assert_close(out.c2w, full.c2w, atol=1e-9 * (n + extra), rtol=1e-9)
    torch.testing.assert_close(out.Ks, full.Ks, atol=0, rtol=0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), k=st.integers(2, 6), m=st.integers(1, 6), turn=st.floats(0.0, 179.99))
def test_keyframe_interpolation_goes_through_the_keys(seed, k, m, turn):
    """Equal time steps (``constant_speed=False``): every m-th frame is a keyframe, camera and intrinsics."""
    kf = smooth_path(seed, k, turn)
    path = interpolate_keyframes(kf, frames=(k - 1) * m + 1, constant_speed=False).cameras
    torch.testing.assert_close(path.c2w[::m], kf.c2w, atol=1e-9, rtol=0)
    torch.testing.assert_close(path.Ks[::m], kf.Ks, atol=1e-9, rtol=0)
    R = path.R
    torch.testing.assert_close(R @ R.transpose(1, 2), I3.expand_as(R), atol=1e-12, rtol=0)


def test_look_at_refuses_an_eye_at_its_target():
    """It returned a c2w of NaNs (0 / 0), which only failed later, far from the cause."""
    import pytest

    from vdm3d.cameras.camera import look_at
    from vdm3d.errors import CameraError

    eye = torch.tensor([[1.0, 2.0, 3.0], [0.0, -2.0, 0.0]], dtype=D)
    with pytest.raises(CameraError, match="look_at: a camera's eye is at its target"):
        look_at(eye, torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=D),
                torch.tensor([0.0, 0.0, 1.0], dtype=D).expand(2, 3))
    c2w = look_at(eye[1], torch.zeros(3, dtype=D), torch.tensor([0.0, 0.0, 1.0], dtype=D))
    torch.testing.assert_close(c2w[:3, 2], torch.tensor([0.0, 1.0, 0.0], dtype=D))  # forward: towards the target
