"""`vdm3d eval explore` scores: PSNR split into the cache's valid pixels and the holes."""

import math

import pytest
import torch

from vdm3d.eval.explore import score


def test_score_splits_psnr_into_valid_pixels_and_holes():
    g = torch.Generator().manual_seed(0)
    truth = 0.2 + 0.6 * torch.rand(6, 16, 16, 3, generator=g)
    valid = torch.ones(6, 16, 16)
    valid[1:, 4:12, :8] = 0  # a quarter of every frame after the first is a hole
    video = truth + 0.01  # 40 dB on the valid pixels
    video[valid.bool() == 0] = truth[valid.bool() == 0] + 0.1  # 20 dB in the holes
    s = score(video, truth, segment=3, revisit=2, valid=valid)
    assert math.isclose(s["psnr_valid"], 40.0, abs_tol=1e-3) and math.isclose(s["psnr_holes"], 20.0, abs_tol=1e-3)
    assert math.isclose(s["hole_fraction"], 0.25, abs_tol=1e-9)
    assert 20.0 < s["psnr"] < 40.0 and len(s["psnr_segments"]) == 2
    assert math.isnan(score(video, truth, 3, 2)["psnr_holes"])  # no mask, no split


def test_an_interrupted_evaluation_says_what_is_left_and_how_to_run_the_rest(monkeypatch, capsys):
    """Its runs live in a temporary folder deleted on exit and it has no --resume: the inner run's "checkpoint
    kept; --resume" would be untrue, so the message names the finished rooms and the --skip-rooms that
    evaluates the rest (a flag eval explore has)."""
    import signal
    import types

    from vdm3d.cameras.trajectory_file import load_trajectory
    from vdm3d.cli.main import main
    from vdm3d.errors import Interrupted
    from vdm3d.jobs import explore as job

    calls = []

    def run_explore(cfg, progress=None):  # room 0 finishes, room 1 is interrupted as RunFolder reports it
        calls.append(cfg)
        if len(calls) == 2:
            e = Interrupted(signal.SIGINT)
            e.outcome = f"the checkpoint in {cfg.out.parent}/.x.partial is kept; the same command with --resume ..."
            raise e
        frames = len(load_trajectory(cfg.path))
        video = types.SimpleNamespace(images=torch.zeros(frames, cfg.resolution, cfg.resolution, 3), confidence=None)
        return types.SimpleNamespace(video=video, timings={"chunks_s": [0.1]})

    monkeypatch.setattr(job, "run_explore", run_explore)
    code = main(["eval", "explore", "--rooms", "3", "--skip-rooms", "1", "--frames", "8", "--revisit", "2", "--segment", "4", "--resolution", "32",
                 "--methods", "job"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 128 + signal.SIGINT and len(calls) == 2
    assert "--resume" not in err and "keeps no checkpoint" in err, err
    assert "1 of 3 rooms were finished" in err and "--skip-rooms 2 --rooms 2" in err, err


@pytest.mark.slow
def test_with_out_an_interrupted_evaluation_resumes_after_its_last_finished_room(
        tmp_path, capsys, stop_at_second_case, interrupted_after_one_case):
    """With --out, Ctrl-C during room 2 keeps room 1's checkpoint and says --resume continues; --resume loads
    room 1 (its explore run is not run again) and runs room 2, and the numbers equal an uninterrupted run's; a
    resume with another option is refused."""
    import json

    from vdm3d.eval.explore import explore
    from vdm3d.jobs import explore as job

    small = dict(rooms=2, frames=8, resolution=32, segment=4, revisit=2, methods=("job",), steps=1, fit_steps=2,
                 chunk=4, samples=1, replay=0, split="val")
    whole = explore(out=tmp_path / "whole", **small)
    stop = stop_at_second_case(job, "run_explore", lambda cfg, **kw: cfg.out.name)
    out = tmp_path / "cut"
    interrupted_after_one_case(lambda **kw: explore(**{**small, **kw}), out, {"fit_steps": 3}, "--fit-steps")
    capsys.readouterr()
    stop.resume()
    again = explore(out=out, resume=True, **small)
    assert stop.ran == ["job1"]  # room 0 came from the checkpoint
    lines = [line for line in capsys.readouterr().out.splitlines() if "] [" in line]
    assert "[1/2] room 0" in lines[0] and lines[0].endswith("(from the checkpoint)")
    assert "[2/2] room 1" in lines[1] and "checkpoint" not in lines[1]

    def numbers(result):  # without the wall times and the config's resume flag; NaN (no holes) written as NaN
        summary = {m: {k: v for k, v in s.items() if k != "seconds_per_run"} for m, s in result["summary"].items()}
        return json.dumps({**{k: v for k, v in result.items() if k not in ("seconds", "config")}, "summary": summary})

    assert numbers(again) == numbers(whole) and again["per_room"]["job"][0]["psnr"] > 10
    saved = json.loads((out / "explore.json").read_text())
    assert saved["per_room"] == json.loads((tmp_path / "whole" / "explore.json").read_text())["per_room"]


@pytest.mark.parametrize("sub", ["explore", "complete"])
def test_resume_without_out_is_refused_before_any_work(sub, capsys):
    """Without --out these evaluations keep nothing, so --resume has nothing to continue: one sentence, exit 2."""
    from vdm3d.cli.main import main

    assert main(["eval", sub, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and "--out" in err and err.count("\n") == 0, err
