"""`vdm3d complete --method v3d` (V3D scene mode): paths between the inputs, clips of a long path,
end to end on a small held-out room with resume, and bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.trajectory_file import save_trajectory
from vdm3d.cli.main import main as cli_main
from vdm3d.data.readers import Split
from vdm3d.eval.complete import write_room_case
from vdm3d.jobs import complete_v3d as v3d_job
from vdm3d.jobs.complete import CompleteConfig
from vdm3d.jobs.complete_distill import DISTILL_FIT, DistillConfig, StageFitConfig
from vdm3d.jobs.complete_v3d_generate import V3dConfig, between_paths, chain_order, input_frames
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.strategy import DensifyPolicy

SMALL_FIT = StageFitConfig(steps=60, sh_degree=0, sh_warmup_every=0, checkpoint_every=30,
                      densify=DensifyPolicy(refine_start=20, refine_stop=50, refine_every=20, reset_every=0,
                                            max_gaussians=8_000))


def _line(n: int, order: list[int]) -> Cameras:
    """``n`` cameras on the x axis at x = order[i], looking along +z."""
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]]).expand(n, 3, 3)
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.tensor(order, dtype=torch.float32)
    return Cameras(K, c2w, 32, 32)


def test_paths_join_consecutive_inputs_and_start_and_end_exactly_at_them():
    cams = _line(3, [1.0, 0.0, 2.0])  # the chain along x is 1 -> 0 -> 2 (or reversed)
    order = chain_order(cams)
    assert order in ([1, 0, 2], [2, 0, 1])
    paths = between_paths(cams, 8)
    assert len(paths) == 2 and all(len(p) == 8 for p in paths)
    for p, (a, b) in zip(paths, zip(order[:-1], order[1:])):
        assert torch.equal(p.cameras.c2w[0], cams.c2w[a]) and torch.equal(p.cameras.c2w[-1], cams.c2w[b])
        x = p.cameras.centers[:, 0]
        torch.testing.assert_close(x[1:] - x[:-1], torch.full((7,), float(x[-1] - x[0]) / 7))  # evenly spaced
        assert input_frames(p.cameras, cams) == {0: a, 7: b}
        assert p.provenance["view"] == a


def test_a_long_path_is_cut_into_clips_that_share_their_end_frames():
    path = Trajectory(_line(20, list(range(20))), 8.0)
    clips = v3d_job.chunk_path(path, 8)
    assert [len(c) for c in clips] == [8, 8, 6]
    assert torch.equal(clips[0].cameras.c2w[-1], clips[1].cameras.c2w[0])
    assert torch.equal(clips[-1].cameras.c2w[-1], path.cameras.c2w[-1])


def test_a_clip_is_returned_at_its_cameras_size_with_the_photos_at_input_cameras():
    """QA: on a 63 x 47 scene the clips' videos were 64 x 48, the model's generation size, while the clip's
    cameras (saved beside it) are 63 x 47. The clip now comes back at the cameras' size: its generated
    frames are the pseudo views, and the frames at input cameras are the photos themselves."""
    from vdm3d.jobs.complete_v3d_generate import generate_v3d_clip
    from vdm3d.views import Views

    K = torch.tensor([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]).expand(2, 3, 3)
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[1, 0, 3] = 0.3
    cams = Cameras(K, c2w, 31, 23)  # odd sides: the model samples at another size (multiples of 16)
    photos = Views(torch.rand(2, 23, 31, 3, generator=torch.Generator().manual_seed(0)), cams)
    path = between_paths(cams, 5)[0]
    pseudo, clip = generate_v3d_clip(v3d_job.load_model("v3d_scene"), photos, path, 0, (0.5, 4.0), 2.0,
                                     V3dConfig(steps=1), seed=0)
    assert clip.shape == (5, 23, 31, 3) and pseudo.images.shape == (3, 23, 31, 3)
    known = input_frames(path.cameras, cams)
    assert sorted(known) == [0, 4]
    for f, i in known.items():
        assert torch.equal(clip[f], photos.images[i])
    assert torch.equal(pseudo.images, clip[1:4]) and torch.equal(pseudo.cameras.c2w, path.cameras.c2w[1:4])


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Path:
    """A held-out procedural room at 32 px, 12 frames (training views 1, 5, 11; held-out 0 and 8)."""
    return write_room_case(tmp_path_factory.mktemp("room") / "case", seed=7, resolution=32, views=12, ssaa=1)


def _config(data: Path, out: Path, **kw) -> CompleteConfig:
    base = CompleteConfig(data=data, out=out, method="v3d", baseline=SMALL_FIT, split=Split(num_train_views=3),
                          distill=DistillConfig(steps=40, generate_every=20,
                                                fit=dataclasses.replace(DISTILL_FIT, densify=SMALL_FIT.densify)),
                          v3d=V3dConfig(steps=3))
    return dataclasses.replace(base, **kw)


@pytest.mark.slow
def test_v3d_room_end_to_end_and_resume(room, tmp_path, monkeypatch):
    out = tmp_path / "run"
    result = v3d_job.run_complete_v3d(_config(room, out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "v3d" and m["train_views"] == [1, 5, 11] and m["test_views"] == [0, 8]
    assert m["paths"] == 2 and m["generated_frames"] == 12  # 2 clips of 8, their 4 end frames are photos
    assert m["test"]["mean"]["psnr"] > 12, m["test"]["mean"]
    for f in ("splats.ply", "baseline.ply", "clips/000.mp4", "clips/001.json", "manifest.json", "renders/000.png",
              "compare/008.png"):
        assert (out / f).is_file(), f
    assert len(list((out / "trajectories").glob("view*.json"))) == 2
    assert len(json.loads((out / "cameras" / "transforms.json").read_text())["frames"]) == 3  # the training views
    assert not (out / "checkpoints").exists()

    # a crash in the second clip keeps the baseline and the first clip; --resume gives the same splats
    calls = {"n": 0}
    real = v3d_job.generate_v3d_clip

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(*a, **kw)

    monkeypatch.setattr(v3d_job, "generate_v3d_clip", flaky)
    out2 = tmp_path / "run2"
    with pytest.raises(RuntimeError):
        v3d_job.run_complete_v3d(_config(room, out2))
    partial = tmp_path / ".run2.partial"
    assert (partial / "checkpoints" / "clips" / "000.safetensors").is_file() and (partial / "baseline.ply").is_file()
    resumed = v3d_job.run_complete_v3d(_config(room, out2, resume=out2))
    assert calls["n"] == 3  # only the missing clip was generated again
    for f in dataclasses.fields(Gaussians):
        assert torch.equal(getattr(resumed.gaussians, f.name), getattr(result.gaussians, f.name)), f.name


@pytest.mark.slow
def test_a_trajectory_file_is_generated_in_clips(room, tmp_path):
    from vdm3d.data.readers import read_scene

    scene = read_scene(room, Split(num_train_views=3))
    cams = scene.test.cameras  # any path: here the held-out cameras' neighbourhood, 5 frames
    path = between_paths(Cameras.cat([scene.train.cameras[:1], cams[1:2]]), 5)[0]
    save_trajectory(tmp_path / "path.json", path)
    out = tmp_path / "run"
    v3d_job.run_complete_v3d(_config(room, out, trajectory=tmp_path / "path.json",
                                     baseline=dataclasses.replace(SMALL_FIT, steps=20),
                                     distill=DistillConfig(steps=10, generate_every=10)))
    m = json.loads((out / "metrics.json").read_text())
    assert m["paths"] == 1 and m["generated_frames"] == 4  # frame 0 is training view 1


@pytest.mark.parametrize("args, words", [
    (["--method", "v3d", "--trajectory", "missing.json"], "missing.json"),
    (["--trajectory", "path.json"], "--method v3d"),
    (["--method", "v3d", "--v3d.max-clips", "0"], "max-clips"),
    (["--method", "v3d", "--trajectory", "{bad}"], "bad.json"),
    (["--method", "v3d", "--num-train-views", "1"], "at least 2 training views"),
    (["--method", "nerf"], "--method"),
])
def test_bad_input_exits_2_with_one_sentence_and_no_folder(room, tmp_path, capsys, args, words):
    (tmp_path / "bad.json").write_text('{"format": "vdm3d.trajectory", "version": 1, "frames": [')
    (tmp_path / "path.json").write_text("{}")
    args = [str(tmp_path / "bad.json") if a == "{bad}" else a for a in args]
    out = tmp_path / "run"
    assert cli_main(["complete", str(room), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "Traceback" not in err, err
    if "nerf" not in args:  # (tyro frames its own parse errors)
        assert err.count("\n") == 0, err
    assert not out.exists() and not (tmp_path / ".run.partial").exists()


def test_a_train_v3d_run_file_is_the_scene_model_that_loads(tmp_path):
    """``--v3d.model runs/train/v3d/v3d_scene.json`` (what `vdm3d train v3d` writes and its error message
    names) loads that file's network: one tensor changed from the shipped one is the one that differs."""
    import shutil

    from safetensors.torch import load_file, save_file

    from vdm3d.jobs.complete_v3d import load_model
    from vdm3d.models.tiny import WEIGHTS_DIR

    shutil.copy(WEIGHTS_DIR / "v3d_scene.json", tmp_path / "v3d_scene.json")
    weights = load_file(str(WEIGHTS_DIR / "v3d_scene.safetensors"))
    changed = next(iter(weights))
    weights[changed] = weights[changed] + 1
    save_file(weights, str(tmp_path / "v3d_scene.safetensors"))
    mine, theirs = load_model(str(tmp_path / "v3d_scene.json")).denoiser.state_dict(), load_model("v3d_scene").denoiser.state_dict()
    assert [k for k in mine if not torch.equal(mine[k], theirs[k])] == [changed]
