"""One thread setting for every parallel runtime vdm3d uses: torch, OpenMP, numba and OpenCV.

On a shared or busy machine the runtimes' defaults oversubscribe the cores with threads that spin
while they wait (issue 15: with one competing busy process on 2 cores a 30-step ``vdm3d fit`` took
2.3x longer at torch's default than at one thread). Here OpenMP's idle threads sleep instead
(``OMP_WAIT_POLICY=PASSIVE``, unless set), and the default is every core this process may run on
(``os.sched_getaffinity``). That default was chosen by measurement against counting only the free
cores (affinity minus the 1-minute load average): with the load average at 11.7-16.8 on 2 cores
plus one more busy process, the demo took a median 162 s with 2 threads, 275 s with 1 and 226 s with
the load-based choice (which picked 1), over 2 rounds of ``benchmarks/threads.py``. On a busy
machine the scheduler shares the cores per runnable thread, and a sleeping waiter costs nothing.
``OMP_NUM_THREADS`` in the environment, or ``vdm3d --threads N`` (:func:`set_threads`), overrides it; a typed
count above the cores this process may use is capped to them with one line (``cap=True``), so the manifest
records the number used.

Applied where each runtime reads it: the environment (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
``NUMBA_NUM_THREADS``, read when those libraries start, also in child processes) and, for libraries
already imported, their setters (``numba.set_num_threads``, ``cv2.setNumThreads`` and, last, as numba's
moves the OpenMP count, ``torch.set_num_threads``). OpenMP's idle threads are told to sleep rather than spin
(``OMP_WAIT_POLICY=PASSIVE``, unless set), so threads waiting at a barrier leave the cores to
whoever can use them.

>>> n = set_threads(1)
>>> n, os.environ["OMP_NUM_THREADS"]
(1, '1')
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Callable

from vdm3d.errors import ConfigError

_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), or ``os.cpu_count()`` where unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """The default thread count: every core this process may run on (see the module docstring)."""
    return available_cores()


_CHOSEN: dict[str, object] = {}  # the last set_threads: {"threads": n, "explicit": given or from the environment}


def current_threads() -> int | None:
    """The thread count the last :func:`set_threads` applied (a run's manifest records it: CPU reductions,
    and so the last bits of the results, depend on it), or None if it was never called."""
    n = _CHOSEN.get("threads")
    return int(n) if isinstance(n, int) else None


def chosen_explicitly() -> bool:
    """Whether the thread count was asked for (``--threads N`` or ``OMP_NUM_THREADS``), not the default."""
    return bool(_CHOSEN.get("explicit"))


def set_threads(n: int | None = None, say: Callable[[str], None] | None = None, *, cap: bool = False) -> int:
    """Use ``n`` threads in torch, OpenMP, numba and OpenCV; returns the number used.

    ``None``: ``OMP_NUM_THREADS`` when the environment sets it, else :func:`default_threads`. ``cap`` (for a
    count a user typed, ``--threads N``): more than :func:`available_cores` is capped to them, and ``say`` (None:
    standard error) hears one line; ``--threads 100000`` was recorded as 100000 threads in a run's manifest, which
    no process on the machine ran. Without it the count is applied as given: ``vdm3d rerun`` applies the original
    run's count, on which the last bits of CPU results depend, also on a machine with fewer cores.
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    explicit = n is not None or (env.isdigit() and int(env) > 0)
    asked = f"--threads {n}"
    if n is None:
        n = int(env) if env.isdigit() and int(env) > 0 else default_threads()
    if int(n) < 1:
        raise ConfigError(f"--threads must be 1 or more, got {n}; leave it out to use all cores.")
    n = int(n)
    cores = available_cores()
    if cap and n > cores:
        message = (f"warning: {asked} is more than the {cores} {'core' if cores == 1 else 'cores'} this process may "
                   f"use; using {cores}")
        (say or (lambda line: print(line, file=sys.stderr)))(message)
        n = cores
    for name in _ENV:
        if name == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue  # numba refuses a new pool size once its threads run; its setter below applies
        os.environ[name] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        # The pool is sized when numba starts; it can shrink, never grow past that.
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)
    # torch last: once numba's OpenMP pool has run, numba's setter moves the OpenMP thread count that torch
    # reads (measured: set_threads(1) left torch at 2 threads, numba's pool size, when torch came first)
    runs = n
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(n)
        runs = torch.get_num_threads()
        if runs != n:  # not seen since torch comes last; the manifest must still record what torch runs
            warnings.warn(f"set_threads({n}): torch runs {runs} threads; the run's manifest records {runs}.",
                          RuntimeWarning, stacklevel=2)
    _CHOSEN.update(threads=runs, explicit=explicit)
    return n
