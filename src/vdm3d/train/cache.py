"""The cache of rendered sets (:mod:`vdm3d.train.datasets`, and the trainers' own sets): one ``.npz`` per set
under ``train/`` in the cache folder (:mod:`vdm3d.io.cache`; ``~/.cache/vdm3d/train`` by default), shared by every process of the user.

* Several processes may build the same set at once (a Slurm array, ``vdm3d batch``): each writes its own
  temp file beside the entry and renames it into place; the arrays are the same, so the last rename wins.
* A cached file that does not load or holds the wrong arrays is rendered again, with one note naming it.
* A cache folder that cannot be written (read-only ``VDM3D_CACHE`` or HOME) or a full disk is one note
  naming the folder and VDM3D_CACHE; the run goes on with the set in memory (it is only a cache, and
  rendering it again gives the same arrays), as a missing compiler falls back to numba.

Not part of the sets' code hash (:data:`vdm3d.train.datasets.NOT_RENDERING`): how a set is stored changes no
array, so editing this module renders nothing again.
"""

from __future__ import annotations

import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from vdm3d.io.cache import cache_root
from vdm3d.io.runs import DISK_FULL, replace_by_writing


def cache_dir() -> Path:
    """The folder of the cached sets, ``train/`` in :func:`vdm3d.io.cache.cache_root`; it is made when the
    first set is written (:func:`cached_set`), so a read-only one can still be read."""
    return cache_root() / "train"


Shape = tuple[int | None, ...]
"""the shape a cached array must have (``None``: any size along that axis)"""
#: a temp file this much older than its last write belongs to a writer that died (a live one writes on)
STALE_TEMP_SECONDS = 3600.0
#: the notes about a cache folder that cannot be written already printed by this process (one per folder)
_noted: set[tuple[str, bool]] = set()


def _say(text: str) -> None:
    print(f"vdm3d: {text}", file=sys.stderr, flush=True)


def _mismatch(data: dict[str, np.ndarray], expect: dict[str, Shape]) -> str | None:
    """Why ``data`` is not the set ``expect`` describes (a missing array, a wrong shape), or None."""
    for key, shape in expect.items():
        if key not in data:
            return f"it has no {key} array"
        got = data[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            want = "x".join("*" if s is None else str(s) for s in shape)
            return f"its {key} array is {'x'.join(map(str, got)) or 'a scalar'}, not {want or 'a scalar'}"
    return None


def _read(path: Path, expect: dict[str, Shape]) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The arrays of the cached set ``path``, or None and why it could not be used (None: it is not there)."""
    try:
        with np.load(path) as f:  # every array read in full: a torn file fails here (zip CRC), not later
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:  # gone since it was seen (another process replacing it): build it
        return None, None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # torn, zeroed, not a zip
        return None, f"{type(exc).__name__}: {str(exc).strip() or 'unreadable'}"
    problem = _mismatch(data, expect)
    return (None, problem) if problem else (data, None)


def _sweep_stale_temps(path: Path) -> None:
    """Remove the temp files of ``path`` left by writers that died (SIGKILL, a power cut) long ago; a live
    writer's file is young (it is written in one go, after the render)."""
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*"):
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                tmp.unlink()
        except OSError:  # another process removed it first, or the folder is read-only: leave it
            pass


def _not_cached(folder: Path, exc: OSError) -> None:
    """One note per folder and process: the set is used from memory and the next run renders it again."""
    full = exc.errno in DISK_FULL
    if (str(folder), full) in _noted:
        return
    _noted.add((str(folder), full))
    reason = exc.strerror or type(exc).__name__
    fix = ("free space there or set VDM3D_CACHE to a folder on another disk" if full
           else "set VDM3D_CACHE to a writable folder")
    where = f"the disk of the set cache {folder} is full" if full else f"the set cache {folder} cannot be written"
    _say(f"{where} ({reason}), so the sets are used from memory without caching and the next run renders "
         f"them again; {fix} to keep them.")


def _cached_by_another(path: Path, bad: os.stat_result | None) -> bool:
    """Whether ``path`` is there and is not the unusable file ``bad`` seen before the render: another
    process cached the set meanwhile, and its file is as good as this one's."""
    try:
        now = path.stat()
    except OSError:
        return False
    return bad is None or not os.path.samestat(now, bad)


def _write(path: Path, data: dict[str, np.ndarray], bad: os.stat_result | None = None) -> None:
    """Cache ``data`` as ``path`` (replacing ``bad``, the unusable file found there, if any), through
    :func:`~vdm3d.io.runs.replace_by_writing`: several processes building the same set at once each write
    their own temp file and the last rename wins (their arrays are the same). A folder that cannot be written or a full disk is a note (:func:`_not_cached`),
    not an error: the set is only a cache."""
    try:
        if _cached_by_another(path, bad):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale_temps(path)
        replace_by_writing(path, lambda f: np.savez(f, **data))
    except OSError as exc:
        if not _cached_by_another(path, bad):  # else nothing is lost: the set is cached all the same
            _not_cached(path.parent, exc)


def cached_set(path: Path, build: Callable[[], dict[str, np.ndarray]], expect: dict[str, Shape]
               ) -> dict[str, np.ndarray]:
    """The set cached as ``path``, else ``build()`` written there (:func:`_write`). A cached file that does not
    load or does not hold the arrays of ``expect`` (a torn write, a zeroed block, an old layout) is rendered
    again with one note naming it: it is only a cache."""
    bad = None
    if path.is_file():
        data, problem = _read(path, expect)
        if data is not None:
            return data
        if problem:
            _say(f"the cached set {path} could not be used ({problem}); rendering it again (it is only a cache).")
            bad = _stat(path)
    data = build()
    _write(path, data, bad)
    return data


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None
