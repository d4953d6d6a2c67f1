"""Save and load a :class:`~vdm3d.recon.trainer.FitState`: safetensors for tensors, JSON for the rest.

A checkpoint is a folder with ``state.safetensors`` (parameters as ``param/<name>``, Adam moments
as ``adam/<name>/<key>``, density-control tensors as ``strategy/<key>``, the random generator as
``generator``) and ``state.json`` (format, version, step, scene scale, the strategy's scalars).
Both are written atomically, JSON last, so a folder whose JSON exists is complete. No pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from vdm3d.errors import InputError
from vdm3d.io.runs import atomic_write_json
from vdm3d.models.weights import save_state_dict
from vdm3d.recon.trainer import FitState

FORMAT, VERSION = "vdm3d.fit_state", 1
TENSORS, META = "state.safetensors", "state.json"


def save_state(folder: str | Path, state: FitState) -> Path:
    """Write ``state`` into ``folder`` (created if needed); returns the folder."""
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {"generator": state.generator.clone()}
    for name, t in state.params.items():
        tensors[f"param/{name}"] = t.detach().contiguous()
    for name, moments in state.moments.items():
        for key, t in moments.items():
            tensors[f"adam/{name}/{key}"] = t.detach().reshape(t.shape).contiguous()
    scalars = {}
    for key, v in state.strategy.items():
        if torch.is_tensor(v):
            tensors[f"strategy/{key}"] = v.detach().contiguous()
        else:
            scalars[key] = v
    save_state_dict(tensors, folder / TENSORS)
    atomic_write_json(folder / META, {"format": FORMAT, "version": VERSION, "step": state.step,
                                      "scene_scale": state.scene_scale, "strategy": scalars,
                                      "params": list(state.params)})
    return folder


def load_state(folder: str | Path) -> FitState:
    """Read a checkpoint written by :func:`save_state`."""
    folder = Path(folder)
    meta_path, tensor_path = folder / META, folder / TENSORS
    if not meta_path.is_file() or not tensor_path.is_file():
        raise InputError(path=folder, problem=f"holds no complete checkpoint ({META} and {TENSORS})",
                         fix="resume from a run folder that saved checkpoints, or start without --resume")
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(tensor_path)
    except Exception as e:  # noqa: BLE001 - any decoding failure means a broken checkpoint
        raise InputError(path=folder, problem=f"holds an unreadable checkpoint ({type(e).__name__})",
                         fix="delete it and start again without --resume") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(path=meta_path, field="format",
                         problem=f"is {meta.get('format')!r} v{meta.get('version')}, not {FORMAT!r} v{VERSION}",
                         fix="resume only from checkpoints written by vdm3d fit")
    params = {name: tensors[f"param/{name}"] for name in meta["params"]}
    moments: dict[str, dict[str, torch.Tensor]] = {name: {} for name in params}
    strategy = dict(meta["strategy"])
    for key, t in tensors.items():
        kind, _, rest = key.partition("/")
        if kind == "adam":
            name, _, k = rest.rpartition("/")
            moments[name][k] = t
        elif kind == "strategy":
            strategy[rest] = t
    return FitState(int(meta["step"]), params, moments, strategy, tensors["generator"], float(meta["scene_scale"]))
