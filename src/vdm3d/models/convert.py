"""Turn a pickle checkpoint into safetensors, once, so that every later load runs no code.

Published weights sometimes ship only as pickles (WorldWarp's ``worldwarp_latest.ckpt``, V3D's
``.ckpt``). vdm3d loads safetensors only; :func:`convert_checkpoint` reads the pickle the safe way
first (``torch.load(weights_only=True)``, tensors and plain containers only) and falls back to the
full unpickler only because the caller said it trusts the file, unwraps a Lightning ``state_dict``,
and writes the same names and tensors as ``.safetensors`` (atomically). Key layouts are kept as
they are: mapping a checkpoint onto a diffusers layout is the adapter's job.
"""

from __future__ import annotations

from pathlib import Path

from vdm3d.errors import ConfigError, OutputExistsError
from vdm3d.models.weights import load_state_dict, save_state_dict


def convert_checkpoint(checkpoint: str | Path, out: str | Path, *, trust_pickle: bool = False,
                       overwrite: bool = False) -> tuple[Path, int, int]:
    """Write ``checkpoint``'s tensors to ``out`` (``.safetensors``); returns ``(out, tensors, bytes)``."""
    out = Path(out)
    if out.suffix.lower() != ".safetensors":
        raise ConfigError(f"{out}: the output must end in .safetensors; name it e.g. {out.with_suffix('.safetensors')}.")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: already exists; choose another output or pass --overwrite.")
    state = load_state_dict(checkpoint, trust_pickle=trust_pickle)
    save_state_dict(state, out)
    return out, len(state), sum(t.numel() * t.element_size() for t in state.values())
