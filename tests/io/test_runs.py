"""RunFolder: results appear only when complete, with a manifest; failures leave nothing (or a resumable checkpoint)."""

import dataclasses
import enum
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm3d.errors import (CameraError, ConfigError, InputError, Interrupted, MissingWeightsError, OutputError,
                          OutputExistsError, UnsafeCheckpointError)
from vdm3d.io.runs import MANIFEST, RunFolder, atomic_write_bytes, atomic_write_json, file_sha256, to_jsonable


class Mode(enum.Enum):
    FAST = "fast"


@dataclasses.dataclass(frozen=True)
class Cfg:
    steps: int = 3
    mode: Mode = Mode.FAST
    data: Path = Path("x")


def test_success_writes_manifest_and_renames(tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("hello")
    out = tmp_path / "run"
    with RunFolder(out, config=Cfg(), seed=7, inputs=[inp], command=["vdm3d", "fit"]) as run:
        assert run.path != out and run.path.name.startswith(".")
        (run.path / "result.txt").write_text("42")
        run.record(perceptual="ms-ssim")
        assert not out.exists()
    assert (out / "result.txt").read_text() == "42"
    m = json.loads((out / MANIFEST).read_text())
    assert m["format"] == "vdm3d.run" and m["seed"] == 7 and m["command"] == ["vdm3d", "fit"]
    assert m["config"] == {"steps": 3, "mode": "fast", "data": "x"} and m["config_type"] == "Cfg"
    assert m["inputs"][str(inp)] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"  # sha256("hello")
    assert m["perceptual"] == "ms-ssim" and "torch" in m["packages"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failure_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with RunFolder(out) as run:
            (run.path / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failure_removes_the_folders_it_made_for_out(tmp_path):
    """``--out new/deeper/run`` that fails leaves no empty ``new/``; a folder that was there stays."""
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "new" / "deeper" / "run", tmp_path / "kept" / "made" / "run"):
        with pytest.raises(InputError):
            with RunFolder(out):
                raise InputError("bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_messages_spell_the_resume_of_a_job_whose_resume_names_the_run(tmp_path):
    """fit and complete take ``--resume RUN``: their messages must give a command that works."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as info:
        with RunFolder(out, config=Job(), resume_flag=f"--resume {out}") as run:
            (run.checkpoint_dir / "state").write_text("x")
            raise KeyboardInterrupt
    assert info.value.outcome.endswith(f"the same command with --resume {out} continues from it")
    with pytest.raises(OutputExistsError, match=f"pass --resume {out} to continue it"):
        RunFolder(out, config=Job(), resume_flag=f"--resume {out}").__enter__()


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as run:
        (run.path / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with RunFolder(out):
            pass
    assert (out / "old.txt").exists()
    with RunFolder(out, overwrite=True) as run:
        (run.path / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no .old / .partial left


def test_overwrite_replaces_only_a_run_folder_and_an_empty_folder_is_used(tmp_path):
    """``--out ~ --overwrite`` must not delete a home folder: a folder without a manifest is refused, named,
    and left alone; a file too. An existing empty folder needs no ``--overwrite``."""
    mine = tmp_path / "thesis"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "thesis.tex").write_text("precious")
    (mine / "notes.txt").write_text("hi")
    with pytest.raises(OutputExistsError, match=r"thesis: --overwrite replaces only a folder a vdm3d run wrote "
                                                r"\(with its manifest.json\), and this one holds other files \(notes.txt, sub\)"):
        RunFolder(mine, overwrite=True).__enter__()
    assert (mine / "sub" / "thesis.tex").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    for overwrite in (False, True):  # with or without --overwrite: the advice is the same, and true
        with pytest.raises(OutputExistsError, match=r"file: is a file, not a run folder .*; choose another --out"):
            RunFolder(tmp_path / "file", overwrite=overwrite).__enter__()
    (tmp_path / "empty").mkdir()
    with RunFolder(tmp_path / "empty") as run:
        (run.path / "r.txt").write_text("r")
    assert (tmp_path / "empty" / "r.txt").is_file()
    assert not (tmp_path / ".thesis.partial").exists() and not (tmp_path / ".file.partial").exists()


def test_overwrite_needs_a_vdm3d_manifest_not_any_manifest_json(tmp_path):
    """``manifest.json`` is a common name (a web app's, a browser extension's): a project folder holding one was
    taken for a finished run, and ``--overwrite`` deleted the whole folder. Only a vdm3d run's manifest counts;
    without ``--overwrite`` such a folder is not offered for it either."""
    mine = tmp_path / "webapp"
    (mine / "docs").mkdir(parents=True)
    (mine / "docs" / "thesis.txt").write_text("precious")
    (mine / MANIFEST).write_text(json.dumps({"name": "my web app", "start_url": "/"}))
    with pytest.raises(OutputExistsError, match=r"webapp: --overwrite replaces only a folder a vdm3d run wrote "
                                                r"\(with its manifest.json\), and this one holds a manifest.json that "
                                                r"is not a vdm3d run's, and other files \(docs, manifest.json\); "
                                                r"choose another --out"):
        RunFolder(mine, overwrite=True).__enter__()
    assert (mine / "docs" / "thesis.txt").read_text() == "precious"
    with pytest.raises(OutputExistsError, match=r"already holds files that are not a vdm3d run \(docs, manifest.json\)"):
        RunFolder(mine).__enter__()
    (mine / MANIFEST).write_text("not json")
    with pytest.raises(OutputExistsError, match=r"is not a vdm3d run's"):
        RunFolder(mine, overwrite=True).__enter__()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["webapp"]  # no partial folder, no lock left


def test_links_planted_beside_out_are_refused_not_followed(tmp_path):
    """The lock file ``.run.lock`` was opened through a link and truncated to the pid: a planted
    ``.run.lock -> victim`` emptied the victim. A linked ``.run.partial`` was an rmtree traceback (and a resume's
    writes went where it pointed); a linked ``.run.old`` failed the final rename. Each link is refused or
    removed, never followed."""
    victim = tmp_path / "victim.txt"
    victim.write_text("important")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "file").write_text("keep")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / ".run.lock").symlink_to(victim)
    with pytest.raises(OutputError, match=r"\.run\.lock: is a symbolic link where vdm3d keeps the lock file of "
                                          r".*run \(the file it points to would be overwritten\); remove the link"):
        RunFolder(runs / "run").__enter__()
    assert victim.read_text() == "important"
    (runs / ".run.lock").unlink()
    (runs / ".run.partial").symlink_to(elsewhere, target_is_directory=True)
    for resume in (False, True):
        with pytest.raises(OutputError, match=r"\.run\.partial: is a symbolic link where vdm3d writes the run"):
            RunFolder(runs / "run", resume=resume).__enter__()
    assert [p.name for p in elsewhere.iterdir()] == ["file"]
    (runs / ".run.partial").unlink()
    with RunFolder(runs / "run"):
        pass
    (runs / ".run.old").symlink_to(elsewhere, target_is_directory=True)
    with RunFolder(runs / "run", overwrite=True) as run:
        (run.path / "new.txt").write_text("new")
    assert sorted(p.name for p in runs.iterdir()) == ["run"] and (runs / "run" / "new.txt").is_file()
    assert [p.name for p in elsewhere.iterdir()] == ["file"] and victim.read_text() == "important"


def test_a_resume_refuses_links_planted_inside_the_partial_folder(tmp_path):
    """A resume wrote into its partial folder through links someone had put there (``checkpoints/state ->
    ~/.bashrc``, a linked sub-folder), outside the run. It is refused before anything is written there, naming
    the first link; the checkpoint is kept, and --overwrite starts again, removing the links, not their targets."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("important")
    out = tmp_path / "runs" / "run"
    _interrupted(out, Job(), [])
    partial = tmp_path / "runs" / ".run.partial"
    (partial / "checkpoints" / "note").symlink_to(victim)
    (partial / "cases").symlink_to(outside, target_is_directory=True)
    before = {p.name: p.stat().st_mtime_ns for p in partial.rglob("*") if not p.is_symlink()}
    with pytest.raises(OutputError) as err:
        RunFolder(out, config=Job(), resume=True).__enter__()
    assert str(err.value) == (f"{partial / 'cases'}: is a symbolic link inside the interrupted run's folder "
                              f"{partial}, through which the resumed run would write outside {out}; remove it (and "
                              "the 1 other link there), or run again without --resume (and with --overwrite) to "
                              "start again.")
    assert victim.read_text() == "important" and [p.name for p in outside.iterdir()] == ["victim.txt"]
    assert {p.name: p.stat().st_mtime_ns for p in partial.rglob("*") if not p.is_symlink()} == before  # no write
    assert (partial / "checkpoints" / "state").read_bytes() == b"half"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".run.partial"]  # no lock file left
    (partial / "cases").unlink()
    with pytest.raises(OutputError, match=r"checkpoints/note: is a symbolic link .*; remove it, or run again"):
        RunFolder(out, config=Job(), resume=True).__enter__()
    with RunFolder(out, config=Job(), overwrite=True) as run:  # starting again removes the link, not the file
        (run.path / "result.txt").write_text("new")
    assert victim.read_text() == "important" and not any(p.is_symlink() for p in out.rglob("*"))


def test_the_same_command_without_resume_keeps_the_checkpoint(tmp_path):
    """Up-arrow and Enter after Ctrl-C must not throw the kept checkpoint away: refused with the two ways
    on; ``--overwrite`` discards it and starts again."""
    out = tmp_path / "run"
    _interrupted(out, Job(), [])
    with pytest.raises(OutputExistsError, match=r"an interrupted run left its checkpoint in .*\.run\.partial; pass "
                                                r"--resume to continue it, or --overwrite to discard it"):
        RunFolder(out, config=Job()).__enter__()
    assert (tmp_path / ".run.partial" / "checkpoints" / "state").is_file()
    with RunFolder(out, config=Job(), overwrite=True) as run:
        assert not run.resuming and not (run.path / "checkpoints").exists()


def test_checkpoint_kept_on_crash_and_resumed(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyError):
        with RunFolder(out) as run:
            (run.checkpoint_dir / "step_10.pt").write_bytes(b"state")
            raise KeyError("crash")
    assert (tmp_path / ".run.partial" / "checkpoints" / "step_10.pt").exists()
    with RunFolder(out, resume=True) as run:
        assert run.resuming
        assert (run.checkpoint_dir / "step_10.pt").read_bytes() == b"state"
    assert (out / "checkpoints" / "step_10.pt").exists() and not (tmp_path / ".run.partial").exists()


@dataclasses.dataclass(frozen=True)
class Loop:
    steps: int = 10


@dataclasses.dataclass(frozen=True)
class Job:
    image: Path = Path("x")
    fit_steps: int = 3
    loop: Loop = Loop()
    resume: bool = False


def _interrupted(out, config, inputs):
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(out, config=config, inputs=inputs) as run:
            (run.checkpoint_dir / "state").write_bytes(b"half")
            raise KeyboardInterrupt
    assert (out.parent / f".{out.name}.partial" / "checkpoints" / "state").is_file()


def test_resume_refuses_other_options_or_changed_inputs_and_keeps_the_checkpoint(tmp_path):
    """A resumed run is never a mix of two runs: other options (named, old and new value; nested fields by
    their flag) or an input file changed in place refuse the resume with one sentence, and the interrupted
    run's checkpoint is kept; the same command resumes; fields in ``may_change`` may differ."""
    image, out = tmp_path / "cup.png", tmp_path / "run"
    image.write_bytes(b"cup")
    _interrupted(out, Job(image), [image])
    partial = tmp_path / ".run.partial"
    with pytest.raises(ConfigError, match=r"other options \(it had --fit-steps 3; this command gives 5\)"):
        RunFolder(out, config=Job(image, fit_steps=5, resume=True), inputs=[image], resume=True).__enter__()
    with pytest.raises(ConfigError, match=r"it had --loop.steps 10; this command gives 20"):
        RunFolder(out, config=Job(image, loop=Loop(20)), inputs=[image], resume=True).__enter__()
    image.write_bytes(b"cat")  # the user edits the image in place
    with pytest.raises(InputError, match=r"cup.png: changed since the interrupted run in .*run started; put the original"):
        RunFolder(out, config=Job(image), inputs=[image], resume=True).__enter__()
    assert (partial / "checkpoints" / "state").read_bytes() == b"half"  # nothing lost
    image.write_bytes(b"cup")
    with RunFolder(out, config=Job(image, loop=Loop(20), resume=True), inputs=[image], resume=True,
                   may_change=("loop",)) as run:
        assert run.resuming
    assert not (out / "start.json").exists()  # only an unfinished run carries it
    assert json.loads((out / MANIFEST).read_text())["inputs"] == {str(image): file_sha256(image)}


def test_bad_input_never_keeps_partial(tmp_path):
    with pytest.raises(InputError):
        with RunFolder(tmp_path / "run") as run:
            (run.checkpoint_dir / "x").write_bytes(b"")
            raise InputError(path="a.png", problem="is corrupt", fix="re-export it")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="does not exist"):
        with RunFolder(tmp_path / "run", inputs=[tmp_path / "missing.png"]):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [ConfigError("--style-lora.single-blocks 1 2: the transformer has none."),
                                   UnsafeCheckpointError("unet.bin: pickle weights."),
                                   CameraError("path.json: a camera is not orthonormal.")])
