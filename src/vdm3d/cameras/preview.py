"""A picture of a camera path before running anything: frusta over the scene, from the top and the side.

:func:`preview_png` returns PNG bytes (matplotlib, Agg backend, no display needed) with two panels:

* **top**: looking down the scene's up axis;
* **side**: looking horizontally, along the horizontal direction in which the camera centers
  spread least (so the path's height profile is visible).

The up axis is the mean image-up direction (``-y``) of the cameras - world +z for vdm3d's orbits,
-y for COLMAP/LLFF captures - so no flag is needed. Frusta are drawn as the camera center joined to
the four image corners at a depth of ``frustum_scale`` x the scene size, colored by time (viridis);
the first frame is drawn thicker and labeled. Scene points (subsampled) are drawn underneath in
their colors, or grey.

Memory is bounded whatever the path's length: the path line uses at most ``max_path_points`` evenly
spaced cameras (always the first and the last) and at most ``max_frusta`` of them get a frustum, so
a 100,000-frame path draws in the memory of a short one (``tests/hardening/test_bounded_memory.py``).
The title says when frames were thinned out.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.scene import Scene


def _basis(cams: Cameras, centers: np.ndarray) -> np.ndarray:
    """Rows: the side view's horizontal axis, the other horizontal axis, up."""
    up = -cams.c2w[:, :3, 1].mean(0).numpy()
    if np.linalg.norm(up) < 1e-6:
        up = np.array([0.0, 0.0, 1.0])
    up = up / np.linalg.norm(up)
    horizontal = lambda v: v - np.outer(v @ up, up) if v.ndim == 2 else v - (v @ up) * up  # noqa: E731
    fwd = horizontal(cams.forward.numpy()).mean(0)
    flat = horizontal(centers - centers.mean(0))
    helper = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
    a = np.cross(up, helper)
    if np.linalg.norm(fwd) > 0.5:  # forward-facing capture: the side view shows depth
        a = fwd
    elif np.abs(flat).max() > 1e-9:  # orbit-like: the side view spans the widest spread of the path
        a = np.linalg.svd(flat, full_matrices=False)[2][0]
        a = horizontal(a)
    a = a / np.linalg.norm(a)
    return np.stack([a, np.cross(a, up), up])  # top view plots (row 1, row 0): right-handed, up out of the page


def focus_point(cams: Cameras) -> np.ndarray | None:
    """The point closest (least squares) to all viewing axes, if they nearly meet in front of the cameras."""
    c, d = cams.centers.numpy(), cams.forward.numpy()
    P = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # projectors orthogonal to each axis
    A, b = P.sum(0), np.einsum("nij,nj->i", P, c)
    if len(c) < 2 or np.linalg.cond(A) > 1e6:
        return None
    x = np.linalg.solve(A, b)
    dist = np.linalg.norm(np.einsum("nij,nj->ni", P, x - c), axis=1)
    ahead = ((x - c) * d).sum(1)
    spread = np.linalg.norm(c - c.mean(0), axis=1).max() + 1e-9
    return x if (ahead > 0).all() and dist.max() < 0.05 * spread else None


def frustum_lines(cams: Cameras, depth: float) -> np.ndarray:
    """Line segments ``[F, 8, 2, 3]`` of each frustum (4 edges from the center, 4 image-border edges)."""
    W, H = cams.width, cams.height
    uv = torch.tensor([[0.0, 0.0], [W, 0.0], [W, H], [0.0, H]], dtype=torch.float64)
    corners = cams.unproject(uv.expand(len(cams), 4, 2), torch.full((len(cams), 4), depth, dtype=torch.float64))
    c = cams.centers[:, None, :].expand(-1, 4, -1)
    nxt = corners.roll(-1, dims=1)
    segs = torch.cat([torch.stack([c, corners], 2), torch.stack([corners, nxt], 2)], 1)
    return segs.numpy()


def evenly_spaced(n: int, at_most: int) -> np.ndarray:
    """At most ``at_most`` indices of ``range(n)``, evenly spaced, including the first and the last."""
    return np.unique(np.linspace(0, n - 1, min(n, max(at_most, 2))).round().astype(np.int64))


