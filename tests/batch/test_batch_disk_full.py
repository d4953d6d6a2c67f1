"""A full disk while a case's log is written: one plain sentence naming the logs folder, exit 2, with or
without Ray (it was "an output file: the disk is full", and on Ray a RayTaskError with coloured traceback)."""

from __future__ import annotations

import errno
import io
import json
import sys
import types
from pathlib import Path

import pytest

from vdm3d.batch import runner
from vdm3d.cli.main import main
from vdm3d.errors import DiskFullError


class FullDisk(io.StringIO):
    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")


def _manifest(tmp_path: Path) -> Path:
    (tmp_path / "m.jsonl").write_text(json.dumps({"name": "orbit", "job": "trajectory", "argv": ["make", "orbit"]})
                                      + "\n")
    return tmp_path / "m.jsonl"


def test_a_full_disk_writing_a_case_log_names_the_folder(tmp_path, monkeypatch, capsys):
    started = []
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: started.append(a))
    monkeypatch.setattr(runner, "open", lambda *a, **k: FullDisk(), raising=False)
    out = tmp_path / "runs"
    assert main(["batch", str(_manifest(tmp_path)), "--out", str(out), "--no-ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {out / 'logs'}: the disk is full (No space left on device) while writing the log of case "
                   "orbit; free space there, then run the same command again: it skips the finished cases.")
    assert started == []  # the case did not run without its log


def test_on_ray_the_cases_sentence_arrives_plain(tmp_path, monkeypatch, capsys):
    """Ray's get raises a RayTaskError wrapping the task's exception (its text: the worker's traceback, in
    colour); the batch raises the task's own sentence, as without Ray."""
    sentence = f"{tmp_path / 'runs' / 'logs'}: the disk is full (No space left on device) while writing ..."

    class RayTaskError(Exception):
        def __init__(self, cause):
            super().__init__("\x1b[36mray::run_command()\x1b[39m (pid=1)\n  File ...\nOSError: ...")
            self.cause = cause

    def get(ref):
        raise RayTaskError(DiskFullError(sentence))

    fake = types.SimpleNamespace(init=lambda **k: None, shutdown=lambda: None, get=get, cancel=lambda ref: None,
                                 wait=lambda refs, num_returns, timeout: (refs[:1], refs[1:]),
                                 remote=lambda **k: lambda f: types.SimpleNamespace(remote=lambda *a, **kw: object()))
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert main(["batch", str(_manifest(tmp_path)), "--out", str(tmp_path / "runs"), "--num-cpus", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {sentence}" and "\x1b" not in err


def test_a_dead_worker_is_one_line_without_colours(tmp_path, monkeypatch):
    class RayTaskError(Exception):
        pass

    def get(ref):
        raise RayTaskError("\x1b[36mray::run_command()\x1b[39m worker died\nmore")

    fake = types.SimpleNamespace(init=lambda **k: None, shutdown=lambda: None, get=get,
                                 wait=lambda refs, num_returns, timeout: (refs[:1], refs[1:]),
                                 remote=lambda **k: lambda f: types.SimpleNamespace(remote=lambda *a, **kw: object()))
    monkeypatch.setitem(sys.modules, "ray", fake)
    from vdm3d.batch.cases import read_cases

    [result] = runner.run_cases(read_cases(_manifest(tmp_path), tmp_path / "runs"), tmp_path / "logs", num_cpus=1)
    assert result.status == "failed" and result.error == "ray task failed: RayTaskError: ray::run_command() worker died"


def test_the_lock_holds_on_a_full_disk(tmp_path, monkeypatch):
    """Writing the holder's pid into the lock file failed the lock on a full disk ("an output file: the disk
    is full", before the batch's own sentence), and left the lock file behind."""
    import os

    from vdm3d.io import runs

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    class FullFile:  # the lock file on a full disk: created, but nothing can be written into it
        def __init__(self, *args, **kwargs):
            self._f = open(*args, **kwargs)

        def __getattr__(self, name):
            return full if name in ("write", "flush") else getattr(self._f, name)

    monkeypatch.setattr(runs, "open", FullFile, raising=False)
    monkeypatch.setattr(runs.os, "write", full)
    handle = runs.lock_run(tmp_path / "b")
    try:
        with pytest.raises(runs.OutputExistsError, match="another vdm3d run is writing this folder now"):
            monkeypatch.undo()
            runs.lock_run(tmp_path / "b")
    finally:
        runs.unlock_run(handle)
    assert not os.path.exists(tmp_path / ".b.lock")
