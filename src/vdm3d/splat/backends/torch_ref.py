"""The readable dense reference renderer: every Gaussian at every pixel.

This is the definition the fast backends are tested against, so it is written for the reader, not
for speed: for each pixel, all Gaussians are sorted front to back by camera z and composited with
the 3DGS rules (see :mod:`vdm3d.splat.projection` for the constants):

* ``alpha_i = min(0.99, opacity_i exp(-0.5 d^T Sigma2d^-1 d))``, set to 0 when below 1/255;
* ``T_i = prod_{j<i} (1 - alpha_j)``; Gaussian ``i`` contributes only while
  ``T_i (1 - alpha_i) >= 1e-4`` (3DGS stops a pixel at the first Gaussian that would push the
  transmittance below 1e-4, and that Gaussian is not blended);
* ``rgb = sum_i w_i c_i + (1 - A) background``, ``A = sum_i w_i``, ``depth = sum_i w_i z_i / A``
  with ``w_i = alpha_i T_i``.

Memory: the graph of a dense render holds ~10 floats per (pixel, Gaussian) pair, so the pixels are
processed in chunks of at most ``PAIRS_PER_CHUNK`` pairs, each wrapped in activation checkpointing
when gradients are needed; peak memory is then one chunk's graph, and time is unchanged in order.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from vdm3d.cameras.camera import Cameras
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.output import RenderOutput, finish
from vdm3d.splat.projection import ALPHA_MAX, ALPHA_MIN, T_MIN, pixel_centers, project_gaussians

PAIRS_PER_CHUNK = 1 << 22


def composite_dense(pix: Tensor, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor,
                    depths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Blend depth-sorted Gaussians ``[N, ...]`` at pixel centers ``pix [P, 2]``.

    Returns the foreground color ``sum w c [P, 3]``, the depth sum ``sum w z [P]`` and ``A [P]``.
    """
    d = pix[:, None, :] - means2d[None, :, :]  # [P, N, 2]
    dx, dy = d[..., 0], d[..., 1]
    a, b, c = conics.unbind(-1)  # [N] each
    power = a * dx * dx + 2 * b * dx * dy + c * dy * dy  # Mahalanobis distance^2, [P, N]
    alpha = torch.clamp_max(opacities * torch.exp(-0.5 * power), ALPHA_MAX)
    alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
    T_after = torch.cumprod(1 - alpha, dim=1)  # transmittance after each Gaussian, [P, N]
    T_before = torch.cat([torch.ones_like(T_after[:, :1]), T_after[:, :-1]], 1)
    blended = T_after >= T_MIN  # the front-to-back loop stops at the first one that fails
    weights = alpha * T_before * blended.to(alpha.dtype)  # [P, N]
    return weights @ colors, weights @ depths, weights.sum(1)


def render_backend(gaussians: Gaussians, cameras: Cameras, sh_degree: int, background: Tensor) -> RenderOutput:
    """Render a flat batch of cameras ``(B,)``; see :func:`vdm3d.splat.render.render`."""
    proj = project_gaussians(gaussians, cameras, sh_degree)
    means2d = proj.means2d
    if means2d.requires_grad:
        means2d.retain_grad()
    H, W = cameras.height, cameras.width
    pix = pixel_centers(W, H, gaussians.dtype, gaussians.device)  # [P, 2]
    n = max(len(gaussians), 1)
    chunk = max(1, PAIRS_PER_CHUNK // n)
    rgbs, dsums, alphas = [], [], []
    for i in range(len(cameras.c2w)):
        order = torch.argsort(proj.depths[i].detach(), stable=True)  # front to back
        args = (means2d[i, order], proj.conics[i, order], proj.opacities[i, order], proj.colors[i, order],
                proj.depths[i, order])
        parts = []
        for start in range(0, H * W, chunk):
            p = pix[start:start + chunk]
            if torch.is_grad_enabled() and any(t.requires_grad for t in args):
                parts.append(checkpoint(composite_dense, p, *args, use_reentrant=False))
            else:
                parts.append(composite_dense(p, *args))
        rgbs.append(torch.cat([q[0] for q in parts]).reshape(H, W, 3))
        dsums.append(torch.cat([q[1] for q in parts]).reshape(H, W))
        alphas.append(torch.cat([q[2] for q in parts]).reshape(H, W))
    return finish(torch.stack(rgbs), torch.stack(dsums), torch.stack(alphas), background, means2d, proj.radii)
