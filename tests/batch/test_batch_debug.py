"""`vdm3d batch --debug` reaches the cases: their logs hold the traceback of a failure (vdm3d's main takes
``--debug`` off the arguments before `batch` sees them, so the cases ran without it)."""

from __future__ import annotations

import json
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
