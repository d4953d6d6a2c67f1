"""New Gaussians where a reconstruction is empty, from generated views of it (GuidedVD's optional
``append_pcd_from_video_diffusion``, SEED_SYSTEMS.md §3.6).

A generated frame shows the scene also where the reconstruction has nothing (its holes). Pseudo
views alone fill such holes only through densification, which needs Gaussians near the hole to
start from, and a pseudo view's small loss weight gives them small gradients. GuidedVD can instead
add points directly:

1. relative depth of each generated frame from a monocular estimator;
2. scale and shift fitted to the reconstruction's own rendered depth where it is opaque
   (:func:`vdm3d.recon.cache.align_depth`), so the new points land at the scene's scale;
3. the hole pixels (rendered alpha below ``hole_alpha``) unprojected, a seeded ``share`` of them, as
   isotropic Gaussians with kNN scales and the frame's colours.

Frames with too few opaque pixels to fit the scale are skipped rather than guessed.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float

from vdm3d.recon.cache import align_depth, points_from_view
from vdm3d.splat.gaussians import Gaussians, knn_scales
from vdm3d.views import Views


def hole_points(generated: Views, rendered: Views, relative_depth: Float[torch.Tensor, "F H W"], *,
                hole_alpha: float = 0.7, opaque_alpha: float = 0.9, share: float = 0.2,
                scale_factor: float = 0.5, opacity: float = 0.5, min_opaque: int = 32,
                generator: torch.Generator | None = None) -> Gaussians | None:
    """Gaussians for a ``share`` of the hole pixels of every generated frame, or None if there are none.

    ``rendered`` holds the reconstruction's renders at the same cameras (alphas and expected depths),
    ``relative_depth`` the estimator's depth of the generated frames (any scale)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    alpha = rendered.alphas.float()
    surface = rendered.depths.float() / alpha.clamp_min(1e-6)  # expected depth of the visible surface
    pts, rgb = [], []
    for i in range(len(generated)):
        opaque = alpha[i] >= opaque_alpha
        holes = alpha[i] < hole_alpha
        if int(opaque.sum()) < min_opaque or not bool(holes.any()):
            continue
        depth, _, _ = align_depth(relative_depth[i].float(), surface[i], opaque)
        count = math.ceil(share * int(holes.sum()))
        p, c = points_from_view(generated.images[i].float(), depth, generated.cameras[i], holes, count, generator)
        pts.append(p)
        rgb.append(c)
    if not pts or sum(len(p) for p in pts) < 4:
        return None
    points = torch.cat(pts)
    return Gaussians.from_points(points, torch.cat(rgb).clamp(0, 1), knn_scales(points) * scale_factor,
                                 opacity=opacity, sh_degree=0)


__all__ = ["hole_points"]