def test_an_error_the_same_command_meets_again_discards_the_checkpoint(tmp_path, error):
    """A late bad option or input (raised after a checkpoint was written) leaves no partial folder, so the
    next run with the fixed option is not refused as "an interrupted run"."""
    out = tmp_path / "run"
    with pytest.raises(type(error)):
        with RunFolder(out, config=Job()) as run:
            (run.checkpoint_dir / "state").write_bytes(b"half")
            raise error
    assert list(tmp_path.iterdir()) == []
    with RunFolder(out, config=Job(fit_steps=4)) as run:
        assert not run.resuming
    assert (out / MANIFEST).is_file()


@pytest.mark.parametrize("error", [KeyboardInterrupt(), Interrupted(15),
                                   OutputError("run/splats.ply: cannot write there (No space left on device)."),
                                   MissingWeightsError("svd-xt: weights not found."), RuntimeError("CUDA OOM")])
def test_a_failure_a_resume_gets_past_keeps_the_checkpoint(tmp_path, error):
    """Interrupts, a full disk, weights still to download and crashes keep the checkpoint, and the same
    command with --resume continues from it; a resumed run keeps it whatever the failure."""
    out = tmp_path / "run"
    with pytest.raises(type(error)):
        with RunFolder(out, config=Job()) as run:
            (run.checkpoint_dir / "state").write_bytes(b"half")
            raise error
    assert (tmp_path / ".run.partial" / "checkpoints" / "state").read_bytes() == b"half"
    with pytest.raises(ConfigError):
        with RunFolder(out, config=Job(), resume=True) as run:
            assert run.resuming
            raise ConfigError("a late bad option while resuming.")
    assert (tmp_path / ".run.partial" / "checkpoints" / "state").read_bytes() == b"half"
    with RunFolder(out, config=Job(), resume=True) as run:
        assert (run.checkpoint_dir / "state").read_bytes() == b"half"


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_json(p, {"a": np.float32(1.5), "b": torch.tensor([1, 2]), "c": Path("z")})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": [1, 2], "c": "z"}
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")  # type: ignore[arg-type]
    assert json.loads(p.read_text())["a"] == 1.5
    assert [q.name for q in tmp_path.iterdir()] == ["f.json"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert oct(p.stat().st_mode & 0o777) == oct(0o666 & ~mask)
    assert file_sha256(p) == file_sha256(p) and len(file_sha256(p)) == 64


def test_to_jsonable_handles_config_types():
    assert to_jsonable({"t": (1, 2), 3: {Mode.FAST}, "n": np.arange(2)}) == {"t": [1, 2], "3": ["fast"], "n": [0, 1]}


def test_a_file_added_to_or_gone_from_an_input_folder_refuses_the_resume(tmp_path):
    """A scene folder's photos are inputs too: a photo added or removed since the interruption is named."""
    scene, out = tmp_path / "scene", tmp_path / "run"
    scene.mkdir()
    (scene / "a.png").write_bytes(b"a")
    _interrupted(out, Job(scene), [scene])
    (scene / "b.png").write_bytes(b"b")
    with pytest.raises(InputError, match=r"b.png: is new since the interrupted run in .*run started"):
        RunFolder(out, config=Job(scene), inputs=[scene], resume=True).__enter__()
    (scene / "b.png").unlink()
    (scene / "a.png").unlink()
    (scene / "c.png").write_bytes(b"c")
    with pytest.raises(InputError, match=r"a.png: is gone since the interrupted run in .*run started"):
        RunFolder(out, config=Job(scene), inputs=[scene], resume=True).__enter__()


def test_continuing_a_finished_run_checks_it_against_its_manifest(tmp_path):
    """A trainer's ``--resume`` on a finished run (more steps) starts from its copied checkpoints, with no
    start.json: its options are compared with the finished run's manifest instead (``loop`` may change; a
    field the manifest has and the command no longer has, such as an old run's clock, is not compared)."""
    out = tmp_path / "run"
    with RunFolder(out, config=Job(fit_steps=3)) as run:
        (run.checkpoint_dir / "state").write_bytes(b"done")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["config"]["start"] = 1796060000.0  # what trainers recorded before they kept only their options
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"other options \(it had --fit-steps 3; this command gives 8\)"):
        RunFolder(out, config=Job(fit_steps=8), resume=True, overwrite=True, may_change=("loop",),
                  continue_from=out / "checkpoints").__enter__()
    assert not (tmp_path / ".run.partial").exists()  # a refused resume copies nothing (it blocked the next one)
    with RunFolder(out, config=Job(fit_steps=3, loop=Loop(50)), resume=True, overwrite=True,
                   may_change=("loop",), continue_from=out / "checkpoints") as run:
        assert run.resuming and (run.checkpoint_dir / "state").read_bytes() == b"done"


