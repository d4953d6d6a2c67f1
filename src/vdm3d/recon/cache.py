"""An online Gaussian cache of what a long video has seen so far (WorldWarp, SEED_SYSTEMS.md §4.2 step 5, §8.6).

The cache is plain :class:`~vdm3d.splat.gaussians.Gaussians` plus a few rules:

* **Grow** (:func:`grow_cache`): pixels of a frame with depth are unprojected into isotropic Gaussians
  (kNN scales times ``scale_factor``, identity rotation, opacity near 1, SH degree 0; WorldWarp uses the
  full kNN distance, but at 64 px that blends each pixel with its neighbours' depths: the start
  image's rendered depth then misses its own depth map by 7 % at the median and only 72 % of its
  pixels pass the 10 % validity test, against 98 % at half the distance, with the same coverage) - the whole start image, and afterwards
  only the pixels the cache did not explain (its holes). At most ``per_frame`` points per frame (a
  seeded random subset), and at most ``max_total`` in the cache: beyond that the least opaque
  Gaussians go (:func:`cap_cache`), so the time and memory of a chunk stay flat however long the video.
* **Update** (:func:`fit_cache`): a short fit to the newest frames with the project's one fitting loop
  (:func:`vdm3d.recon.trainer.fit_gaussians`), WorldWarp's loss ``0.8 L1 + 0.2 (1 - SSIM)`` plus a
  small depth term, WorldWarp's learning rates and no densification. WorldWarp's depth term is an L1
  on inverse depth with weight 0.01; the shared loop has an L1 on depth, which at our scene scales
  (depths of 1-5 units) has a comparable size, so it is used with the same weight.
* **Align** (:func:`align_depth`): a monocular depth known up to scale is fitted by least squares
  (scale and shift) to the cache's rendered depth on the pixels where the render is valid, so new
  content lands at the cache's scale.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.flow import unproject_depth
from vdm3d.options import Range
from vdm3d.splat.gaussians import Gaussians, knn_scales
from vdm3d.views import Views

INIT_OPACITY = 0.99


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    """How the cache grows and learns."""

    per_frame: Annotated[int, Range(1)] = 4096
    """most new Gaussians from one frame"""
    max_total: Annotated[int, Range(1)] = 20_000
    """most Gaussians in the cache (the least opaque are dropped beyond it)"""
    fit_steps: Annotated[int, Range(0)] = 60
    """optimizer steps per update (one view per step); WorldWarp runs 500 at 480x720"""
    depth_weight: Annotated[float, Range(0)] = 0.01
    """weight of the depth L1 term"""
    scale_factor: Annotated[float, Range(0, open_min=True)] = 0.5
    """new Gaussians' size relative to the kNN distance"""
    seed: int = 0


def points_from_view(image: Float[Tensor, "H W 3"], depth: Float[Tensor, "H W"], camera: Cameras,
                     mask: Bool[Tensor, "H W"] | None, max_points: int, generator: torch.Generator
                     ) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3"]]:
    """World points and colors of the pixels with depth (and ``mask``), a seeded subset of ``max_points``."""
    keep = depth > 0
    if mask is not None:
        keep = keep & mask
    idx = keep.reshape(-1).nonzero().squeeze(-1)
    if idx.numel() > max_points:
        idx = idx[torch.randperm(idx.numel(), generator=generator)[:max_points]].sort().values
    pts = unproject_depth(depth, camera.reshape(()) if camera.shape else camera).reshape(-1, 3)
    return pts[idx].float(), image.reshape(-1, 3)[idx].float()


def grow_cache(cache: Gaussians | None, images: Float[Tensor, "F H W 3"], depths: Float[Tensor, "F H W"],
               cameras: Cameras, masks: Bool[Tensor, "F H W"] | None, config: CacheConfig,
               generator: torch.Generator) -> Gaussians | None:
    """Add Gaussians for the (masked) pixels of each frame, then cap the total."""
    parts = [] if cache is None else [cache]
    for i in range(len(cameras)):
        pts, rgb = points_from_view(images[i], depths[i], cameras[i], None if masks is None else masks[i],
                                    config.per_frame, generator)
        if len(pts) >= 2:
            scales = knn_scales(pts) * config.scale_factor
            parts.append(Gaussians.from_points(pts, rgb.clamp(0, 1), scales, opacity=INIT_OPACITY, sh_degree=0))
    if not parts:
        return None
    return cap_cache(Gaussians.cat(parts), config.max_total)


def cap_cache(cache: Gaussians, max_total: int) -> Gaussians:
    """The ``max_total`` most opaque Gaussians (ties keep the older ones), in their original order."""
    if len(cache) <= max_total:
        return cache
    order = torch.argsort(cache.opacity_logits.detach(), descending=True, stable=True)[:max_total]
    return cache[order.sort().values]


def fit_cache(cache: Gaussians, views: Views, config: CacheConfig, seed: int, frozen: int = 0) -> Gaussians:
    """A short fit of the cache to ``views`` (images and depths), no densification.

    ``frozen``: the first ``frozen`` Gaussians (those earlier frames put there) are held fixed and only the
    rest are fitted: every step renders them as constants, so their gradients are 0 and Adam leaves them
    exactly as they were."""
    from vdm3d.recon.trainer import FitConfig, LearningRates, fit_gaussians
    from vdm3d.splat.strategy import DensifyPolicy

    lr = LearningRates(lr_means=1.6e-3, lr_means_final=1.6e-4)  # WorldWarp's rates (scene scale 1)
    never = DensifyPolicy(refine_start=10 ** 9, refine_stop=10 ** 9 + 1, reset_every=0)
    fit = FitConfig(steps=config.fit_steps, lr=lr, ssim_weight=0.2, depth_weight=config.depth_weight,
                    sh_degree=0, sh_warmup_every=0, densify=never, scene_scale=1.0, seed=seed)
    if frozen <= 0:
        return fit_gaussians(views, cache, fit)
    if frozen >= len(cache):
        return cache
    fixed = cache[:frozen].detach()
    return fit_gaussians(views, cache, fit, appearance=lambda g: Gaussians.cat([fixed, g[frozen:]]))


def align_depth(pred: Float[Tensor, "H W"], reference: Float[Tensor, "H W"], mask: Bool[Tensor, "H W"],
                fallback_scale: float = 1.0, min_pixels: int = 32) -> tuple[Float[Tensor, "H W"], float, float]:
    """``scale * pred + shift`` fitted to ``reference`` on ``mask`` by least squares.

    With fewer than ``min_pixels`` valid pixels, or a non-positive fitted scale, the shift is 0 and the
    scale the median ratio (or ``fallback_scale`` when nothing is valid). Returns the aligned depth,
    the scale and the shift; the result is clamped to stay positive.
    """
    m = mask & (reference > 0) & (pred > 0)
    p, r = pred[m].double(), reference[m].double()
    scale, shift = fallback_scale, 0.0
    if p.numel() >= min_pixels:
        A = torch.stack([p, torch.ones_like(p)], 1)
        sol = torch.linalg.lstsq(A, r[:, None]).solution[:, 0]
        scale, shift = float(sol[0]), float(sol[1])
        if scale <= 0:
            scale, shift = float((r / p).median()), 0.0
    elif p.numel() > 0:
        scale = float((r / p).median())
    floor = 0.05 * float(pred[pred > 0].min()) * abs(scale) if bool((pred > 0).any()) else 1e-3
    return (scale * pred + shift).clamp_min(floor).to(pred.dtype), scale, shift
