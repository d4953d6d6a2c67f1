"""Loss terms for fitting Gaussians to Views, each a small function of tensors.

Every photometric term takes a per-pixel weight ``[B, H, W]`` that already folds in the view's
weight (input views count more than generated ones), its confidence map and its mask, and returns
a weighted mean: ``sum(w * e) / sum(w)`` with the sum of weights of the *whole* image in the
denominator, so a half-masked view does not get twice the pull of a full one.

* :func:`l1_loss`: ``|render - target|`` averaged over channels;
* :func:`dssim_loss`: ``1 - SSIM`` per pixel (11x11 Gaussian window, valid region, weights taken at the
  window centers), as in 3DGS where the total is ``(1 - lambda) L1 + lambda D-SSIM``, lambda 0.2;
* :func:`ms_ssim_loss`: ``1 - MS-SSIM``, the default stand-in for a perceptual loss when no LPIPS
  weights are present (V3D uses LPIPS);
* :func:`depth_loss`: L1 to a metric depth map, or ``1 - Pearson`` correlation to a relative one
  (monocular estimates are only defined up to scale and shift), over pixels with target depth > 0;
* :func:`opacity_loss`: mean opacity, pushing towards few, decisive Gaussians;
* :func:`alpha_loss`: L1 between the rendered coverage and a foreground mask.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.metrics.image import WINDOW, ms_ssim, ssim_map


def _weighted_mean(err: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return err.mean()
    return (err * weight).sum() / weight.sum().clamp_min(1e-8)


def l1_loss(pred: Float[Tensor, "B H W 3"], target: Float[Tensor, "B H W 3"],
            weight: Float[Tensor, "B H W"] | None = None) -> Float[Tensor, ""]:
    """Weighted mean absolute error."""
    return _weighted_mean((pred - target).abs().mean(-1), weight)


def dssim_loss(pred: Float[Tensor, "B H W 3"], target: Float[Tensor, "B H W 3"],
               weight: Float[Tensor, "B H W"] | None = None) -> Float[Tensor, ""]:
    """Weighted mean of ``1 - SSIM`` over the valid region (weights sampled at window centers)."""
    err = 1 - ssim_map(pred, target).mean(-1)  # [B, H-10, W-10]
    if weight is not None:
        r = WINDOW // 2
        weight = weight[:, r:weight.shape[1] - r, r:weight.shape[2] - r]
    return _weighted_mean(err, weight)


def ms_ssim_loss(pred: Float[Tensor, "B H W 3"], target: Float[Tensor, "B H W 3"],
                 weight: Float[Tensor, "B H W"] | None = None) -> Float[Tensor, ""]:
    """``1 - MS-SSIM``; a weight map only gates the images (masked pixels are set to the target)."""
    if weight is not None:
        keep = (weight > 0).unsqueeze(-1).to(pred.dtype)
        pred = pred * keep + target * (1 - keep)
    return (1 - ms_ssim(pred, target)).mean()


def depth_loss(pred: Float[Tensor, "B H W"], target: Float[Tensor, "B H W"],
               weight: Float[Tensor, "B H W"] | None = None,
               mode: Literal["l1", "pearson"] = "l1") -> Float[Tensor, ""]:
    """Depth supervision over pixels with ``target > 0``; ``pearson`` ignores scale and shift."""
    valid = (target > 0).to(pred.dtype)
    w = valid if weight is None else valid * weight
    if mode == "l1":
        return _weighted_mean((pred - target).abs(), w)
    losses = []
    for p, t, wi in zip(pred, target, w):  # one correlation per view
        s = wi.sum().clamp_min(1e-8)
        pc = p - (p * wi).sum() / s
        tc = t - (t * wi).sum() / s
        cov = (wi * pc * tc).sum()
        corr = cov / ((wi * pc * pc).sum().sqrt() * (wi * tc * tc).sum().sqrt()).clamp_min(1e-8)
        losses.append(1 - corr)
    return torch.stack(losses).mean()


def opacity_loss(opacity_logits: Float[Tensor, " N"]) -> Float[Tensor, ""]:
    """Mean opacity of the Gaussians."""
    return torch.sigmoid(opacity_logits).mean()


def alpha_loss(pred_alpha: Float[Tensor, "B H W"], target_alpha: Float[Tensor, "B H W"],
               weight: Float[Tensor, "B H W"] | None = None) -> Float[Tensor, ""]:
    """Weighted L1 between rendered coverage and a foreground mask."""
    return _weighted_mean((pred_alpha - target_alpha).abs(), weight)
