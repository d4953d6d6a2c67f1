"""Published checkpoints whose tensor names are not the diffusers layout our adapters load.

* **V3D** (``heheyas/V3D``, ``V3D.ckpt``) is an sgm (Stability's ``generative-models``) Lightning
  checkpoint: the UNet is sgm's ``VideoUNet`` under ``model.diffusion_model.``, beside the VAE
  (``first_stage_model.``) and the conditioners. :func:`sgm_unet_names` gives, for every tensor of a
  diffusers ``UNetSpatioTemporalConditionModel`` built from a config, the sgm name of the same tensor,
  derived from the two block structures:

  ======================================  ==================================================
  diffusers                               sgm ``VideoUNet``
  ======================================  ==================================================
  ``conv_in`` / ``conv_norm_out`` /       ``input_blocks.0.0`` / ``out.0`` / ``out.2``
  ``conv_out``
  ``time_embedding.linear_1|2``           ``time_embed.0|2``
  ``add_embedding.linear_1|2``            ``label_emb.0.0|2`` (the ``sequential`` ADM embedding)
  ``down_blocks.b.resnets.l``             ``input_blocks.{1 + b (L+1) + l}.0``
  ``down_blocks.b.attentions.l``          ``input_blocks.{1 + b (L+1) + l}.1``
  ``down_blocks.b.downsamplers.0.conv``   ``input_blocks.{1 + b (L+1) + L}.0.op``
  ``mid_block.resnets.0|1``,              ``middle_block.0|2``, ``middle_block.1``
  ``mid_block.attentions.0``
  ``up_blocks.b.resnets.l``               ``output_blocks.{b (L+1) + l}.0`` (``.1``: attention)
  ``up_blocks.b.upsamplers.0.conv``       ``output_blocks.{b (L+1) + L}.{2 with attention, else 1}.conv``
  a resnet's ``spatial_res_block.`` +     sgm's ``ResBlock`` names: ``norm1 conv1 time_emb_proj norm2 conv2
  ``norm1 conv1 time_emb_proj norm2       conv_shortcut`` <- ``in_layers.0 in_layers.2 emb_layers.1
  conv2 conv_shortcut``;                  out_layers.0 out_layers.3 skip_connection``; the temporal
  ``temporal_res_block.``                 half is the same under ``time_stack.``
  a transformer's                         ``time_stack.j``; ``time_pos_embed.0|2``; the blocks' own
  ``temporal_transformer_blocks.j``;      names (``attn1.to_q``, ``ff.net.0.proj``, ``norm_in``, ...)
  ``time_pos_embed.linear_1|2``           are the same in both
  ======================================  ==================================================

  (``L`` is ``layers_per_block``; ``time_mixer.mix_factor``, ``norm``, ``proj_in``, ``proj_out`` keep
  their names.)

* **WorldWarp** (``imsuperkong/worldwarp``, ``worldwarp_latest.ckpt``) is a pickled bare state dict of
  its copy of diffusers' ``WanTransformer3DModel`` (it loads with ``strict=True`` into the diffusers
  class), so only the pickle and a wrapper prefix have to go. Wan fine-tunes saved in the original
  Wan2.1 layout (``blocks.i.self_attn.q``, ``ffn.0``, ``head.head``, ``modulation``, norms named
  ``norm1, norm3, norm2`` in the order diffusers calls ``norm1, norm2, norm3``) are renamed by
  :func:`wan_diffusers_name`.

Both are checked strictly against a model built (on the ``meta`` device) from the target config: every
tensor present once, with its shape, and nothing left over.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from vdm3d.errors import InputError

SGM_UNET_PREFIX = "model.diffusion_model."

_SGM_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
               ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))


def _resnet(d: str, s: str) -> list[tuple[str, str]]:
    pairs = [(f"{d}.spatial_res_block.{a}", f"{s}.{b}") for a, b in _SGM_RESNET]
    pairs += [(f"{d}.temporal_res_block.{a}", f"{s}.time_stack.{b}") for a, b in _SGM_RESNET]
    return pairs + [(f"{d}.time_mixer", f"{s}.time_mixer")]


def _transformer(d: str, s: str) -> list[tuple[str, str]]:
    return [(f"{d}.temporal_transformer_blocks", f"{s}.time_stack"),
            (f"{d}.time_pos_embed.linear_1", f"{s}.time_pos_embed.0"),
            (f"{d}.time_pos_embed.linear_2", f"{s}.time_pos_embed.2"), (d, s)]


def sgm_unet_prefixes(config: Any) -> list[tuple[str, str]]:
    """(diffusers prefix, sgm prefix) pairs for a ``UNetSpatioTemporalConditionModel`` config."""
    L = int(config["layers_per_block"]) if not isinstance(config["layers_per_block"], (list, tuple)) \
        else int(config["layers_per_block"][0])
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    pairs = [("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2"),
             ("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
             ("add_embedding.linear_1", "label_emb.0.0"), ("add_embedding.linear_2", "label_emb.0.2")]
    for b, kind in enumerate(down):
        for layer in range(L):
            k = 1 + b * (L + 1) + layer
            pairs += _resnet(f"down_blocks.{b}.resnets.{layer}", f"input_blocks.{k}.0")
            if kind.startswith("CrossAttn"):
                pairs += _transformer(f"down_blocks.{b}.attentions.{layer}", f"input_blocks.{k}.1")
        if b < len(down) - 1:
            pairs.append((f"down_blocks.{b}.downsamplers.0.conv", f"input_blocks.{1 + b * (L + 1) + L}.0.op"))
    pairs += _resnet("mid_block.resnets.0", "middle_block.0") + _resnet("mid_block.resnets.1", "middle_block.2")
    pairs += _transformer("mid_block.attentions.0", "middle_block.1")
    for b, kind in enumerate(up):
        attn = kind.startswith("CrossAttn")
        for layer in range(L + 1):
            k = b * (L + 1) + layer
            pairs += _resnet(f"up_blocks.{b}.resnets.{layer}", f"output_blocks.{k}.0")
            if attn:
                pairs += _transformer(f"up_blocks.{b}.attentions.{layer}", f"output_blocks.{k}.1")
        if b < len(up) - 1:
            pairs.append((f"up_blocks.{b}.upsamplers.0.conv", f"output_blocks.{b * (L + 1) + L}.{2 if attn else 1}.conv"))
    return pairs


def _rename(name: str, pairs: list[tuple[str, str]]) -> str | None:
    """``name`` with its longest matching prefix (whole dotted parts) replaced."""
    best = None
    for src, dst in pairs:
        if (name == src or name.startswith(src + ".")) and (best is None or len(src) > len(best[0])):
            best = (src, dst)
    return None if best is None else best[1] + name[len(best[0]):]


def sgm_unet_names(config: Any, names: list[str]) -> dict[str, str]:
    """diffusers tensor name -> sgm ``VideoUNet`` tensor name, for every name in ``names``."""
    pairs = sgm_unet_prefixes(config)
    out = {}
    for n in names:
        s = _rename(n, pairs)
        if s is None:
            raise InputError(f"the diffusers UNet tensor {n!r} has no sgm counterpart; this config is not an "
                             "SVD-style UNet (UNetSpatioTemporalConditionModel).")
        out[n] = s
    return out


# ---------------------------------------------------------------------- Wan
_WAN_TOP = {"time_embedding.0": "condition_embedder.time_embedder.linear_1",
            "time_embedding.2": "condition_embedder.time_embedder.linear_2",
            "text_embedding.0": "condition_embedder.text_embedder.linear_1",
            "text_embedding.2": "condition_embedder.text_embedder.linear_2",
            "time_projection.1": "condition_embedder.time_proj",
            "head.head": "proj_out", "head.modulation": "scale_shift_table"}
_WAN_BLOCK = {"self_attn": "attn1", "cross_attn": "attn2", "q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0",
              "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2", "modulation": "scale_shift_table",
              "norm3": "norm2", "norm2": "norm3"}  # Wan calls its cross-attention norm norm3
_WAN_BLOCK_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


def wan_diffusers_name(name: str) -> str:
    """The diffusers ``WanTransformer3DModel`` name of a tensor of the original Wan2.1 layout
    (diffusers names are returned unchanged)."""
    for src, dst in _WAN_TOP.items():
        if name == src or name.startswith(src + "."):
            return dst + name[len(src):]
    m = _WAN_BLOCK_NAME.match(name)
    if not m:
        return name
    parts = m.group(2).split(".")
    if parts[0] in ("self_attn", "cross_attn"):
        head = [_WAN_BLOCK[parts[0]]] + ([_WAN_BLOCK[parts[1]]] if parts[1] in ("q", "k", "v", "o") else [parts[1]])
        rest = parts[2:]
    elif ".".join(parts[:2]) in ("ffn.0", "ffn.2"):
        head, rest = [_WAN_BLOCK[".".join(parts[:2])]], parts[2:]
    elif parts[0] in ("modulation", "norm2", "norm3"):
        head, rest = [_WAN_BLOCK[parts[0]]], parts[1:]
    else:
        head, rest = parts[:1], parts[1:]
    return ".".join([f"blocks.{m.group(1)}", *head, *rest])


def is_wan_original(names: list[str]) -> bool:
    return any(".self_attn." in n or n.startswith("head.head") for n in names)


# ---------------------------------------------------------------------- checking
def strip_common_prefix(state: dict[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """``state`` without a wrapper prefix (``module.``, ``model.``, ...) that every name carries."""
    for p in prefixes:
        if state and all(k.startswith(p) for k in state):
            return {k[len(p):]: v for k, v in state.items()}
    return state


def check_against(state: dict[str, Tensor], expected: dict[str, tuple[int, ...]], what: str, source: str) -> None:
    """Refuse ``state`` unless it has exactly the tensors (and shapes) of ``expected``."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k]))
    if missing or extra or wrong:
        detail = "; ".join(f"{label} {len(items)} (e.g. {items[0]})" for label, items in
                           (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)) if items)
        raise InputError(f"{source}: does not match {what} ({detail}); check that the checkpoint and the --base "
                         "folder are the same model size.")
