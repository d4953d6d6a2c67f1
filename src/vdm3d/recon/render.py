"""Render Gaussians at cameras as :class:`~vdm3d.views.Views`: the one way jobs and evaluations
turn splats into images (with coverage ``alphas`` and z-``depths``, origin ``rendered``).

Renders are taken without gradients, ``chunk`` cameras at a time (bounded memory), and their colors
clamped to [0, 1]; to train through a render, call :func:`vdm3d.splat.render.render` directly.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.render import Backend, render
from vdm3d.views import Views


@torch.no_grad()
def render_views(gaussians: Gaussians, cameras: Cameras, *, background: float | Float[Tensor, "3"] = 0.0,
                 backend: Backend = "auto", sh_degree: int | None = None, chunk: int = 8) -> Views:
    """Renders of ``gaussians`` at every camera of the batch ``(N,)`` on ``background`` (a gray
    level or an RGB color), as Views with alphas and depths."""
    bg = torch.as_tensor(background, dtype=gaussians.dtype)
    bg = bg.expand(3) if bg.ndim == 0 else bg
    rgb, depth, alpha = [], [], []
    for s in range(0, len(cameras), chunk):
        out = render(gaussians, cameras[s:s + chunk], backend=backend, background=bg, sh_degree=sh_degree)
        rgb.append(out.rgb.clamp(0, 1))
        depth.append(out.depth)
        alpha.append(out.alpha)
    return Views(torch.cat(rgb), cameras, alphas=torch.cat(alpha), depths=torch.cat(depth),
                 origin=("rendered",) * len(cameras))