def test_resume_refusals_name_the_flag_as_typed_and_a_finished_run(tmp_path):
    """fit's nested options have no prefix: a refusal named `--fit.steps`, which fit does not have. And
    `--resume` on a finished run suggested --overwrite as if the folder were someone else's."""
    from vdm3d.jobs.fit import FitJobConfig
    from vdm3d.recon.trainer import FitConfig

    scene, out = tmp_path / "scene", tmp_path / "run"
    scene.mkdir()
    (scene / "a.txt").write_text("a")
    _interrupted(out, FitJobConfig(data=scene, fit=FitConfig(steps=1000)), [scene])
    with pytest.raises(ConfigError, match=r"other options \(it had --steps 1000; this command gives 1200\)"):
        RunFolder(out, config=FitJobConfig(data=scene, fit=FitConfig(steps=1200)), inputs=[scene],
                  resume=True).__enter__()
    with RunFolder(out, config=FitJobConfig(data=scene, fit=FitConfig(steps=1000)), inputs=[scene], resume=True):
        pass
    with pytest.raises(OutputExistsError, match=r"run: that run has finished .* nothing to resume"):
        RunFolder(out, config=FitJobConfig(data=scene, fit=FitConfig(steps=1000)), inputs=[scene],
                  resume=True).__enter__()


