"""`vdm3d eval SUB --manifest CASES` runs each eval case as a batch case: one run folder per case,
a table of statuses and scores, and a rerun that skips the finished cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vdm3d.batch.evals import eval_cases, is_batch_manifest, numbers_table, split_batch_flags
from vdm3d.batch.runner import CaseResult
from vdm3d.errors import ConfigError

SRC = Path(__file__).resolve().parents[2] / "src"


def test_batch_flags_are_split_from_the_shared_ones():
    batch, rest = split_batch_flags(["depth", "--manifest", "c.yaml", "--rooms", "2", "--no-ray", "--out=o",
                                     "--cpus-per-case", "2"])
    assert batch == {"--manifest": "c.yaml", "--no-ray": True, "--out": "o", "--cpus-per-case": "2"}
    assert rest == ["depth", "--rooms", "2"]
    assert is_batch_manifest("c.yaml") and is_batch_manifest("c.jsonl") and not is_batch_manifest("cases.json")
    with pytest.raises(ConfigError, match="--out needs a value"):
        split_batch_flags(["depth", "--out"])


def test_eval_cases_put_shared_flags_before_the_case_options(tmp_path):
    (tmp_path / "c.yaml").write_text("cases:\n  - {name: a, rooms: 1}\n  - {name: b, model: depth}\n")
    cases = eval_cases("depth", tmp_path / "c.yaml", tmp_path / "out", ["--rooms", "3"])
    assert [c.command() for c in cases] == [
        ["depth", "--rooms", "3", "--rooms", "1", "--out", str(tmp_path / "out" / "a")],
        ["depth", "--rooms", "3", "--model", "depth", "--out", str(tmp_path / "out" / "b")]]
    (tmp_path / "d.yaml").write_text("cases:\n  - {name: a, job: object}\n")
    with pytest.raises(ConfigError, match="runs `vdm3d eval depth` only"):
        eval_cases("depth", tmp_path / "d.yaml", tmp_path / "out", [])


def test_numbers_table_reads_each_case_manifest(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({"result": {"abs_rel": 0.25, "task": "depth"}}))
    results = [CaseResult("a", "eval", "todo", "ok", 1.0, str(tmp_path / "a")),
               CaseResult("b", "eval", "todo", "failed", 1.0, str(tmp_path / "b"), 1, "boom")]
    text, scores = numbers_table(results)
    assert scores == {"a": {"abs_rel": 0.25}, "b": {}}
    assert text.splitlines()[2].split() == ["a", "0.25"] and text.splitlines()[3].split() == ["b", "-"]


@pytest.mark.slow
def test_two_case_eval_then_rerun_skips(tmp_path, monkeypatch, capsys):
    """Through the batch runner without Ray (its Ray path is the one `vdm3d batch` uses and
    tests/batch/test_batch_object.py runs; starting Ray here would double this test's time). The command
    runs in-process; each case is its own `vdm3d eval depth` process, as always."""
    from vdm3d.cli.main import main

    (tmp_path / "cases.yaml").write_text("cases:\n  - {name: one-room, rooms: 1}\n  - {name: two-rooms, rooms: 2}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = ["eval", "depth", "--manifest", "cases.yaml", "--out", "ev", "--no-ray"]
    assert main(argv) == 0, capsys.readouterr()
    first = capsys.readouterr().out
    summary = json.loads((tmp_path / "ev" / "batch.json").read_text())
    assert [(c["name"], c["state"], c["status"]) for c in summary["cases"]] == [
        ("one-room", "todo", "ok"), ("two-rooms", "todo", "ok")]
    scores = json.loads((tmp_path / "ev" / "scores.json").read_text())
    for name, rooms in (("one-room", 1), ("two-rooms", 2)):
        recorded = json.loads((tmp_path / "ev" / name / "manifest.json").read_text())
        assert recorded["config"]["rooms"] == rooms
        assert scores[name]["abs_rel"] == recorded["result"]["abs_rel"]
        assert scores[name]["images"] == 16 * rooms  # 2 paths x 8 frames per held-out room
        assert scores[name]["abs_rel"] < scores[name]["abs_rel_constant_baseline"]
    assert "one-room" in first and "abs_rel" in first
    stamp = (tmp_path / "ev" / "one-room" / "manifest.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert "0 ran, 2 already done, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "ev" / "one-room" / "manifest.json").stat().st_mtime_ns == stamp
