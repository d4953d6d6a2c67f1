"""Feature reprojection along target rays (the PixelNeRF-style condition of V3D's scene mode).

For every pixel of every target camera, the ray through the pixel centre is sampled at ``D``
z-depths; each sample point is projected into every input (source) camera, the source's feature map
is sampled there bilinearly, and the samples of the sources that see the point (in front of the
camera, inside its image) are averaged. Per depth the result holds

* the mean feature over the seeing sources (``C`` channels, zero where none sees the point),
* the mean over channels of the per-channel variance across the seeing sources (1 channel): a
  small cost volume, low where the sources agree, i.e. near the surface when the feature is colour,
* the fraction of sources that see the point (1 channel).

Depths are either shared planes ``[B, D]`` (:func:`depth_planes`: uniform in inverse depth between
``near`` and ``far``, so near space, where parallax is large, is sampled densely) or given per
target pixel ``[B, T, D, H, W]`` (a known depth, for tests and oracles).

Written by hand on ``torch.nn.functional.grid_sample`` because the whole operation must be
differentiable with respect to the features (the encoder in front of it is trained through it), and
batched over sources, targets and depths in one call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError

#: depth percentiles of the input views that bound the planes, and the margins applied (near x 0.8, far x 1.25)
DEPTH_PERCENTILES = (2.0, 98.0)
DEPTH_MARGINS = (0.8, 1.25)
#: channels the reprojection adds per depth beside the features: variance across sources, fraction seeing
EXTRA_CHANNELS = 2


def depth_planes(near: float | Float[Tensor, "*B"], far: float | Float[Tensor, "*B"], count: int
                 ) -> Float[Tensor, "*B D"]:
    """``count`` z-depths from ``near`` to ``far`` (both included), uniform in inverse depth."""
    near = torch.as_tensor(near, dtype=torch.float32)
    far = torch.as_tensor(far, dtype=near.dtype)
    if count < 1:
        raise InputError(f"depth_planes: count is {count}; use at least 1 depth.")
    t = torch.linspace(0.0, 1.0, count, dtype=near.dtype, device=near.device) if count > 1 else \
        torch.full((1,), 0.5, dtype=near.dtype, device=near.device)
    inv = (1 / near)[..., None] * (1 - t) + (1 / far)[..., None] * t
    return 1 / inv


def depth_range(depths: Tensor) -> tuple[float, float]:
    """``(near, far)`` for :func:`depth_planes` from z-depth maps of the input views (0 or inf: no surface):
    the 2nd and 98th percentiles with margins (``far`` at least twice the 2nd percentile)."""
    d = depths[torch.isfinite(depths) & (depths > 0)].double()
    if d.numel() == 0:
        return 0.5, 10.0
    lo, hi = torch.quantile(d[torch.randperm(d.numel(), generator=torch.Generator().manual_seed(0))[:100_000]],
                            torch.tensor([p / 100 for p in DEPTH_PERCENTILES], dtype=torch.float64)).tolist()
    return lo * DEPTH_MARGINS[0], max(hi * DEPTH_MARGINS[1], 2 * lo)


def reproject_features(features: Float[Tensor, "B V C Hs Ws"], sources: Cameras, targets: Cameras,
                       depths: Tensor, view_mask: Float[Tensor, "B V"] | None = None
                       ) -> Float[Tensor, "B T D C2 H W"]:
    """Features of ``V`` source views reprojected into ``T`` target cameras at ``D`` depths per ray.

    Args:
        features: per-source feature maps (any resolution: source pixel ``(u, v)`` of ``sources``,
            pixel centres at +0.5, is looked up at the same relative position in the feature map).
        sources: source cameras, batch shape ``[B, V]``.
        targets: target cameras, batch shape ``[B, T]``; the output has their ``height x width``.
        depths: z-depths along each target ray, ``[B, D]`` (planes) or ``[B, T, D, H, W]`` (per pixel).
        view_mask: 1 for real sources, 0 for padding (batches with fewer sources); default all 1.

    Returns:
        ``[B, T, D, C + 2, H, W]``: mean feature over the sources that see the point, the channel-mean
        variance across them, and the fraction of (real) sources that see it.
    """
    b, v, c, hs, ws = features.shape
    if tuple(sources.shape) != (b, v) or len(targets.shape) != 2 or targets.shape[0] != b:
        raise InputError(f"reproject_features: features for [{b}, {v}] sources, but sources have batch shape "
                         f"{tuple(sources.shape)} and targets {tuple(targets.shape)}; pass sources [B, V] and "
                         "targets [B, T].")
    t, h, w = targets.shape[1], targets.height, targets.width
    dtype = features.dtype
    tg = targets.to(dtype=torch.float64)
    origins, dirs = tg.rays(normalize=False)  # [B, T, H, W, 3]; origin + z * dir is at z-depth z
    depths = depths.to(torch.float64)
    if depths.dim() == 2:  # shared planes [B, D]
        depths = depths[:, None, :, None, None].expand(b, t, depths.shape[1], h, w)
    if depths.dim() != 5 or tuple(depths.shape[:2]) != (b, t) or tuple(depths.shape[3:]) != (h, w):
        raise InputError(f"reproject_features: depths of shape {tuple(depths.shape)}; pass [B, D] planes or "
                         f"[B, T, D, H, W] = [{b}, {t}, D, {h}, {w}] per-pixel depths.")
    d = depths.shape[2]
    points_world = origins[:, :, None] + depths[..., None] * dirs[:, :, None]  # [B, T, D, H, W, 3]
    flat = points_world.reshape(b, 1, -1, 3).expand(b, v, t * d * h * w, 3)
    uv_pix, z = sources.to(dtype=torch.float64).project(flat)  # [B, V, N, 2], [B, V, N]
    sw, sh = sources.width, sources.height
    inside = (z > 1e-6) & (uv_pix[..., 0] >= 0) & (uv_pix[..., 0] <= sw) & (uv_pix[..., 1] >= 0) \
        & (uv_pix[..., 1] <= sh)
    if view_mask is not None:
        inside = inside & (view_mask[:, :, None] > 0)
    # grid_sample with align_corners=False: x = -1 at the left image border, pixel i's centre at i + 0.5
    grid = torch.stack([2 * uv_pix[..., 0] / sw - 1, 2 * uv_pix[..., 1] / sh - 1], -1).to(dtype)
    grid = torch.where(inside[..., None], grid, torch.zeros_like(grid))
    sampled = F.grid_sample(features.reshape(b * v, c, hs, ws), grid.reshape(b * v, -1, 1, 2),
                            mode="bilinear", padding_mode="border", align_corners=False)  # [B*V, C, N, 1]
    sampled = sampled.reshape(b, v, c, -1)
    seen = inside.to(dtype)[:, :, None]  # [B, V, 1, N]
    count = seen.sum(1)  # [B, 1, N]
    mean = (sampled * seen).sum(1) / count.clamp_min(1)
    var = (((sampled - mean[:, None]) ** 2) * seen).sum(1) / count.clamp_min(1)
    real = v if view_mask is None else view_mask.to(dtype).sum(1).clamp_min(1)[:, None, None]
    out = torch.cat([mean, var.mean(1, keepdim=True), count / real], 1)  # [B, C + 2, N]
    return out.reshape(b, c + EXTRA_CHANNELS, t, d, h, w).permute(0, 2, 3, 1, 4, 5)


__all__ = ["DEPTH_MARGINS", "DEPTH_PERCENTILES", "EXTRA_CHANNELS", "depth_planes", "depth_range",
           "reproject_features"]
