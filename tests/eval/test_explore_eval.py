"""`vdm3d eval explore` scores: PSNR split into the cache's valid pixels and the holes."""

import math

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
