"""A fit at real photo size: training views scored a chunk at a time, camera copies at a capped size,
progress and memory lines (the 12-megapixel report: 10 silent minutes and 11-15 GB after fitting)."""

from __future__ import annotations

import json
import math

import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.data.readers import Scene, read_scene, Split
from vdm3d.io.images import read_image
from vdm3d.jobs import fit as fit_job
from vdm3d.recon import evaluate as ev
from vdm3d.recon.evaluate import render_and_score, score_views, views_per_chunk
from vdm3d.recon.export import camera_image_size, write_fit
from vdm3d.recon.render import render_views
from vdm3d.splat.gaussians import Gaussians
from vdm3d.views import Views


def _cameras(n: int, width: int, height: int) -> Cameras:
    K = torch.tensor([[0.9 * width, 0, width / 2 + 3.0], [0, 0.8 * width, height / 2 - 2.0], [0, 0, 1]])
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.linspace(-0.2, 0.2, n)
    c2w[:, 2, 3] = -3.0  # looking down +z at the origin (OpenCV convention)
    return Cameras(K.repeat(n, 1, 1), c2w, width, height)


def _gaussians(n: int = 300, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians.from_points(torch.randn(n, 3, generator=g) * 0.5, torch.rand(n, 3, generator=g),
                                 scales=torch.full((n,), 0.05))


def test_chunked_scores_are_the_scores_of_all_views_at_once(monkeypatch):
    gaussians = _gaussians()
    cams = _cameras(5, 40, 30)
    target = Views(torch.rand(5, 30, 40, 3, generator=torch.Generator().manual_seed(1)), cams)
    names = [f"v{i}" for i in range(5)]
    whole = render_views(gaussians, cams)
    reference = score_views(whole, target, names)
    monkeypatch.setattr(ev, "views_per_chunk", lambda w, h: 2)  # 3 chunks: 2 + 2 + 1
    done = []
    scores, kept, empty = render_and_score(gaussians, target, names, keep=True, progress=done.append)
    assert scores == reference and done == [2, 2, 1]
    assert torch.equal(kept, whole.images)
    torch.testing.assert_close(torch.tensor(empty), (whole.alphas < 0.5).float().mean(dim=(1, 2)))
    assert views_per_chunk(4032, 3024) == 1 and views_per_chunk(504, 378) == 8


def test_camera_copies_are_capped_and_their_intrinsics_match(tmp_path):
    gaussians = _gaussians()
    cams = _cameras(2, 1000, 750)
    images = torch.rand(2, 750, 1000, 3, generator=torch.Generator().manual_seed(2))
    images[:, 100:110, 200:210] = torch.tensor([1.0, 0.0, 0.0])  # a red square at a known place
    scene = Scene(Views(images, cams), None, ("a.jpg", "b.jpg"), (), None, None, "transforms", (0, 1), ())
    write_fit(tmp_path, gaussians, scene, {"train": {}}, None, max_side=400)
    meta = json.loads((tmp_path / "cameras" / "transforms.json").read_text())
    assert (meta["w"], meta["h"]) == camera_image_size(1000, 750, 400) == (400, 300)
    for name in ("a", "b"):
        img = read_image(tmp_path / "cameras" / "images" / f"{name}.png")
        assert tuple(img.shape[:2]) == (meta["h"], meta["w"])
    # a point projects to the same relative place in the photo and in its copy
    written = read_scene(tmp_path / "cameras" / "transforms.json", Split(test_every=0))
    point = torch.tensor([[0.3, -0.2, 0.5]])
    u, v = cams[0].project(point)[0][0].tolist()
    u2, v2 = written.train.cameras[0].to(torch.float32).project(point)[0][0].tolist()
    assert math.isclose(u / 1000, u2 / 400, abs_tol=1e-5) and math.isclose(v / 750, v2 / 300, abs_tol=1e-5)
    # and the red square is where the scaled camera says: pixels [100, 110) x [200, 210) / 2.5
    red = written.train.images[0][40:44, 80:84]
    assert (red[..., 0] > 0.9).all() and (red[..., 1] < 0.1).all()
    small = tmp_path / "small"
    write_fit(small, gaussians, scene, {"train": {}}, None, max_side=1000)  # within the cap: as is
    assert json.loads((small / "cameras" / "transforms.json").read_text())["w"] == 1000


def test_memory_warning_says_it_is_an_estimate_and_suggests_a_downscale():
    need = fit_job.memory_estimate(20, 2016, 1512)
    assert fit_job.memory_warning(20, 2016, 1512, 2, available=int(need * 2)) is None
    line = fit_job.memory_warning(20, 4032, 3024, 1, available=int(need / 0.8 * 1.05))  # ds 2 fits with a margin
    assert line.startswith("warning: 20 views at 4032x3024 need about ") and "(an estimate)" in line
    assert line.endswith(f"--downscale 2 needs about {need / 1e9:.1f} GB.")
    assert fit_job.memory_warning(20, 4032, 3024, 1, available=None) is None  # unknown: no guess
    # views x pixels: four times the pixels of the views cost about four times the memory they hold
    assert fit_job.memory_estimate(20, 4032, 3024) - fit_job.memory_estimate(20, 2016, 1512) > 3 * 20 * 2016 * 1512 * 12


def test_fit_says_what_it_loads_before_loading(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fit_job, "PROGRESS_PIXELS", 0)  # fern at 1/8 is quick; show the lines anyway
    config = fit_job.FitJobConfig(data=shared_data / "llff_fern", out=tmp_path / "run", downscale=8,
                                  split=Split(test_every=8),
                                  fit=fit_job.FitConfig(steps=2, checkpoint_every=100))
    fit_job.run_fit(config, say=fit_job.print_line)  # what `vdm3d fit` passes; a library call is silent
    said = capsys.readouterr()
    out, err = said.out, said.err  # what it loads on stdout with the other lines, progress on stderr
    assert "loading 20 views at 63x47" in out  # images_8 (504x378) at --downscale 8
    assert "evaluate 20/20 (100%)" in err and "export 20/20 (100%)" in err  # 17 training + 3 held-out views
