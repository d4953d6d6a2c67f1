"""The one per-user folder every vdm3d cache lives under, so that one setting moves them all.

``$VDM3D_CACHE`` if set, else ``$XDG_CACHE_HOME/vdm3d`` (the freedesktop place a cluster or a container
points at scratch space), else ``~/.cache/vdm3d``. Beneath it:

* ``models/`` hub weights (``$VDM3D_MODELS`` overrides just this one, :mod:`vdm3d.models.registry`),
* ``fingerprints/`` what a run's hub weights were (:func:`vdm3d.models.registry.hub_fingerprint_file`),
* ``train/`` rendered training and evaluation sets (:mod:`vdm3d.train.cache`),
* ``style_lora/`` stylize's per-style LoRAs (``--style-lora-cache`` overrides it),
* ``lpips_alex.safetensors`` the perceptual loss's weights (``$VDM3D_LPIPS_WEIGHTS`` overrides it).

The compiled rasterizer stays where torch keeps extensions (``$TORCH_EXTENSIONS_DIR``), which torch decides.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """vdm3d's per-user cache folder (read from the environment at each call, so a test or a launcher may
    set it late); not made here: each cache makes its own part when it first writes."""
    for env, below in (("VDM3D_CACHE", ""), ("XDG_CACHE_HOME", "vdm3d")):
        value = os.environ.get(env)
        if value:  # an empty value means unset, as XDG says
            return Path(value).expanduser() / below
    return Path.home() / ".cache" / "vdm3d"


__all__ = ["cache_root"]
