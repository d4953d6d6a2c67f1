"""The stylize job: arc layout, SAG mask, the exact-warp baseline against ground truth, resume per arc,
and one-sentence errors for bad input (exit 2, no folder)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.trajectory_file import save_trajectory
from vdm3d.cli.main import main as cli
from vdm3d.data.procedural.stylize import object_case
from vdm3d.eval.stylize import warp_nearest_anchor
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.geometry.mesh_scene import Y_UP_TO_Z_UP
from vdm3d.geometry.path_buffers import render_path
from vdm3d.io.images import write_image
from vdm3d.jobs import stylize as job
from vdm3d.metrics.image import psnr

pytest.importorskip("moderngl")
MODELS = dict(anchor_model="stylize_anchor", inbetween_model="stylize_inbetween")


def _inputs(tmp_path, frames=10):
    case = object_case(1_000_003, frames, 32)
    case.scene.transformed(np.linalg.inv(Y_UP_TO_Z_UP)).export(tmp_path / "scene.glb")  # a y-up GLB
    save_trajectory(tmp_path / "path.json", Trajectory(case.cameras, fps=12))
    write_image(tmp_path / "style.png", render_buffers(case.scene, case.style_camera).rgb[0])
    return case


def test_arcs_share_their_ends_and_cover_every_frame():
    assert job.arcs(48, 8) == [(0, 7), (7, 14), (14, 21), (21, 28), (28, 35), (35, 42), (42, 47)]
    assert job.arcs(8, 8) == [(0, 7)]
    assert job.arcs(9, 8) == [(0, 7), (7, 8)]
    assert job.arcs(1, 8) == [(0, 0)]


def test_unobserved_mask_is_dilated_blurred_and_pooled():
    valid = torch.ones(64, 64, dtype=torch.bool)
    assert float(job.unobserved_mask(valid, (16, 16)).max()) == 0.0
    assert float(job.unobserved_mask(~valid, (16, 16)).min()) == pytest.approx(1.0)
    valid[30:34, 30:34] = False  # a 4x4 hole: dilated by 2 iterations of a 5x5 kernel at 64 px (+-4 px)
    m = job.unobserved_mask(valid, (64, 64))
    assert float(m[32, 32]) == pytest.approx(1.0, abs=1e-4)
    assert float(m[32, 26]) > 0.8 and 0.01 < float(m[32, 25]) < 0.5  # dilated to 26..37, then soft
    assert float(m[32, 22]) < 1e-3
    assert 0.0 < float(job.unobserved_mask(valid, (16, 16))[8, 8]) <= 1.0


def test_warping_exact_anchors_reproduces_the_ground_truth():
    """The warp baseline with true renders as anchors recovers the in-between true frames: the
    correspondences are exact (mean error 0.02 on the object, 25.5 dB against 19.8 dB for the nearest
    anchor unwarped)."""
    case = object_case(1_000_005, 15, 64, deg_per_frame=4.0)
    truth = render_buffers(case.scene, case.cameras, ssaa=3).rgb
    buffers = render_path(case.scene, case.cameras)
    anchors = {0: truth[0], 7: truth[7], 14: truth[14]}
    warped = warp_nearest_anchor(buffers, anchors)
    nearest = torch.stack([anchors[min(anchors, key=lambda k: abs(k - t))] for t in range(15)])
    inner = [t for t in range(15) if t not in anchors]
    inside = buffers.alpha[inner] > 0.99
    assert float((warped[inner] - truth[inner]).abs().mean(-1)[inside].mean()) < 0.03  # texture resampling only
    assert float(psnr(warped[inner], truth[inner]).mean()) > float(psnr(nearest[inner], truth[inner]).mean()) + 4.0


@pytest.mark.slow
def test_job_runs_and_resumes_from_the_last_finished_arc(tmp_path, monkeypatch):
    _inputs(tmp_path)
    cfg = job.StylizeConfig(mesh=tmp_path / "scene.glb", trajectory=tmp_path / "path.json", style=tmp_path / "style.png",
                            out=tmp_path / "run", resolution=32, arc_frames=4, steps=2, **MODELS)
    full = job.run_stylize(cfg, progress=None)
    assert full.frames.shape == (10, 32, 32, 3) and sorted(full.anchors) == [0, 3, 6, 9]
    # the output is fused along the path: no frame is left untouched, and every one stays near its raw value
    assert float((full.frames[0] - full.anchors[0]).abs().max()) > 0
    assert float((full.frames[0] - full.anchors[0]).abs().mean()) < 0.1
    for name in ("video.mp4", "anchors/009.png", "edges/009.png", "edges/soft/009.png", "cameras/trajectory.json",
                 "manifest.json", "style.png"):
        assert (cfg.out / name).exists(), name
    assert not (cfg.out / "checkpoints").exists()
    # both camera files name the run's own frames, relative to themselves
    from vdm3d.cameras.formats import read_camera_file

    for cams in ("trajectory.json", "transforms.json"):
        assert read_camera_file(cfg.out / "cameras" / cams).images() == [
            (cfg.out / f"frames/{i:03d}.png").absolute() for i in range(10)], cams
        # the input path's frame rate, the video's (QA chain: the transforms.json read back at 24 fps)
        assert read_camera_file(cfg.out / "cameras" / cams).trajectory.fps == \
            read_camera_file(cfg.trajectory).trajectory.fps != 24.0, cams

    calls = []
    real = job.inbetween

    def interrupted(*args, **kwargs):  # the third arc fails: arcs 0 and 1 are checkpointed, the folder is kept
        calls.append(args[3])
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return real(*args, **kwargs)

    again = dataclasses.replace(cfg, out=tmp_path / "again")
    monkeypatch.setattr(job, "inbetween", interrupted)
    with pytest.raises(RuntimeError):
        job.run_stylize(again, progress=None)
    arc1 = tmp_path / ".again.partial" / "checkpoints" / "arc_001.safetensors"
    assert (arc1.parent / "arc_000.safetensors").is_file() and arc1.is_file()
    arc1.write_bytes(arc1.read_bytes()[:100])  # cut short, as a kill while writing it in place left it
    calls.clear()
    said: list[str] = []
    monkeypatch.setattr(job, "inbetween", lambda *a, **k: (calls.append(a[3]), real(*a, **k))[1])
    resumed = job.run_stylize(dataclasses.replace(again, resume=True), progress=said.append)
    assert calls == [3, 6]  # arc 0 came from its checkpoint; the torn arc 1 was generated again
    assert "arc_001.safetensors: unreadable checkpoint (SafetensorError), generated again" in said
    # exactly the uninterrupted run: the anchors read back from the checkpoint (contiguous) once fed the
    # resumed arcs in another memory layout than the generated ones, and a few pixels came out 1/255 apart
    assert torch.equal(resumed.frames, full.frames), float((resumed.frames - full.frames).abs().max())
    for name in [f"frames/{i:03d}.png" for i in range(10)] + ["anchors/006.png", "video.mp4"]:
        assert (cfg.out / name).read_bytes() == (again.out / name).read_bytes(), name


def test_the_up_axis_assumed_for_the_mesh_is_said_with_the_flag_that_changes_it():
    glb, ply = job.mesh_up_line(Path("room.glb"), "auto"), job.mesh_up_line(Path("spot.ply"), "auto")
    assert "room.glb read as y-up (the glTF/OBJ convention)" in glb and glb.endswith("pass --up z")
    assert "spot.ply read as z-up (the .ply convention)" in ply and ply.endswith("pass --up y")
    assert "read as z-up (given by --up)" in job.mesh_up_line(Path("room.glb"), "z")


def test_the_trajectory_is_read_in_every_camera_format_explore_takes(tmp_path):
    """transforms.json, COLMAP and RE10K give the cameras of the vdm3d JSON (RE10K has no image size, so only
    its poses are compared), as explore's --path reads them."""
    from vdm3d.cameras.formats import CameraFile, read_camera_file, write_camera_file

    _inputs(tmp_path)
    base = job.StylizeConfig(mesh=tmp_path / "scene.glb", trajectory=tmp_path / "path.json", style=tmp_path / "style.png",
                             out=tmp_path / "run", resolution=32)
    ref = job.load_inputs(base).trajectory.cameras
    cf = read_camera_file(tmp_path / "path.json")
    cf = CameraFile(cf.trajectory, [f"{i:03d}.png" for i in range(len(cf.names))])
    for fmt, name in (("transforms", "transforms.json"), ("colmap", "sparse"), ("re10k", "path.txt")):
        write_camera_file(tmp_path / name, cf, fmt)
        got = job.load_inputs(dataclasses.replace(base, trajectory=tmp_path / name)).trajectory.cameras
        torch.testing.assert_close(got.c2w, ref.c2w, atol=1e-5, rtol=0)
        if fmt != "re10k":
            torch.testing.assert_close(got.Ks, ref.Ks, atol=1e-4, rtol=0)


