"""Turn a pickle checkpoint into safetensors, once, so that every later load runs no code.

Published weights sometimes ship only as pickles (WorldWarp's ``worldwarp_latest.ckpt``, V3D's
``.ckpt``). vdm3d loads safetensors only; :func:`convert_checkpoint` reads the pickle the safe way
first (``torch.load(weights_only=True)``, tensors and plain containers only) and falls back to the
full unpickler only because the caller said it trusts the file, unwraps a Lightning ``state_dict``,
and writes the same names and tensors as ``.safetensors`` (atomically).

Two published checkpoints also need their tensors renamed and a model folder around them
(:func:`convert_layout`, ``vdm3d models convert CKPT OUT --layout v3d|worldwarp --base FOLDER``):
V3D's sgm UNet becomes ``unet/`` of an SVD-XT folder, WorldWarp's transformer becomes ``transformer/``
of a Wan2.1-T2V-1.3B folder (:mod:`vdm3d.models.hub.layouts` has the name mappings). The new folder
holds the converted denoiser (``config.json`` copied from the base) and links to the base folder's
other components, so it loads with ``vdm3d ... --backbone v3d|worldwarp`` once it sits at the
registry's folder for that name (``vdm3d models info v3d``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Literal

from vdm3d.errors import ConfigError, InputError, OutputExistsError
from vdm3d.io.runs import partial_folder
from vdm3d.models.weights import load_state_dict, save_state_dict

Layout = Literal["tensors", "v3d", "worldwarp"]
CONVERSION = "vdm3d_conversion.json"  # in a converted model folder: what it was made from (and that it was)
LAYOUTS = {  # layout -> (denoiser sub-folder, diffusers class, what the base folder is)
    "v3d": ("unet", "UNetSpatioTemporalConditionModel", "a diffusers SVD-XT folder (svd-xt)"),
    "worldwarp": ("transformer", "WanTransformer3DModel", "a diffusers Wan2.1-T2V-1.3B folder (wan2.1-t2v-1.3b)"),
}


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


def convert_layout(checkpoint: str | Path, out: str | Path, layout: Layout, base: str | Path, *,
                   trust_pickle: bool = False, overwrite: bool = False) -> tuple[Path, int, int]:
    """A model folder at ``out`` for ``layout`` (``v3d``, ``worldwarp``): the checkpoint's denoiser renamed
    to the diffusers layout, checked tensor by tensor against the base folder's config, plus links to
    the base folder's other components. Returns ``(out, tensors, bytes)``."""
    from accelerate import init_empty_weights

    import diffusers
    from vdm3d.models.hub import layouts

    if layout not in LAYOUTS:
        raise ConfigError(f"--layout {layout!r} needs no model folder or is unknown; choose one of: "
                          f"{', '.join(LAYOUTS)} (or tensors, with an OUT.safetensors file).")
    key, cls_name, what = LAYOUTS[layout]
    out, base = Path(out).expanduser(), Path(base).expanduser()
    config_path = base / key / "config.json"
    if not config_path.is_file():
        raise InputError(path=base, field=f"{key}/config.json", problem="is missing",
                         fix=f"give --base {what}")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: already exists; choose another output or pass --overwrite.")
    if out.is_dir() and not out.is_symlink() and not (out / CONVERSION).is_file() and any(out.iterdir()):
        # the folder is deleted at the end: a mistyped OUT (a home or project folder) must not be
        raise OutputExistsError(f"{out}: --overwrite replaces only a model folder a conversion wrote (with its "
                                f"{CONVERSION}), and this one holds other files; choose another output, or empty "
                                "that folder yourself.")
    cls = getattr(diffusers, cls_name)
    config = cls.load_config(str(base / key))
    with init_empty_weights():
        expected = {k: tuple(v.shape) for k, v in cls.from_config(config).state_dict().items()}
    state = load_state_dict(checkpoint, trust_pickle=trust_pickle)
    if layout == "v3d":
        unet = {k[len(layouts.SGM_UNET_PREFIX):]: v for k, v in state.items() if k.startswith(layouts.SGM_UNET_PREFIX)}
        unet = unet or state  # a bare UNet state dict
        names = layouts.sgm_unet_names(config, sorted(expected))
        missing = sorted(d for d, s in names.items() if s not in unet)
        if missing:
            raise InputError(f"{checkpoint}: has no sgm tensor {names[missing[0]]!r} (for {missing[0]}) and "
                             f"{len(missing) - 1} more; is it a V3D/SVD checkpoint of the --base model's size?")
        leftover = sorted(set(unet) - set(names.values()))
        if leftover:
            raise InputError(f"{checkpoint}: {len(leftover)} UNet tensors have no diffusers counterpart "
                             f"(e.g. {leftover[0]!r}); is --base the model this checkpoint fine-tunes?")
        converted = {d: unet[s] for d, s in names.items()}
    else:
        converted = layouts.strip_common_prefix(state, ("module.", "model.", "transformer.", "dit."))
        if layouts.is_wan_original(list(converted)):
            converted = {layouts.wan_diffusers_name(k): v for k, v in converted.items()}
    layouts.check_against(converted, expected, f"the {cls_name} of {config_path}", str(checkpoint))
    partial = partial_folder(out)
    shutil.rmtree(partial, ignore_errors=True)
    (partial / key).mkdir(parents=True)
    shutil.copyfile(config_path, partial / key / "config.json")
    save_state_dict({k: v.contiguous() for k, v in converted.items()},
                    partial / key / "diffusion_pytorch_model.safetensors")
    for item in sorted(base.iterdir()):  # the other components, linked (they are the base model's)
        # not the base's vdm3d_adapter.json: it says the folder is the base model (svd-xt), which it is not
        if item.name not in (key, "vdm3d_adapter.json") and not item.name.startswith("."):
            os.symlink(item.resolve(), partial / item.name, target_is_directory=item.is_dir())
    (partial / CONVERSION).write_text(json.dumps(
        {"layout": layout, "checkpoint": str(Path(checkpoint).resolve()), "base": str(base.resolve()),
         "tensors": len(converted)}, indent=2))
    if out.exists():
        shutil.rmtree(out) if out.is_dir() and not out.is_symlink() else out.unlink()
    os.replace(partial, out)
    return out, len(converted), sum(t.numel() * t.element_size() for t in converted.values())
