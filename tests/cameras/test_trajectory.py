"""Trajectory generators, keyframe interpolation, presets and extension, against closed forms."""

import math

import numpy as np
import pytest
import torch

from vdm3d.cameras import Cameras, look_at
from vdm3d.cameras.extend import extend_cameras, extend_trajectory
from vdm3d.cameras.io import cameras_from_llff
from vdm3d.cameras.presets import PRESETS, Movement, apply_movements, preset_movements
from vdm3d.cameras.trajectory import (Trajectory, interpolate_keyframes, llff_spiral, orbit, sv3d_dynamic_angles_deg,
                                      sv3d_dynamic_orbit, sv3d_static_azimuths_deg, sv3d_static_orbit, v3d_orbit)
from vdm3d.errors import CameraError, ConfigError

D = torch.float64


def looks_at_origin(cams: Cameras, atol=1e-3):  # pixels; generators return float32
    uv, z = cams.to(D).project(torch.zeros(len(cams), 1, 3, dtype=D))
    centre = torch.tensor([cams.width / 2, cams.height / 2], dtype=D)
    torch.testing.assert_close(uv[:, 0], centre.expand(len(cams), 2), atol=atol, rtol=0)
    assert (z > 0).all()


def azimuth_deg(centers: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(centers[:, 1], centers[:, 0])) % 360


def test_sv3d_static_orbit_constants():
    az = sv3d_static_azimuths_deg()
    assert len(az) == 21 and float(az[-1]) == 0.0
    assert float(az[0]) == pytest.approx(360 / 21) and float(az[10]) == pytest.approx(188.5714, abs=1e-4)
    t = sv3d_static_orbit(elevation_deg=10.0)
    c = t.cameras.centers.double()
    torch.testing.assert_close(c.norm(dim=-1), torch.full((21,), 2.0, dtype=D), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.rad2deg(torch.asin(c[:, 2] / 2)), torch.full((21,), 10.0, dtype=D), atol=1e-4, rtol=0)
    assert float(azimuth_deg(c)[-1]) == pytest.approx(0, abs=1e-4)  # the input view is last
    looks_at_origin(t.cameras)


def test_sv3d_dynamic_orbit_recipe():
    e, a = sv3d_dynamic_angles_deg(10.0, 21, seed=3)
    assert e.shape == a.shape == (21,)
    assert a[-1] == 0.0 and e[-1] == pytest.approx(10.0, abs=1e-9)  # odd sinusoids average out at the input view
    assert np.all(np.diff(a[:-1]) > 0) and a[-2] < 360 and np.abs(e).max() < 90
    assert e.std() > 2  # it really wobbles
    e2, a2 = sv3d_dynamic_angles_deg(10.0, 21, seed=3)
    np.testing.assert_array_equal(e, e2)
    assert not np.allclose(e, sv3d_dynamic_angles_deg(10.0, 21, seed=4)[0])
    t = sv3d_dynamic_orbit(10.0, seed=3)
    c = t.cameras.centers.double()
    torch.testing.assert_close(torch.rad2deg(torch.asin(c[:, 2] / 2)), torch.from_numpy(e), atol=1e-3, rtol=0)
    looks_at_origin(t.cameras)


def test_v3d_orbit_constants():
    t = v3d_orbit()
    assert len(t) == 18 and (t.cameras.width, t.cameras.height) == (512, 512)
    c = t.cameras.centers.double()
    torch.testing.assert_close(c.norm(dim=-1), torch.full((18,), 2.0, dtype=D), atol=1e-5, rtol=0)
    steps = (azimuth_deg(c).diff() % 360)
    torch.testing.assert_close(steps, torch.full((17,), 20.0, dtype=D), atol=1e-3, rtol=0)
    torch.testing.assert_close(t.cameras.fov_x_deg.double(), torch.full((18,), 60.0, dtype=D), atol=1e-4, rtol=0)
    looks_at_origin(t.cameras)


def test_orbit_demo_parameters():
    t = orbit(frames=36, radius=2.5, elevation_deg=20)
    c = t.cameras.centers.double()
    torch.testing.assert_close(c.norm(dim=-1), torch.full((36,), 2.5, dtype=D), atol=1e-5, rtol=0)
    assert float(c[:, 2].mean()) == pytest.approx(2.5 * math.sin(math.radians(20)), abs=1e-5)
    looks_at_origin(t.cameras)
    assert t.path_length() == pytest.approx(35 * 2 * 2.5 * math.cos(math.radians(20)) * math.sin(math.pi / 36), rel=1e-5)


