"""CUDA backend: gsplat 1.5's ``rasterization`` (imported lazily, so vdm3d runs without it).

The Gaussians are handed over activated (``exp`` scales, ``sigmoid`` opacities) with their raw
``(w, x, y, z)`` quaternions (gsplat normalizes them and uses the same order) and the SH coefficients
``[N, K, 3]`` with ``sh_degree``; cameras as world-to-camera ``viewmats`` and ``Ks``. We ask for
``render_mode="RGB+ED"`` (expected depth) with ``packed=False`` so ``meta["means2d"]`` is a dense
``[B, N, 2]`` tensor whose ``.grad`` densification can read.

Known differences from the torch backends, all inside gsplat's kernel: alpha is clamped at 0.999
(3DGS: 0.99), a pixel stops when the transmittance would reach ``<= 1e-4`` (3DGS: ``< 1e-4``), and
tile culling uses the integer radii; the cross-backend test keeps opacities low enough for these
not to matter. gsplat reports radii per axis ``[B, N, 2]``; we return their maximum.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import Vdm3dError
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.output import RenderOutput
from vdm3d.splat.projection import EPS_2D, NEAR_PLANE


class GsplatUnavailableError(Vdm3dError):
    """The gsplat backend was requested where gsplat or CUDA is missing."""


def load_rasterization(device: torch.device | None = None):
    """gsplat's ``rasterization`` function, or a :class:`GsplatUnavailableError` saying what is missing."""
    try:
        from gsplat import rasterization
    except ImportError as exc:
        raise GsplatUnavailableError(
            f"render backend 'gsplat': the gsplat package is not importable ({exc}); install it with "
            "`pip install -c constraints.txt 'vdm3d[cuda]'` on a CUDA machine, or render on the CPU with "
            "backend='torch'.") from exc
    if not torch.cuda.is_available() or (device is not None and device.type != "cuda"):
        raise GsplatUnavailableError(
            "render backend 'gsplat': it needs the Gaussians on a CUDA device"
            f" ({'no CUDA device is available' if not torch.cuda.is_available() else f'they are on {device}'}); "
            "move them with gaussians.to('cuda'), or render on the CPU with backend='torch'.")
    return rasterization


def render_backend(gaussians: Gaussians, cameras: Cameras, sh_degree: int, background: Tensor) -> RenderOutput:
    """Render a flat batch of cameras ``(B,)`` with gsplat; see :func:`vdm3d.splat.render.render`."""
    rasterization = load_rasterization(gaussians.device)
    k = (sh_degree + 1) ** 2
    colors, alphas, meta = rasterization(
        means=gaussians.means, quats=gaussians.quats, scales=gaussians.scales, opacities=gaussians.opacities,
        colors=gaussians.sh[:, :k], viewmats=cameras.w2c, Ks=cameras.Ks, width=cameras.width,
        height=cameras.height, near_plane=NEAR_PLANE, eps2d=EPS_2D, sh_degree=sh_degree, packed=False,
        backgrounds=background, render_mode="RGB+ED", rasterize_mode="classic")
    means2d = meta["means2d"]  # [B, N, 2]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = meta["radii"]
    if radii.dim() == 3:  # gsplat >= 1.5 gives per-axis radii
        radii = radii.amax(-1)
    return RenderOutput(rgb=colors[..., :3], depth=colors[..., 3], alpha=alphas[..., 0], means2d=means2d,
                        radii=radii.to(torch.int32))
