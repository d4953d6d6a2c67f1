"""Every `vdm3d eval` subcommand refuses an output location it cannot write before any work.

`eval orbit|warp|depth`, `object-orbit` and `stylize-noise` opened their run folder only after minutes of
sampling, and `eval complete` rendered its rooms into --work before opening --out; a --work under a file was
a NotADirectoryError traceback. Each case here replaces the first expensive step with one that fails the
test, so the refusal must come before it.
"""

from __future__ import annotations

import os

import pytest

from vdm3d.cli.main import main


def _no_work(*args, **kwargs):
    raise AssertionError("the evaluation started its work before checking where it writes")


@pytest.fixture
def no_work(monkeypatch):
    """The first expensive step of each evaluation fails the test when reached."""
    import vdm3d.eval.backbones
    import vdm3d.eval.complete
    import vdm3d.jobs.complete
    import vdm3d.models.registry
    import vdm3d.train.stylize

    for owner, name in ((vdm3d.eval.backbones, "_load"), (vdm3d.eval.backbones, "load_or_build"),
                        (vdm3d.models.registry, "load_backbone"), (vdm3d.train.stylize, "load_or_build_stylize"),
                        (vdm3d.jobs.complete, "load_backbone"), (vdm3d.eval.complete, "write_room_case")):
        monkeypatch.setattr(owner, name, _no_work)


SUBCOMMANDS = {
    "orbit": ["--objects", "1", "--steps", "1"],
    "warp": ["--rooms", "1", "--steps", "1"],
    "depth": ["--rooms", "1"],
    "object-orbit": ["--objects", "1", "--steps", "1"],
    "stylize-noise": ["--objects", "1", "--rooms", "0"],
    "complete": ["--rooms", "1", "--no-fern"],
}


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_an_out_under_a_file_is_refused_before_any_work(sub, tmp_path, monkeypatch, capsys, no_work):
    monkeypatch.chdir(tmp_path)  # complete's default --work is relative
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    out = blocker / "run"
    assert main(["eval", sub, *SUBCOMMANDS[sub], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out}: cannot write there, because {blocker} is a file, not a folder; "
                   "choose another --out.\n")
    assert blocker.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["results"]


@pytest.mark.parametrize("sub", ["orbit", "depth", "stylize-noise"])
def test_an_out_that_is_a_file_is_refused_before_any_work(sub, tmp_path, capsys, no_work):
    out = tmp_path / "results"
    out.write_text("not a folder")
    assert main(["eval", sub, *SUBCOMMANDS[sub], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: is a file, not a run folder") and err.count("\n") == 1, err
    assert out.read_text() == "not a folder"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a chmod 555 folder, so only the file-in-the-way cases can fail")
@pytest.mark.parametrize("sub", ["warp", "object-orbit"])
def test_an_out_in_a_read_only_folder_is_refused_before_any_work(sub, tmp_path, capsys, no_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["eval", sub, *SUBCOMMANDS[sub], "--out", str(locked / "run")]) == 2
        err = capsys.readouterr().err
        assert "because the folder" in err and "is not writable" in err and err.count("\n") == 1, err
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("sub, flags", [("complete", ["--rooms", "1", "--no-fern"]),
                                        ("complete-frames", ["--room", "0"])])
def test_a_work_folder_under_a_file_is_refused_before_any_work(sub, flags, tmp_path, capsys, no_work):
    """`--work` (where the rendered rooms go) under a file was a NotADirectoryError traceback, after the
    models had loaded."""
    blocker = tmp_path / "scenes"
    blocker.write_text("not a folder")
    assert main(["eval", sub, *flags, "--work", str(blocker / "w")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {blocker / 'w' / 'room_000'}: cannot write there, because {blocker} is a file, not a "
                   "folder; choose another --work.\n")
    assert "Traceback" not in err and blocker.read_text() == "not a folder"


def test_a_manifest_out_under_a_file_is_refused_before_any_case(tmp_path, capsys, no_work):
    """`vdm3d eval SUB --manifest CASES --out DIR` with a file in the way was a NotADirectoryError traceback
    from the batch runner's log folder."""
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: a\n    options: {rooms: 1}\n")
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    expected = {blocker: f"error: {blocker}: is a file, not a folder; choose another --out.\n",  # as vdm3d batch
                blocker / "batch": f"error: {blocker / 'batch'}: cannot write there, because {blocker} is a file, "
                                   "not a folder; choose another --out.\n"}
    for out, sentence in expected.items():
        assert main(["eval", "depth", "--manifest", str(cases), "--no-ray", "--out", str(out)]) == 2
        assert capsys.readouterr().err == sentence
    assert blocker.read_text() == "not a folder"
