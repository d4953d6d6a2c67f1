"""One thread setting: the default, the global --threads option, and what it reaches."""

import os

import numba
import pytest
import torch

from vdm3d import threads
from vdm3d.cli import main as cli_main


@pytest.fixture
def restore_threads():
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_WAIT_POLICY")
    env = {name: os.environ.get(name) for name in names}
    before = torch.get_num_threads(), numba.get_num_threads()
    yield
    for name, value in env.items():
        os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])


@pytest.mark.parametrize("cores", [1, 2, 8])
def test_default_is_the_cores_this_process_may_use(monkeypatch, cores):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # a busy machine: still all of them
    assert threads.default_threads() == cores


def test_set_threads_reaches_torch_numba_and_the_environment(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "default_threads", lambda: 1)
    assert threads.set_threads(None) == 1  # no environment setting: default_threads()
    assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["OMP_WAIT_POLICY"] in ("PASSIVE", "passive")
    n = min(2, numba.config.NUMBA_NUM_THREADS)
    assert threads.set_threads(n) == n and torch.get_num_threads() == n and numba.get_num_threads() == n
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.set_threads(None) == 1  # an explicit environment setting wins over the load


def test_global_threads_option(restore_threads, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(cli_main, "set_threads", lambda n, cap=False: seen.setdefault("n", (n, cap)))
    assert cli_main._pop_threads(["fit", "--threads", "3", "x"]) == (["fit", "x"], 3)
    assert cli_main._pop_threads(["--threads=2", "fit"]) == (["fit"], 2)
    assert cli_main._pop_threads(["fit"]) == (["fit"], None)
    assert cli_main.main(["no-such-command", "--threads", "1"]) == 2 and seen["n"] == (1, True)  # typed: capped
    assert cli_main.main(["fit", "--threads", "zero"]) == 2
    err = capsys.readouterr().err
    assert "error: --threads needs a whole number of threads, 1 or more, got 'zero'" in err and "Traceback" not in err


def test_torch_keeps_the_count_after_numbas_pool_has_run():
    """Once numba's compiled renderer has run, numba's setter moved the OpenMP count torch reads, so
    set_threads(1) called torch's setter first and left torch at numba's pool size (2) while the manifest
    recorded 1. A fresh process: the first numba setter call after the pool started is the one that moved it."""
    import subprocess
    import sys

    code = ("import torch\n"
            "from vdm3d.jobs.explore import warm_up_renderer\n"
            "from vdm3d.threads import current_threads, set_threads\n"
            "warm_up_renderer()\n"
            "print(set_threads(1), torch.get_num_threads(), current_threads())\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}  # a pool larger than the count
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1"]


def test_more_threads_than_cores_are_capped_with_one_line_and_the_number_used_recorded(restore_threads, monkeypatch):
    """QA: ``--threads 100000`` was accepted and the run's manifest recorded 100000 threads. A typed count
    (``cap=True``) above the cores this process may use (its CPU affinity) is capped to them, one line says so,
    and the count the manifest records (:func:`current_threads`) is the one used. Without ``cap`` (a rerun applying
    the original run's count, on which the last bits depend) the count is applied as given."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    said = []
    assert threads.set_threads(3, said.append, cap=True) == 2
    assert said == ["warning: --threads 3 is more than the 2 cores this process may use; using 2"]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    said.clear()
    assert threads.set_threads(100000, said.append, cap=True) == 1
    assert said == ["warning: --threads 100000 is more than the 1 core this process may use; using 1"]
    assert threads.current_threads() == 1 and torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    said.clear()
    assert threads.set_threads(1, said.append, cap=True) == 1 and said == []
    n = min(2, numba.config.NUMBA_NUM_THREADS)
    assert threads.set_threads(n, said.append) == n and threads.current_threads() == n and said == []  # not capped


def test_the_command_lines_threads_are_capped_and_a_reruns_are_not(restore_threads, monkeypatch, capsys):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert cli_main.main(["--threads", "100000", "no-such-command"]) == 2
    assert capsys.readouterr().err.startswith(
        "warning: --threads 100000 is more than the 1 core this process may use; using 1\n")
    assert threads.current_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cli_main.main(["no-such-command"]) == 2 and "warning" not in capsys.readouterr().err  # none typed
