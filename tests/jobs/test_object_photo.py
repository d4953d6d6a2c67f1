"""Acceptance: an RGB photo of a person on a busy background (scikit-image's astronaut) runs `object`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vdm3d.io.foreground import grabcut_mask
from vdm3d.io.images import read_image
from vdm3d.jobs.object import ObjectConfig, run_object

TINY = dict(fit_steps=10, carve_resolution=24, num_points=200, mesh_resolution=24, mesh_views=6, turntable_frames=2,
            steps=2, frames=6)


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)  # 512 x 512 RGB: flag, shuttle model, a person
    return path


def test_grabcut_keeps_the_person_and_drops_the_flag_and_shuttle(astronaut):
    alpha = grabcut_mask(read_image(astronaut).numpy())  # [512, 512]
    assert alpha[120, 225] == 1 and alpha[330, 170] == 1  # face, suit (the patch on the chest)
    assert alpha[150, 30] == 0 and alpha[170, 395] == 0  # flag, shuttle model
    assert 0.2 < alpha.mean() < 0.5


@pytest.mark.slow
def test_a_grabcut_mask_is_said(astronaut):
    """QA F16: the mask of a photo came from GrabCut without a word on the console (only in the manifest)."""
    from vdm3d.io.foreground import load_object_image

    said = []
    assert load_object_image(astronaut, 64, say=said.append).mask_source == "grabcut"
    assert said == [f"{astronaut}: no transparency and no plain background, so the object was cut out by GrabCut "
                    "from a centred box; check mask.png in the run, or pass --mask"]


def test_object_runs_end_to_end_on_a_photo(astronaut, tmp_path):
    out = tmp_path / "astronaut"
    result = run_object(ObjectConfig(image=astronaut, out=out, **TINY), progress=None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mask_source"] == "grabcut" and "mask.png" in manifest["files"]
    mask = read_image(out / "mask.png").numpy()  # the recentred mask at the orbit's resolution
    assert mask.shape[:2] == (64, 64) and 0.15 < (mask[..., 0] > 0.5).mean() < 0.75
    image = read_image(out / "input.png").numpy()
    assert np.allclose(image[mask[..., 0] < 1e-3], 1.0)  # the busy background is gone: white
    assert len(result.gaussians) > 0 and len(result.mesh.faces) > 0
    for name in ("splats.ply", "mesh.glb", "orbit.mp4", "cameras/transforms.json"):
        assert (out / name).is_file()
