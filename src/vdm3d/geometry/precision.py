"""How finely float32 numbers place points far from the origin, and the move that restores it.

A mesh or a scene in map coordinates (UTM, ECEF: 5e6 units out) loses its detail as soon as its numbers
become float32, the renderer's and the fit's; :func:`far_offset` says when, and by how much to move the
coordinates first. Kept apart from the mesh loader so that readers need not import trimesh for it.
"""

from __future__ import annotations

import numpy as np


def float32_spacing(distance: float) -> float:
    """The gap between neighbouring float32 numbers at ``distance`` from zero (23 bits of mantissa), as an upper
    bound: the true gap (``np.spacing``) is that of the power of two below, so it lies in ``(bound / 2, bound]``
    (exact at powers of two; at 5e6 the bound is 0.596, the gap 0.5). A test against it never calls a coarse
    grid fine; :func:`far_offset` may recentre bounds that float32 would have placed up to twice as finely."""
    return abs(float(distance)) * 2.0 ** -23


def far_offset(lo: np.ndarray, hi: np.ndarray, fineness: float = 1e-4) -> np.ndarray | None:
    """The centre of the bounds ``lo``..``hi`` (float64) when float32 numbers, at the bounds' distance from the
    origin, are coarser than ``fineness`` of their size, else None. Georeferenced coordinates are the case:
    UTM puts a 2-unit mesh 5e6 from the origin, where float32 (the renderer's numbers) steps by 0.5."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    far, size = float(np.abs(np.stack([lo, hi])).max()), float((hi - lo).max())
    if size <= 0 or float32_spacing(far) <= fineness * size:
        return None
    return (lo + hi) / 2.0
