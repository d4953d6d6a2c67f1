"""What ``vdm3d complete`` prints at the end: the held-out scores, and a warning when the completed scene
scores below its own baseline (on stderr: a note, not a result)."""

from pathlib import Path
from types import SimpleNamespace

import pytest

import vdm3d.jobs.complete as job
from vdm3d.cli.complete import main


@pytest.mark.parametrize("psnr, warned", [(14.6, True), (21.2, False)])
def test_a_completion_below_its_baseline_is_warned_about(tmp_path, monkeypatch, capsys, psnr, warned):
    metrics = {"test": {"mean": {"psnr": psnr, "ssim": 0.5, "empty": 0.0}},
               "baseline": {"psnr": 19.5, "ssim": 0.6, "empty": 0.0}}
    monkeypatch.setattr(job, "run_complete", lambda config, progress: SimpleNamespace(
        out=tmp_path / "run", metrics=metrics))  # what the command reads of a CompleteResult
    assert main([str(tmp_path), "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert f"PSNR {psnr:.2f} dB" in out and "baseline: PSNR 19.50 dB" in out
    # the scores are the result (stdout); the warning about them is a note (stderr), not in `> scores.txt`
    assert "warning" not in out
    assert ("warning: the completed scene scores below its own baseline" in err) == warned
    if warned:
        assert f"({psnr:.2f} dB against 19.50 dB)" in err and str(Path(tmp_path / "run" / "baseline.ply")) in err
