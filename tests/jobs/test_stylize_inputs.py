"""What stylize does with unusual but valid inputs (QA session 33): a style image with transparent pixels or
an extreme aspect ratio, a mesh in other units than the path (cameras inside it), a mesh the path never
sees; each said in one line, or refused in one sentence (exit 2, no folder) before the models load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.trajectory_file import save_trajectory
from vdm3d.cli.main import main as cli
from vdm3d.io.images import write_image
from vdm3d.jobs import stylize as job

pytest.importorskip("moderngl")
MODELS = dict(anchor_model="stylize_anchor", inbetween_model="stylize_inbetween")


def _orbit(radius: float, frames: int = 4, size: int = 16, height: float = 0.0) -> Cameras:
    """``frames`` cameras on a circle of ``radius`` about the z axis at ``height``, looking at the origin."""
    a = torch.arange(frames, dtype=torch.float64) * 2 * math.pi / frames
    eye = torch.stack([radius * torch.cos(a), radius * torch.sin(a), torch.full_like(a, height)], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(eye))
    return Cameras.from_fov(50.0, size, size, c2w.float())


def _box(path: Path, side: float = 2.0, centre=(0.0, 0.0, 0.0), inward: bool = False) -> Path:
    """A closed box (faces outwards, or inwards like a room's walls) as a z-up PLY."""
    box = trimesh.creation.box(extents=(side, side, side))
    box.apply_translation(centre)
    if inward:
        box.invert()
    box.export(path)
    return path


def _style(path: Path, width: int = 24, height: int = 24) -> Path:
    rng = np.random.default_rng(0)
    write_image(path, torch.from_numpy(rng.uniform(0.2, 0.8, (height, width, 3)).astype(np.float32)))
    return path


def _config(tmp_path, mesh, cameras, style=None, **kw) -> job.StylizeConfig:
    save_trajectory(tmp_path / "path.json", Trajectory(cameras, fps=12))
    return job.StylizeConfig(mesh=mesh, trajectory=tmp_path / "path.json", style=style or _style(tmp_path / "style.png"),
                             out=tmp_path / "run", resolution=16, **kw)


def _cli(config: job.StylizeConfig, capsys) -> tuple[int, list[str], list[str]]:
    code = cli(["stylize", "--mesh", str(config.mesh), "--trajectory", str(config.trajectory), "--style",
                str(config.style), "--out", str(config.out), "--resolution", "16", "--steps", "1", "--threads", "1"])
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err.strip().splitlines()


# -- the style image ------------------------------------------------------------------------------
def test_a_transparent_style_image_is_composited_over_white_and_said(tmp_path):
    """A cut-out saved with black under its transparent pixels: the job used the black (every frame came out
    dark); now transparent pixels are white, as explore's --image and object's --image make them."""
    yy, xx = np.mgrid[:32, :32]
    disk = (xx - 15.5) ** 2 + (yy - 15.5) ** 2 < 10 ** 2
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[disk] = (200, 40, 30, 255)  # a red disk; elsewhere RGB (0, 0, 0) with alpha 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    config = _config(tmp_path, _box(tmp_path / "box.ply"), _orbit(3.0), tmp_path / "cutout.png")
    said: list[str] = []
    style = job.load_inputs(config, said.append).style
    assert said == [f"{tmp_path / 'cutout.png'}: transparent pixels composited over white"]
    assert style.shape == (16, 16, 3)
    assert torch.equal(style[0, 0], torch.ones(3)) and torch.equal(style[15, 15], torch.ones(3))  # corners: white
    torch.testing.assert_close(style[8, 8], torch.tensor([200, 40, 30]) / 255.0, atol=1e-6, rtol=0)  # the disk


def test_a_style_image_cropped_by_more_than_half_is_said_and_the_crop_recorded(tmp_path):
    config = _config(tmp_path, _box(tmp_path / "box.ply"), _orbit(3.0), _style(tmp_path / "strip.png", 200, 20))
    said: list[str] = []
    inputs = job.load_inputs(config, said.append)
    assert said == [f"{tmp_path / 'strip.png'} is 200x20: stylize uses its centre 20x20 square (90% of the "
                    "image is cropped away)"]
    assert inputs.style_crop == {"source_size": [200, 20], "crop_box": [90, 0, 110, 20]}
    # a 3:2 image loses a third: kept without a word
    said.clear()
    inputs = job.load_inputs(_config(tmp_path, config.mesh, _orbit(3.0), _style(tmp_path / "wide.png", 36, 24)),
                             said.append)
    assert said == [] and inputs.style_crop == {"source_size": [36, 24], "crop_box": [6, 0, 30, 24]}
    # a phone photo stored 20 wide and 200 tall, shown turned a quarter (EXIF 6): the crop is of what is shown
    stored = (np.random.default_rng(1).uniform(0, 255, (200, 20, 3))).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "turned.png", exif=exif)
    inputs = job.load_inputs(_config(tmp_path, config.mesh, _orbit(3.0), tmp_path / "turned.png"), said.append)
    assert inputs.style_crop == {"source_size": [200, 20], "crop_box": [90, 0, 110, 20]}
    assert said[-1].startswith(f"{tmp_path / 'turned.png'} is 200x20: stylize uses its centre 20x20 square")


