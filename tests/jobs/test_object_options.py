"""The object job's SV3D/V3D options end to end on exact orbit frames: illumination (albedo splats
written), geometric priors, and texture refinement (which must bring the mesh closer to the frames)."""

import dataclasses

import numpy as np
import pytest
import torch

from vdm3d.cli.main import main as cli
from vdm3d.jobs.object import ObjectConfig, run_object
from vdm3d.jobs.object_orbit import OracleOrbit

SMALL = dict(frames=8, carve_resolution=40, num_points=600, fit_steps=40, max_gaussians=1000, mesh_resolution=48,
             mesh_views=8, turntable_frames=4, resolution=48, texture="uv", texture_size=128)


@pytest.fixture(scope="module")
def object_image(tmp_path_factory):
    from vdm3d.cameras.io import cameras_from_sv3d
    from vdm3d.data.procedural import make_object
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.io.images import write_image

    scene = make_object(2_000_004)  # a validation seed
    cam = cameras_from_sv3d(10.0, 0.0, ObjectConfig().radius, 40.0, 48, 48).reshape(1)
    buf = render_buffers(scene, cam, background=(1.0, 1.0, 1.0))
    path = tmp_path_factory.mktemp("img") / "object.png"
    write_image(path, torch.cat([buf.rgb[0], buf.alpha[0, ..., None]], -1))
    return scene, path


def _mesh_psnr(result) -> float:
    from vdm3d.eval.object import mesh_renders

    renders = mesh_renders(result.mesh, result.orbit.cameras)
    return float(-10 * torch.log10(((renders - result.orbit.images) ** 2).mean()))


@pytest.mark.slow
def test_options_run_in_the_job_and_texture_refinement_fits_the_frames(object_image, tmp_path):
    scene, image = object_image
    base = ObjectConfig(image=image, out=tmp_path / "base", recentre=False, **SMALL)
    plain = run_object(base, source=OracleOrbit(scene), progress=None)
    full = dataclasses.replace(base, out=tmp_path / "full", illumination=True, depth_prior=0.1, normal_prior=0.05,
                               texture_refine_steps=20)
    result = run_object(full, source=OracleOrbit(scene), progress=None)
    assert (tmp_path / "full" / "splats_albedo.ply").is_file() and not (tmp_path / "base" / "splats_albedo.ply").exists()
    assert np.isfinite(result.gaussians.sh.numpy()).all() and len(result.mesh.faces) > 0
    # the refinement alone, on the plain run's mesh: closer to the frames it was fitted to
    from vdm3d.geometry.texture_refine import TextureRefineConfig, refine_texture
    from vdm3d.recon.perceptual import make_perceptual

    refined = refine_texture(plain.mesh, plain.orbit, TextureRefineConfig(steps=100), make_perceptual("ms-ssim")[0])
    before, after = _mesh_psnr(plain), _mesh_psnr(dataclasses.replace(plain, mesh=refined))
    assert after > before + 0.5, (before, after)


def test_texture_refinement_needs_a_uv_texture(object_image, tmp_path, capsys):
    _, image = object_image
    code = cli(["object", "--image", str(image), "--out", str(tmp_path / "r"), "--texture-refine-steps", "5"])
    assert code == 2 and "--texture uv" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_resolution_below_the_fits_ssim_window_is_refused_before_any_work(object_image, tmp_path, capsys):
    """QA: ``--resolution 8`` generated the orbit, then the fit's 11-pixel SSIM window raised a traceback
    (exit 1). The option's declared range refuses it first, from the command line and from Python; 16, the
    window rounded up to the VAEs' factor of 8, is the smallest size accepted."""
    from vdm3d.errors import ConfigError
    from vdm3d.jobs.object import MIN_RESOLUTION
    from vdm3d.metrics.image import WINDOW

    _, image = object_image
    assert MIN_RESOLUTION == 16 and MIN_RESOLUTION >= WINDOW
    for size in ("8", "15"):
        code = cli(["object", "--image", str(image), "--out", str(tmp_path / "r"), "--resolution", size])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == "", captured.out
        assert captured.err == (f"error: --resolution {size} is out of range: it must be >= 16; pass a value in that "
                                "range.\n")
    assert not (tmp_path / "r").exists() and not (tmp_path / ".r.partial").exists()
    with pytest.raises(ConfigError, match=r"^ObjectConfig.resolution = 8 is out of range: it must be >= 16;"):
        run_object(ObjectConfig(image=image, out=tmp_path / "r", resolution=8), progress=None)


def test_an_animated_input_says_once_that_its_first_frame_is_used(tmp_path, monkeypatch, stop_at):
    """QA F11: an animated GIF was read as its first frame without a word. The object job says it once (the input
    is read a second time at the backbone's native size, silently), before any model loads."""
    from PIL import Image

    from vdm3d.jobs import object as job

    yy, xx = np.mgrid[0:64, 0:64]
    red = np.full((64, 64, 3), 255, np.uint8)
    red[np.hypot(yy - 32, xx - 32) < 16] = (200, 40, 30)
    blue = np.full((64, 64, 3), 255, np.uint8)
    blue[16:48, 16:48] = (30, 40, 200)
    Image.fromarray(red).save(tmp_path / "anim.gif", save_all=True, append_images=[Image.fromarray(blue)], duration=100)

    Stop = stop_at(job, "load_orbit_source")
    said = []
    with pytest.raises(Stop):
        run_object(ObjectConfig(image=tmp_path / "anim.gif", out=tmp_path / "r"), progress=said.append)
    assert said == [f"{tmp_path / 'anim.gif'} has 2 frames; using the first"]
    fg = job.load_input(ObjectConfig(image=tmp_path / "anim.gif"), 32, lambda _m: None)
    assert fg.image[16, 16].tolist() == pytest.approx([200 / 255, 40 / 255, 30 / 255], abs=0.02)  # the red disk
