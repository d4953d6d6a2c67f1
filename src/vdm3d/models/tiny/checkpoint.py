"""Saving and loading tiny models: ``<name>.safetensors`` (weights) beside ``<name>.json``.

The JSON holds ``{"format": "vdm3d.tiny", "version": 1, "kind": "vae"|"video"|"depth",
"config": {...}, "card": {...}}``; the card records data, seeds, steps, wall time, hardware, the
reproducing command and held-out metrics, and is what :func:`vdm3d.models.tiny.available` lists.
A video model names the VAE it was trained with (``"vae": "vae"``); both are loaded together.
Weights are read with ``safetensors`` only (no pickle).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from vdm3d.errors import InputError, MissingWeightsError
from vdm3d.io.runs import atomic_write_json, to_jsonable
from vdm3d.models.tiny.denoiser import DenoiserConfig, VideoDenoiser
from vdm3d.models.tiny.depth import DepthConfig, TinyDepth
from vdm3d.models.tiny.v3d import V3dSceneConfig, V3dSceneDenoiser
from vdm3d.models.tiny.vae import TinyVAE, VAEConfig
from vdm3d.models.weights import load_state_dict, save_state_dict

Kind = Literal["vae", "video", "depth", "v3d_scene"]
FORMAT = "vdm3d.tiny"
CONFIG_TYPES = {"vae": VAEConfig, "video": DenoiserConfig, "depth": DepthConfig, "v3d_scene": V3dSceneConfig}


def config_from_dict(cls, data: dict[str, Any]):
    """Rebuild a frozen config dataclass from JSON (lists back to tuples, unknown keys rejected)."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise InputError(f"{cls.__name__}: unknown config fields {sorted(unknown)}; the checkpoint was "
                         "written by another vdm3d version.")
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in data.items():
        if dataclasses.is_dataclass(hints.get(k)) and isinstance(v, dict):  # a nested config
            v = config_from_dict(hints[k], v)
        out[k] = tuple(v) if isinstance(v, list) else v
    return cls(**out)


def build(kind: Kind, config) -> nn.Module:
    if kind == "vae":
        return TinyVAE(config)
    if kind == "video":
        return VideoDenoiser(config)
    if kind == "depth":
        return TinyDepth(config)
    if kind == "v3d_scene":
        return V3dSceneDenoiser(config)
    raise InputError(f"tiny model kind {kind!r} is not one of vae, video, depth.")


def save_model(folder: str | Path, name: str, kind: Kind, module: nn.Module, card: dict[str, Any],
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``<folder>/<name>.safetensors`` and ``<folder>/<name>.json``; returns the JSON path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_state_dict(module.state_dict(), folder / f"{name}.safetensors")
    meta = {"format": FORMAT, "version": 1, "kind": kind, "name": name,
            "config": to_jsonable(module.config), **(extra or {}), "card": card}
    atomic_write_json(folder / f"{name}.json", meta)
    return folder / f"{name}.json"


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{path}: the tiny model description is missing; train it with "
                                  "`vdm3d train` or reinstall vdm3d.")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); restore the file.") from None
    if meta.get("format") != FORMAT or meta.get("kind") not in CONFIG_TYPES:
        raise InputError(f"{path}: field format/kind is not a vdm3d tiny model description; "
                         "point to a <name>.json written by `vdm3d train`.")
    return meta


def load_model(json_path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the module described by ``<name>.json`` and load ``<name>.safetensors`` beside it."""
    json_path = Path(json_path)
    meta = read_meta(json_path)
    kind = meta["kind"]
    module = build(kind, config_from_dict(CONFIG_TYPES[kind], meta["config"]))
    weights = json_path.with_suffix(".safetensors")
    if not weights.is_file():
        raise MissingWeightsError(f"{weights}: the weights file is missing; train it with `vdm3d train {kind}`.")
    state = load_state_dict(weights, device=str(device))  # safetensors only; a corrupt file is one sentence
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"{weights}: tensors do not match the config (missing {list(missing)[:3]}, "
                         f"unexpected {list(unexpected)[:3]}); retrain or restore the file.")
    return module.to(device).eval(), meta
