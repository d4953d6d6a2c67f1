"""The viewer reads every vdm3d output into one z-up scene: splats, mesh, cameras, frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from vdm3d.cameras.io import cameras_from_sv3d, write_transforms_json
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.trajectory_file import save_trajectory
from vdm3d.errors import InputError
from vdm3d.io.images import write_image
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.ply import save_ply
from vdm3d.viewer.content import load_content
from vdm3d.viewer.server import camera_poses, initial_view, splat_arrays

# jobs/object.py's export rotation, z-up -> glTF y-up
Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def two_colour_splats(n: int = 400) -> Gaussians:
    g = torch.Generator().manual_seed(0)
    points = torch.rand(n, 3, generator=g) * torch.tensor([0.5, 0.3, 0.8]) - torch.tensor([0.25, 0.15, 0.4])
    points[: n // 2, 0] -= 0.35  # red block on -x, blue block on +x
    points[n // 2:, 0] += 0.35
    colors = torch.zeros(n, 3)
    colors[: n // 2] = torch.tensor([0.9, 0.1, 0.1])
    colors[n // 2:] = torch.tensor([0.1, 0.2, 0.9])
    return Gaussians.from_points(points, colors, scales=torch.full((n,), 0.05), opacity=0.95, sh_degree=0)


def fake_run(folder, frames: int = 6):
    """A run folder laid out like the object job's: splats, a y-up GLB, an orbit with its frames."""
    folder.mkdir()
    save_ply(folder / "splats.ply", two_colour_splats())
    box = trimesh.creation.box(extents=(0.2, 0.4, 1.0))  # tall along z in vdm3d's frame
    box.apply_translation((0.0, 0.0, 0.5))
    box.copy().apply_transform(Y_UP).export(folder / "mesh.glb")
    cams = cameras_from_sv3d(torch.full((frames,), 10.0), torch.arange(frames) * 360.0 / frames, 3.0, 40.0, 32, 32)
    (folder / "orbit").mkdir()
    names = [f"orbit/{i:03d}.png" for i in range(frames)]
    for i, name in enumerate(names):
        write_image(folder / name, torch.full((32, 32, 3), i / frames))
    (folder / "cameras").mkdir()
    save_trajectory(folder / "cameras" / "orbit.json", Trajectory(cams, fps=6.0))
    write_transforms_json(folder / "cameras" / "transforms.json", cams, [f"../{n}" for n in names])
    (folder / "manifest.json").write_text("{}")
    return cams


def test_run_folder_is_read_whole_and_the_mesh_turned_back_to_z_up(tmp_path):
    cams = fake_run(tmp_path / "run")
    c = load_content(tmp_path / "run")
    assert len(c.gaussians) == 400 and c.cameras is not None and len(c.cameras) == 6
    assert c.frames.shape == (6, 32, 32, 3)
    np.testing.assert_allclose(c.frames[:, 0, 0, 0], np.round(np.arange(6) / 6 * 255), atol=1)  # in order
    torch.testing.assert_close(c.cameras.c2w, cams.c2w.float(), atol=1e-5, rtol=0)
    lo, hi = c.mesh.bounds
    np.testing.assert_allclose(lo, [-0.1, -0.2, 0.0], atol=1e-5)  # z-up again, as before export
    np.testing.assert_allclose(hi, [0.1, 0.2, 1.0], atol=1e-5)
    assert c.fps == 6.0


def test_transforms_json_brings_its_frames(tmp_path):
    fake_run(tmp_path / "run")
    c = load_content(tmp_path / "run" / "cameras" / "transforms.json")
    assert c.gaussians is None and len(c.cameras) == 6 and c.frames.shape[0] == 6
    assert c.frames[3, 0, 0, 0] == round(3 / 6 * 255)


def test_a_camera_file_with_a_lens_is_drawn_by_its_poses(tmp_path):
    """Jobs refuse lens distortion they would drop; the viewer only draws poses and frusta, so it shows them."""
    import json

    cams = fake_run(tmp_path / "run")
    path = tmp_path / "run" / "cameras" / "transforms.json"
    data = json.loads(path.read_text())
    data.update(camera_model="OPENCV", k1=0.05)
    path.write_text(json.dumps(data))
    c = load_content(path)
    torch.testing.assert_close(c.cameras.c2w, cams.c2w.float(), atol=1e-5, rtol=0)