def preview_png(cameras: Cameras, scene: Scene | None = None, title: str = "", frustum_scale: float = 0.06,
                max_points: int = 20_000, dpi: int = 110, max_frusta: int = 240,
                max_path_points: int = 5_000) -> bytes:
    """Render the top and side views of ``cameras [F]`` (and the scene, if given) as PNG bytes."""
    from vdm3d.io.cache import matplotlib_config_dir

    matplotlib_config_dir()  # before matplotlib's first import: a read-only HOME printed its warnings
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    flat = cameras.flatten()
    total = len(flat)
    kept = evenly_spaced(total, max_path_points)  # bounded memory: never more than this many cameras
    cams = (flat if len(kept) == total else flat[torch.from_numpy(kept)]).to(torch.float64)
    centers = cams.centers.numpy()
    basis = _basis(cams, centers)
    pts = cols = None
    if scene is not None:
        pts = scene.points
        cols = scene.colors
        if len(pts) > max_points:
            idx = np.random.default_rng(0).choice(len(pts), max_points, replace=False)
            pts, cols = pts[idx], None if cols is None else cols[idx]
    everything = centers if pts is None else np.concatenate([centers, np.percentile(pts, [2, 98], axis=0)])
    size = float(np.linalg.norm(everything.max(0) - everything.min(0))) or 1.0
    step = float(np.median(np.linalg.norm(np.diff(centers, axis=0), axis=1))) if len(centers) > 1 else size
    depth = min(frustum_scale * size, max(step, 0.01 * size))
    drawn = evenly_spaced(len(cams), max_frusta)  # indices into cams of the frames that get a frustum
    segs = frustum_lines(cams[torch.from_numpy(drawn)], depth)
    colors = matplotlib.colormaps["viridis"](kept[drawn] / max(total - 1, 1))  # by time, over the whole path
    focus = focus_point(cams)

    fig = Figure(figsize=(11, 5.2), dpi=dpi)
    views = (("top (looking down)", 1, 0), ("side", 0, 2))
    for k, (name, i, j) in enumerate(views):
        ax = fig.add_subplot(1, 2, k + 1)
        if pts is not None:
            p = pts @ basis.T
            order = np.argsort(p[:, 2 if j != 2 else 1])  # draw far points first
            ax.scatter(p[order, i], p[order, j], s=0.6, c="0.6" if cols is None else cols[order], alpha=0.6,
                       linewidths=0, rasterized=True)
        c = centers @ basis.T
        ax.plot(c[:, i], c[:, j], "-", color="0.25", lw=0.8, zorder=2)
        s2 = segs @ basis.T  # [F, 8, 2, 3]
        # one collection of every frustum edge (one artist, not 8 per frame), the first frame thicker
        ax.add_collection(LineCollection(s2[..., [i, j]].reshape(-1, 2, 2), colors=np.repeat(colors, 8, axis=0),
                                         linewidths=np.where(np.arange(len(drawn) * 8) < 8, 1.8, 0.8), zorder=3))
        ax.scatter(c[:1, i], c[:1, j], s=30, color=colors[0], edgecolors="k", zorder=4)
        if focus is not None:
            fp = focus @ basis.T
            ax.plot(fp[i], fp[j], "+", color="crimson", ms=12, mew=2, zorder=5, label="look-at point")
            ax.legend(loc="lower right", fontsize=7)
        view = (everything if focus is None else np.concatenate([everything, focus[None]])) @ basis.T
        lo, hi = view.min(0), view.max(0)
        mid, span = (lo + hi) / 2, np.maximum(hi - lo, 0.35 * (hi - lo).max()) * 1.16 + 1e-6
        ax.set_xlim(mid[i] - span[i] / 2, mid[i] + span[i] / 2)
        ax.set_ylim(mid[j] - span[j] / 2, mid[j] + span[j] / 2)
        ax.annotate("start", (c[0, i], c[0, j]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("horizontal")
        ax.set_ylabel("horizontal" if j != 2 else "up")
        ax.grid(True, lw=0.3, alpha=0.5)
    thinned = f" (frusta of {len(drawn)} shown)" if len(drawn) < total else ""
    fig.suptitle((title or f"{total} cameras") + thinned, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
