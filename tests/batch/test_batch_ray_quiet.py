"""A batch on Ray prints its own lines only: Ray's token-authentication WARNING and "Started a local Ray
instance" INFO went to the user's terminal; a failed case's sentence still reaches the summary."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import vdm3d
from vdm3d.batch import runner

SRC = Path(vdm3d.__file__).resolve().parents[1]  # the vdm3d under test, for the batch's own process


def _manifest(tmp_path: Path) -> Path:
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"name": n, "job": "trajectory", "argv": ["make", "orbit"],
                                                          "frames": 3, "width": 16, "height": 16}) + "\n"
                                              for n in ("ok", "taken")))
    return tmp_path / "m.jsonl"


def test_ray_is_started_quiet(tmp_path, monkeypatch):
    inits = []
    fake = types.SimpleNamespace(init=lambda **k: inits.append(k), shutdown=lambda: None,
                                 remote=lambda **k: lambda f: f)
    monkeypatch.setitem(sys.modules, "ray", fake)
    for address in (None, "ray://head:10001"):
        runner._run_on_ray([], tmp_path, address, 1, 1, finish=None)
    assert [(k["logging_level"], k["log_to_driver"]) for k in inits] == [(logging.ERROR, False)] * 2


@pytest.mark.slow
def test_a_real_ray_batch_prints_no_ray_lines_and_keeps_the_cases_errors(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "runs"
    (out / "taken").mkdir(parents=True)  # in the way: that case fails, with trajectory's sentence
    (out / "taken" / "notes.txt").write_text("x")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-m", "vdm3d.cli.main", "batch", str(_manifest(tmp_path)), "--out",
                           str(out), "--num-cpus", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""  # no "Started a local Ray instance", no token notice
    failed = f"taken: exit 2: error: {out / 'taken'}: already exists; choose another --out or pass --overwrite."
    assert failed in proc.stdout
    assert "1 ran, 0 already done, 1 failed" in proc.stdout