# -- cameras inside the mesh ----------------------------------------------------------------------
def test_a_path_inside_a_mesh_in_other_units_is_refused_before_the_models_load(tmp_path, capsys, monkeypatch):
    """A box 2000 units across (a CAD export in millimetres) around an orbit of radius 2.5: every camera is inside,
    and the job used to style its few interior triangles without a word."""
    loaded = []

    def load_models(config):
        loaded.append(config)
        raise AssertionError("the models were loaded")

    monkeypatch.setattr(job, "load_models", load_models)
    config = _config(tmp_path, _box(tmp_path / "box_mm.ply", side=2000.0), _orbit(2.5))
    code, out, err = _cli(config, capsys)
    assert code == 2 and loaded == []
    assert err == [f"error: {config.mesh}: all 4 cameras of {config.trajectory} are inside the mesh (it spans 2000 "
                   "units, the path 5); is the mesh in millimetres or centimetres? scale it (or the path) so that both "
                   "are in the same units."]
    assert not config.out.exists() and not (tmp_path / ".run.partial").exists()
    # inside an outward box of the path's own size: not a unit mistake, and the sentence says what to do instead
    config = _config(tmp_path, _box(tmp_path / "box6.ply", side=6.0), _orbit(2.5))
    code, out, err = _cli(config, capsys)
    assert code == 2 and err == [
        f"error: {config.mesh}: all 4 cameras of {config.trajectory} are inside the mesh (it spans 6 units, the path "
        "5); move the path out of the mesh, or for a room whose faces point outwards, flip its faces to face the "
        "cameras."]


