"""Score renders against ground truth (PSNR, SSIM), per view and on average.

Shared by ``vdm3d fit`` and the jobs' benchmarks, so every number in the README is computed the same
way, on renders from :func:`vdm3d.recon.render.render_views` (clamped to [0, 1], without gradients).
"""

from __future__ import annotations

from typing import Callable

import torch

from vdm3d.metrics.image import psnr, ssim
from vdm3d.recon.render import render_views
from vdm3d.views import Views

__all__ = ["render_and_score", "render_views", "score_views"]  # render_views is defined in recon.render; importable here too


def score_views(pred: Views, target: Views, names: list[str] | tuple[str, ...] | None = None) -> dict:
    """Per-view and mean PSNR (dB) and SSIM of ``pred`` against ``target`` images."""
    p, t = pred.images.float(), target.images.float()
    return _scores(psnr(p, t).tolist(), ssim(p, t).tolist(), names)


def _scores(ps: list[float], ss: list[float], names: list[str] | tuple[str, ...] | None) -> dict:
    names = list(names) if names is not None else [f"view_{i:03d}" for i in range(len(ps))]
    views = [{"name": n, "psnr": round(a, 4), "ssim": round(b, 5)} for n, a, b in zip(names, ps, ss)]
    return {"views": views, "mean": {"psnr": round(sum(ps) / len(ps), 4), "ssim": round(sum(ss) / len(ss), 5)}}


def views_per_chunk(width: int, height: int, budget_pixels: int = 4_000_000) -> int:
    """How many views of ``width x height`` one render-and-score chunk holds (about ``budget_pixels``, at least 1)."""
    return max(1, min(8, budget_pixels // max(1, width * height)))


def render_and_score(gaussians, target: Views, names: list[str] | tuple[str, ...] | None = None, *,
                     background=0.0, backend="auto", keep: bool = False,
                     progress: Callable[[int], None] | None = None) -> tuple[dict, torch.Tensor | None, list[float]]:
    """:func:`score_views` of the renders of ``gaussians`` at ``target``'s cameras, rendered and scored a
    chunk of views at a time (:func:`views_per_chunk`), so only per-view numbers outlive a chunk.

    Returns the scores (the same numbers as ``score_views(render_views(...), target, names)``), the renders'
    images when ``keep`` (else None) and each view's empty fraction (alpha < 0.5). ``progress(n)`` is
    called with the number of views done after each chunk.
    """
    n = len(target.cameras)
    chunk = views_per_chunk(target.cameras.width, target.cameras.height)
    ps, ss, kept, empty = [], [], [], []
    for s in range(0, n, chunk):
        idx = slice(s, min(n, s + chunk))
        pred = render_views(gaussians, target.cameras[idx], background=background, backend=backend, chunk=chunk)
        p, t = pred.images.float(), target.images[idx].float()
        ps += psnr(p, t).tolist()
        ss += ssim(p, t).tolist()
        empty += (pred.alphas < 0.5).float().mean(dim=(1, 2)).tolist()
        if keep:
            kept.append(pred.images)
        if progress is not None:
            progress(idx.stop - idx.start)
    return _scores(ps, ss, names), torch.cat(kept) if keep else None, empty
