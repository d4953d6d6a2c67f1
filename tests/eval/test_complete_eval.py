"""`vdm3d eval complete`: an unknown method is refused before any work, the v3d COLMAP rows print, and
`complete-frames` scores frames, renders and photos at the views that are neither trained on nor held out."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vdm3d.cli.main import main as cli_main
from vdm3d.eval.complete import _table, score_frames, validation_views, write_room_case


def test_an_unknown_method_exits_2_with_one_sentence(tmp_path, capsys):
    assert cli_main(["eval", "complete", "--methods", "plain", "v3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "v3" in err and "v3d" in err and err.count("\n") == 0
    assert not (tmp_path / "o").exists()


def test_the_table_has_a_colmap_section_for_v3d():
    row = {"psnr": 24.0, "ssim": 0.9, "empty": 0.03}
    res = {"room 0": {"baseline": row, "plain": row, "v3d": row,
                      "colmap": {"frames": 12, "points_truth": 89, "v3d": {"points": 7, "chamfer": 0.31},
                                 "baseline_renders": {"points": 132, "chamfer": 0.208}}}}
    table = _table(res, ("plain", "v3d"))
    assert "| room 0 | v3d | 24.00 | 0.9000 | 3.00 % |" in table
    assert "| room 0 | 12 | 89 | 7 (0.310) | 132 (0.208) |" in table


@pytest.mark.slow
def test_frames_are_scored_at_the_validation_views_against_the_photos(tmp_path):
    from vdm3d.data.readers import Split, read_scene
    from vdm3d.jobs.complete import CompleteConfig, load_backbone
    from vdm3d.jobs.complete_generate import GenerationConfig
    from vdm3d.metrics.image import psnr

    assert validation_views(8, (1, 4), (0, 6)) == (2, 3, 5, 7)
    room = write_room_case(tmp_path / "room", seed=7, resolution=32, views=12, ssaa=1)
    config = CompleteConfig(data=room, generation=GenerationConfig(steps=2))
    config = dataclasses.replace(config, baseline=dataclasses.replace(config.baseline, steps=30),
                                 distill=dataclasses.replace(config.distill, steps=10))
    res = score_frames(room, config, load_backbone("tiny-video"), 30, 10, max_views=2, log=lambda _: None)
    # 12 views: held out 0 and 8, training 1, 5, 11 (3 evenly spaced of the rest); 2 of the others, evenly
    assert res["views"] == [2, 10]
    # the nearest-photo column is the plain PSNR between the photo files
    photos = read_scene(room, Split(test_every=0)).train
    want = [float(psnr(photos.images[n].float()[None], photos.images[v].float()[None]))
            for v, n in ((2, 1), (10, 11))]
    assert abs(res["nearest_photo"] - sum(want) / 2) < 1e-4
    # the VAE reconstructs the photo itself, far better than another view of the room matches it
    assert res["vae"] > res["nearest_photo"] + 5
    assert all(torch.isfinite(torch.tensor(res[k])) for k in ("frame", "baseline", "plain"))


def test_the_validation_split_keeps_the_training_views_and_scores_the_others(tmp_path):
    from vdm3d.data.readers import Split
    from vdm3d.eval.complete import validation_split
    from vdm3d.jobs.complete import CompleteConfig, load_scene

    room = write_room_case(tmp_path / "room", seed=3, resolution=16, views=12, ssaa=1)
    config = CompleteConfig(data=room, split=Split(num_train_views=3))
    held, _ = load_scene(config)
    val, _ = load_scene(validation_split(room, config))
    assert val.train_indices == held.train_indices == (1, 5, 11)
    assert val.test_indices == (2, 3, 4, 6, 7, 9, 10)  # neither trained on nor held out (0 and 8)
    torch.testing.assert_close(val.train.images, held.train.images)


@pytest.mark.slow
def test_the_default_methods_run_end_to_end_on_one_tiny_room(tmp_path):
    """Every default method of `vdm3d eval complete` runs on one room with tiny budgets and records a score:
    a change of a job helper's signature (hole_filler's depth estimator) crashed it after two methods."""
    import json

    code = cli_main(["eval", "complete", "--rooms", "1", "--no-fern", "--baseline-steps", "20", "--distill-steps",
                     "20", "--sampler-steps", "2", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "o")])
    assert code == 0
    room = json.loads((tmp_path / "o" / "results.json").read_text())["results"]["room 0"]
    for method in ("baseline", "plain", "no_guidance", "orbit", "complete"):
        assert 5 < room[method]["psnr"] < 60, (method, room[method])  # a real score against the room's truth


@pytest.mark.slow
def test_with_out_an_interrupted_evaluation_resumes_after_its_last_finished_scene(
        tmp_path, capsys, stop_at_second_case, interrupted_after_one_case):
    """With --out, Ctrl-C during room 2 keeps room 1's checkpoint; --resume loads room 1 (not fitted again) and
    runs room 2, and results.json equals an uninterrupted run's but for the wall times; a resume with another
    option is refused."""
    import json

    import vdm3d.eval.complete as ev

    small = dict(rooms=2, fern=False, baseline_steps=20, distill_steps=10, methods=("plain",), colmap=False,
                 work=tmp_path / "work")
    ev.complete(out=tmp_path / "whole", **small)
    stop = stop_at_second_case(ev, "evaluate_scene", lambda path, *args, **kw: path.name)
    out = tmp_path / "cut"
    interrupted_after_one_case(lambda **kw: ev.complete(**{**small, **kw}), out, {"distill_steps": 11},
                               "--distill-steps")
    capsys.readouterr()
    stop.resume()
    ev.complete(out=out, resume=True, **small)
    assert stop.ran == ["room_001"]  # room 0 came from the checkpoint
    lines = [line for line in capsys.readouterr().out.splitlines() if "] [" in line]
    assert lines[0].endswith("[1/2] room 0 scored (from the checkpoint)") and lines[1].endswith("[2/2] room 1 scored")

    def numbers(folder):  # results.json without the wall times (of the run, and of each scene's methods)
        saved = json.loads((folder / "results.json").read_text())
        scenes = {n: {k: v for k, v in r.items() if k != "seconds"} for n, r in saved.pop("results").items()}
        return {**{k: v for k, v in saved.items() if k != "seconds"}, "results": scenes}

    assert numbers(out) == numbers(tmp_path / "whole") and numbers(out)["results"]["room 0"]["plain"]["psnr"] > 5
