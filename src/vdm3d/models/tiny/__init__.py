"""Embedded tiny models that vdm3d trains itself (``vdm3d train``) and ships inside the package.

* ``vae``: a 64x64 -> 16x16x4 image VAE (:mod:`.vae`), shared by the video model;
* ``video``: a latent video denoiser with reference, camera, map and keyframe conditions
  (:mod:`.denoiser`, :mod:`.backbone`), the default video backbone of every job;
* ``depth``: a monocular relative-depth network (:mod:`.depth`), the default of ``explore``.

:func:`available` lists the shipped models with their model cards; :func:`load_tiny` loads one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vdm3d.errors import InputError
from vdm3d.models.tiny.backbone import TinyCondition, TinyVideoBackbone
from vdm3d.models.tiny.checkpoint import load_model, read_meta
from vdm3d.models.tiny.denoiser import MAP_CHANNELS, DenoiserConfig, VideoDenoiser
from vdm3d.models.tiny.depth import DepthConfig, TinyDepth
from vdm3d.models.tiny.v3d import V3dSceneBackbone
from vdm3d.models.tiny.vae import TinyVAE, VAEConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: names of the default backbones (what the jobs use when no model is given)
DEFAULT_VIDEO = "video"
DEFAULT_DEPTH = "depth"


def available(weights_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Shipped tiny models: ``name -> card`` (plus ``kind``), from the JSON files in the weights folder."""
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    out = {}
    for path in sorted(folder.glob("*.json")):
        if not path.with_suffix(".safetensors").is_file():
            continue
        meta = read_meta(path)
        out[path.stem] = {"kind": meta["kind"], **meta.get("card", {})}
    return out


def load_tiny(name: str, device: str | torch.device = "cpu", weights_dir: str | Path | None = None):
    """Load a tiny model by name: ``video`` -> :class:`TinyVideoBackbone` (protocol), ``depth`` ->
    :class:`TinyDepth`, ``vae`` -> :class:`TinyVAE`. Parameters are frozen; modules are in eval mode."""
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    path = folder / f"{name}.json"
    if not path.is_file():
        names = ", ".join(available(folder)) or "none"
        raise InputError(f"{path}: no tiny model named {name!r}; choose one of: {names}.")
    module, meta = load_model(path, device)
    if meta["kind"] in ("video", "v3d_scene"):
        vae, _ = load_model(vae_file(path, meta), device)
        cls = V3dSceneBackbone if meta["kind"] == "v3d_scene" else TinyVideoBackbone
        module = cls(vae, module, name=f"tiny-{name}",
                                   resolution=tuple(meta.get("resolution", (64, 64))),
                                   frames=meta.get("frames", 8))
    module.requires_grad_(False)
    return module.eval()


def vae_file(model_file: str | Path, meta: dict[str, Any]) -> Path:
    """The VAE a video model decodes with: the one its metadata names, beside the model file, else the shipped
    one of that name. A training run keeps a copy of its VAE beside its model unless the VAE is the shipped
    one (:func:`vdm3d.train.run.keep_vae`), so a run folder without one was trained on the shipped VAE."""
    name = f"{meta.get('vae', 'vae')}.json"
    beside = Path(model_file).parent / name
    return beside if beside.is_file() else WEIGHTS_DIR / name


def load_tiny_file(path: str | Path, device: str | torch.device = "cpu"):
    """A tiny model from the ``NAME.json`` model file a `vdm3d train` run wrote (its weights beside it; the
    shipped VAE decodes it when the run folder has none); a missing file is one sentence."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist",
                         fix="pass a name from `vdm3d models` or the .json model file that a `vdm3d train` run wrote")
    return load_tiny(path.stem, device=device, weights_dir=path.parent)


__all__ = ["DEFAULT_DEPTH", "DEFAULT_VIDEO", "MAP_CHANNELS", "DenoiserConfig", "DepthConfig", "TinyCondition",
           "TinyDepth", "TinyVAE", "TinyVideoBackbone", "VAEConfig", "VideoDenoiser", "WEIGHTS_DIR",
           "available", "load_tiny", "load_tiny_file", "vae_file"]
