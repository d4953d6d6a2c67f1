"""Render Gaussians at held-out cameras and score the renders against ground truth (PSNR, SSIM).

Shared by ``vdm3d fit`` and the jobs' benchmarks, so every number in the README is computed the same
way: renders are clamped to [0, 1], one camera at a time (bounded memory), without gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.metrics.image import psnr, ssim
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.render import render
from vdm3d.views import Views


def render_views(gaussians: Gaussians, cameras: Cameras, *, backend: Literal["auto", "torch_ref", "torch", "gsplat"] = "auto",
                 background: Tensor | None = None, sh_degree: int | None = None) -> Views:
    """Renders (rgb clamped to [0, 1], depth, alpha) at every camera of the batch ``(N,)``."""
    rgb, depth, alpha = [], [], []
    with torch.no_grad():
        for i in range(len(cameras)):
            out = render(gaussians, cameras[i:i + 1], backend=backend, background=background, sh_degree=sh_degree)
            rgb.append(out.rgb.clamp(0, 1))
            depth.append(out.depth)
            alpha.append(out.alpha)
    return Views(torch.cat(rgb), cameras, alphas=torch.cat(alpha), depths=torch.cat(depth),
                 origin=("rendered",) * len(cameras))


def score_views(pred: Views, target: Views, names: list[str] | tuple[str, ...] | None = None) -> dict:
    """Per-view and mean PSNR (dB) and SSIM of ``pred`` against ``target`` images."""
    p, t = pred.images.float(), target.images.float()
    ps = psnr(p, t).tolist()
    ss = ssim(p, t).tolist()
    names = list(names) if names is not None else [f"view_{i:03d}" for i in range(len(p))]
    views = [{"name": n, "psnr": round(a, 4), "ssim": round(b, 5)} for n, a, b in zip(names, ps, ss)]
    return {"views": views, "mean": {"psnr": round(sum(ps) / len(ps), 4), "ssim": round(sum(ss) / len(ss), 5)}}