def test_a_second_run_into_the_same_folder_at_once_is_refused(tmp_path):
    """Two runs with the same --out at the same time mixed their files under one manifest (the second
    removed the first's partial folder); the second is now refused, naming the first's pid."""
    out = tmp_path / "same"
    with RunFolder(out, config=Cfg()) as first:
        (first.path / "a.txt").write_text("first")
        with pytest.raises(OutputExistsError, match=rf"another vdm3d run \(pid {os.getpid()}\) is writing"):
            RunFolder(out, config=Cfg(steps=4), overwrite=True).__enter__()
        assert (first.path / "a.txt").read_text() == "first"
    assert (out / "a.txt").read_text() == "first" and not (tmp_path / ".same.lock").exists()
    with RunFolder(out, config=Cfg(), overwrite=True):  # once the first is done, the folder is free again
        pass


def test_a_symlinked_out_writes_into_the_folder_it_points_to(tmp_path):
    """`--out link` with link -> a folder on another disk replaced the link by a folder beside it (and left
    a `.link.old` link); the run now goes into the target, and the link keeps pointing at it."""
    target, link = tmp_path / "disk" / "target", tmp_path / "link"
    target.mkdir(parents=True)
    link.symlink_to(target)
    with RunFolder(link, config=Cfg()) as run:
        assert run.path.parent == target.parent
        (run.path / "x.txt").write_text("x")
    assert link.is_symlink() and (target / "x.txt").read_text() == "x" and (target / MANIFEST).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "link"]


