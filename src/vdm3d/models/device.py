"""Where hub backbones run (``--device``), and the boundary that keeps every job's own tensors on the CPU.

A job (its cameras, warps, splats, samplers' arithmetic) works on CPU float32 tensors. A hub backbone may
be loaded on a CUDA device in half precision instead (``--device cuda``: bfloat16 where the GPU has it,
else float16, the published models' own precision). The four calls of the backbone protocol
(:class:`vdm3d.protocols.Backbone`: ``encode``, ``condition``, ``denoise``, ``decode``) are the boundary:
:func:`on_device_calls` wraps them once per adapter class so that their tensor arguments (inside
:class:`~vdm3d.protocols.Conditioning`, :class:`~vdm3d.cameras.Cameras`, dicts and lists too) go to the
backbone's device, and what ``encode``, ``denoise`` and ``decode`` return comes back as CPU float32
(``condition``'s result stays on the device: only the backbone reads it). So no job needs to know where
its backbone runs, and one that runs on the CPU is untouched (the moves are no-ops there).

Hand-written because the boundary is vdm3d's own protocol; accelerate's hooks move a module's inputs,
but the adapters also compute around their modules (camera embeddings, latent normalisation).
The embedded tiny models stay on the CPU whatever ``--device`` says: they are faster there than the
transfers would be.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import threading
from typing import Any, Callable

import torch

from vdm3d.errors import ConfigError
from vdm3d.io.runs import note_used

DEVICE_NOTE = ("--device cuda runs the hub backbones on the GPU in half precision (default: cpu; auto: cuda "
               "where there is one); the embedded models stay on the CPU")
CALLS = ("encode", "condition", "denoise", "decode")
"""the protocol's calls, the boundary between a job's CPU tensors and the backbone's device"""

_configured: dict[str, str | None] = {"device": None}
_depth = threading.local()  # calls in progress on this thread: only the outermost one converts


def parse_device(text: str, flag: str = "--device") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda where torch sees one) as a device this process can use;
    anything else, or a CUDA device that is not there, is one sentence naming ``flag``."""
    text = str(text).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{flag} {text!r} is not a device vdm3d runs on; pass cpu, cuda, cuda:N or auto.")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{flag} {text}: this process sees no CUDA device (torch {torch.__version__}, "
                              f"torch.cuda.is_available() is False); pass --device cpu, or install a CUDA build "
                              "of torch on a machine with an NVIDIA GPU.")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{flag} {text}: this process sees {count} CUDA device{'s' if count > 1 else ''} "
                              f"(cuda:0 to cuda:{count - 1}); pass one of those.")
    return device


def configure(device: str | None) -> None:
    """Load every hub backbone from now on on ``device`` (a ``--device`` value, checked; None: the CPU)."""
    if device is not None:
        parse_device(device)
    _configured["device"] = device


def configured_device() -> torch.device:
    """Where hub backbones are loaded: what :func:`configure` set, else the CPU."""
    device = _configured["device"]
    return parse_device(device) if device is not None else torch.device("cpu")


def note_on_cpu(model):
    """Say, where the job's ``--device`` asked for a GPU, that an embedded model runs on the CPU all the same
    (its tensors are small, the transfers would cost more); returns ``model``."""
    asked = _configured["device"]
    if asked is not None and parse_device(asked).type != "cpu":
        print(f"note: {getattr(model, 'name', type(model).__name__)} is an embedded model and runs on the CPU; "
              "--device places the hub backbones.", file=sys.stderr, flush=True)
    return model


def model_dtype(device: torch.device) -> torch.dtype | None:
    """The precision a hub backbone is loaded in on ``device``: None (as stored, float32 for the published
    weights' defaults) on the CPU, where half precision is slow; bfloat16 on a GPU that has it, else float16."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe(backbone) -> str:
    """Where a loaded backbone runs, for the run's manifest: ``cpu float32``, ``cuda:0 (NVIDIA H200) bfloat16``."""
    device = backbone.device
    name = ""
    if device.type == "cuda":
        name = f" ({torch.cuda.get_device_name(device)})"
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    return f"{device}{name} {str(backbone.dtype).removeprefix('torch.')}"


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it on ``device``: tensors, dataclasses (:class:`~vdm3d.protocols.Conditioning`,
    :class:`~vdm3d.cameras.Cameras`, an adapter's condition), dicts, lists and tuples; anything else as it is.
    Dtypes are kept (the adapters cast to their own); where nothing moves, the same object comes back."""
    if isinstance(value, torch.Tensor):
        return value if value.device == device else value.to(device)
    if isinstance(value, dict):
        moved = {k: to_device(v, device) for k, v in value.items()}
        return value if all(moved[k] is value[k] for k in value) else moved
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        items = [to_device(v, device) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: to_device(getattr(value, f.name), device) for f in dataclasses.fields(value) if f.init}
        if all(fields[k] is getattr(value, k) for k in fields):
            return value  # nothing to move (the CPU): the same object, no copy per call
        return dataclasses.replace(value, **fields)
    return value


def to_caller(value: Any) -> Any:
    """What a protocol call returns, as the job expects it: CPU float32 (other dtypes and non-tensors as they
    are)."""
    if isinstance(value, torch.Tensor):
        dtype = torch.float32 if value.is_floating_point() else value.dtype
        return value if value.device.type == "cpu" and value.dtype == dtype else value.to("cpu", dtype)
    return value


def _boundary(name: str, call: Callable) -> Callable:
    @functools.wraps(call)
    def crossing(self, *args, **kwargs):
        depth = getattr(_depth, "n", 0)
        if depth:  # a subclass's call through super(): the outermost one moves and converts
            return call(self, *args, **kwargs)
        device = self.device
        note_used("backbone_device", describe(self))  # the run's manifest says where it ran (set when it runs)
        _depth.n = 1
        try:
            out = call(self, *to_device(args, device), **to_device(kwargs, device))
        finally:
            _depth.n = 0
        return out if name == "condition" else to_caller(out)

    crossing._vdm3d_boundary = True
    return crossing


def on_device_calls(cls: type) -> None:
    """Put the boundary around the protocol calls that ``cls`` defines itself (called by
    ``HubBackbone.__init_subclass__`` for each adapter class)."""
    for name in CALLS:
        call = cls.__dict__.get(name)
        if callable(call) and not getattr(call, "_vdm3d_boundary", False):
            setattr(cls, name, _boundary(name, call))
