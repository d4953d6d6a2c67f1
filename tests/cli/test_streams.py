"""Where the `vdm3d` program writes, and what happens when nobody reads: a stdout that is closed (``>&-``) or
whose reader has gone (``| head``) drops the output and the command runs to its end with its own status
(docs/errors.md, *Streams and exit status*)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# A command `fake` that prints progress, then writes its result file, then prints its result line; the test
# passes the file's path. It also says which descriptor that file got.
_FAKE_JOB = """
def main(argv, prog):
    for i in range(3):
        print(f"step {i + 1}/3", flush=True)
    with open(argv[0], "w") as f:
        f.write(f"fd {f.fileno()}")
    print(f"wrote {argv[0]}", flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def _unread(argv: list[str], cwd: Path | None = None) -> tuple[int, str]:
    """Run ``argv`` with stdout a pipe whose reader is gone before the first line; its status and stderr."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=cwd)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=120), err


def _closed(argv: list[str], fd: int, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` started without descriptor ``fd`` (``>&-`` for 1, ``2>&-`` for 2)."""
    return subprocess.run(argv, preexec_fn=lambda: os.close(fd), capture_output=True, text=True, env=_env(),
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("command", [[], ["object"]])
def test_help_to_a_reader_that_has_gone_ends_quietly(command):
    """`vdm3d object --help | head`: once a BrokenPipeError traceback, then a quiet 141 that only --help and the
    reports reached (a job lost its run); now every command whose reader has gone ends with its own status."""
    status, err = _unread([sys.executable, "-m", "vdm3d.cli.main", *command, "--help"])
    assert (status, err) == (0, "")


def test_a_job_whose_reader_has_gone_finishes_its_work(tmp_path, fake_command):
    """`vdm3d object ... | head -3`: the first progress line after head left raised BrokenPipeError, which
    ended the run (its folder removed) with status 141 and no word; the output is dropped now, the job ends."""
    status, err = _unread([sys.executable, "-c", fake_command(_FAKE_JOB), "fake", "result.txt"], cwd=tmp_path)
    assert (status, err) == (0, "")
    assert (tmp_path / "result.txt").is_file()


def test_a_closed_stdout_discards_output_and_keeps_descriptor_1_free(tmp_path, fake_command):
    """`vdm3d ... >&-`: the command runs, its output goes nowhere, and a file it opens does not become
    descriptor 1 (where a library's or a child process's stdout would be written into it)."""
    done = _closed([sys.executable, "-c", fake_command(_FAKE_JOB), "fake", "result.txt"], 1, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    fd = int((tmp_path / "result.txt").read_text().split()[1])
    assert fd > 2


def test_a_report_keeps_its_status_with_stdout_closed_and_its_error_off_stdout_with_stderr_closed(tmp_path):
    """`vdm3d trajectory validate bad.json >&-` still exits 2 with its sentence on stderr; with ``2>&-`` the
    sentence used to come out on stdout (Python's print(file=None) writes to stdout), mixed into results."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"frames": 3}')
    argv = [sys.executable, "-m", "vdm3d", "trajectory", "validate", str(bad)]
    no_out = _closed(argv, 1)
    assert no_out.returncode == 2 and no_out.stderr.startswith(f"error: {bad}: frames ")
    no_err = _closed(argv, 2)
    assert (no_err.returncode, no_err.stdout) == (2, "")


def _on_a_terminal(argv: list[str], **env: str) -> tuple[int, str, str]:
    """Run ``argv`` with stdout a terminal (a pty) and stderr a file; its status, what the terminal showed and
    stderr."""
    import pty
    import threading

    master, slave = pty.openpty()
    shown = bytearray()

    def drain() -> None:  # the pty's buffer is small: read while the help is written
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command closed its end
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, env={**_env(), "TERM": "xterm", **env})
    os.close(slave)
    err = proc.stderr.read().decode()
    status = proc.wait(timeout=120)
    reader.join(timeout=30)
    os.close(master)
    return status, shown.decode(errors="replace"), err


def test_no_color_and_redirected_errors_get_no_escape_codes():
    """tyro coloured `vdm3d object --help` on a terminal whatever NO_COLOR said, and chose the colour of its
    error boxes (on stderr) from stdout, so `vdm3d object --bogus 2>err.txt` wrote escape codes into the file."""
    vdm3d = [sys.executable, "-m", "vdm3d", "object"]
    status, shown, _ = _on_a_terminal([*vdm3d, "--help"])
    assert status == 0 and "\x1b[" in shown  # the control: a terminal, so colour by default
    status, shown, _ = _on_a_terminal([*vdm3d, "--help"], NO_COLOR="1")
    assert status == 0 and "--image" in shown and "\x1b" not in shown
    status, _, err = _on_a_terminal([*vdm3d, "--bogus"])
    assert status == 2 and "--bogus" in err and "\x1b" not in err
    piped = subprocess.run([*vdm3d, "--help"], capture_output=True, text=True, env=_env(), timeout=120)
    assert piped.returncode == 0 and "\x1b" not in piped.stdout  # not a terminal: plain
