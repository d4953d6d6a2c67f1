"""`vdm3d models convert CKPT OUT [--layout v3d|worldwarp --base FOLDER] --trust-pickle`.

Without ``--layout``: a pickle checkpoint becomes a ``.safetensors`` file with the same tensors. With
``--layout v3d`` or ``--layout worldwarp``: the checkpoint's denoiser is renamed to the diffusers layout
and written with the ``--base`` folder's other components as a model folder at OUT
(:func:`vdm3d.models.convert.convert_layout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import tyro


def convert(checkpoint: tyro.conf.Positional[Path], out: tyro.conf.Positional[Path], *,
            layout: Literal["tensors", "v3d", "worldwarp"] = "tensors", base: Path | None = None,
            trust_pickle: bool = False, overwrite: bool = False) -> None:
    """Convert a checkpoint to safetensors, and (--layout) to the diffusers layout our adapters load.

    Args:
        checkpoint: the pickle (or safetensors) checkpoint to read.
        out: the .safetensors file to write (--layout tensors), else the model folder to write.
        layout: tensors: keep the names; v3d: V3D.ckpt (sgm) -> unet/ of an SVD-XT folder; worldwarp:
            worldwarp_latest.ckpt -> transformer/ of a Wan2.1-T2V-1.3B folder.
        base: for --layout v3d|worldwarp, the diffusers folder of the base model (svd-xt,
            wan2.1-t2v-1.3b): its denoiser config and its other components.
        trust_pickle: read a pickle checkpoint (.ckpt, .bin, .pt, .pth), which can run code from the file;
            only for files whose source you trust. The .safetensors written needs no trust when it is loaded.
        overwrite: replace OUT if it exists.
    """
    from vdm3d.errors import UnsafeCheckpointError

    try:
        return _convert(checkpoint, out, layout, base, trust_pickle, overwrite)
    except UnsafeCheckpointError:  # the library's sentence names another command; this one needs only the flag
        raise UnsafeCheckpointError(
            f"{checkpoint}: pickle checkpoints can run code when loaded, so they are refused; if you trust its "
            "source, run the same command with --trust-pickle."
        ) from None


def _convert(checkpoint: Path, out: Path, layout: str, base: Path | None, trust_pickle: bool,
             overwrite: bool) -> None:
    from vdm3d.errors import ConfigError
    from vdm3d.models.convert import convert_checkpoint, convert_layout

    if layout == "tensors":
        path, count, size = convert_checkpoint(checkpoint, out, trust_pickle=trust_pickle, overwrite=overwrite)
    else:
        if base is None:
            raise ConfigError(f"--layout {layout} needs --base FOLDER, the diffusers folder of the model it "
                              f"fine-tunes ({'svd-xt' if layout == 'v3d' else 'wan2.1-t2v-1.3b'}).")
        path, count, size = convert_layout(checkpoint, out, layout, base, trust_pickle=trust_pickle,
                                           overwrite=overwrite)
    print(f"wrote {path}: {count} tensors, {size / 2**20:.1f} MiB")
