"""`vdm3d models convert CKPT OUT.safetensors --trust-pickle`: a pickle checkpoint to safetensors."""

from __future__ import annotations

from pathlib import Path

import tyro


def convert(checkpoint: tyro.conf.Positional[Path], out: tyro.conf.Positional[Path], *,
            trust_pickle: bool = False, overwrite: bool = False) -> None:
    """Convert a pickle checkpoint (.ckpt/.pt/.pth/.bin) to .safetensors, keeping its tensor names.

    Args:
        checkpoint: the pickle (or safetensors) checkpoint to read.
        out: the .safetensors file to write.
        trust_pickle: allow the full unpickler, which can run code from the file; only for files whose
            source you trust (tensors-only pickles load without it being needed at run time).
        overwrite: replace OUT if it exists.
    """
    from vdm3d.models.convert import convert_checkpoint

    path, count, size = convert_checkpoint(checkpoint, out, trust_pickle=trust_pickle, overwrite=overwrite)
    print(f"wrote {path}: {count} tensors, {size / 2**20:.1f} MiB")
