"""`vdm3d view` on the run folders of the jobs that write no mesh or no input cameras of their own:

* a **stylize** run shows its input mesh (named in manifest.json, read from where the command ran, with
  the run's ``--up``): the mesh, drawn from the run's cameras, gives the run's own line art (edges/), so
  it lies where stylize saw it; a mesh that moved is said in one line and the rest is shown;
* a **complete** run shows its training cameras with their photos (``cameras/transforms.json``, written by
  the job) and its planned paths (``trajectories/*.json``) as a second, separately toggled group.

Both runs are tiny real runs of the jobs (32 px, one sampler step): about 2 s for stylize, 9 s for complete
(so its tests are marked slow).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vdm3d.cameras.formats import read_camera_file
from vdm3d.data.readers import Split, read_scene
from vdm3d.viewer.content import load_content
from vdm3d.viewer.server import initial_view

from ..jobs.test_complete import SMALL_FIT
from ..jobs.test_stylize import MODELS, _inputs


# -- stylize -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stylize_run(tmp_path_factory) -> Path:
    """A 6-frame stylize run of a y-up GLB, started from its folder with relative paths (as users do)."""
    pytest.importorskip("moderngl")
    from vdm3d.jobs import stylize as job

    folder = tmp_path_factory.mktemp("stylize")
    _inputs(folder, frames=6)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        job.run_stylize(job.StylizeConfig(mesh=Path("scene.glb"), trajectory=Path("path.json"),
                                          style=Path("style.png"), out=Path("run"), resolution=32, arc_frames=6,
                                          steps=1, fusion_radius=0, **MODELS), progress=None)
    return folder / "run"


def line_art_iou(content, run: Path) -> float:
    """IoU of the line art of the viewer's mesh drawn from the viewer's cameras and the run's edges/NNN.png."""
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.geometry.mesh_scene import MeshScene

    truth = np.stack([np.asarray(Image.open(run / "edges" / f"{i:03d}.png").convert("L")) > 127
                      for i in range(len(content.cameras))])
    drawn = render_buffers(MeshScene.from_trimesh(content.mesh), content.cameras, ssaa=3).edges.numpy() > 0.5
    return float((drawn & truth).sum() / (drawn | truth).sum())


