"""What stylize does with unusual but valid inputs (QA session 33): a style image with transparent pixels or
an extreme aspect ratio, a mesh in other units than the path (cameras inside it), a mesh the path never
sees; each said in one line, or refused in one sentence (exit 2, no folder) before the models load."""

from __future__ import annotations

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
    assert said == [f"{tmp_path / 'strip.png'}: 200x20 pixels; stylize uses its centre 20x20 square (90% of the "
                    "image is cropped away)"]
    assert inputs.style_crop == {"size": [200, 20], "crop": [90, 0, 20, 20]}
    # a 3:2 image loses a third: kept without a word
    said.clear()
    inputs = job.load_inputs(_config(tmp_path, config.mesh, _orbit(3.0), _style(tmp_path / "wide.png", 36, 24)),
                             said.append)
    assert said == [] and inputs.style_crop == {"size": [36, 24], "crop": [6, 0, 24, 24]}
    # a phone photo stored 20 wide and 200 tall, shown turned a quarter (EXIF 6): the crop is of what is shown
    stored = (np.random.default_rng(1).uniform(0, 255, (200, 20, 3))).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "turned.png", exif=exif)
    inputs = job.load_inputs(_config(tmp_path, config.mesh, _orbit(3.0), tmp_path / "turned.png"), said.append)
    assert inputs.style_crop == {"size": [200, 20], "crop": [90, 0, 20, 20]}
    assert said[-1].startswith(f"{tmp_path / 'turned.png'}: 200x20 pixels; stylize uses its centre 20x20 square")
