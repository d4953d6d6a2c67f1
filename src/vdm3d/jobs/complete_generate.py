"""Stage 3 of ``vdm3d complete``: a video along a planned path, grounded in the frozen baseline.

GuidedVD-3DGS's scene-grounding guidance (§3.4 / §8.3 of ``SEED_SYSTEMS.md``), for any backbone:

1. **Render the frozen baseline along the path** at the backbone's resolution: RGB ``G_f`` and
   accumulated alpha ``A_f`` (black background, so empty space is dark, not a colour to copy).
2. **Condition** the backbone with what it understands: the training image as the reference, the
   path's cameras relative to it, and for render-conditioned backbones (the embedded model's
   ``maps`` slot) the training image forward-warped along the path with the baseline's depth at
   the training view, the same point-cloud render ViewCrafter is conditioned on (one view's points,
   §3.3) and the same kind of map the tiny model was trained on.
3. **Sample** with DDIM, eta 1, trailing spacing, CFG with rescale 0.7 where the backbone has a
   null condition; at every step :class:`~vdm3d.diffusion.hooks.X0Guidance` decodes the x0
   prediction through the differentiable VAE decoder, takes ``0.5 sum (D - G)^2 M / sum M`` with
   ``M = [A >= 0.9]`` (guide only where the baseline is opaque) and moves the next sample by
   ``-rho g``, ``rho = 0.2 RMS(CFG correction) / RMS(g)`` (the RMS step-size rule).
4. **Frame 0 is the real training image**; the returned Views hold frames ``1..F-1`` as generated
   pseudo views at the scene's resolution, with the path's cameras.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import cv2
import numpy as np
import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.diffusion.guiders import CFG
from vdm3d.diffusion.hooks import X0Guidance
from vdm3d.diffusion.samplers import sample
from vdm3d.diffusion.schedules import DdimSchedule
from vdm3d.errors import ConfigError
from vdm3d.geometry.warp import forward_warp
from vdm3d.options import Range
from vdm3d.protocols import Conditioning
from vdm3d.splat.gaussians import Gaussians
from vdm3d.recon.render import render_views
from vdm3d.views import Views


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """How each clip is sampled (GuidedVD's constants unless the preset says otherwise)."""

    steps: Annotated[int, Range(1)] = 25
    """DDIM steps (GuidedVD: 50)."""
    cfg_scale: Annotated[float, Range(0)] = 3.0
    """Classifier-free guidance scale (GuidedVD/ViewCrafter: 7.5; 1 turns CFG off)."""
    cfg_rescale: Annotated[float, Range(0, 1)] = 0.7
    """CFG rescale phi."""
    guidance: bool = True
    """Scene-grounding guidance (False: the ablation without it)."""
    guidance_weight: Annotated[float, Range(0)] = 0.2
    """w of the RMS step-size rule rho = w RMS(CFG correction) / RMS(g)."""
    opaque_alpha: Annotated[float, Range(0, 1)] = 0.9
    """Guide only where the baseline's alpha is at least this."""
    eta: Annotated[float, Range(0, 1)] = 1.0
    """DDIM eta (1: ancestral, as GuidedVD)."""
    max_side: Annotated[int | None, Range(8)] = None
    """Longest side of the generation resolution (None: the backbone's, 64 for the embedded model)."""


def generation_size(width: int, height: int, max_side: int, factor: int) -> tuple[int, int]:
    """``(w, h)`` with the scene's aspect ratio, the longest side ``max_side``, both multiples of
    ``2 * factor`` (the latent must halve once more inside the denoiser)."""
    step = 2 * factor
    s = max_side / max(width, height)
    return max(step, round(width * s / step) * step), max(step, round(height * s / step) * step)


def render_path(baseline: Gaussians, cameras: Cameras) -> Views:
    """RGB, alpha and expected depth of the frozen baseline at every camera (black background)."""
    return render_views(baseline, cameras, background=0.0)


def warp_maps(image: Tensor, depth: Tensor, alpha: Tensor, cameras: Cameras) -> Tensor:
    """The training ``image [H, W, 3]`` forward-warped with the baseline's surface depth (``depth /
    alpha`` where ``alpha >= 0.5``) from ``cameras[0]`` into every camera of the path: maps
    ``[F, H, W, 5]`` = warped RGB (zero in holes), validity, zero edges (the tiny model's
    :data:`~vdm3d.models.tiny.MAP_CHANNELS`)."""
    z = (depth / alpha.clamp_min(1e-6)).where(alpha >= 0.5, torch.zeros_like(depth))
    warped = forward_warp(Views(image[None], cameras[:1], depths=z[None]), cameras)
    valid = warped.confidence.float()[..., None]
    return torch.cat([warped.images.float(), valid, torch.zeros_like(valid)], -1)


def _resize(images: Tensor, width: int, height: int) -> Tensor:
    if images.shape[-2] == width and images.shape[-3] == height:
        return images
    arr = images.numpy()
    return torch.from_numpy(np.stack([cv2.resize(a, (width, height), interpolation=cv2.INTER_AREA
                                                 if a.shape[1] > width else cv2.INTER_CUBIC) for a in arr])).clamp(0, 1)


def generate_clip(backbone: Any, baseline: Gaussians, image: Tensor, path: Trajectory,
                  config: GenerationConfig = GenerationConfig(), seed: int = 0) -> tuple[Views, Tensor, Views]:
    """Sample one clip along ``path`` (frame 0 = the training camera, whose photo is ``image [H, W, 3]``).

    Returns the pseudo views (frames 1..F-1 at the scene's resolution, origin ``generated``), the
    whole clip at the generation resolution ``[F, h, w, 3]`` (frame 0 = the real image) and the
    baseline's renders along the path at that resolution (the guidance targets)."""
    cams = path.cameras
    frames = len(cams)
    if backbone.frames is not None and getattr(backbone, "temporal_factor", 1) > 1 \
            and (frames - 1) % backbone.temporal_factor:
        raise ConfigError(f"complete: {frames} frames do not fit the backbone's temporal factor "
                          f"{backbone.temporal_factor}; use 1 + k * {backbone.temporal_factor} frames.")
    max_side = config.max_side or max(backbone.resolution)
    w, h = generation_size(cams.width, cams.height, max_side, backbone.spatial_factor)
    small = cams.resize(w, h)
    renders = render_path(baseline, small)  # [F, h, w, 3] + alphas + depths
    ref = _resize(image[None], w, h)[0]
    slots = backbone.slots
    cond = Conditioning(
        reference=ref[None] if "reference" in slots else None,
        cameras=small.reshape(1, frames) if "cameras" in slots else None,
        maps=warp_maps(ref, renders.depths[0], renders.alphas[0], small)[None] if "maps" in slots else None,
        extras={"reference_c2w": small.c2w[:1]})
    f_lat = (frames - 1) // backbone.temporal_factor + 1
    hl, wl = h // backbone.spatial_factor, w // backbone.spatial_factor
    guider = CFG(scale=config.cfg_scale, rescale=config.cfg_rescale) if config.cfg_scale != 1.0 else None
    hooks = []
    if config.guidance:
        mask = (renders.alphas >= config.opaque_alpha).float()
        hooks.append(X0Guidance(renders.images[None], mask[None], weight=config.guidance_weight,
                                step_size="cfg" if guider is not None else "fixed", decode_chunk=1))
    schedule = DdimSchedule(config.steps, "trailing")
    z = sample(backbone, schedule.sigmas(), cond=cond, shape=(1, f_lat, backbone.latent_channels, hl, wl),
               generator=torch.Generator().manual_seed(seed), guider=guider, hooks=hooks, eta=config.eta)
    with torch.no_grad():
        clip = backbone.decode(z)[0].clamp(0, 1).float()  # [F, h, w, 3]
    clip = torch.cat([ref[None], clip[1:]])  # frame 0 is the real training image
    full = _resize(clip[1:], cams.width, cams.height)
    pseudo = Views(full, cams[1:], origin=("generated",) * (frames - 1), fps=path.fps)
    return pseudo, clip, renders


__all__ = ["GenerationConfig", "generate_clip", "generation_size", "render_path", "warp_maps"]
