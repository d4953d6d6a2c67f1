"""Monocular depth models through transformers (Depth Anything V2, DPT, ...), behind the depth protocol.

A transformers depth repository holds ``config.json``, ``model.safetensors`` and
``preprocessor_config.json``: :class:`TransformersDepth` loads the model with
``AutoModelForDepthEstimation`` and its own image processor, offline and safetensors-only by default,
with the same one-sentence missing-weights error as the video adapters
(:func:`vdm3d.models.weights.missing_weights_error`).

:meth:`TransformersDepth.predict` does exactly what transformers' ``pipeline("depth-estimation")`` does
to an 8-bit image (the processor's resize to a multiple of the patch size and normalization, the
model, bicubic resampling of ``predicted_depth`` back to the input size), batched. Images in [0, 1]
are rounded to 8 bits first, as the pipeline sees them.

The kind (:data:`vdm3d.models.depth.DepthKind`) comes from the model config: Depth Anything's
``depth_estimation_type`` ``relative`` is affine-invariant disparity (``inverse``), ``metric`` is metres;
a registry entry may override it (setting ``kind``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from vdm3d.errors import ConfigError
from vdm3d.models.depth import DEPTH_KINDS
from vdm3d.models.hub.base import _refuse_pickle_only, peft_adapter_problem, quiet_loading
from vdm3d.models.weights import is_missing_weights, missing_weights_error


@dataclasses.dataclass(frozen=True)
class DepthSettings:
    kind: str | None = None
    """metric / relative / inverse; None: from the model config (Depth Anything: relative -> inverse)"""


def kind_from_config(config: Any) -> str:
    """Depth Anything / DPT relative heads predict disparity; ``metric`` heads predict metres."""
    return "metric" if getattr(config, "depth_estimation_type", "relative") == "metric" else "inverse"


class TransformersDepth:
    """A transformers depth-estimation model and its image processor (protocol ``DepthEstimator``)."""

    def __init__(self, model: torch.nn.Module, processor: Any, *, name: str = "transformers-depth",
                 kind: str | None = None):
        kind = kind or kind_from_config(model.config)
        if kind not in DEPTH_KINDS:
            raise ConfigError(f"{name}: depth kind {kind!r} is unknown; use one of {', '.join(DEPTH_KINDS)}.")
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.name, self.kind = name, kind

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, images: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W"]:
        h, w = images.shape[1:3]
        pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # [B, H, W, 3]
        with quiet_loading():
            inputs = self.processor(images=list(np.ascontiguousarray(pixels)), return_tensors="pt")
        param = next(self.model.parameters())
        pred = self.model(pixel_values=inputs["pixel_values"].to(param.device, param.dtype)).predicted_depth
        # [B, h', w'] at the processor's size -> the input size, as post_process_depth_estimation does
        out = F.interpolate(pred[:, None].float(), size=(h, w), mode="bicubic", align_corners=False)[:, 0]
        return out.to(images.device)

    def save_pretrained(self, folder: str | Path) -> Path:
        """The transformers layout (``config.json``, ``model.safetensors``, ``preprocessor_config.json``)."""
        folder = Path(folder)
        self.model.save_pretrained(str(folder), safe_serialization=True)
        self.processor.save_pretrained(str(folder))
        return folder

    @classmethod
    def from_pretrained(cls, source: str | Path, *, allow_download: bool = False, trust_pickle: bool = False,
                        name: str | None = None, hub_id: str | None = None, folder: str | Path | None = None,
                        files: tuple[str, ...] = (), device: str | torch.device = "cpu",
                        cache_dir: str | Path | None = None, **settings) -> "TransformersDepth":
        """Load from a local folder or a hub id (offline unless ``allow_download``); ``settings`` are
        :class:`DepthSettings` fields."""
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        known = {f.name for f in dataclasses.fields(DepthSettings)}
        if set(settings) - known:
            raise ConfigError(f"{cls.__name__}: unknown settings {sorted(set(settings) - known)}; "
                              f"choose from {sorted(known)}.")
        s = DepthSettings(**settings)
        path = Path(str(source)).expanduser()
        local = path.is_dir()
        source_str = str(path) if local else str(source)
        what = name or cls.__name__

        def missing():
            return missing_weights_error(what, source_str, hub_id=hub_id or (None if local else source_str),
                                         folder=folder or (source_str if local else None), files=files)

        if not local and (path.is_absolute() or str(source).startswith((".", "~"))):
            raise missing()
        if local and (adapter := peft_adapter_problem(path, what, [path / "config.json"], hub_id=hub_id,
                                                      home=folder)) is not None:
            raise adapter  # transformers would load the adapter's base model from the hub instead
        if local and not trust_pickle:
            _refuse_pickle_only(path)
        if not local and not allow_download:
            # offline: the cached snapshot's folder, found without the network. transformers 5 still asks the hub
            # for an adapter_config.json of a hub id despite local_files_only (36 s of retries in a script, where
            # the CLI's HF_HUB_OFFLINE is not set, before the missing weights were said)
            from huggingface_hub import snapshot_download

            try:
                source_str = snapshot_download(source_str, local_files_only=True,
                                               cache_dir=None if cache_dir is None else str(cache_dir))
            except Exception as e:  # noqa: BLE001 - not in the cache (LocalEntryNotFoundError), or no such repo id
                raise missing() from e
            if not trust_pickle:
                _refuse_pickle_only(Path(source_str))
        kwargs: dict[str, Any] = {"local_files_only": not allow_download}
        if cache_dir is not None:
            kwargs["cache_dir"] = str(cache_dir)
        try:
            with quiet_loading():
                model = AutoModelForDepthEstimation.from_pretrained(
                    source_str, use_safetensors=None if trust_pickle else True, **kwargs)
                processor = AutoImageProcessor.from_pretrained(source_str, **kwargs)
        except (OSError, ValueError) as e:
            if is_missing_weights(e):
                raise missing() from e
            raise
        return cls(model.to(device), processor, name=what, kind=s.kind)


def tiny_depth_anything(seed: int = 0, *, metric: bool = False, size: int = 28) -> TransformersDepth:
    """A tiny random Depth Anything (a 4-layer 16-wide DINOv2, a few ten thousand weights) with its DPT
    image processor resizing to ``size`` (a multiple of the patch size 14), for tests."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    try:
        from transformers import DPTImageProcessorPil
    except ImportError:  # transformers 4 (pyproject allows 4.46): its DPTImageProcessor is the PIL one
        from transformers import DPTImageProcessor as DPTImageProcessorPil

    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                            patch_size=14, image_size=size, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 16, 16],
                                 fusion_hidden_size=8, head_hidden_size=8,
                                 depth_estimation_type="metric" if metric else "relative", max_depth=20)
    model = DepthAnythingForDepthEstimation(config)
    with torch.no_grad():  # random heads predict ~0 through their final ReLU: give the output some range
        for p in model.head.parameters():
            p.normal_(0.0, 0.5)
        model.head.conv3.bias.fill_(0.5)
    processor = DPTImageProcessorPil(size={"height": size, "width": size}, keep_aspect_ratio=True,
                                     ensure_multiple_of=14, resample=3, do_pad=False,
                                     image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return TransformersDepth(model, processor, name="tiny-depth-anything")


__all__ = ["DepthSettings", "TransformersDepth", "kind_from_config", "tiny_depth_anything"]