def test_cameras_inside_a_room_that_faces_them_are_not_inside_and_some_inside_are_named(tmp_path):
    # a room: the walls face inwards, the winding number around its cameras is -1; nothing is said
    room = job.load_inputs(_config(tmp_path, _box(tmp_path / "room.ply", side=6.0, inward=True), _orbit(2.5)))
    assert job.cameras_inside(room.scene, room.trajectory.cameras) == []
    # two of four cameras in a unit box: warned, naming them
    cams = Cameras.cat([_orbit(2.5, 2), _orbit(0.5, 2)])  # frames 2 and 3 at +-0.5 on x, inside the box
    config = _config(tmp_path, _box(tmp_path / "box.ply"), cams)
    inputs = job.load_inputs(config)
    said: list[str] = []
    assert job.check_cameras_inside(config, inputs, said.append) == [2, 3]
    assert said == [f"warning: {config.trajectory}: frames 2-3 of 4 have their cameras inside the mesh box.ply (it "
                    "spans 2 units, the path 5); they see it from within"]
    assert job.frames_text([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"


# -- a path that never sees the mesh ------------------------------------------------------------------
def test_a_path_that_never_sees_the_mesh_says_where_each_is(tmp_path, capsys):
    """A mesh moved far from the origin, a path around the origin: the sentence gives the mesh's centre and size
    next to where the cameras look, so an origin or unit mistake shows at once."""
    config = _config(tmp_path, _box(tmp_path / "far.ply", centre=(1000.0, -200.0, 500.0)), _orbit(2.5))
    code, out, err = _cli(config, capsys)
    assert code == 2 and err == [
        f"error: {config.trajectory}: never sees the mesh (none of its 4 cameras has a mesh pixel: the mesh is centred "
        "at (1000, -200, 500) and 2 across, the cameras look at (0, 0, 0) from 2.5 away); give a path in the mesh's "
        "z-up world that looks at it (y-up glTF/OBJ files are turned z-up on load; see --up)."]
    assert not config.out.exists() and not (tmp_path / ".run.partial").exists()
    # cameras whose axes do not meet (a dolly, one camera) are said by where they stand and which way they look
    dolly = Cameras.from_fov(40.0, 16, 16, torch.eye(4)[None].repeat(3, 1, 1))
    dolly.c2w[:, :3, 3] = torch.tensor([[0.0, 0.0, 50.0], [0.0, 0.0, 51.0], [0.0, 0.0, 52.0]])
    assert job.cameras_line(dolly) == "the cameras stand around (0, 0, 51) and look along (0, 0, 1)"
    assert job.cameras_line(dolly[:1]) == "the camera stands at (0, 0, 50) and looks along (0, 0, 1)"


# -- the manifest -------------------------------------------------------------------------------------
def test_the_manifest_records_the_mesh_bounds_its_up_axis_and_the_style_crop(tmp_path):
    config = _config(tmp_path, _box(tmp_path / "box.ply", centre=(0.0, 0.0, 1.0)), _orbit(3.0, 2, height=1.0),
                     _style(tmp_path / "wide.png", 48, 24), steps=1, arc_frames=2, fusion_radius=0, **MODELS)
    job.run_stylize(config, progress=None)
    manifest = json.loads((config.out / "manifest.json").read_text())
    assert manifest["mesh"] == {"up": "z", "bounds": [[-1.0, -1.0, 0.0], [1.0, 1.0, 2.0]], "cameras_inside": []}
    assert manifest["style"] == {"source_size": [48, 24], "crop_box": [12, 0, 36, 24]}


def _far_pair(tmp_path, centre=(500000.0, 5000000.0, 100.0)):
    """The same squashed sphere and 6-camera orbit at the origin and at ``centre`` (UTM-like), the meshes as OBJ
    (text: float64 in the file, as georeferenced meshes are kept) and the paths in float64."""
    configs = []
    for tag, c in (("near", (0.0, 0.0, 0.0)), ("far", centre)):
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
        mesh.vertices[:, 2] *= 0.6
        mesh.apply_translation(c)
        mesh.export(tmp_path / f"{tag}.obj")
        a = torch.arange(6, dtype=torch.float64) * 2 * math.pi / 6
        at = torch.tensor(c, dtype=torch.float64)
        eye = torch.stack([3 * torch.cos(a), 3 * torch.sin(a), torch.ones_like(a)], -1) + at
        c2w = look_at(eye, at.expand_as(eye), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(eye))
        save_trajectory(tmp_path / f"{tag}.json", Trajectory(Cameras.from_fov(50.0, 32, 32, c2w), fps=12))
        configs.append(job.StylizeConfig(mesh=tmp_path / f"{tag}.obj", trajectory=tmp_path / f"{tag}.json",
                                         style=_style(tmp_path / "style.png"), out=tmp_path / f"run_{tag}",
                                         resolution=32, up="z", steps=1, arc_frames=3, fusion_radius=0, **MODELS))
    return configs


def test_a_mesh_far_from_the_origin_is_rendered_about_its_centre(tmp_path):
    """QA F18 (session 33) warned that a georeferenced mesh (UTM, 5e6 from the origin) renders blocky: float32
    steps by 0.5 there, and 7 % of the silhouette pixels of a 2-unit mesh were wrong. The mesh and the path are
    now moved to the mesh's centre while still float64, so the far buffers equal the near ones."""
    near, far = _far_pair(tmp_path)
    said: list[str] = []
    inputs = {c: job.load_inputs(c) for c in (near, far)}
    assert not inputs[near].scene.offset.any()
    np.testing.assert_array_equal(inputs[far].scene.offset, [500000.0, 5000000.0, 100.0])
    assert job.recentred_line(far.mesh, inputs[far].scene) == (
        "mesh: far.obj lies 5e+06 units from the origin, 2.5e+06 times its size of 2; rendered about its centre "
        "(500000, 5e+06, 100), with the path moved alike, so that 32-bit numbers place it finely; cameras/ and the "
        "manifest keep the file's coordinates")
    assert job.recentred_line(near.mesh, inputs[near].scene) is None
    a, b = (job.geometry_buffers(c, inputs[c], said.append) for c in (near, far))
    assert torch.equal(a.alpha, b.alpha) and torch.equal(a.edges, b.edges)
    torch.testing.assert_close(a.depth, b.depth, atol=1e-5, rtol=0)
    # where a path misses the mesh, the sentence still says the file's coordinates
    assert job.mesh_line(inputs[far].scene) == "the mesh is centred at (500000, 5e+06, 100) and 2 across"


def test_a_recentred_run_writes_its_cameras_and_bounds_in_the_files_coordinates(tmp_path):
    near, far = _far_pair(tmp_path)
    result = job.run_stylize(far, progress=None)
    manifest = json.loads((far.out / "manifest.json").read_text())
    assert manifest["mesh"]["rendered_about"] == [500000.0, 5000000.0, 100.0]
    np.testing.assert_allclose(manifest["mesh"]["bounds"], [[499999.0, 4999999.0, 99.4], [500001.0, 5000001.0, 100.6]],
                               atol=1e-5, rtol=0)
    written = json.loads((far.out / "cameras/trajectory.json").read_text())
    given = json.loads(far.trajectory.read_text())
    centres = np.array([f["c2w"] for f in written["frames"]])[:, :3, 3]
    np.testing.assert_allclose(centres, np.array([f["c2w"] for f in given["frames"]])[:, :3, 3], atol=1e-5, rtol=0)
    assert result.frames.shape == (6, 32, 32, 3)
