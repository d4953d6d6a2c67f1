"""One thread setting for every parallel runtime vdm3d uses: torch, OpenMP, numba and OpenCV.

On a shared or busy machine the runtimes' defaults (one thread per core each, OpenMP threads that
spin while they wait) oversubscribe the cores: with one competing busy process on 2 cores a 30-step
``vdm3d fit`` took 2.3x longer at torch's default than at one thread. So the default here is the
number of cores that are actually free: the cores this process may run on
(``os.sched_getaffinity``) minus the ones the other processes keep busy (the 1-minute load
average, rounded), at least one, unless ``OMP_NUM_THREADS`` is already set in the environment (then
that). ``vdm3d --threads N`` (or :func:`set_threads`) overrides both.

Applied where each runtime reads it: the environment (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
``NUMBA_NUM_THREADS``, read when those libraries start, also in child processes) and, for libraries
already imported, their setters (``torch.set_num_threads``, ``numba.set_num_threads``,
``cv2.setNumThreads``). OpenMP's idle threads are told to sleep rather than spin
(``OMP_WAIT_POLICY=PASSIVE``, unless set), so threads waiting at a barrier leave the cores to
whoever can use them.

>>> n = set_threads(1)
>>> n, os.environ["OMP_NUM_THREADS"]
(1, '1')
"""

from __future__ import annotations

import math
import os
import sys

from vdm3d.errors import ConfigError

_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), or ``os.cpu_count()`` where unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(own_load: float = 0.0) -> float:
    """Cores kept busy by other processes: the 1-minute load average minus ``own_load`` (0 where unknown)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    return max(0.0, load - own_load)


def default_threads(own_load: float = 0.0) -> int:
    """Free cores: available minus busy (rounded to the nearest core), at least 1."""
    free = available_cores() - busy_cores(own_load)
    return max(1, min(available_cores(), int(math.floor(free + 0.5))))


def set_threads(n: int | None = None) -> int:
    """Use ``n`` threads in torch, OpenMP, numba and OpenCV; returns ``n``.

    ``None``: ``OMP_NUM_THREADS`` when the environment sets it, else :func:`default_threads`.
    """
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        n = int(env) if env.isdigit() and int(env) > 0 else default_threads()
    if int(n) < 1:
        raise ConfigError(f"--threads must be 1 or more, got {n}; leave it out to use the free cores.")
    n = int(n)
    for name in _ENV:
        if name == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue  # numba refuses a new pool size once its threads run; its setter below applies
        os.environ[name] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        # The pool is sized when numba starts; it can shrink, never grow past that.
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)
    return n
