"""The batch folder (``--out``): refused in one sentence when it cannot be written, and locked while a batch
runs into it, so that a second batch into the same folder is refused instead of running the same cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vdm3d.batch import runner
from vdm3d.cli.main import main
from vdm3d.io import runs
from vdm3d.io.runs import lock_path, lock_run, unlock_run

SRC = Path(__file__).resolve().parents[2] / "src"


def _manifest(tmp_path: Path) -> Path:
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"name": n, "job": "trajectory", "argv": ["make", "orbit"]})
                                              + "\n" for n in "ab"))
    return tmp_path / "m.jsonl"


@pytest.fixture
def ran(monkeypatch):
    """The cases the batch started (run_command faked: each writes its log and its run folder)."""
    calls = []

    def run_command(argv, log, threads, driver_pid=None, **_):
        calls.append(Path(log).stem)
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(f"$ vdm3d {' '.join(argv)}\n")
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "manifest.json").write_text('{"format": "vdm3d.run"}')
        return 0, 0.1, ""

    monkeypatch.setattr(runner, "run_command", run_command)
    return calls


def test_a_second_batch_into_the_same_folder_is_refused(tmp_path, ran, capsys):
    """Two `vdm3d batch` into one --out ran the same cases twice at once (each case failing in one of them);
    single runs were refused by their lock. The second batch is now refused before any case, naming the first."""
    out = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from vdm3d.io.runs import lock_run; held = lock_run(Path(sys.argv[1])); print('locked', "
                               "flush=True); time.sleep(60)", str(out), "batch"],
                              env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE, text=True)
    try:
        out.mkdir()
        assert holder.stdout.readline().strip() == "locked"
        assert main(["batch", str(_manifest(tmp_path)), "--out", str(out), "--no-ray"]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {out}: another vdm3d batch (pid {holder.pid}) is running into this folder now; wait for "
                   "it to finish, or choose another --out.")
    assert ran == [] and not (out / "batch.json").exists()
    # the lock goes with the batch: the next one runs, and leaves no lock file behind
    assert main(["batch", str(_manifest(tmp_path)), "--out", str(out), "--no-ray"]) == 0
    assert ran == ["a", "b"] and not lock_path(out).exists()


def test_a_file_in_the_out_path_is_one_sentence(tmp_path, ran, capsys):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "b", tmp_path / "afile"):
        # it was a NotADirectoryError traceback (a FileExistsError one for --out afile)
        assert main(["batch", str(_manifest(tmp_path)), "--out", str(out), "--no-ray"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {out}: ") and "is a file, not a folder; choose another --out." in err
        assert "Traceback" not in err and len(err.splitlines()) == 1
    assert ran == [] and (tmp_path / "afile").read_text() == "x"


def test_a_read_only_out_folder_is_one_sentence(tmp_path, ran, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    assert main(["batch", str(_manifest(tmp_path)), "--out", str(ro / "b"), "--no-ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {ro / 'b'}: cannot write there, because the folder {ro} is not writable; choose another "
                   "--out or fix the folder's permissions.")
    assert ran == [] and not any(ro.iterdir())


def test_a_batch_folder_whose_parent_is_not_writable_locks_inside_it(tmp_path, monkeypatch):
    """A batch into a writable folder under a read-only one (a mount point, a shared folder) still runs: its
    lock file goes inside the batch folder."""
    out = tmp_path / "b"
    out.mkdir()
    real = runs.lock_path
    monkeypatch.setattr(runs, "lock_path", lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if p == out else real(p))
    handle = runner.lock_batch(out)
    try:
        assert Path(handle.name) == out / ".batch.json.lock"
    finally:
        unlock_run(handle)


def test_the_lock_file_removed_between_open_and_flock_is_locked_again(tmp_path, monkeypatch):
    """A run ending (unlock_run removes the lock file) between another's open and its flock gave that other a
    lock on a file nobody could see: a third run then locked a new file, and both wrote the folder."""
    import fcntl

    out = tmp_path / "run"
    real, calls = fcntl.flock, []

    def flock(f, op):
        calls.append(op)
        if len(calls) == 1:
            lock_path(out).unlink()  # the holder's unlock_run, just before our flock
        return real(f, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    handle = lock_run(out)
    try:
        assert os.path.samestat(os.fstat(handle.fileno()), os.stat(lock_path(out)))
        assert lock_path(out).read_text() == str(os.getpid()) and len(calls) == 2
    finally:
        unlock_run(handle)


def test_out_dot_runs_and_locks_beside_the_folder(tmp_path, monkeypatch, capsys):
    """`--out .` named its lock file from the empty name: ``..lock`` inside the very folder, which a run into
    ``.`` then found there and refused as a folder holding other files."""
    here = tmp_path / "here"
    here.mkdir()
    manifest = _manifest(tmp_path)
    monkeypatch.chdir(here)
    seen = []

    def run_command(argv, log, threads, driver_pid=None, **_):
        seen.append(sorted(p.name for p in tmp_path.iterdir()) + sorted(p.name for p in here.iterdir()))
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text("$ vdm3d\n")
        (here / Path(argv[argv.index("--out") + 1])).mkdir()
        (here / Path(argv[argv.index("--out") + 1]) / "manifest.json").write_text('{"format": "vdm3d.run"}')
        return 0, 0.1, ""

    monkeypatch.setattr(runner, "run_command", run_command)
    assert main(["batch", str(manifest), "--out", ".", "--no-ray"]) == 0, capsys.readouterr().err
    assert ".here.lock" in seen[0] and "..lock" not in seen[0]  # held beside the folder while the batch runs
    assert lock_path(Path(".")) == tmp_path / ".here.lock"
    assert lock_path(Path("..")) == tmp_path.parent / f".{tmp_path.name}.lock"
    assert sorted(p.name for p in here.iterdir()) == ["a", "b", "batch.json", "logs"]
    assert not (tmp_path / ".here.lock").exists()


@pytest.mark.parametrize("kind", ["mount point", "dotdot"])
def test_a_case_out_that_cannot_be_a_run_folder_is_refused_before_any_case(tmp_path, ran, capsys, monkeypatch, kind):
    """A case whose `out` is a mount point ran to its end, then its rename into place failed (an EBUSY traceback
    in its log) and left its work in a .partial folder beside the mount point."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mnt or real(p))
    out = str(mnt) if kind == "mount point" else f"{tmp_path}/.."
    (tmp_path / "m.jsonl").write_text(json.dumps({"name": "a", "job": "trajectory", "argv": ["make", "orbit"],
                                                  "out": out}) + "\n")
    assert main(["batch", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "runs"), "--no-ray"]) == 2
    err = capsys.readouterr().err.strip()
    what = ("is a mount point, which cannot be replaced" if kind == "mount point" else
            "names the folder it is in, not a new one")
    assert err.startswith(f"error: {tmp_path / 'm.jsonl'}: line 1 out '{out}' {what}: ") and len(err.splitlines()) == 1
    assert err.endswith(f"give a folder inside it (such as out: {Path(out) / 'a'}).")
    assert ran == [] and not (tmp_path / "runs").exists() and not list(tmp_path.glob(".*"))


