"""Save and load a :class:`~vdm3d.recon.trainer.FitState`: safetensors for tensors, JSON for the rest.

A checkpoint is a folder with ``state.safetensors`` (parameters as ``param/<name>``, Adam moments
as ``adam/<name>/<key>``, density-control tensors as ``strategy/<key>``, the random generator as
``generator``) and ``state.json`` (format, version, step, scene scale, the strategy's scalars).

The JSON state is also stored in the safetensors file's metadata, so ``state.safetensors`` alone is one
consistent checkpoint, written atomically: a process killed between the two writes leaves the tensors
of step N beside the ``state.json`` of an earlier step, and reading the step from that JSON would
continue step N's Gaussians as if they were the earlier step's (a silently different result).
:func:`load_state` therefore takes the state from the tensors file and reads ``state.json`` only for
checkpoints written before the metadata existed. ``state.json`` is still written, last, as the
human-readable record and the mark that a checkpoint exists. No pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from vdm3d.errors import InputError
from vdm3d.io.runs import atomic_write_bytes, atomic_write_json, to_jsonable
from vdm3d.recon.trainer import FitState

FORMAT, VERSION = "vdm3d.fit_state", 1
TENSORS, META = "state.safetensors", "state.json"
META_KEY = "state"  # the safetensors metadata entry holding the JSON state


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
    meta = {"format": FORMAT, "version": VERSION, "step": state.step, "scene_scale": state.scene_scale,
            "strategy": scalars, "params": list(state.params)}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(folder / TENSORS, save(tensors, metadata={META_KEY: json.dumps(to_jsonable(meta))}))
    atomic_write_json(folder / META, meta)
    return folder


def load_state(folder: str | Path) -> FitState:
    """Read a checkpoint written by :func:`save_state`."""
    folder = Path(folder)
    meta_path, tensor_path = folder / META, folder / TENSORS
    if not tensor_path.is_file():
        raise InputError(path=folder, problem=f"holds no complete checkpoint ({TENSORS})",
                         fix="resume from a run folder that saved checkpoints, or start without --resume")
    try:
        with safe_open(str(tensor_path), framework="pt") as f:  # metadata and tensors from one file
            stamped = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if stamped is not None:
            meta = json.loads(stamped)
        elif meta_path.is_file():  # written before the state went into the metadata
            meta = json.loads(meta_path.read_text())
        else:
            raise InputError(path=folder, problem=f"holds no complete checkpoint ({META} and {TENSORS})",
                             fix="resume from a run folder that saved checkpoints, or start without --resume")
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoding failure means a broken checkpoint
        raise InputError(path=folder, problem=f"holds an unreadable checkpoint ({type(e).__name__})",
                         fix="delete it and start again without --resume") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(path=tensor_path if stamped is not None else meta_path, field="format",
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