def test_llff_spiral_on_fern(shared_data):
    cams, bounds = cameras_from_llff(shared_data / "llff_fern" / "poses_bounds.npy", 504, 378, dtype=D)
    t = llff_spiral(cams, bounds, frames=40)
    assert len(t) == 40
    focus_depth = t.provenance["focus_depth"]
    near, far = 0.9 * float(bounds.min()), 5 * float(bounds.max())
    assert focus_depth == pytest.approx(1 / (0.25 / near + 0.75 / far))
    # every frame looks at the same focus point: its projection is the image center
    avg_c = cams.centers.mean(0)
    fwd = cams.forward.mean(0) / cams.forward.mean(0).norm()
    focus = avg_c + focus_depth * fwd
    uv, z = t.cameras.to(D).project(focus.expand(40, 1, 3))
    torch.testing.assert_close(uv[:, 0], torch.tensor([252.0, 189.0], dtype=D).expand(40, 2), atol=1e-6, rtol=0)
    # the spiral stays within the spread of the input cameras
    spread = (cams.centers - avg_c).norm(dim=-1).max()
    assert float((t.cameras.centers.double() - avg_c).norm(dim=-1).max()) <= float(spread) * 1.01


def keyframes() -> Cameras:
    eye = torch.tensor([[0.0, -4, 1], [3, -1, 1.5], [1, 3, 0.5], [-2, 1, 2]], dtype=D)
    c2w = look_at(eye, torch.tensor([0.2, 0.1, 0.3], dtype=D).expand(4, 3), torch.tensor([0, 0, 1.0], dtype=D).expand(4, 3))
    cams = Cameras.from_fov(torch.tensor([40.0, 50, 60, 45], dtype=D), 64, 48, c2w)
    return cams


def test_keyframes_interpolate_through_keys_and_fov():
    kf = keyframes()
    t = interpolate_keyframes(kf, frames=3 * 10 + 1, constant_speed=False)
    for k in range(4):
        torch.testing.assert_close(t.cameras.c2w[10 * k], kf.c2w[k], atol=1e-9, rtol=0)
    assert float(t.cameras.fov_x_deg[5]) == pytest.approx(45.0)  # halfway between 40 and 50
    R = t.cameras.R
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=D).expand_as(R), atol=1e-9, rtol=0)


def test_keyframes_constant_speed_and_c2_smooth():
    t = interpolate_keyframes(keyframes(), frames=200, constant_speed=True)
    step = t.cameras.centers.diff(dim=0).norm(dim=-1)
    assert float(step.std() / step.mean()) < 0.01  # equal arc length per frame
    slow = interpolate_keyframes(keyframes(), frames=200, constant_speed=False)
    s2 = slow.cameras.centers.diff(dim=0).norm(dim=-1)
    assert float(s2.std() / s2.mean()) > 0.05  # without reparametrization the speed varies
    acc = slow.cameras.centers.diff(n=2, dim=0)  # C2: acceleration changes gradually, no jumps at keys
    jerk = acc.diff(dim=0).norm(dim=-1)
    assert float(jerk.max()) < 10 * float(jerk.median()) + 1e-9


def test_keyframes_closed_loop_returns_to_start():
    t = interpolate_keyframes(keyframes(), frames=60, closed=True)
    gap = (t.cameras.centers[0] - t.cameras.centers[-1]).norm()
    step = t.cameras.centers.diff(dim=0).norm(dim=-1).mean()
    assert float(gap) == pytest.approx(float(step), rel=0.05)


def start_camera() -> Cameras:
    return Cameras.from_fov(60.0, 64, 48, torch.eye(4, dtype=D))


@pytest.mark.parametrize("kind, speed, check", [
    ("pan", 1.0, lambda uv, z, c: uv[0] > 32.5),  # turning left: what was ahead slides right
    ("tilt", 1.0, lambda uv, z, c: uv[1] > 24.5),  # looking up: what was ahead slides down
    ("dolly", 0.1, lambda uv, z, c: abs(z - (5 - 0.9)) < 1e-9),
    ("truck", 0.1, lambda uv, z, c: abs(c[0] - 0.9) < 1e-9 and uv[0] < 32),
    ("pedestal", 0.1, lambda uv, z, c: abs(c[1] + 0.9) < 1e-9 and uv[1] > 24),
])
def test_movement_signs(kind, speed, check):
    cams = apply_movements(start_camera(), [Movement(kind, speed)], frames=10)
    uv, z = cams.project(torch.tensor([[0.0, 0.0, 5.0]], dtype=D).expand(10, 1, 3))
    assert check(uv[-1, 0].tolist(), float(z[-1, 0]), cams.centers[-1].tolist())