def test_an_out_name_too_long_for_its_partial_folder_is_one_sentence(tmp_path):
    """A 250-byte --out name is legal but its `.NAME.partial` is not: one sentence with the longest name
    that works here, and nothing made."""
    out = tmp_path / "new" / ("a" * 250)
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    with pytest.raises(OutputError, match=rf"name is 250 bytes.*choose a --out name of at most {limit - 9} bytes"):
        RunFolder(out, config=Cfg()).__enter__()
    assert not (tmp_path / "new").exists()
    with RunFolder(tmp_path / ("b" * (limit - 9)), config=Cfg()):
        pass


def test_a_full_disk_is_one_sentence_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    """No space left: atomic writes keep the old file and remove their temporary one; a run says whether
    its checkpoint was kept and how to continue, instead of errno's traceback."""
    import errno

    from vdm3d.errors import DiskFullError

    target = tmp_path / "a.json"
    atomic_write_bytes(target, b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=r"a.json: the disk is full \(No space left on device\); free space"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    monkeypatch.undo()
    out = tmp_path / "run"
    with pytest.raises(DiskFullError, match=r"run: the disk is full .*; the checkpoint in .*\.run\.partial is kept: "
                                            r"free space, then run the same command with --resume RUN to continue"):
        with RunFolder(out, config=Cfg(), resume_flag="--resume RUN") as run:
            (run.checkpoint_dir / "state").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(run.path / "splats.ply"))
    assert (tmp_path / ".run.partial" / "checkpoints" / "state").read_bytes() == b"half"
    with pytest.raises(DiskFullError, match=r"nothing of .*run2 was kept: free space and run it again"):
        with RunFolder(tmp_path / "run2", config=Cfg()):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")


