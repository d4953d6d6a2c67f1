"""The `vdm3d` entry point: exit statuses for results, usage errors and Vdm3dError."""

import importlib.machinery
import sys
import types

import pytest

from vdm3d.cli import main as cli_main
from vdm3d.errors import InputError




@pytest.mark.parametrize("returned, status", [(None, 0), ({"psnr": 21.5}, 0), (0, 0), (1, 1), (True, 0)])
def test_a_returned_result_is_not_an_exit_status(monkeypatch, returned, status, fake_cli_command):
    fake_cli_command(lambda: returned)
    assert cli_main.main(["fake"]) == status


def test_vdm3d_error_is_one_sentence_and_status_2(monkeypatch, capsys, fake_cli_command):
    def fail():
        raise InputError(path="cams.json", field="frame 3 c2w", problem="has a NaN", fix="drop that frame")
    fake_cli_command(fail)
    assert cli_main.main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: cams.json: frame 3 c2w has a NaN; drop that frame."
    assert "Traceback" not in err


def test_debug_adds_the_traceback(monkeypatch, capsys, fake_cli_command):
    def fail():
        raise InputError("bad input.")
    fake_cli_command(fail)
    assert cli_main.main(["fake", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unknown_command_is_status_2(capsys):
    assert cli_main.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("argv, sentence", [
    (["object", "--image", "x.png", "--fit-steps", "nan"],
     "--fit-steps takes a whole number (INT), not 'nan'; pass a whole number, e.g. --fit-steps 200."),
    (["object", "--image", "x.png", "--lr-scale=abc"],
     "--lr-scale takes a number (FLOAT), not 'abc'; pass a number, e.g. --lr-scale 10.0."),
    (["fit", "scene", "--test-views", "1", "a"],
     "--test-views takes whole numbers ([INT [INT ...]]), not '1 a'; pass whole numbers."),
    (["object", "--image", "x.png", "--orbit", "bogus"],
     "--orbit takes one of sv3d-static, sv3d-dynamic, v3d, not 'bogus'; pass one of them."),
    (["fit", "scene", "--resume"], "--resume takes PATH but none was given; put it after --resume."),
    (["object", "--image", "-dash.png"],  # a value was given: the leading '-' made it a flag
     "--image -dash.png: a value that starts with '-' is read as a flag; write --image=-dash.png or "
     "--image ./-dash.png."),
    (["trajectory", "convert"], "input and --out are required; see `vdm3d trajectory convert --help`."),
    (["eval", "orbit", "--objects", "x"],
     "--objects takes a whole number (INT), not 'x'; pass a whole number, e.g. --objects 50."),
])
def test_a_flag_tyro_rejects_is_one_sentence_and_status_2(tmp_path, monkeypatch, capsys, argv, sentence):
    """A value of the wrong type, not among the choices, or missing gets the project's one sentence naming the
    option, the value and what it takes (not tyro's box), before any work."""
    monkeypatch.chdir(tmp_path)
    assert cli_main.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {sentence}\n" and captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m_runs_the_same_command_line(tmp_path):
    """``python -m vdm3d`` is the ``vdm3d`` script: it writes the same file and passes the exit status on."""
    import subprocess
    import sys

    out = tmp_path / "orbit.json"
    done = subprocess.run([sys.executable, "-m", "vdm3d", "trajectory", "make", "orbit", "--frames", "3", "--out",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and out.is_file(), done.stderr
    bad = subprocess.run([sys.executable, "-m", "vdm3d", "trajectory", "make", "orbit", "--frames", "3", "--out",
                          str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "already exists" in bad.stderr


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_keeps_the_checkpoint_says_so_and_exits_129(tmp_path, monkeypatch, capsys, fake_cli_command):
    """A closed terminal (or a dropped ssh connection) sends SIGHUP: it used to end the command by the signal,
    without a word; now it stops like Ctrl-C, through the run folder, with 128 + 1."""
    import os
    import signal

    from vdm3d.io.runs import RunFolder

    out = tmp_path / "run"

    def run():
        with RunFolder(out, command=["vdm3d", "fake"]) as folder:
            (folder.checkpoint_dir / "state.json").write_text("{}")
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(10_000_000):  # the handler's exception is raised in here
                pass

    fake_cli_command(run)
    hangups = []  # without vdm3d's handler the signal lands here instead of ending pytest
    previous = signal.signal(signal.SIGHUP, lambda *a: hangups.append(a))
    try:
        status = cli_main.main(["fake"])
    finally:
        assert signal.getsignal(signal.SIGHUP) is not None
        signal.signal(signal.SIGHUP, previous)
    assert hangups == [] and status == 129
    assert capsys.readouterr().err.strip() == (
        f"interrupted by SIGHUP: the checkpoint in {tmp_path / '.run.partial'} is kept; the same command with "
        "--resume continues from it.")
    assert (tmp_path / ".run.partial" / "checkpoints" / "state.json").is_file() and not out.exists()


def test_a_stopped_program_ignores_a_second_signal_while_it_exits(monkeypatch):
    """After `interrupted by SIGINT: ...`, a second Ctrl-C broke the exit handlers (Ray's shutdown) with a
    traceback: the program (main without argv) now ignores stop signals once it has answered the first one;
    main called with argv (a library or a test) leaves the handlers alone."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in cli_main.STOP_SIGNALS}
    try:
        monkeypatch.setattr(cli_main, "_main", lambda argv: 128 + int(signal.SIGINT))
        assert cli_main.main(["object"]) == 130
        assert all(signal.getsignal(sig) == before[sig] for sig in cli_main.STOP_SIGNALS)
        assert cli_main.main() == 130
        assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in cli_main.STOP_SIGNALS)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


_SELF_SIGNALLING = """
import os, signal, time

def main(argv, prog):
    for name in argv:  # the signals to send itself
        os.kill(os.getpid(), getattr(signal, name))
        end = time.monotonic() + 1.0  # a handler's exception would be raised in here: a second, not a count of
        while time.monotonic() < end:  # loop turns, which a loaded machine got through before the handler ran
            time.sleep(0.01)
    print("finished")
"""


@pytest.mark.parametrize("ignored", [name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(__import__("signal"), name)])
def test_a_signal_ignored_by_the_parent_stays_ignored(ignored, fake_command):
    """`nohup vdm3d ...` (SIGHUP), `vdm3d ... &` in a script (SIGINT) or a scheduler start the command with a
    stop signal ignored; vdm3d put its handler over it, so that very signal stopped the run. An inherited
    SIG_IGN is kept (the run finishes with 0); the signals not ignored still stop it the usual way."""
    import signal
    import subprocess

    other = "SIGTERM" if ignored != "SIGTERM" else "SIGINT"

    def ignore():
        # the child starts with exactly one signal ignored, whatever this test process inherited: pytest started
        # in the background by a non-interactive shell (`make test &` in a script, a CI job) has SIGINT ignored,
        # and the child would keep that too, so the SIGTERM case's SIGINT was lost there
        signal.signal(getattr(signal, other), signal.SIG_DFL)
        signal.signal(getattr(signal, ignored), signal.SIG_IGN)

    run = [sys.executable, "-c", fake_command(_SELF_SIGNALLING), "fake"]
    done = subprocess.run([*run, ignored], preexec_fn=ignore, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "finished\n", "")
    stopped = subprocess.run([*run, ignored, other], preexec_fn=ignore, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 128 + getattr(signal, other) and stopped.stdout == ""
    assert stopped.stderr.startswith(f"interrupted by {other}:")


def test_nested_commands_keep_an_ignored_signal_and_restore_the_others(monkeypatch, fake_cli_command):
    """A command run inside another (`vdm3d rerun` runs the recorded command through main) leaves an ignored
    signal ignored at both levels, and each level puts back the handlers it found."""
    import signal

    seen = []

    def outer():
        seen.append(("outer", signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))
        assert cli_main.main(["inner"]) == 0
        seen.append(("back", signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))

    fake_cli_command(outer)
    inner = types.ModuleType("vdm3d_inner_command")
    inner.__spec__ = importlib.machinery.ModuleSpec("vdm3d_inner_command", None)
    inner.main = lambda argv, prog: seen.append(("inner", signal.getsignal(signal.SIGINT),
                                                 signal.getsignal(signal.SIGTERM)))
    monkeypatch.setitem(sys.modules, "vdm3d_inner_command", inner)
    monkeypatch.setitem(cli_main.GROUPS, "inner", "vdm3d_inner_command")
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert cli_main.main(["fake"]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    (_, outer_int, outer_term), (_, inner_int, inner_term), (_, back_int, back_term) = seen
    assert outer_int is inner_int is back_int is signal.SIG_IGN
    assert callable(outer_term) and callable(inner_term) and back_term is outer_term
    assert inner_term is not outer_term  # the inner command's own handler, then the outer's again
