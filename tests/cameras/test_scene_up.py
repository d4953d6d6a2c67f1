"""A job's GLB (glTF y-up) is read back z-up at the edge, so it stands upright under the job's own cameras
in `trajectory validate|preview`, as in the viewer and the mesh loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.cameras.scene import load_scene
from vdm3d.cameras.world import Y_UP_TO_Z_UP, Z_UP_TO_Y_UP, file_up, zup_from_yup


def _tall_box() -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(0.2, 0.4, 1.2))  # tall along z, vdm3d's up
    return box.apply_translation((0.3, -0.1, 0.1))


def _as_set(v: np.ndarray) -> np.ndarray:
    return v[np.lexsort(np.round(v, 6).T[::-1])]


def test_rotations_are_inverse_and_named_by_direction():
    np.testing.assert_allclose(Y_UP_TO_Z_UP @ Z_UP_TO_Y_UP, np.eye(4), atol=0)
    np.testing.assert_allclose(zup_from_yup(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])),
                               [[0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], atol=0)  # y-up -> +z; glTF forward -> -y
    assert (file_up("a.GLB"), file_up("a.obj"), file_up("a.ply"), file_up("a.glb", "z")) == ("y", "y", "z", "z")


def test_the_object_jobs_glb_stands_upright_under_its_cameras(tmp_path):
    from vdm3d.geometry.texture import export_mesh
    from vdm3d.jobs.object import Y_UP  # the rotation the object job writes mesh.glb/mesh.obj with

    box = _tall_box()
    export_mesh(box.copy().apply_transform(Y_UP), tmp_path, "mesh")
    for name in ("mesh.glb", "mesh.obj"):
        scene = load_scene(tmp_path / name, mesh_samples=500)
        np.testing.assert_allclose(_as_set(scene.vertices), _as_set(np.asarray(box.vertices)), atol=1e-6)
        assert np.ptp(scene.points[:, 2]) > 1.1  # the tall side is vertical again
    raw = load_scene(tmp_path / "mesh.glb", mesh_samples=500, up="z")  # taken as stored: lying along -y
    assert np.ptp(raw.vertices[:, 1]) == pytest.approx(1.2, abs=1e-6)

    # the job's orbit cameras (z up, looking at the origin): the top of the box is above its bottom
    cams = cameras_from_sv3d(torch.full((8,), 10.0), torch.arange(8) * 45.0, torch.full((8,), 3.0), 40.0, 64, 64,
                             dtype=torch.float64)
    scene = load_scene(tmp_path / "mesh.glb", mesh_samples=500)
    top = scene.vertices[np.argmax(scene.vertices[:, 2])]
    bottom = scene.vertices[np.argmin(scene.vertices[:, 2])]
    for c2w, K in zip(cams.c2w, cams.Ks):
        v = []
        for p in (top, bottom):
            cam = c2w[:3, :3].T @ (torch.as_tensor(p) - c2w[:3, 3])  # world -> OpenCV camera (y down)
            v.append(float((K @ (cam / cam[2]))[1]))
        assert v[0] < v[1] - 10  # image rows grow downwards: top is higher in every view


def test_trajectory_preview_and_validate_take_scene_up(tmp_path, capsys):
    from vdm3d.cli.main import main

    box = _tall_box()
    box.copy().apply_transform(Z_UP_TO_Y_UP).export(tmp_path / "box.glb")
    assert main(["trajectory", "make", "orbit", "--frames", "6", "--radius", "3", "--elevation-deg", "10",
                 "--out", str(tmp_path / "orbit.json")]) == 0
    assert main(["trajectory", "preview", str(tmp_path / "orbit.json"), "--out", str(tmp_path / "p.png"),
                 "--scene", str(tmp_path / "box.glb")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert main(["trajectory", "validate", str(tmp_path / "orbit.json"), "--scene", str(tmp_path / "box.glb"),
                 "--scene-up", "y"]) == 0
    assert "ok: no problems" in capsys.readouterr().out


def test_a_run_folder_as_the_scene_is_its_mesh_or_its_splats(tmp_path):
    """QA chain: `trajectory validate runs/object --scene runs/object` said the folder held no cameras.bin; a run
    folder (or a data case) as --scene is its mesh.glb (z-up as the file read alone), else its splats.ply, and a
    folder with neither names what it looked for."""
    from vdm3d.errors import InputError
    from vdm3d.splat.gaussians import Gaussians
    from vdm3d.splat.ply import save_ply

    run = tmp_path / "object"
    run.mkdir()
    _tall_box().apply_transform(Z_UP_TO_Y_UP).export(run / "mesh.glb")
    alone, folder = load_scene(run / "mesh.glb"), load_scene(run)
    assert folder.is_mesh and folder.source == str(run / "mesh.glb")
    np.testing.assert_allclose(folder.vertices, alone.vertices, atol=0)
    assert np.ptp(folder.vertices[:, 2]) == pytest.approx(1.2, abs=1e-6)  # upright: the box's 1.2 along z
    walk = tmp_path / "explore"
    walk.mkdir()
    means = torch.tensor([[0.0, 0.0, 2.0], [0.5, 0.0, 3.0]])
    save_ply(walk / "splats.ply", Gaussians.from_points(means, torch.full((2, 3), 0.5)))
    np.testing.assert_allclose(load_scene(walk).points[np.argsort(load_scene(walk).points[:, 2])], means.double(),
                               atol=1e-6)
    with pytest.raises(InputError, match=r"empty: holds no COLMAP model .*mesh.glb, splats.ply or mesh.obj"):
        load_scene((tmp_path / "empty").mkdir() or tmp_path / "empty")