def test_a_foreign_folder_without_overwrite_is_not_said_to_have_had_it(tmp_path):
    """A batch case into a folder holding other files (a case runs without --overwrite unless the batch has it)
    read "--overwrite replaces only a folder a vdm3d run wrote", as if the flag had been given."""
    from vdm3d.errors import OutputExistsError
    from vdm3d.io.runs import RunFolder

    (tmp_path / "ob").mkdir()
    (tmp_path / "ob" / "notes.txt").write_text("hi")
    with pytest.raises(OutputExistsError) as refused:
        RunFolder(tmp_path / "ob").__enter__()
    assert str(refused.value) == (f"{tmp_path / 'ob'}: the output folder already holds files that are not a vdm3d "
                                  "run (notes.txt); choose another --out, or empty that folder yourself (--overwrite "
                                  "replaces only a folder a vdm3d run wrote).")
    with pytest.raises(OutputExistsError, match=r"ob: --overwrite replaces only a folder a vdm3d run wrote"):
        RunFolder(tmp_path / "ob", overwrite=True).__enter__()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ob"] and (tmp_path / "ob" / "notes.txt").is_file()


@pytest.mark.parametrize("out", [".", ".."])
def test_a_run_into_the_current_folder_is_one_clear_sentence(tmp_path, monkeypatch, out):
    """`vdm3d object --out .` was refused for the ``..lock`` it had put inside the folder itself ("holds other
    files (..lock)"); with the lock beside the folder, it ran to its end and failed its rename (EBUSY) with a
    traceback, leaving ``..partial`` inside. Now one sentence before anything is written."""
    from vdm3d.errors import OutputError
    from vdm3d.io.runs import RunFolder

    here = tmp_path / "a" / "here"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    with pytest.raises(OutputError) as refused:
        RunFolder(Path(out)).__enter__()
    assert str(refused.value) == (f"{out}: names the folder it is in, not a new one, and an output is written beside "
                                  "its place and moved there at the end; give a new folder inside it, such as --out "
                                  f"{Path(out) / 'run'}.")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["here"] and not any(here.iterdir())


def test_a_mount_point_out_is_refused_before_the_run(tmp_path, monkeypatch):
    from vdm3d.errors import OutputError
    from vdm3d.io.runs import RunFolder

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mnt or real(p))
    with pytest.raises(OutputError) as refused:
        RunFolder(mnt).__enter__()
    assert str(refused.value) == (f"{mnt}: is a mount point, which cannot be replaced, and an output is written "
                                  "beside its place and moved there at the end; give a new folder inside it, such as "
                                  f"--out {mnt / 'run'}.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_final_rename_that_fails_keeps_the_finished_run_and_says_where(tmp_path, monkeypatch, existing):
    """The final rename failing (EBUSY, EXDEV) was a traceback; the finished run is kept in its partial folder and
    the sentence says so, and an earlier run it was replacing stays where it was."""
    import errno

    from vdm3d.errors import OutputError
    from vdm3d.io import runs

    out = tmp_path / "run"
    if existing:
        with runs.RunFolder(out) as run:
            (run.path / "r.txt").write_text("old")
    real = os.replace

    def replace(src, dst):
        if Path(src).name == ".run.partial":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(runs.os, "replace", replace)
    with pytest.raises(OutputError) as refused:
        with runs.RunFolder(out, overwrite=existing) as run:
            (run.path / "r.txt").write_text("new")
    assert str(refused.value) == (f"{out}: the finished run could not be moved there (Invalid cross-device link); it "
                                  f"is complete in {tmp_path / '.run.partial'}: move that folder where you want it, "
                                  "or choose another --out next time.")
    assert (tmp_path / ".run.partial" / "r.txt").read_text() == "new"
    assert (tmp_path / ".run.partial" / "manifest.json").is_file()
    assert ((out / "r.txt").read_text() == "old") if existing else not out.exists()
    assert not (tmp_path / ".run.old").exists() and not (tmp_path / ".run.lock").exists()
