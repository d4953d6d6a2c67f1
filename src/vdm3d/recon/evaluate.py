"""Score renders against ground truth (PSNR, SSIM), per view and on average.

Shared by ``vdm3d fit`` and the jobs' benchmarks, so every number in the README is computed the same
way, on renders from :func:`vdm3d.recon.render.render_views` (clamped to [0, 1], without gradients).
"""

from __future__ import annotations

from vdm3d.metrics.image import psnr, ssim
from vdm3d.recon.render import render_views
from vdm3d.views import Views

__all__ = ["render_views", "score_views"]  # render_views is defined in recon.render; importable here too


def score_views(pred: Views, target: Views, names: list[str] | tuple[str, ...] | None = None) -> dict:
    """Per-view and mean PSNR (dB) and SSIM of ``pred`` against ``target`` images."""
    p, t = pred.images.float(), target.images.float()
    ps = psnr(p, t).tolist()
    ss = ssim(p, t).tolist()
    names = list(names) if names is not None else [f"view_{i:03d}" for i in range(len(p))]
    views = [{"name": n, "psnr": round(a, 4), "ssim": round(b, 5)} for n, a, b in zip(names, ps, ss)]
    return {"views": views, "mean": {"psnr": round(sum(ps) / len(ps), 4), "ssim": round(sum(ss) / len(ss), 5)}}