def test_splat_arrays_and_poses_match_the_gaussians_and_cameras(tmp_path):
    g = two_colour_splats()
    a = splat_arrays(g)
    np.testing.assert_allclose(a["rgbs"][0], [0.9, 0.1, 0.1], atol=1e-5)  # SH DC back to RGB
    np.testing.assert_allclose(a["opacities"][:, 0], 0.95, atol=1e-5)
    np.testing.assert_allclose(a["covariances"][0], np.eye(3) * 0.05 ** 2, atol=1e-7)
    assert len(splat_arrays(g, max_splats=100)["centers"]) == 100
    cams = cameras_from_sv3d(torch.tensor([10.0, 30.0]), torch.tensor([0.0, 90.0]), 2.0, 40.0, 16, 16)
    wxyz, pos = camera_poses(cams)
    from vdm3d.cameras.rotations import matrix_from_quat
    torch.testing.assert_close(matrix_from_quat(torch.from_numpy(wxyz)), cams.c2w[:, :3, :3].double(), atol=1e-6,
                               rtol=0)
    np.testing.assert_allclose(pos, cams.centers.numpy(), atol=1e-6)


def test_first_view_frames_the_content(tmp_path):
    save_ply(tmp_path / "s.ply", two_colour_splats())
    c = load_content(tmp_path / "s.ply")
    view = initial_view(c)
    eye, target = np.array(view["position"]), np.array(view["look_at"])
    centre, radius = c.focus()
    np.testing.assert_allclose(target, centre)
    assert eye[1] < centre[1] and eye[2] > centre[2]  # in front (-y) and above
    assert np.linalg.norm(eye - centre) > radius / np.tan(view["fov"] / 2)  # the whole radius fits


def _path_in_view(view, centres: np.ndarray) -> tuple[float, float]:
    """The largest angle between two camera centres seen from the first view, and the farthest a centre lies
    from its axis (degrees)."""
    eye, target = np.array(view["position"]), np.array(view["look_at"])
    rays = centres - eye
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    axis = (target - eye) / np.linalg.norm(target - eye)
    extent = np.degrees(np.arccos(np.clip(rays @ rays.T, -1, 1))).max()
    return float(extent), float(np.degrees(np.arccos(np.clip(rays @ axis, -1, 1))).max())


@pytest.mark.parametrize("command", [
    ["move", "--presets", "dolly-in", "pan-left", "--frames", 81],  # straight ahead: once a stack of frusta
    ["orbit", "--frames", 24],
    ["move", "--presets", "truck-right", "pedestal-up", "--frames", 40],
])
def test_a_camera_path_alone_is_seen_across_its_length(tmp_path, command):
    """`vdm3d view walk.json`: a path with nothing else opens from its side, the path spread over a good part
    of the 50 degree view (from its first camera, dolly-in's 81 frusta covered under 1 degree) and all of
    it in view."""
    from vdm3d.cli.main import main

    out = tmp_path / "walk.json"
    assert main(["trajectory", "make", *map(str, command), "--out", str(out)]) == 0
    c = load_content(out)
    assert c.gaussians is None and c.mesh is None and c.points is None
    view = initial_view(c)
    extent, off_axis = _path_in_view(view, c.cameras.reshape(-1).centers.double().numpy())
    half = np.degrees(view["fov"]) / 2
    assert extent > 0.5 * half and off_axis <= 0.8 * half + 1e-6, (extent, off_axis)


@pytest.mark.parametrize("name, text, words", [
    ("missing.ply", None, "does not exist"),
    ("notes.md", "hello", "cannot show"),
    ("broken.ply", "ply\nformat nonsense\n", "not a readable PLY"),
])
def test_bad_paths_get_one_sentence(tmp_path, name, text, words):
    p = tmp_path / name
    if text is not None:
        p.write_text(text)
    with pytest.raises(InputError, match=words):
        load_content(p)
