"""Errors that speak to the user.

Every failure caused by what the user gave us (a file, a flag, a missing download) raises a
:class:`Vdm3dError` subclass whose message is one sentence naming the file, the field and the fix.
The CLI prints that sentence and exits with status 2; ``--debug`` adds the traceback. Anything else
that escapes is a bug in vdm3d and is reported as such.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path


class Vdm3dError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 2


class InputError(Vdm3dError):
    """A file or value given by the user is unusable (corrupt, wrong shape, NaN, missing)."""

    def __init__(self, message: str | None = None, *, path: str | Path | None = None,
                 field: str | None = None, problem: str | None = None, fix: str | None = None):
        if message is None:
            message = describe(path=path, field=field, problem=problem, fix=fix)
        super().__init__(message)
        self.path, self.field, self.problem, self.fix = path, field, problem, fix


class CameraError(InputError):
    """Cameras or a trajectory failed validation (non-finite, non-orthonormal, bad intrinsics)."""


class ConfigError(Vdm3dError):
    """An option is out of range or inconsistent with another."""


class MissingWeightsError(Vdm3dError):
    """Model weights are not present locally (we never download at run time unless asked)."""


class UnsafeCheckpointError(Vdm3dError):
    """A pickle checkpoint was offered without the explicit trust flag."""


class OutputExistsError(Vdm3dError):
    """The output folder already exists and would be overwritten."""


class OutputError(Vdm3dError):
    """The output location cannot be written (a parent is a file, no permission, disk full)."""


class DiskFullError(OutputError):
    """The disk (or the user's quota) filled up while writing; what was kept, and how to go on, is said."""


class OutOfMemoryError(Vdm3dError):
    """The machine (or the accelerator) ran out of memory during a command: a request too large for it (a high
    ``--resolution``, many frames or Gaussians) or other programs holding the memory; what was kept, and what to
    lower, is said."""


_OOM_TEXT = ("DefaultCPUAllocator: can't allocate memory", "CUDA out of memory", "MPS backend out of memory",
             "XPU out of memory")
_BYTES = re.compile(r"tried to allocate (\d+) bytes|allocate ([\d.]+) ?([KMGTPE]i?B)", re.IGNORECASE)
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50, "E": 2**60}


def out_of_memory(exc: BaseException | None) -> str | None:
    """What ``exc`` (or an error it was raised from) says when it is an allocation that failed, else None:
    Python's and numpy's ``MemoryError``, torch's ``DefaultCPUAllocator: can't allocate memory`` RuntimeError
    (what a memory limit or an exhausted machine gives on the CPU) and its CUDA/MPS ``OutOfMemoryError``. The
    text returned is ``while allocating 0.62 GiB`` (:func:`format_bytes`) when the size is
    known, else empty."""
    seen = 0
    while exc is not None and seen < 20:
        text = str(exc)
        if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(t in text for t in _OOM_TEXT)) \
                or (type(exc).__name__ == "OutOfMemoryError" and not isinstance(exc, Vdm3dError)):
            found = _BYTES.search(text)
            if found is None:
                return ""
            if found.group(1):
                size = int(found.group(1))
            else:
                size = float(found.group(2)) * _UNITS.get(found.group(3)[0].upper(), 1)
            return f"while allocating {format_bytes(size)}"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def format_bytes(n: float | int) -> str:
    """A size in binary units, named as such, for messages and memory plans (``2.00 TiB``, ``24.00 GiB``,
    ``512.0 MiB``, ``1.0 KiB``)."""
    tib, gib, mib = 1024**4, 1024**3, 1024**2
    if n >= tib:
        return f"{n / tib:.2f} TiB"
    if n >= 0.1 * gib:
        return f"{n / gib:.2f} GiB"
    return f"{n / mib:.1f} MiB" if n >= 0.1 * mib else f"{n / 1024:.1f} KiB"


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
"""The signals that stop a command the way Ctrl-C does: SIGTERM (kill, Slurm, a batch stopping its case),
SIGINT (Ctrl-C) and, where the platform has it, SIGHUP (the terminal closed, the ssh connection dropped)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM, turned into an exception like Ctrl-C's so that run folders clean up or keep their
    checkpoint (and say which) instead of dying with an empty hidden folder."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


pending_signal: int | None = None
"""The signal whose :class:`Interrupted` was raised during the current command (set by the CLI's handler)."""


def raise_if_interrupted() -> None:
    """Raise again the interrupt of a signal that arrived while C code was calling back into Python (numba
    compiling its kernels, ctypes): Python prints and drops an exception raised there, and the run would go
    on. Long loops call this once per step, so such a signal still ends the run at the next step."""
    if pending_signal is not None:
        raise Interrupted(pending_signal)


def describe(*, path=None, field=None, problem=None, fix=None) -> str:
    """Compose the one-sentence message: ``<path>: <field> <problem>; <fix>.``"""
    head = f"{path}: " if path is not None else ""
    subject = f"{field} " if field else ""
    body = f"{subject}{problem or 'is invalid'}"
    tail = f"; {fix}" if fix else ""
    sentence = f"{head}{body}{tail}".rstrip()
    return sentence if sentence.endswith(".") else sentence + "."
