"""SIGTERM and Ctrl-C leave a resumable checkpoint or nothing, and say which; `vdm3d object` resumes
per stage to the byte-identical result; ``--resume`` on a folder that never ran is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vdm3d.jobs.object as object_job
from vdm3d.cli.main import main
from vdm3d.errors import ConfigError

SPOT = Path(__file__).resolve().parents[2] / "src" / "vdm3d" / "assets" / "spot.png"
SRC = Path(__file__).resolve().parents[2] / "src"
TINY_OBJECT = ["--frames", "6", "--steps", "2", "--resolution", "32", "--carve-resolution", "24", "--num-points", "200",
               "--max-gaussians", "500", "--mesh-resolution", "24", "--mesh-views", "6", "--turntable-frames", "2"]


def _object(out: Path, *extra: str, fit_steps: int = 40) -> list[str]:
    # One thread in every run, in-process or spawned: results are bit-identical only for the same thread
    # count, and the default follows OMP_NUM_THREADS, which the spawned runs set and pytest may not.
    return ["--threads", "1", "object", "--image", str(SPOT), "--out", str(out), *TINY_OBJECT, "--fit-steps", str(fit_steps), *extra]


def _spawn(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vdm3d.cli.main", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared: {proc.communicate()[1][-2000:]}"
        assert time.time() < end, f"{path} did not appear in {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_keeps_the_object_checkpoint_and_resume_is_byte_identical(tmp_path):
    # All three runs are fresh processes with the same environment, as a user's command and its --resume
    # are: the test worker's own process has run other tests before (a CI run once saw an in-process
    # reference differ from the resumed run by a few Gaussians, not reproduced here).
    # the fit keeps the killed run busy for seconds after its orbit checkpoint, so the kill lands before it ends
    steps = 1000
    reference = tmp_path / "reference"
    _, err = (ran := _spawn(_object(reference, fit_steps=steps), tmp_path)).communicate(timeout=300)
    assert ran.returncode == 0, err[-2000:]

    out = tmp_path / "killed"
    proc = _spawn(_object(out, fit_steps=steps), tmp_path)
    _wait_for(tmp_path / ".killed.partial" / "checkpoints" / "stage-orbit.safetensors", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted by SIGTERM: the checkpoint in") and "--resume" in last, err
    assert "Traceback" not in err
    assert not out.exists() and (tmp_path / ".killed.partial" / "checkpoints" / "stage-orbit.safetensors").is_file()

    _, err = (resumed := _spawn(_object(out, "--resume", fit_steps=steps), tmp_path)).communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    assert not (tmp_path / ".killed.partial").exists() and not (out / "checkpoints").exists()
    for name in ("splats.ply", "orbit/000.png", "orbit/005.png", "cameras/transforms.json"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
def test_sigterm_before_any_checkpoint_leaves_nothing_and_says_so(tmp_path, bad_inputs):
    # fit's first checkpoint comes after 5000 steps: the kill lands before it
    proc = _spawn(["fit", str(bad_inputs["scene"]), "--out", "run", "--steps", "100000", "--checkpoint-every",
                   "5000"], tmp_path)
    _wait_for(tmp_path / ".run.partial", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == ("interrupted by SIGTERM: no checkpoint had been written yet, so nothing "
                                            "of run was kept."), err
    assert sorted(os.listdir(tmp_path)) == []  # no empty hidden folder


def test_object_resumes_after_the_last_finished_stage(tmp_path, monkeypatch, capsys):
    calls = []
    real_fit = object_job.fit

    def interrupted_fit(*args, **kwargs):
        calls.append("fit")
        raise KeyboardInterrupt  # Ctrl-C during the fit stage

    monkeypatch.setattr(object_job, "fit", interrupted_fit)
    out = tmp_path / "run"
    assert main(_object(out)) == 130
    assert (tmp_path / ".run.partial" / "checkpoints" / "stage-orbit.safetensors").is_file()

    # other options: the checkpoint is not silently reused
    with pytest.raises(ConfigError, match="other options"):
        object_job.run_object(object_job.ObjectConfig(image=SPOT, out=out, resume=True, seed=5), progress=None)

    generated = []
    monkeypatch.setattr(object_job, "fit", real_fit)
    monkeypatch.setattr(object_job, "generate_orbit", lambda *a, **k: generated.append(1) or (_ for _ in ()).throw(
        AssertionError("the orbit stage ran again")))
    capsys.readouterr()
    assert main(_object(out, "--resume")) == 0
    assert generated == [] and (out / "splats.ply").is_file() and not (tmp_path / ".run.partial").exists()
    said = capsys.readouterr().out
    assert "orbit: the interrupted run's frames (checkpoint), not sampled again" in said  # not "sampling" again
    assert "orbit clip of frames" not in said
    assert "fit: the interrupted run's Gaussians" not in said  # the fit had not finished: it ran


def test_object_interrupted_in_its_second_fit_resumes_with_the_regenerated_orbit(tmp_path, monkeypatch, capsys):
    """Guided regeneration checkpoints its frames: a run stopped in the second fit neither fits the first time
    nor samples the regeneration again on --resume."""
    real_fit, fits = object_job.fit, []

    def second_fit_interrupted(*args, **kwargs):
        fits.append(1)
        if len(fits) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second fit
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(object_job, "fit", second_fit_interrupted)
    out = tmp_path / "run"
    assert main(_object(out)) == 130
    assert (tmp_path / ".run.partial" / "checkpoints" / "stage-regenerate.safetensors").is_file()

    fits.clear()
    monkeypatch.setattr(object_job, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    monkeypatch.setattr(object_job, "regenerate", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("the regeneration ran again")))
    capsys.readouterr()
    assert main(_object(out, "--resume")) == 0
    said = capsys.readouterr().out
    assert fits == [1] and (out / "splats.ply").is_file()  # only the second fit ran
    assert "regenerate: the interrupted run's frames (checkpoint), not sampled again" in said
    assert "regenerate: the fit's renders sampled again" not in said

@pytest.mark.parametrize("argv", [["object", "--image", str(SPOT), "--resume"], ["fit", "{scene}", "--resume"]])
def test_resume_on_a_folder_that_never_ran_is_refused(argv, bad_inputs, tmp_path, capsys):
    out = tmp_path / "never"
    argv = [a.replace("{scene}", str(bad_inputs["scene"])) for a in argv]
    argv = argv + ["--out", str(out)] if argv[0] == "object" else argv + [str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--resume found no interrupted run" in err and str(out) in err
    assert sorted(os.listdir(tmp_path)) == []


def test_a_signal_whose_exception_c_code_drops_is_raised_again(monkeypatch):
    # Python prints and drops an exception raised inside a ctypes callback (as when SIGTERM lands while
    # numba compiles); the CLI's handler remembers the signal so the next loop step raises it again.
    import ctypes

    from vdm3d import errors
    from vdm3d.cli.main import _terminate_as_interrupt

    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)  # what Python would print as a traceback
    restore = _terminate_as_interrupt()
    try:
        @ctypes.CFUNCTYPE(None)
        def callback():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs in here, and its exception is dropped with the callback's
                pass

        callback()
        assert errors.pending_signal == signal.SIGTERM
        assert dropped == []  # no traceback printed for it
        with pytest.raises(errors.Interrupted):
            errors.raise_if_interrupted()
    finally:
        restore()
    assert errors.pending_signal is None and sys.unraisablehook == dropped.append
    errors.raise_if_interrupted()  # nothing pending once the command is over


def test_a_second_signal_does_not_cut_the_run_folders_cleanup_short(tmp_path, monkeypatch):
    # A batch case can be stopped twice (its worker's death signal, then its driver's terminate): the
    # second SIGTERM lands while the run folder removes itself, and must not leave half of it behind.
    import shutil

    import vdm3d.io.runs as runs
    from vdm3d import errors
    from vdm3d.cli.main import _terminate_as_interrupt

    real_rmtree, signalled = shutil.rmtree, []

    def rmtree_with_a_second_signal(path, *args, **kwargs):
        signalled.append(path)
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before the removal starts
        return real_rmtree(path, *args, **kwargs)

    restore = _terminate_as_interrupt()
    try:
        with pytest.raises(errors.Interrupted) as caught:
            with runs.RunFolder(tmp_path / "run", config={"a": 1}, command=["vdm3d"]) as run:
                (run.path / "frames").mkdir()
                (run.path / "frames" / "0000.png").write_bytes(b"not a checkpoint")
                monkeypatch.setattr(runs.shutil, "rmtree", rmtree_with_a_second_signal)
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(10_000_000):  # the first signal's exception is raised in here
                    pass
        assert caught.value.signum == signal.SIGTERM and len(signalled) == 1
        assert "nothing of" in caught.value.outcome
    finally:
        restore()
    assert sorted(os.listdir(tmp_path)) == []  # no partial folder left: a batch sees "todo", not "restart"
