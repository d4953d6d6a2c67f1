"""Which pixels of a rendered view can be trusted: WorldWarp's validity mask (SEED_SYSTEMS.md §4.2 step 6).

A render of a Gaussian cache at a new camera is trustworthy where

* its accumulated opacity ``alpha`` is high (something was rendered there), and
* it is **geometrically valid**: the pixel, back-projected with its rendered depth, lands inside at
  least one *source* view (a frame the cache was built from) in front of that camera, and the source's
  own depth there agrees with the point's depth in that camera to a relative error below ``rel_tol``
  (0.1 in WorldWarp). Pixels that fail see geometry the sources never saw (a disocclusion smeared over
  by large Gaussians, or the back of a surface).

The product is thresholded (0.5), eroded (``erode_px``; WorldWarp erodes 15x15 at 480x720, about
2 % of the width) and pooled to the latent grid: a latent token is valid when the eroded mask covers
at least half of its pixels. Video VAEs that compress time keep every ``temporal_factor``-th frame's
mask, as WorldWarp keeps ``valid_masks[:, ::4]`` for Wan.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.flow import unproject_depth


def geometric_validity(depth: Float[Tensor, "F H W"], cameras: Cameras, source_depths: Float[Tensor, "S H2 W2"],
                       source_cameras: Cameras, rel_tol: float = 0.1) -> Bool[Tensor, "F H W"]:
    """True where the pixel back-projects (at ``depth``, 0 = nothing) into at least one source view, in
    front of it and inside it, with ``|z - depth_src| / depth_src < rel_tol`` (nearest source pixel)."""
    f, h, w = depth.shape
    pts = unproject_depth(depth.double(), cameras.to(torch.float64)).reshape(f, 1, h * w, 3)  # [F, 1, HW, 3]
    src = source_cameras.to(torch.float64)
    s = len(src)
    uv, z = src.reshape(1, s).project(pts.expand(f, s, h * w, 3))  # [F, S, HW, 2], [F, S, HW]
    hs, ws = source_depths.shape[-2:]
    u = torch.floor(uv[..., 0]).long()
    v = torch.floor(uv[..., 1]).long()
    inside = (z > 1e-6) & (u >= 0) & (u < ws) & (v >= 0) & (v < hs)
    idx = (v.clamp(0, hs - 1) * ws + u.clamp(0, ws - 1))  # [F, S, HW]
    d_src = source_depths.double().reshape(1, s, hs * ws).expand(f, s, hs * ws).gather(2, idx)
    agree = (z - d_src).abs() < rel_tol * d_src.clamp_min(1e-9)
    ok = inside & (d_src > 0) & agree
    return (ok.any(1) & (depth.reshape(f, h * w) > 0)).reshape(f, h, w)


def validity_mask(alpha: Float[Tensor, "F H W"], geometric: Bool[Tensor, "F H W"], threshold: float = 0.5,
                  erode_px: int = 1) -> Bool[Tensor, "F H W"]:
    """``alpha * geometric > threshold``, eroded by a ``(2 erode_px + 1)`` square (0: no erosion)."""
    valid = (alpha * geometric.to(alpha.dtype)) > threshold
    if erode_px <= 0:
        return valid
    k = 2 * erode_px + 1
    # erosion = NOT dilation of the complement; pixels outside the image count as valid, so the image
    # border itself is not eaten away
    holes = (~valid).float()[:, None]
    grown = F.max_pool2d(F.pad(holes, (erode_px,) * 4, value=0.0), k, stride=1)
    return grown[:, 0] < 0.5


def latent_validity(valid: Bool[Tensor, "F H W"], factor: int, temporal_factor: int = 1,
                    min_fraction: float = 0.5) -> Bool[Tensor, "Fl 1 h w"]:
    """The pixel mask pooled to the latent grid (``factor`` pixels per token side, mean >=
    ``min_fraction``), one mask per latent frame (frames ``0, tf, 2 tf, ...``)."""
    frames = valid[::temporal_factor].float()[:, None]  # [Fl, 1, H, W]
    return F.avg_pool2d(frames, factor) >= min_fraction
