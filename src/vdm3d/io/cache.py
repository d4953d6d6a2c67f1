"""The one per-user folder every vdm3d cache lives under, so that one setting moves them all.

``$VDM3D_CACHE`` if set, else ``$XDG_CACHE_HOME/vdm3d`` (the freedesktop place a cluster or a container
points at scratch space), else ``~/.cache/vdm3d``. Beneath it:

* ``models/`` hub weights (``$VDM3D_MODELS`` overrides just this one, :mod:`vdm3d.models.registry`),
* ``fingerprints/`` what a run's hub weights were (:func:`vdm3d.models.registry.hub_fingerprint_file` writes
  them, :func:`fingerprint_record` reads one),
* ``train/`` rendered training and evaluation sets (:mod:`vdm3d.train.cache`),
* ``style_lora/`` stylize's per-style LoRAs (``--style-lora-cache`` overrides it),
* ``lpips_alex.safetensors`` the perceptual loss's weights (``$VDM3D_LPIPS_WEIGHTS`` overrides it).

* ``matplotlib/`` matplotlib's config and font cache, only when its own folder cannot be written
  (:func:`matplotlib_config_dir`).

The compiled rasterizer stays where torch keeps extensions (``$TORCH_EXTENSIONS_DIR``), which torch decides.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """vdm3d's per-user cache folder (read from the environment at each call, so a test or a launcher may
    set it late); not made here: each cache makes its own part when it first writes."""
    for env, below in (("VDM3D_CACHE", ""), ("XDG_CACHE_HOME", "vdm3d")):
        value = os.environ.get(env)
        if value:  # an empty value means unset, as XDG says
            return Path(value).expanduser() / below
    return Path.home() / ".cache" / "vdm3d"


def _usable_folder(folder: Path) -> bool:
    """Whether ``folder`` exists (or can be made) and can be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def matplotlib_config_dir() -> None:
    """Give matplotlib a folder it can write before it is imported, when its own cannot be: unless
    ``MPLCONFIGDIR`` says which, or matplotlib's default (``$XDG_CONFIG_HOME/matplotlib``, else
    ``~/.config/matplotlib``; ``~/.matplotlib`` off Linux) can be written, vdm3d's cache (``matplotlib/`` under
    :func:`cache_root`) when it can be made and written, else a temp folder removed at exit.

    matplotlib keeps its font cache in that folder; with a read-only, missing or file HOME (a container, a batch
    account) it printed two lines of its own (``mkdir -p failed ...``, ``Matplotlib created a temporary cache
    directory ...``) around the command's output. A user whose own folder works keeps it, with its
    ``matplotlibrc``. Called by :func:`vdm3d.cameras.preview.preview_png` before its first matplotlib import."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    try:
        home = Path.home()
        own = (Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib"
               if sys.platform.startswith(("linux", "freebsd")) else home / ".matplotlib")
        if _usable_folder(own):
            return
    except (RuntimeError, KeyError):  # no home folder to be found
        pass
    try:
        folder = cache_root() / "matplotlib"
        if _usable_folder(folder):
            os.environ["MPLCONFIGDIR"] = str(folder)
            return
    except (RuntimeError, KeyError):  # no home folder to be found
        pass
    try:
        folder = tempfile.mkdtemp(prefix="vdm3d-matplotlib-")
    except OSError:  # nowhere to write at all: matplotlib says so itself
        return
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = folder


def fingerprint_record(path: str | Path) -> tuple[str, str] | None:
    """(model name, where its weights were loaded from) of a fingerprint record (the small JSON
    :func:`vdm3d.models.registry.hub_fingerprint_file` writes under ``fingerprints/``), or None when ``path`` is
    not one."""
    path = Path(path)
    if "fingerprints" not in path.parts or path.suffix != ".json":
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "source" not in data or "files" not in data:
        return None
    return str(data.get("model")), str(data["source"])


def recorded_models(inputs: dict[str, str]) -> dict[str, dict[str, str]]:
    """For a run's manifest: each hub model among its ``inputs`` (input name -> SHA-256) with where its weights
    were loaded from (the folder, or ``hub_id@snapshot``) and the SHA-256 of its fingerprint record, so that the
    run folder alone says which weights made it, wherever the fingerprint cache is."""
    out: dict[str, dict[str, str]] = {}
    for name, sha in inputs.items():
        found = fingerprint_record(name)
        if found is not None:
            out[found[0]] = {"source": found[1], "fingerprint": sha}
    return out


__all__ = ["cache_root", "fingerprint_record", "recorded_models"]