def test_a_resume_from_another_folder_or_a_moved_project_takes_paths_spelled_another_way(tmp_path, monkeypatch):
    """The same files spelled absolutely (or from another working directory), or the project copied
    elsewhere and resumed there, is the same run: its stages load; a file of other content is still refused."""
    import shutil

    project = tmp_path / "proj"
    (project / "in").mkdir(parents=True)
    (project / "in" / "cup.png").write_bytes(b"cup")
    monkeypatch.chdir(project)
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(Path("runs/cup"), config=Job(Path("in/cup.png")), inputs=[Path("in/cup.png")]) as run:
            run.save_stage("orbit", {"x": torch.ones(2)})
            raise KeyboardInterrupt
    monkeypatch.chdir(tmp_path)  # the same folder, spelled from elsewhere
    with RunFolder(project / "runs" / "cup", config=Job(project / "in" / "cup.png"),
                   inputs=[project / "in" / "cup.png"], resume=True) as run:
        assert run.resuming and torch.equal(run.load_stage("orbit")[0]["x"], torch.ones(2))
    assert (project / "runs" / "cup" / MANIFEST).is_file()

    shutil.rmtree(project / "runs")  # interrupted again, then the project copied elsewhere
    monkeypatch.chdir(project)
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(Path("runs/cup"), config=Job(Path("in/cup.png")), inputs=[Path("in/cup.png")]) as run:
            run.save_stage("orbit", {"x": torch.ones(2)})
            raise KeyboardInterrupt
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    monkeypatch.chdir(tmp_path)
    with RunFolder(copy / "runs" / "cup", config=Job(copy / "in" / "cup.png"), inputs=[copy / "in" / "cup.png"],
                   resume=True) as run:
        assert torch.equal(run.load_stage("orbit")[0]["x"], torch.ones(2))
    (project / "in" / "other.png").write_bytes(b"cat")
    with pytest.raises(ConfigError, match=r"it had --image \"in/cup.png\"; this command gives .*other.png"):
        RunFolder(project / "runs" / "cup", config=Job(project / "in" / "other.png"),
                  inputs=[project / "in" / "other.png"], resume=True).__enter__()


