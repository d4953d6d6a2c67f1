"""The object evaluation harness: cases, held-out cameras, the baseline's region, means and table."""

import dataclasses
import json

import pytest
import torch

from vdm3d.errors import InputError
from vdm3d.eval.object import (HELDOUT_SEED, EvalObjectConfig, case_line, load_cases, novel_cameras,
                               silhouette_ball, summarize, table)


def test_cases_from_defaults_and_manifest(tmp_path, shared_data):
    cases = load_cases(EvalObjectConfig(procedural=3, mesh_root=shared_data / "meshes"))
    assert [c["seed"] for c in cases[:3]] == [HELDOUT_SEED, HELDOUT_SEED + 1, HELDOUT_SEED + 2]
    assert any(c.get("mesh", "").endswith("spot_triangulated.obj") and c["texture"].endswith(".png") for c in cases)
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([{"seed": 7}, {"mesh": "a.obj"}]))
    assert load_cases(EvalObjectConfig(manifest=path)) == [{"seed": 7}, {"mesh": "a.obj"}]


@pytest.mark.parametrize("text", ["{not json", '{"seed": 1}', '[{"colour": 1}]', '[{"seed": 1, "palette": "dark"}]',
                                  '[{"mesh": "a.obj", "palette": "light"}]',
                                  '[{"seed": 1, "shape": "round"}]', '[{"mesh": "a.obj", "shape": "symmetric"}]'])
def test_bad_manifest_is_one_sentence(tmp_path, text):
    path = tmp_path / "cases.json"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        load_cases(EvalObjectConfig(manifest=path))
    assert str(e.value).count(".") >= 1 and "\n" not in str(e.value) and str(path) in str(e.value)

def test_a_manifest_case_can_ask_for_the_light_palette():
    """{"seed": N, "palette": "light"}: the same object repainted (white, cream, pastel), under its own name."""
    import numpy as np

    from vdm3d.eval.object import case_name, case_scene

    plain, name = case_scene({"seed": 2000000})
    light, light_name = case_scene({"seed": 2000000, "palette": "light"})
    assert (name, light_name) == ("object-2000000", "object-2000000-light")
    assert case_name({"seed": 2000000, "palette": "light"}) == light_name
    assert np.array_equal(plain.parts[0].vertices, light.parts[0].vertices)
    assert not np.array_equal(plain.parts[0].texture, light.parts[0].texture)


def test_a_manifest_case_can_ask_for_a_mirror_symmetric_object():
    """{"seed": N, "shape": "symmetric"}: the object joined with its mirror image, under its own name; with the
    light palette too."""
    import numpy as np

    from vdm3d.eval.object import case_name, case_scene

    plain, _ = case_scene({"seed": 2000000})
    sym, name = case_scene({"seed": 2000000, "shape": "symmetric"})
    both, both_name = case_scene({"seed": 2000000, "shape": "symmetric", "palette": "light"})
    assert (name, both_name) == ("object-2000000-symmetric", "object-2000000-symmetric-light")
    assert case_name({"seed": 2000000, "shape": "symmetric"}) == name
    assert len(sym.parts) == 2 * len(plain.parts) and sym.meta["shape"] == "symmetric"
    assert np.array_equal(sym.parts[0].vertices, both.parts[0].vertices)
    assert not np.array_equal(sym.parts[0].texture, both.parts[0].texture)