def test_a_stylize_run_shows_its_input_mesh_where_its_cameras_saw_it(stylize_run, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative --mesh resolves from the manifest's cwd
    said = []
    c = load_content(stylize_run, say=said.append)
    assert said == [] and c.sources["mesh"] == str(stylize_run.parent / "scene.glb")
    assert not list(stylize_run.glob("**/*.glb"))  # read where it is, not copied
    assert len(c.cameras) == 6 and c.frames.shape == (6, 32, 32, 3)
    # every vertex in front of every camera and inside its 32 x 32 frame
    v = torch.tensor(np.asarray(c.mesh.vertices), dtype=torch.float32)
    w2c = torch.linalg.inv(c.cameras.c2w)  # [F, 4, 4]
    cam = torch.einsum("fij,vj->fvi", w2c[:, :3, :3], v) + w2c[:, None, :3, 3]
    uv = torch.einsum("fij,fvj->fvi", c.cameras.Ks, cam)
    uv = uv[..., :2] / uv[..., 2:]
    assert bool((cam[..., 2] > 0).all()) and bool(((uv >= 0) & (uv <= 32)).all())
    # the mesh drawn from the run's cameras gives the run's line art: measured IoU 0.96 (a mesh read with the
    # other up axis, as below, lands in the frame too but gives 0.17)
    assert line_art_iou(c, stylize_run) > 0.9
    assert line_art_iou(load_content(stylize_run, mesh_up="z", say=None), stylize_run) < 0.5
    # the page starts with the cameras in view: the path is close to the mesh, so standing 1.3 x the first
    # camera's distance back left them all 41 degrees below the view's axis, outside its 25 degree half angle
    view = initial_view(c)
    eye, target = np.array(view["position"]), np.array(view["look_at"])
    rays = c.cameras.centers.double().numpy() - eye
    angles = np.degrees(np.arccos(rays @ (target - eye) / (np.linalg.norm(rays, axis=1) * np.linalg.norm(target - eye))))
    assert angles.max() < np.degrees(view["fov"]) / 2


def test_a_stylize_run_whose_mesh_moved_shows_the_rest_and_says_which_file(stylize_run, tmp_path):
    moved = tmp_path / "run"
    import shutil

    shutil.copytree(stylize_run, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["config"]["mesh"] = "gone/scene.glb"
    (moved / "manifest.json").write_text(json.dumps(manifest))
    said = []
    c = load_content(moved, say=said.append)
    assert c.mesh is None and len(c.cameras) == 6 and c.frames.shape[0] == 6
    assert len(said) == 1 and f"{Path(manifest['cwd']) / 'gone' / 'scene.glb'}" in said[0] and "not found" in said[0]


# -- complete ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def complete_run(tmp_path_factory) -> tuple[Path, Path]:
    """A complete run of a 32 px held-out room: 3 training views, one guided clip of one step."""
    from vdm3d.eval.complete import write_room_case
    from vdm3d.jobs import complete as job
    from vdm3d.jobs.complete_distill import DISTILL_FIT, DistillConfig
    from vdm3d.jobs.complete_generate import GenerationConfig

    folder = tmp_path_factory.mktemp("complete")
    room = write_room_case(folder / "case", seed=7, resolution=32, views=12, ssaa=1)
    fit = dataclasses.replace(SMALL_FIT, steps=10, checkpoint_every=10)
    job.run_complete(job.CompleteConfig(
        data=room, out=folder / "run", baseline=fit, split=Split(num_train_views=3),
        distill=DistillConfig(steps=2, generate_every=2, fit=dataclasses.replace(DISTILL_FIT, densify=fit.densify)),
        generation=GenerationConfig(steps=1)))
    return room, folder / "run"


@pytest.mark.slow
def test_a_complete_run_shows_its_training_cameras_with_their_photos(complete_run):
    room, run = complete_run
    c = load_content(run, say=None)
    truth = read_scene(room, Split(num_train_views=3), points_from="train")  # the job's own reading of the scene
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(c.cameras) == len(metrics["train_views"]) == len(truth.train) == 3
    assert c.sources["cameras"] == str(run / "cameras" / "transforms.json")
    torch.testing.assert_close(c.cameras.centers, truth.train.cameras.centers.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(c.cameras.Ks, truth.train.cameras.Ks.float(), atol=1e-4, rtol=0)
    # each frustum's thumbnail is its photo (8-bit PNG of the image the fit saw)
    photos = (truth.train.images.numpy() * 255).round()
    assert c.frames.shape == photos.shape and np.abs(c.frames.astype(np.float64) - photos).max() <= 1
    # the camera file is a nerfstudio scene of the training views: the reader takes it as one
    again = read_scene(run / "cameras" / "transforms.json", Split(test_every=0))
    torch.testing.assert_close(again.train.cameras.c2w, truth.train.cameras.c2w.float(), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_complete_runs_planned_paths_are_a_second_group_toggled_on_its_own(complete_run):
    _, run = complete_run
    c = load_content(run, say=None)
    files = sorted((run / "trajectories").glob("*.json"))
    assert len(files) == json.loads((run / "metrics.json").read_text())["paths"] >= 3
    assert [g.name for g in c.groups] == ["trajectories"]
    group = c.groups[0]
    assert len(group.paths) == len(files) and group.path_names == [f.stem for f in files]
    for cams, f in zip(group.paths, files):
        torch.testing.assert_close(cams.c2w, read_camera_file(f).trajectory.cameras.c2w.float(), atol=1e-6, rtol=0)

    viser = pytest.importorskip("viser")
    from vdm3d.viewer.server import FRUSTUM_COLOR, GROUP_COLORS, show

    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        handles = show(server, c)
        nodes = handles["trajectories"]
        frusta = [n for n in nodes if hasattr(n, "fov")]
        assert len(frusta) == sum(len(p) for p in group.paths) and len(nodes) == len(frusta) + len(files)
        assert all(tuple(f.color) == GROUP_COLORS[0] != FRUSTUM_COLOR for f in frusta)
        assert len(handles["frusta"]) == 3  # the training cameras stay the main group, with the slider
        handles["toggles"]["trajectories"].value = False  # the panel's "show trajectories" checkbox
        assert not any(n.visible for n in nodes) and all(f.visible for f in handles["frusta"])
    finally:
        server.stop()