def test_orbit_movement_keeps_pivot_centered():
    cams = apply_movements(start_camera(), preset_movements(["orbit-left"], speed=10), frames=19)
    pivot = torch.tensor([[0.0, 0.0, 2.0]], dtype=D)
    uv, z = cams.project(pivot.expand(19, 1, 3))
    torch.testing.assert_close(uv[:, 0], torch.tensor([32.0, 24.0], dtype=D).expand(19, 2), atol=1e-9, rtol=0)
    torch.testing.assert_close(z[:, 0], torch.full((19,), 2.0, dtype=D), atol=1e-9, rtol=0)
    assert float(cams.centers[1, 0]) < 0  # left
    # 18 steps of 1 degree: the camera swung 18 degrees about the pivot
    assert float(torch.rad2deg(torch.atan2(-cams.centers[-1, 0], 2 - cams.centers[-1, 2]))) == pytest.approx(18.0)


def test_zoom_compose_and_speed_ramp():
    cams = apply_movements(start_camera(), preset_movements(["zoom-in", "dolly-in"]), frames=5)
    assert float(cams.fx[-1] / cams.fx[0]) == pytest.approx(1.005 ** 4)
    assert float(cams.centers[-1, 2]) == pytest.approx(4 * 0.008)
    ramp = apply_movements(start_camera(), [Movement("dolly", 1.0)], frames=4, speed_per_frame=[0.0, 1.0, 2.0])
    assert ramp.centers[:, 2].tolist() == pytest.approx([0, 0, 1, 3])
    assert set(PRESETS) >= {"dolly-in", "pan-left", "tilt-up", "orbit-left", "truck-left", "pedestal-up", "zoom-in"}
    with pytest.raises(ConfigError, match="unknown movement preset"):
        preset_movements(["spin"])


@pytest.mark.parametrize("mode", ["extrapolate", "loop"])
def test_extension_continues_a_uniform_orbit(mode):
    full = orbit(frames=36, radius=2.0, elevation_deg=15).cameras.to(D)
    ext = extend_cameras(full[:20], 10, mode=mode)
    torch.testing.assert_close(ext.c2w, full[:30].c2w, atol=1e-5, rtol=0)


def test_pingpong_and_slowdown():
    cams = orbit(frames=8, radius=2.0).cameras.to(D)
    pp = extend_cameras(cams, 10, mode="pingpong")
    order = list(range(8)) + [6, 5, 4, 3, 2, 1, 0, 1, 2, 3]
    torch.testing.assert_close(pp.c2w, cams.c2w[order])
    line = Cameras(start_camera().Ks.expand(3, 3, 3), torch.eye(4, dtype=D).repeat(3, 1, 1), 64, 48)
    line.c2w[:, 2, 3] = torch.tensor([0.0, 1.0, 2.0], dtype=D)
    slow = extend_cameras(line, 60, mode="slowdown", decay=0.9, floor=0.1)
    steps = slow.centers[:, 2].diff()[2:]
    torch.testing.assert_close(steps[:3], torch.tensor([0.9, 0.81, 0.729], dtype=D), atol=1e-9, rtol=0)
    assert float(steps[-1]) == pytest.approx(0.1)
    t = extend_trajectory(Trajectory(line, fps=10), 4, mode="extrapolate")
    assert len(t) == 7 and t.provenance["extended"]["mode"] == "extrapolate"


def test_trajectory_rejects_bad_fps_and_shape():
    with pytest.raises(CameraError, match="fps"):
        Trajectory(start_camera().reshape(1), fps=0.0)
    with pytest.raises(CameraError, match="1D batch"):
        Trajectory(start_camera(), fps=24.0)


def test_llff_spiral_refuses_cameras_that_are_not_forward_facing():
    """An orbit's cameras have no meaningful average camera: the spiral failed inside look_at with 'choose
    another up', an option `trajectory make spiral` does not have (help-examples QA)."""
    ring = orbit(frames=18, elevation_deg=10.0, width=64, height=64).cameras
    with pytest.raises(ConfigError, match=r"18 of the 18 cameras .* not forward-facing.*trajectory make orbit"):
        llff_spiral(ring, focus_depth=2.5, frames=10)
    # a quarter of the ring (90 degrees of azimuth: every camera within 45 degrees of the mean) still spirals
    assert len(llff_spiral(ring[:5], focus_depth=2.5, frames=10)) == 10
