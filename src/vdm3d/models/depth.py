"""The depth-estimator protocol: what a job may ask of a monocular depth model.

Jobs depend on this protocol, never on a model class, so the embedded ``tiny-depth``
(:class:`vdm3d.models.tiny.depth.TinyDepth`) and the hub adapters (Depth Anything V2 and other
transformers depth models, :mod:`vdm3d.models.hub.depth`) are interchangeable; they are loaded by name
with :func:`vdm3d.models.registry.load_depth`. This module imports neither the diffusion core nor any
model code.

A depth estimator maps images ``[B, H, W, 3]`` in [0, 1] to one map ``[B, H, W]`` at the input
resolution, and says what the map means (``kind``):

============  ======================================================================================
``metric``    z-depth in metres (Depth Anything V2 Metric, ZoeDepth)
``relative``  z-depth up to one positive scale per image (``tiny-depth``: median 1)
``inverse``   disparity ``a / z + b`` up to scale and shift per image (Depth Anything V2, MiDaS, DPT;
              larger is nearer, 0 is far)
============  ======================================================================================

:func:`relative_depth` turns any kind into positive z-depth with median 1 per image (what a job aligns
to its own scale), and :func:`estimate_views` fills the ``depths`` of a :class:`~vdm3d.views.Views`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Float, Shaped, UInt8
from torch import Tensor

from vdm3d.errors import ConfigError
from vdm3d.views import Views, image_batch

DepthKind = Literal["metric", "relative", "inverse"]
DEPTH_KINDS: tuple[str, ...] = ("metric", "relative", "inverse")
#: the nearest/farthest depth ratio kept when disparity is inverted (disparity <= max / 1000 is "far")
FAR_RATIO = 1000.0


@runtime_checkable
class DepthEstimator(Protocol):
    """A monocular depth model as the jobs see it."""

    name: str
    #: what :meth:`predict` returns: metric depth, depth up to scale, or disparity up to scale and shift
    kind: DepthKind

    def predict(self, images: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W"]:
        """One map per image, at the input resolution, in the estimator's ``kind``."""


def depth_from_prediction(pred: Float[Tensor, "B H W"], kind: DepthKind) -> Float[Tensor, "B H W"]:
    """Positive z-depth (up to scale unless ``metric``) from a prediction of the given kind.

    Disparity is inverted as ``1 / d`` after clamping it to ``[max(d) / FAR_RATIO, inf)`` per image:
    its unknown shift makes far regions (sky, ``d ~ 0``) unreliable, so they are capped at
    ``FAR_RATIO`` times the nearest depth instead of becoming infinite."""
    if kind in ("metric", "relative"):
        return pred.clamp_min(torch.finfo(pred.dtype).tiny)
    if kind == "inverse":
        top = pred.flatten(1).amax(1).clamp_min(torch.finfo(pred.dtype).tiny)  # [B]
        return 1.0 / torch.maximum(pred, (top / FAR_RATIO)[:, None, None])
    raise ConfigError(f"depth kind {kind!r} is unknown; use one of {', '.join(DEPTH_KINDS)}.")


def relative_depth(estimator: DepthEstimator,
                   images: Float[Tensor, "B H W 3"] | UInt8[Tensor, "B H W 3"] | Shaped[np.ndarray, "B H W 3"]
                   ) -> Float[Tensor, "B H W"]:
    """Positive z-depth with median 1 per image, whatever the estimator's kind (align it to a scene's
    scale afterwards, e.g. with a known depth or the rendered depth of a reconstruction).

    ``images``: ``[B, H, W, 3]`` floats in [0, 1] or uint8, a tensor or numpy array; the estimator sees
    float32 (its weights' type), and the depth comes back in the images' float dtype (float32 for uint8).
    Other layouts (one ``[H, W, 3]`` image, channels first) are refused in one sentence."""
    images = image_batch(images, "relative_depth")
    dtype = images.dtype
    with torch.no_grad():
        depth = depth_from_prediction(estimator.predict(images.to(torch.float32)), estimator.kind)
    median = depth.flatten(1).median(dim=1).values.clamp_min(torch.finfo(depth.dtype).tiny)
    return (depth / median[:, None, None]).to(dtype)


def estimate_views(estimator: DepthEstimator, views: Views, batch: int = 8) -> Views:
    """``views`` with ``depths`` from the estimator: metric depth as predicted, other kinds as
    :func:`relative_depth` (median 1 per view). Runs ``batch`` images at a time."""
    chunks = []
    for start in range(0, len(views), batch):
        images = views.images[start:start + batch]
        if estimator.kind == "metric":
            with torch.no_grad():
                chunks.append(estimator.predict(images).clamp_min(0))
        else:
            chunks.append(relative_depth(estimator, images))
    return dataclasses.replace(views, depths=torch.cat(chunks).to(views.images))


__all__ = ["DEPTH_KINDS", "DepthEstimator", "DepthKind", "FAR_RATIO", "depth_from_prediction", "estimate_views",
           "relative_depth"]
