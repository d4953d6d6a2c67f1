"""Geometric edges for the ground-truth renderer: mesh edges with their adjacent face normals, and
boundaries between instances.

Which mesh edges are drawn depends on the camera (silhouettes) and is decided in the renderer's
vertex shader from what :func:`mesh_edges` returns: the two adjacent face normals and the dihedral
cosine of each edge. Vertices are welded by position first, so uv seams and split normals are not
edges; boundary and non-manifold edges are always drawn.
"""

from __future__ import annotations

import numpy as np

from vdm3d.geometry.mesh_scene import Part


def mesh_edges(part: Part) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges of a part after welding vertices by position (uv seams are not edges).

    Returns ``segments [E, 2, 3]``, the unit normals of the two adjacent faces ``n1, n2 [E, 3]``
    (equal for a boundary edge) and ``cos [E]`` (dihedral cosine, -2 for boundaries and
    non-manifold edges, which are always drawn).
    """
    v = part.vertices.astype(np.float64)
    key = np.round(v / 1e-6).astype(np.int64)
    _, weld = np.unique(key, axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    f = weld[part.faces]
    fn = np.cross(v[part.faces[:, 1]] - v[part.faces[:, 0]], v[part.faces[:, 2]] - v[part.faces[:, 0]])
    area2 = np.linalg.norm(fn, axis=1)
    ok = area2 > 0
    f, fn = f[ok], fn[ok] / area2[ok, None]
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    owner = np.tile(np.arange(len(f)), 3)
    e_sorted = np.sort(e, axis=1)
    uniq, inv, counts = np.unique(e_sorted, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    first = owner[order[starts]]
    second = owner[order[np.minimum(starts + 1, len(order) - 1)]]
    n1 = fn[first]
    n2 = np.where((counts == 2)[:, None], fn[second], n1)
    cos = np.where(counts == 2, (n1 * n2).sum(1), -2.0)
    # a representative original vertex per welded index, for positions
    rep = np.zeros(int(weld.max()) + 1, np.int64)
    rep[weld] = np.arange(len(weld))
    seg = v[rep[uniq]]  # [E, 2, 3]
    return seg.astype(np.float32), n1.astype(np.float32), n2.astype(np.float32), cos.astype(np.float32)


def instance_boundaries(inst: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """1 on the nearer pixel of each 4-neighbour pair of two different non-zero instances."""
    out = np.zeros(inst.shape, np.float32)
    for axis in (1, 2):
        a = np.take(inst, np.arange(inst.shape[axis] - 1), axis=axis)
        b = np.take(inst, np.arange(1, inst.shape[axis]), axis=axis)
        da = np.take(depth, np.arange(inst.shape[axis] - 1), axis=axis)
        db = np.take(depth, np.arange(1, inst.shape[axis]), axis=axis)
        diff = (a != b) & (a > 0) & (b > 0)
        first = diff & (da <= db)
        second = diff & (db < da)
        sl_a = [slice(None)] * 3
        sl_b = [slice(None)] * 3
        sl_a[axis] = slice(0, -1)
        sl_b[axis] = slice(1, None)
        out[tuple(sl_a)] = np.maximum(out[tuple(sl_a)], first)
        out[tuple(sl_b)] = np.maximum(out[tuple(sl_b)], second)
    return out