def test_vdm3d_own_files_are_inputs_by_package_name(tmp_path, monkeypatch):
    """The shipped weights were keyed by their install path, so a resume after moving or reinstalling vdm3d
    was refused ("put the original back") and rerun listed them as new and gone; they are keyed by their place
    in the package, and weights that really changed are said to be vdm3d's own."""
    from vdm3d.io import runs
    from vdm3d.models.tiny import WEIGHTS_DIR

    weights = WEIGHTS_DIR / "vae.json"
    assert runs.input_name(weights) == "vdm3d:models/tiny/weights/vae.json"
    assert runs.input_name(tmp_path / "cup.png") == str(tmp_path / "cup.png")
    out = tmp_path / "run"
    _interrupted(out, Job(), [weights])
    with RunFolder(out, config=Job(), inputs=[weights], resume=True) as run:  # the same package: same input
        assert run.resuming
    out = tmp_path / "again"
    _interrupted(out, Job(), [weights])
    start = json.loads((tmp_path / ".again.partial" / "start.json").read_text())
    start["inputs"]["vdm3d:models/tiny/weights/vae.json"] = "0" * 64  # what an older vdm3d shipped
    (tmp_path / ".again.partial" / "start.json").write_text(json.dumps(start))
    with pytest.raises(InputError, match=r"other weights of vdm3d's own \(models/tiny/weights/vae.json changed: vdm3d "
                                         r"was upgraded or its models retrained since\)"):
        RunFolder(out, config=Job(), inputs=[weights], resume=True).__enter__()


def test_a_library_error_that_says_the_disk_is_full_is_one_sentence(tmp_path):
    """safetensors raises its own SafetensorError (not an OSError) for a full disk: explore and stylize
    ended in its traceback."""
    from vdm3d.errors import DiskFullError

    class SafetensorError(Exception):
        pass

    with pytest.raises(DiskFullError, match=r"run: the disk is full \(No space left on device\); the checkpoint"):
        with RunFolder(tmp_path / "run", config=Cfg()) as run:
            (run.checkpoint_dir / "state").write_bytes(b"half")
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                                  '"No space left on device" })')


def test_a_first_checkpoint_that_was_not_written_keeps_nothing(tmp_path):
    """The disk filled up while the first checkpoint was written (its temp file removed): only start.json and an
    empty checkpoints/ were there, and the sentence said "the checkpoint ... is kept ... --resume", for a resume
    that started from zero. A written checkpoint, or a finished case beside it (data make), is still kept."""
    import errno

    from vdm3d.errors import DiskFullError

    out = tmp_path / "run"
    with pytest.raises(DiskFullError, match=rf"^{out}: the disk is full \(No space left on device\); nothing of "
                                            rf"{out} was kept: free space and run it again\.$"):
        with RunFolder(out, config=Cfg()) as run:
            run.checkpoint_dir  # noqa: B018 - the job asked for the folder, then its first write failed
            raise OSError(errno.ENOSPC, "No space left on device", str(run.checkpoint_dir / "state.safetensors"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    for kept in ("checkpoints/state.safetensors", "case_000000/scene.json"):
        with pytest.raises(DiskFullError, match="is kept: free space, then run the same command with --resume"):
            with RunFolder(out, config=Cfg()) as run:
                run.checkpoint_dir  # noqa: B018
                (run.path / kept).parent.mkdir(parents=True, exist_ok=True)
                (run.path / kept).write_bytes(b"x")
                raise OSError(errno.ENOSPC, "No space left on device")
        assert (tmp_path / ".run.partial" / kept).is_file()
        shutil.rmtree(tmp_path / ".run.partial")