def test_novel_cameras_are_spread_and_look_at_the_object():
    cams = novel_cameras(8, 2.7, 40.0, 32, seed=0)
    az = torch.rad2deg(torch.atan2(cams.centers[:, 1], cams.centers[:, 0])) % 360
    assert sorted((az // 45).long().tolist()) == list(range(8))  # one per 45-degree sector
    torch.testing.assert_close(cams.centers.norm(dim=-1), torch.full((8,), 2.7), atol=1e-5, rtol=0)
    uv, _ = cams.project(torch.zeros(8, 1, 3))
    torch.testing.assert_close(uv[:, 0], torch.full((8, 2), 16.0), atol=1e-3, rtol=0)


def test_silhouette_ball_is_the_ball_inside_the_input_cone():
    from vdm3d.jobs.object_orbit import orbit_plan
    from vdm3d.views import Views

    plan = orbit_plan("v3d", 0.0, 2.7, 40.0, 32, frames=4)
    alphas = torch.zeros(4, 32, 32)
    alphas[0] = 1.0  # the input view sees foreground everywhere: the region is the whole unit ball
    views = Views(torch.ones(4, 32, 32, 3), plan.cameras, alphas=alphas, origin=("input",) + ("generated",) * 3)
    hull = silhouette_ball(views, 32)
    frac = float(hull.occupancy.float().mean())
    assert abs(frac - torch.pi / 6) < 0.02  # ball volume / cube volume
    alphas[0] = 0.0
    alphas[0, :, :16] = 1.0  # only the left half of the image: camera x < 0
    hull = silhouette_ball(Views(torch.ones(4, 32, 32, 3), plan.cameras, alphas=alphas, origin=views.origin), 32)
    assert abs(float(hull.occupancy.float().mean()) - torch.pi / 12) < 0.02


def test_summarize_and_table():
    rows = [{"case": "a", "job": {"novel_psnr": 20.0, "chamfer": 0.02}, "input-only": {"novel_psnr": 10.0, "chamfer": 0.2}},
            {"case": "b", "job": {"novel_psnr": 22.0, "chamfer": 0.04}, "input-only": {"novel_psnr": 12.0, "chamfer": 0.1}}]
    means = summarize(rows)
    assert means["job"] == {"novel_psnr": 21.0, "chamfer": pytest.approx(0.03)}
    assert means["input-only"]["chamfer"] == pytest.approx(0.15)
    text = table(means, 2, "tiny")
    assert "| vdm3d object (tiny) | 21.00 | - | - | - | 0.0300 | - |" in text and "2 cases" in text


def test_a_cases_line_shows_a_dash_where_a_method_has_no_novel_views():
    # QA: the per-case line printed "orbit-frames nan dB" where the table shows "-"
    row = {"case": "object_000", "job": {"novel_psnr": 20.456, "orbit_psnr": 21.0, "chamfer": 0.01234},
           "orbit-frames": {"orbit_psnr": 18.0, "chamfer": 0.05}}
    line = case_line(row)
    assert line == "object_000: job 20.46 dB / CD 0.0123, orbit-frames - / CD 0.0500"
    assert "| orbit frames, no reconstruction (visual hull) | - | - | 18.00 | - | 0.0500 | - | - |" in table(
        summarize([row]), 1, "tiny")


def test_input_view_psnr_is_the_render_at_the_input_camera_against_the_input():
    from vdm3d.cameras.io import cameras_from_sv3d
    from vdm3d.eval.object import input_psnr
    from vdm3d.recon.render import render_views
    from vdm3d.splat.gaussians import Gaussians
    from vdm3d.views import Views

    rng = torch.Generator().manual_seed(0)
    g = Gaussians.from_points(torch.randn(50, 3, generator=rng) * 0.3, torch.rand(50, 3, generator=rng), opacity=0.8,
                              sh_degree=0)
    cams = cameras_from_sv3d(10.0, torch.tensor([90.0, 0.0]), 3.2, 40.0, 32, 32)  # the input is the second view
    render = render_views(g, cams, background=1.0).images
    target = (render * 0.5 + 0.25)  # a known error from the render
    views = Views(target, cams, origin=("generated", "input"))
    mse = float(((render[1] - target[1]) ** 2).mean())
    assert input_psnr(g, views) == pytest.approx(-10 * torch.log10(torch.tensor(mse)).item(), abs=1e-3)
    assert input_psnr(g, Views(render, cams, origin=("generated", "input"))) > 60  # the input itself: no error


def test_the_input_only_baseline_keeps_its_own_fitting_settings_whatever_the_jobs(monkeypatch):
    # QA: the baseline fitted with the job's --input-weight, so a job default of 12 instead of 4 moved the
    # baseline of the same held-out cases from 12.50 to 12.39 dB
    import vdm3d.eval.object as ev
    from vdm3d.cameras.io import cameras_from_sv3d
    from vdm3d.jobs.object import ObjectConfig
    from vdm3d.views import Views

    seen = []
    monkeypatch.setattr(ev.job, "fit", lambda c, views, init, *a, **k: seen.append(
        (c.input_weight, c.input_every_step, c.fit_steps)) or init)
    alpha = torch.zeros(1, 16, 16)
    alpha[:, 4:12, 4:12] = 1.0
    views = Views(torch.ones(1, 16, 16, 3), cameras_from_sv3d(10.0, 0.0, 3.2, 40.0, 16, 16).reshape(1), alphas=alpha)
    perceptual, _ = ev.make_perceptual("ms-ssim")
    for weight, every, steps in ((4.0, 0.0, 200), (12.0, 0.33, 400)):
        ev.input_only_baseline(ObjectConfig(input_weight=weight, input_every_step=every, fit_steps=steps, num_points=20),
                               views, perceptual)
    assert seen == [(4.0, 0.0, 200)] * 2


def test_option_rows_come_after_the_job_and_before_the_baselines():
    rows = [{"case": "a", "job": {"novel_psnr": 20.0}, "input-only": {"novel_psnr": 10.0},
             "job+illumination": {"novel_psnr": 21.0}, "orbit-frames": {"chamfer": 0.1}}]
    assert list(summarize(rows)) == ["job", "job+illumination", "input-only", "orbit-frames"]
    assert "| vdm3d object (tiny) + illumination | 21.00 |" in table(summarize(rows), 1, "tiny")


def untrained_orbit_checkpoint(tmp_path, monkeypatch):
    """A `vdm3d train orbit` run folder at ``tmp_path / "run"`` holding an untrained tiny network, with its
    init weights in ``tmp_path / "w"`` and the data cache in ``tmp_path / "cache"``."""
    from vdm3d.models.tiny import DenoiserConfig, TinyVAE, VAEConfig, VideoDenoiser
    from vdm3d.models.tiny.checkpoint import save_model
    from vdm3d.train.loop import save_state

    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    net = VideoDenoiser(DenoiserConfig(channels=(8, 8), map_features=4, emb_dim=16, max_frames=16,
                                       attention="views", reference_frame=True))
    save_model(tmp_path / "w", "vae", "vae", TinyVAE(VAEConfig(channels=(8, 8))), {"steps": 0})
    save_model(tmp_path / "w", "video", "video", net, {"steps": 0}, extra={"vae": "vae", "frames": 8})
    save_state(tmp_path / "run" / "checkpoints", net, None, torch.optim.AdamW(net.parameters()), 1, {})
    import vdm3d.train.run as run

    monkeypatch.setattr(run, "WEIGHTS_DIR", tmp_path / "w")
    return tmp_path / "run"


def test_orbit_frames_scores_a_checkpoint_per_azimuth_beside_copying_the_input(tmp_path, monkeypatch):
    from vdm3d.eval.object import orbit_frames
    from vdm3d.metrics.image import psnr
    from vdm3d.train.datasets import ObjectSetConfig, load_or_build

    run_folder = untrained_orbit_checkpoint(tmp_path, monkeypatch)
    result = orbit_frames(checkpoint=run_folder, objects=1, steps=1, layout="interleaved")
    data = load_or_build(ObjectSetConfig(count=1, split="val"), None)
    rgb = torch.from_numpy(data["rgb"][0]).float() / 255
    copy = psnr(rgb[:1].expand(17, -1, -1, -1), rgb[1:])  # the baseline, by hand
    assert result["copy_psnr"] == pytest.approx(float(copy.mean()), abs=1e-3)
    assert list(result["per_offset"]) == [str(20 * k) for k in range(1, 18)]
    assert result["per_offset"]["20"]["copy_psnr"] == pytest.approx(float(copy[0]), abs=1e-2)
    assert 0 < result["psnr"] < result["copy_psnr"] + 20  # an untrained network, scored


def test_orbit_frames_with_the_exact_depth_scores_the_warp_beside_the_frames(tmp_path, monkeypatch):
    """``--carry exact-depth``: the maps carry the input by its true depth; the warp alone (on white) beats
    copying the input 20 degrees away on a validation object."""
    from vdm3d.eval.object import orbit_frames

    run_folder = untrained_orbit_checkpoint(tmp_path, monkeypatch)
    result = orbit_frames(checkpoint=run_folder, objects=1, steps=1, proxy_maps=True, carry="exact-depth")
    near = result["per_offset"]["20"]
    assert near["warp_psnr"] > near["copy_psnr"] + 1.5  # measured 21.66 vs 16.69 dB on seed 2,000,000
    assert result["carry"] == "exact-depth" and 0 < result["warp_ssim"] < 1


def test_the_exact_depth_options_carry_the_input_by_its_true_depth():
    """``exact-depth-maps``: the job's own orbit source, told the input view's rendered depth (inf off the
    object) instead of estimating it."""
    from vdm3d.data.procedural import make_object
    from vdm3d.eval.object import OPTIONS, EvalObjectConfig, orbit_source
    from vdm3d.jobs.object import ObjectConfig
    from vdm3d.jobs.object_orbit import BackboneOrbit
    from vdm3d.models.tiny import available

    if "object_depth" not in available():
        pytest.skip("object_depth is not shipped")
    cfg = dataclasses.replace(ObjectConfig(), **OPTIONS["exact-depth-maps"])
    depth = torch.tensor([[0.0, 2.5], [3.0, 0.0]])
    source = orbit_source(EvalObjectConfig(), cfg, make_object(1), depth)
    assert isinstance(source, BackboneOrbit) and source.proxy_maps and source.carry == "depth"
    torch.testing.assert_close(source.input_depth, torch.tensor([[float("inf"), 2.5], [3.0, float("inf")]]))
    assert orbit_source(EvalObjectConfig(), cfg, make_object(1)) is None  # without it: the job's own source


def test_object_depth_model_reaches_every_case_and_a_wrong_one_fails_first(tmp_path, monkeypatch):
    """``--object-depth-model``: a training run's model file replaces the shipped one in the job's config of
    every case; a file that is no model stops the evaluation before it writes anything."""
    import shutil

    import vdm3d.eval.object as ev
    from vdm3d.errors import Vdm3dError
    from vdm3d.models.tiny import WEIGHTS_DIR, available

    if "object_depth" not in available():
        pytest.skip("object_depth is not shipped")
    for ext in ("json", "safetensors"):
        shutil.copy(WEIGHTS_DIR / f"object_depth.{ext}", tmp_path / f"mine.{ext}")
    seen = []

    def fake_case(case, config, job_config, folder):
        seen.append(job_config.object_depth_model)
        return {"case": str(case["seed"]), "job": {"novel_psnr": 1.0, "chamfer": 0.1}}

    monkeypatch.setattr(ev, "run_case", fake_case)
    model = str(tmp_path / "mine.json")
    ev.eval_object(EvalObjectConfig(out=tmp_path / "ev", procedural=2, meshes=(), object_depth_model=model))
    assert seen == [model, model]
    with pytest.raises(Vdm3dError, match="nope"):
        ev.eval_object(EvalObjectConfig(out=tmp_path / "ev2", procedural=1, meshes=(),
                                        object_depth_model=str(tmp_path / "nope.json")))
    assert not (tmp_path / "ev2").exists()


def test_options_help_lists_every_option_with_the_object_flags_it_sets(capsys):
    """`vdm3d eval object --help` is made from OPTIONS, so every option is listed, and the `vdm3d object` flags
    it names exist."""
    import re

    from vdm3d.cli.main import main
    from vdm3d.eval.object import OPTIONS, _flags

    def help_text(*command):
        assert main([*command, "--help"]) == 0
        return " ".join(re.sub(r"[│╭╮╰╯─]", " ", capsys.readouterr().out).split())

    text, object_help = help_text("eval", "object"), help_text("object")
    for name, settings in OPTIONS.items():
        assert f" {name} = {_flags(settings)}" in text, name
        for flag in re.findall(r"--[a-z0-9-]+", _flags(settings)):
            assert flag in object_help, (name, flag)


def test_orbit_frames_help_names_the_job_defaults_it_leaves_off(capsys):
    """Its help said the views were "filled exactly as the job fills its orbit", yet its defaults are
    proxy maps off / inflate while the job's are on / depth."""
    import inspect

    from vdm3d.cli.main import main
    from vdm3d.eval.object import orbit_frames
    from vdm3d.jobs.object import ObjectConfig

    defaults = {k: p.default for k, p in inspect.signature(orbit_frames).parameters.items()}
    assert (defaults["proxy_maps"], defaults["carry"]) == (False, "inflate")  # the documented tables' settings
    assert (ObjectConfig.proxy_maps, ObjectConfig.carry) == (True, "depth")
    assert main(["eval", "object-orbit", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exactly as the job" not in text
    assert "to score the job's own frames add --proxy-maps --carry depth (the job's defaults)" in text


@pytest.mark.slow
def test_an_interrupted_evaluation_resumes_after_its_last_finished_case(
        tmp_path, capsys, stop_at_second_case, interrupted_after_one_case):
    """Ctrl-C during case 2 keeps case 1's checkpoint; --resume loads case 1 (not run again) and runs case 2,
    and the results equal an uninterrupted run's; a resume with another option is refused."""
    import vdm3d.eval.object as ev

    small = dict(procedural=2, meshes=(), steps=1, novel_views=1, input_only=False)
    ev.eval_object(EvalObjectConfig(out=tmp_path / "whole", **small))
    stop = stop_at_second_case(ev, "run_case", lambda case, *args: case["seed"])
    out = tmp_path / "cut"
    interrupted_after_one_case(lambda **kw: ev.eval_object(EvalObjectConfig(**{**small, **kw})), out,
                               {"tau": 0.1}, "--tau")
    capsys.readouterr()
    stop.resume()
    ev.eval_object(EvalObjectConfig(out=out, resume=True, **small))
    assert stop.ran == [HELDOUT_SEED + 1]  # case 1 came from the checkpoint
    lines = [line for line in capsys.readouterr().out.splitlines() if "] [" in line]
    assert lines[0].endswith("(from the checkpoint)") and "[1/2] object-1500000" in lines[0]
    assert "[2/2] object-1500001" in lines[1] and "checkpoint" not in lines[1]
    for name in ("results.json", "table.md"):
        assert (out / name).read_text() == (tmp_path / "whole" / name).read_text()
    assert json.loads((out / "results.json").read_text())["cases"][0]["case"] == "object-1500000"


def test_back_views_are_those_more_than_90_degrees_of_azimuth_from_the_input():
    from vdm3d.cameras.io import cameras_from_sv3d
    from vdm3d.eval.object import back_views

    cams = cameras_from_sv3d(torch.tensor([10.0, -5.0, 30.0, 0.0, 20.0]), torch.tensor([30.0, 100.0, 170.0, 250.0, 330.0]),
                             3.2, 40.0, 16, 16)
    inp = cameras_from_sv3d(10.0, 0.0, 3.2, 40.0, 16, 16)
    assert back_views(cams, inp).tolist() == [1, 2, 3]
    assert back_views(cams, cameras_from_sv3d(10.0, 180.0, 3.2, 40.0, 16, 16)).tolist() == [0, 4]


def test_silhouette_iou_counts_overlap_over_union_per_view():
    from vdm3d.eval.object import silhouette_iou

    truth = torch.zeros(2, 8, 8)
    truth[:, 2:6, 2:6] = 1.0  # 16 pixels
    pred = torch.zeros(2, 8, 8)
    pred[0, 2:6, 2:6] = 0.9  # the same outline: IoU 1
    pred[1, 2:6, 4:8] = 0.7  # half of it and 8 pixels outside: 8 / 24
    assert silhouette_iou(pred, truth) == pytest.approx((1.0 + 8 / 24) / 2)
    assert silhouette_iou(pred * 0.5, truth) == 0.0  # coverage below 0.5 is not the object
