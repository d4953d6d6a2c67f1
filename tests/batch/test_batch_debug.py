"""`vdm3d batch --debug` reaches the cases: their logs hold the traceback of a failure (vdm3d's main takes
``--debug`` off the arguments before `batch` sees them, so the cases ran without it)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from vdm3d.cli.main import main


@pytest.mark.parametrize("debug", [True, False])
def test_debug_reaches_the_cases_logs(tmp_path, monkeypatch, capsys, debug):
    monkeypatch.delenv("VDM3D_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.jsonl").write_text(json.dumps({"name": "orbit", "job": "trajectory", "argv": ["make", "orbit"],
                                                  "frames": 3, "width": 16, "height": 16}) + "\n")
    (tmp_path / "runs" / "orbit").mkdir(parents=True)  # in the way: the case fails (trajectory refuses it)
    (tmp_path / "runs" / "orbit" / "notes.txt").write_text("x")
    argv = ["batch", "m.jsonl", "--out", "runs", "--no-ray", *(["--debug"] if debug else [])]
    monkeypatch.setattr(sys, "argv", ["vdm3d", *argv])  # as the `vdm3d` program sees its command line
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "orbit: exit 2: error: runs/orbit: already exists; choose another --out or pass --overwrite." in out
    log = (tmp_path / "runs" / "logs" / "orbit.log").read_text()
    assert ("Traceback (most recent call last)" in log) == debug, log
    assert "--debug" not in log  # not on the case's command line, which its manifest records


@pytest.mark.parametrize("debug", [True, False])
def test_debug_shows_a_failed_cases_traceback_on_the_batchs_stderr(tmp_path, monkeypatch, capsys, debug):
    """`vdm3d batch ... --debug` put the failed case's traceback in its log only: the batch itself showed the
    one-line reason, as without --debug. It now prints the traceback (the case's own, from its log) on stderr
    after the case's line; without --debug the batch's output is as it was. main(argv) called in-process
    (sys.argv being some other program's) passes --debug on too: the runner read it from sys.argv."""
    monkeypatch.delenv("VDM3D_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    (tmp_path / "m.jsonl").write_text(json.dumps({"name": "orbit", "job": "trajectory", "argv": ["make", "orbit"],
                                                  "frames": 3, "width": 16, "height": 16}) + "\n")
    (tmp_path / "runs" / "orbit").mkdir(parents=True)  # in the way: the case fails (trajectory refuses it)
    (tmp_path / "runs" / "orbit" / "notes.txt").write_text("x")
    assert main(["batch", "m.jsonl", "--out", "runs", "--no-ray", *(["--debug"] if debug else [])]) == 1
    captured = capsys.readouterr()
    sentence = "runs/orbit: already exists; choose another --out or pass --overwrite."
    assert "[1/1] orbit: failed in" in captured.out and "Traceback" not in captured.out
    if not debug:
        assert captured.err == ""
        return
    err = captured.err.splitlines()
    assert err[0] == "orbit: Traceback (most recent call last):", captured.err
    assert err[-1] == f"  vdm3d.errors.OutputExistsError: {sentence}", captured.err
    assert any("in _check_out" in line for line in err) and "Traceback" not in err[-1]
    assert os.environ.get("VDM3D_DEBUG") is None  # set for the command's run only
