"""A resumed run is made in legs (the interrupted process, then each resume): the manifest records every leg's
thread count, rasterizer, start and seconds, the total covers them all, and a resume at another thread count
than the run it continues says so (QA s34 findings 2 and 6)."""

import dataclasses
import json
import time

import pytest

import vdm3d.threads as threads
from vdm3d.io.runs import MANIFEST, START, RunFolder, note_used


@dataclasses.dataclass(frozen=True)
class Job:
    steps: int = 3
    resume: bool = False


@pytest.fixture
def restore_threads():
    before = threads.current_threads()
    yield threads.set_threads
    threads.set_threads(before or 1)


def interrupted(out, *, seconds: float = 0.0, backend: str | None = None):
    """A run that saves a checkpoint, works ``seconds`` and is stopped by Ctrl-C (its partial folder stays)."""
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(out, config=Job()) as run:
            (run.checkpoint_dir / "state.txt").write_text("half")
            if backend:
                note_used("rasterizer", backend)
            time.sleep(seconds)
            raise KeyboardInterrupt


def test_a_resume_at_another_thread_count_warns_and_the_manifest_records_both_legs(tmp_path, capsys,
                                                                                   restore_threads):
    out = tmp_path / "run"
    restore_threads(2)
    interrupted(out, backend="numba")
    start = json.loads((tmp_path / ".run.partial" / START).read_text())
    assert [leg["threads"] for leg in start["legs"]] == [2] and start["legs"][0]["seconds"] is not None
    assert start["legs"][0]["backends"] == {"rasterizer": ["numba"]} and "options" in start

    restore_threads(1)
    capsys.readouterr()
    with RunFolder(out, config=Job(resume=True), resume=True) as run:
        note_used("rasterizer", "cpp")
        (run.path / "done.txt").write_text("ok")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {out}: the interrupted run used 2 threads and this "
                                                   "resume uses 1, so the result can differ")
    assert "resume with `vdm3d --threads 2 ...` to continue as it started" in err
    m = json.loads((out / MANIFEST).read_text())
    assert [leg["threads"] for leg in m["legs"]] == [2, 1] and m["threads"] == 1
    assert [leg["backends"] for leg in m["legs"]] == [{"rasterizer": ["numba"]}, {"rasterizer": ["cpp"]}]
    assert m["backends"] == {"rasterizer": ["cpp", "numba"]}  # the interrupted leg's too, not the last's only


def test_a_resume_at_the_same_thread_count_says_nothing(tmp_path, capsys, restore_threads):
    out = tmp_path / "run"
    restore_threads(1)
    interrupted(out)
    capsys.readouterr()
    with RunFolder(out, config=Job(resume=True), resume=True):
        pass
    assert capsys.readouterr().err == ""
    assert [leg["threads"] for leg in json.loads((out / MANIFEST).read_text())["legs"]] == [1, 1]


def test_the_manifest_times_every_leg_of_a_resumed_run(tmp_path, restore_threads):
    """``seconds`` was the last leg's alone (a resumed fit read 7.4 s against 9.4 s uninterrupted) and
    ``started`` the resume's time; now both cover the run, and each leg keeps its own."""
    out = tmp_path / "run"
    restore_threads(1)
    interrupted(out, seconds=0.4)
    with RunFolder(out, config=Job(resume=True), resume=True):
        time.sleep(0.1)
    m = json.loads((out / MANIFEST).read_text())
    first, second = m["legs"]
    assert first["seconds"] >= 0.4 and 0.1 <= second["seconds"] < 0.4
    assert m["seconds"] == pytest.approx(first["seconds"] + second["seconds"], abs=2e-3) and m["seconds"] >= 0.5
    assert m["started"] == first["started"] <= second["started"]
    assert not (out / START).exists()


def test_a_run_in_one_leg_records_one_leg(tmp_path, restore_threads):
    restore_threads(1)
    with RunFolder(tmp_path / "run", config=Job()):
        time.sleep(0.05)
    m = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert len(m["legs"]) == 1 and m["legs"][0]["threads"] == 1 and m["seconds"] == m["legs"][0]["seconds"] >= 0.05
    assert m["started"] == m["legs"][0]["started"]


def test_a_killed_leg_and_a_partial_folder_from_before_legs_still_resume(tmp_path, capsys, restore_threads):
    """A process killed with SIGKILL leaves its leg's start without seconds; a partial folder written before
    legs were recorded has a start.json without them: both resume, and their legs count as unknown."""
    restore_threads(1)
    out = tmp_path / "run"
    interrupted(out)
    start_file = tmp_path / ".run.partial" / START
    start = json.loads(start_file.read_text())
    start["legs"][0]["seconds"] = None  # as SIGKILL leaves it: written when the leg began, never completed
    start_file.write_text(json.dumps(start))
    with RunFolder(out, config=Job(resume=True), resume=True):
        pass
    m = json.loads((out / MANIFEST).read_text())
    assert m["legs"][0]["seconds"] is None and m["seconds"] == m["legs"][1]["seconds"]

    old = tmp_path / "old"
    interrupted(old)
    start_file = tmp_path / ".old.partial" / START
    start_file.write_text(json.dumps({k: v for k, v in json.loads(start_file.read_text()).items() if k != "legs"}))
    capsys.readouterr()
    with RunFolder(old, config=Job(resume=True), resume=True):
        pass
    assert capsys.readouterr().err == ""  # the interrupted run's count is unknown: nothing to compare
    m = json.loads((old / MANIFEST).read_text())
    assert m["legs"][0] == {"started": None, "seconds": None, "threads": None} and m["legs"][1]["threads"] == 1


def test_a_trainer_continued_with_more_steps_counts_the_finished_runs_legs(tmp_path, restore_threads):
    """A finished trainer run continued with more steps (``continue_from``) carries its manifest's legs, or,
    for a manifest from before legs, one leg made of its started, seconds and threads."""
    restore_threads(1)
    out = tmp_path / "run"
    with RunFolder(out, config=Job()) as run:
        (run.checkpoint_dir / "state.txt").write_text("20 steps")
    first = json.loads((out / MANIFEST).read_text())
    old = {k: v for k, v in first.items() if k != "legs"}
    (out / MANIFEST).write_text(json.dumps(old))
    with RunFolder(out, config=Job(resume=True), resume=True, overwrite=True,
                   continue_from=out / "checkpoints"):
        pass
    m = json.loads((out / MANIFEST).read_text())
    assert m["legs"][0] == {"started": first["started"], "seconds": first["seconds"], "threads": 1,
                            "backends": first["backends"]}
    assert len(m["legs"]) == 2 and m["started"] == first["started"]