def _run(args, capsys):
    code = cli(["stylize", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_inputs_fail_with_one_sentence_and_no_folder(tmp_path, capsys):
    _inputs(tmp_path)
    good = {"--mesh": tmp_path / "scene.glb", "--trajectory": tmp_path / "path.json", "--style": tmp_path / "style.png"}
    (tmp_path / "not_mesh.glb").write_text("hello")
    (tmp_path / "empty.obj").write_text("# nothing\n")
    (tmp_path / "not_image.png").write_text("not an image")
    away = Cameras.from_fov(40.0, 32, 32, torch.eye(4)[None].repeat(3, 1, 1))  # at the origin, inside the object?
    away.c2w[:, :3, 3] = torch.tensor([0.0, 0.0, 50.0])  # far above, looking up (+z): never sees it
    save_trajectory(tmp_path / "away.json", Trajectory(away, fps=12))
    (tmp_path / "other.json").write_text('{"format": "other.cameras", "frames": []}')
    (tmp_path / "path.xyz").write_text("0 0 0")
    bad = [("--mesh", tmp_path / "not_mesh.glb", "could not be read as a mesh"),
           ("--mesh", tmp_path / "empty.obj", "contains no triangles"),
           ("--trajectory", tmp_path / "away.json", "never sees the mesh"),
           ("--trajectory", tmp_path / "other.json", "convert another camera file with `vdm3d trajectory convert"),
           ("--trajectory", tmp_path / "path.xyz", "names no camera format"),
           ("--style", tmp_path / "not_image.png", "is not a readable image")]
    for flag, value, words in bad:
        args = {**good, flag: value}
        out = tmp_path / f"out_{flag[2:]}"
        argv = [a for k, v in args.items() for a in (k, str(v))] + ["--out", str(out), "--steps", "1"]
        code, err = _run(argv, capsys)
        assert code == 2, (flag, err)
        assert len(err) == 1 and words in err[0] and str(value) in err[0], err
        assert not out.exists() and not (tmp_path / f".{out.name}.partial").exists()


def test_stage_steps_are_quiet_when_quick_and_predict_when_slow():
    from vdm3d.io.progress import StageSteps

    t, lines = [0.0], []
    quick = StageSteps(lines.append, "geometry", "frames rendered", clock=lambda: t[0])
    for i in range(1, 11):
        t[0] += 0.2
        quick(i, 10)
    assert lines == []  # 2 s in all: nothing said
    t[0] = 0.0
    slow = StageSteps(lines.append, "geometry", "frames rendered", clock=lambda: t[0])
    for i in range(1, 41):
        t[0] += 1.5
        slow(i, 40)
    # the second step predicts 39 x 1.5 s: said at once, then every 5 s (every 4th step of 1.5 s) and the last
    assert lines[0] == "geometry 2/40: frames rendered"
    assert lines[1] == "geometry 6/40: frames rendered" and lines[-1] == "geometry 40/40: frames rendered"
    assert len(lines) == 11
    lines.clear()
    t[0] = 0.0  # a slow first step (setup) then quick ones: said once 5 s have passed, not predicted from setup
    setup = StageSteps(lines.append, "geometry", "frames rendered", clock=lambda: t[0])
    for i in range(1, 11):
        t[0] += 4.0 if i == 1 else 0.1
        setup(i, 10)
    assert lines == []


def test_a_large_mesh_file_is_announced_and_timed(tmp_path, monkeypatch):
    _inputs(tmp_path)
    cfg = job.StylizeConfig(mesh=tmp_path / "scene.glb", trajectory=tmp_path / "path.json", style=tmp_path / "style.png",
                            out=tmp_path / "run", resolution=32)
    lines: list[str] = []
    job.load_inputs(cfg, lines.append)
    assert lines == []  # a small file: read without a word
    from vdm3d.io import progress

    monkeypatch.setattr(progress, "LARGE_FILE_BYTES", 10)
    inputs = job.load_inputs(cfg, lines.append)
    size = (tmp_path / "scene.glb").stat().st_size
    assert lines[0] == f"mesh: reading scene.glb ({size / 1e6:.0f} MB)"
    assert lines[1].startswith(f"mesh: {inputs.scene.num_faces:,} faces read in ") and inputs.scene.num_faces > 0


def test_a_size_other_than_the_embedded_models_native_one_is_warned_about():
    from types import SimpleNamespace

    said = []
    models = job.StylizeModels(SimpleNamespace(resolution=(64, 64)), None)
    cfg = job.StylizeConfig(mesh=Path("m.glb"), trajectory=Path("t.json"), style=Path("s.png"), resolution=32)
    job.warn_non_native(cfg, models, said.append)
    assert said == ["warning: --resolution 32 is not the native 64x64 of the embedded stylize models, which were "
                    "trained at that size: expect softer or speckled frames, not more detail; leave --resolution "
                    "out to use the native size"]
    job.warn_non_native(dataclasses.replace(cfg, resolution=64), models, said.append)
    job.warn_non_native(dataclasses.replace(cfg, backbone="hub"), models, said.append)
    assert len(said) == 1  # the native size, and the hub models, are not warned about


def test_a_stochastic_inbetween_sampler_adds_a_new_warped_field_each_step(monkeypatch):
    """``--inbetween-eta``: with warped noise every step's noise is a new field warped along the mesh flow
    (``arc_noise`` once for the start and once per step), reproducible and not the deterministic result;
    with fresh noise the steps draw from the generator."""
    case = object_case(1_000_003, 5, 32)
    buffers = render_path(case.scene, case.cameras)
    cfg = job.StylizeConfig(resolution=32, arc_frames=5, steps=3, **MODELS)
    models = job.load_models(cfg)
    start, end = torch.full((32, 32, 3), 0.3), torch.full((32, 32, 3), 0.7)
    fields = []
    real = job.arc_noise

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        fields.append(out)
        return out
    monkeypatch.setattr(job, "arc_noise", spy)
    det = job.inbetween(cfg, models.inbetween, buffers, 0, 4, start, end)
    assert len(fields) == 1
    stochastic = dataclasses.replace(cfg, inbetween_eta=1.0)
    fields.clear()
    first = job.inbetween(stochastic, models.inbetween, buffers, 0, 4, start, end)
    assert len(fields) == 1 + cfg.steps
    assert all(not torch.equal(fields[i], fields[j]) for i in range(4) for j in range(i))
    assert torch.equal(job.inbetween(stochastic, models.inbetween, buffers, 0, 4, start, end), first)
    assert float((first - det).abs().max()) > 1e-3
    fields.clear()
    fresh = job.inbetween(dataclasses.replace(stochastic, noise="fresh"), models.inbetween, buffers, 0, 4, start, end)
    assert fields == [None] and float((fresh - first).abs().max()) > 1e-3
