"""Parametric primitives with uv coordinates: ellipsoid, superquadric, rounded box, cylinder, cone, torus.

Each builder returns a :class:`Surface` (vertices, faces, normals, uv) centred at the origin with its
main axis along ``+z``. Curved sheets are tessellated from a ``(u, v)`` grid, so uv coordinates come
for free (``u`` around the axis, ``v`` along it; the seam column is duplicated so uv can wrap). Flat
caps are separate sheets, so the rim is a hard crease (duplicated vertices with their own normals).

Orientation: faces are flipped so their normals point away from a reference (the origin, or the core
circle for the torus); every primitive here is star-shaped about that reference, so this yields
outward normals everywhere (checked by a test through the signed volume).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import numpy as np

from vdm3d.geometry.mesh_scene import smooth_normals

PrimitiveKind = Literal["ellipsoid", "rounded_box", "cylinder", "cone", "torus", "superquadric"]
PRIMITIVES: tuple[PrimitiveKind, ...] = ("ellipsoid", "rounded_box", "cylinder", "cone", "torus", "superquadric")


@dataclasses.dataclass
class Surface:
    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray     # [F, 3] int32
    normals: np.ndarray   # [V, 3] float32
    uv: np.ndarray        # [V, 2] float32

    @staticmethod
    def concat(sheets: list["Surface"]) -> "Surface":
        offs = np.cumsum([0] + [len(s.vertices) for s in sheets[:-1]])
        return Surface(np.concatenate([s.vertices for s in sheets]),
                       np.concatenate([s.faces + o for s, o in zip(sheets, offs)]).astype(np.int32),
                       np.concatenate([s.normals for s in sheets]), np.concatenate([s.uv for s in sheets]))


def _grid_faces(nu: int, nv: int) -> np.ndarray:
    """Two triangles per cell of an ``(nv+1) x (nu+1)`` vertex grid (row-major, v rows)."""
    i, j = np.meshgrid(np.arange(nv), np.arange(nu), indexing="ij")
    a = (i * (nu + 1) + j).reshape(-1)
    b, c, d = a + 1, a + nu + 2, a + nu + 1
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)


def _orient_and_clean(v: np.ndarray, f: np.ndarray, ref: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Drop degenerate triangles, flip those whose normal points towards ``ref(centroid)``."""
    e1, e2 = v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]
    n = np.cross(e1, e2)
    area = np.linalg.norm(n, axis=1)
    keep = area > 1e-10 * max(float(area.max()), 1e-30)
    f, n = f[keep], n[keep]
    cen = v[f].mean(1)
    flip = (n * (cen - ref(cen))).sum(1) < 0
    f[flip] = f[flip][:, ::-1]
    return f


def _origin(p: np.ndarray) -> np.ndarray:
    return np.zeros_like(p)


def sheet(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], nu: int, nv: int,
          ref: Callable[[np.ndarray], np.ndarray] = _origin, uv_scale=(1.0, 1.0),
          u_range=(0.0, 1.0), v_range=(0.0, 1.0)) -> Surface:
    """Tessellate ``fn(u, v) -> [.., 3]`` over a grid; normals are smooth within the sheet."""
    u = np.linspace(*u_range, nu + 1)
    v = np.linspace(*v_range, nv + 1)
    uu, vv = np.meshgrid(u, v)  # [nv+1, nu+1]
    pts = fn(uu, vv).reshape(-1, 3)
    faces = _orient_and_clean(pts, _grid_faces(nu, nv), ref)
    uv = np.stack([uu.reshape(-1) * uv_scale[0], vv.reshape(-1) * uv_scale[1]], 1)
    return Surface(pts.astype(np.float32), faces, smooth_normals(pts, faces), uv.astype(np.float32))


def _spow(x: np.ndarray, e: float) -> np.ndarray:
    x = np.where(np.abs(x) < 1e-9, 0.0, x)  # cos(pi/2) is 6e-17, whose 0.3th power is not small
    return np.sign(x) * np.abs(x) ** e


def superquadric(a: float, b: float, c: float, e1: float, e2: float, nu: int = 48, nv: int = 32,
                 uv_scale=(1.0, 1.0)) -> Surface:
    """Superellipsoid with semi-axes ``(a, b, c)``; ``e1`` shapes the profile along z, ``e2`` the
    cross-section (1, 1 is an ellipsoid; small values are boxy, 2 is a double cone / diamond)."""
    def fn(u, v):
        th, ph = 2 * np.pi * u - np.pi, np.pi * (v - 0.5)
        return np.stack([a * _spow(np.cos(ph), e1) * _spow(np.cos(th), e2),
                         b * _spow(np.cos(ph), e1) * _spow(np.sin(th), e2),
                         c * _spow(np.sin(ph), e1)], -1)
    return sheet(fn, nu, nv, uv_scale=uv_scale)


def ellipsoid(a: float, b: float, c: float, nu: int = 48, nv: int = 24, uv_scale=(1.0, 1.0)) -> Surface:
    return superquadric(a, b, c, 1.0, 1.0, nu, nv, uv_scale)


def _box_axis(h: float, r: float, core: int, round_cells: int) -> np.ndarray:
    """Coordinates along one side of a rounded box: ``round_cells`` cells over each rounded margin."""
    return np.concatenate([np.linspace(-(h + r), -h, round_cells + 1),
                           np.linspace(-h, h, core + 1)[1:-1],
                           np.linspace(h, h + r, round_cells + 1)])


def rounded_box(hx: float, hy: float, hz: float, r: float, core: int = 6, round_cells: int = 3) -> Surface:
    """Box of half-extents ``h + r`` whose edges and corners are rounded with radius ``r``.

    The surface is the Minkowski sum of the core box ``[-h, h]`` and a ball of radius ``r``: a point
    ``Q`` of the outer cube maps to ``clip(Q, -h, h) + r * normalize(Q - clip(Q, -h, h))``. Each of
    the six faces is a grid with its own uv chart; the faces meet exactly, so normals are smooth.
    """
    h = np.array([hx, hy, hz])
    sheets_v, sheets_f, sheets_uv = [], [], []
    offset = 0
    for axis in range(3):
        a1, a2 = [k for k in range(3) if k != axis]
        s = _box_axis(h[a1], r, core, round_cells)
        t = _box_axis(h[a2], r, core, round_cells)
        ss, tt = np.meshgrid(s, t)
        for sign in (-1.0, 1.0):
            q = np.zeros(ss.shape + (3,))
            q[..., axis] = sign * (h[axis] + r)
            q[..., a1], q[..., a2] = ss, tt
            core_pt = np.clip(q, -h, h)
            d = q - core_pt
            p = core_pt + r * d / np.linalg.norm(d, axis=-1, keepdims=True)
            sheets_v.append(p.reshape(-1, 3))
            sheets_f.append(_grid_faces(len(s) - 1, len(t) - 1) + offset)
            uv = np.stack([(ss + h[a1] + r) / (2 * (h[a1] + r)), (tt + h[a2] + r) / (2 * (h[a2] + r))], -1)
            sheets_uv.append(uv.reshape(-1, 2))
            offset += p.shape[0] * p.shape[1]
    v = np.concatenate(sheets_v)
    f = _orient_and_clean(v, np.concatenate(sheets_f), _origin)
    return Surface(v.astype(np.float32), f, smooth_normals(v, f), np.concatenate(sheets_uv).astype(np.float32))


def disk(radius: float, z: float, n_theta: int = 48, n_rad: int = 4) -> Surface:
    """Flat disk at height ``z`` (a cap), planar uv."""
    def fn(u, v):
        th = 2 * np.pi * u
        rr = radius * v
        return np.stack([rr * np.cos(th), rr * np.sin(th), np.full_like(u, z)], -1)
    s = sheet(fn, n_theta, n_rad, ref=lambda p: p - np.array([0.0, 0.0, np.sign(z) or 1.0]))
    s.uv = (0.5 + 0.5 * s.vertices[:, :2] / radius).astype(np.float32)
    return s


def cylinder(r: float, h: float, nu: int = 48, nv: int = 4, uv_scale=(1.0, 1.0)) -> Surface:
    """Capped cylinder of radius ``r`` and height ``h`` centred at the origin."""
    side = sheet(lambda u, v: np.stack([r * np.cos(2 * np.pi * u), r * np.sin(2 * np.pi * u), h * (v - 0.5)], -1),
                 nu, nv, uv_scale=uv_scale)
    return Surface.concat([side, disk(r, -h / 2, nu), disk(r, h / 2, nu)])


def cone(r: float, h: float, r_top: float = 0.0, nu: int = 48, nv: int = 8, uv_scale=(1.0, 1.0)) -> Surface:
    """Cone (or frustum when ``r_top > 0``) with base radius ``r`` and height ``h``, centred at 0."""
    def fn(u, v):
        rr = r * (1 - v) + r_top * v
        return np.stack([rr * np.cos(2 * np.pi * u), rr * np.sin(2 * np.pi * u), h * (v - 0.5)], -1)
    sheets = [sheet(fn, nu, nv, uv_scale=uv_scale), disk(r, -h / 2, nu)]
    if r_top > 1e-6:
        sheets.append(disk(r_top, h / 2, nu))
    return Surface.concat(sheets)


def torus(R: float, r: float, nu: int = 48, nv: int = 24, uv_scale=(1.0, 1.0)) -> Surface:
    """Torus around the z axis: ring radius ``R``, tube radius ``r``."""
    def fn(u, v):
        th, ph = 2 * np.pi * u, 2 * np.pi * v
        return np.stack([(R + r * np.cos(ph)) * np.cos(th), (R + r * np.cos(ph)) * np.sin(th), r * np.sin(ph)], -1)

    def core(p):
        xy = p[:, :2]
        xy = R * xy / (np.linalg.norm(xy, axis=1, keepdims=True) + 1e-12)
        return np.concatenate([xy, np.zeros((len(p), 1))], 1)
    return sheet(fn, nu, nv, ref=core, uv_scale=uv_scale)


def random_primitive(rng: np.random.Generator, kind: PrimitiveKind | None = None, size: float = 1.0
                     ) -> tuple[Surface, PrimitiveKind]:
    """A primitive of random proportions with largest half-extent about ``size``."""
    if kind is None:
        kind = PRIMITIVES[int(rng.integers(len(PRIMITIVES)))]
    dims = size * rng.uniform(0.35, 1.0, 3)
    dims[int(rng.integers(3))] = size
    reps = (float(rng.integers(1, 3)), 1.0)
    if kind == "ellipsoid":
        s = ellipsoid(*dims, uv_scale=reps)
    elif kind == "superquadric":
        s = superquadric(*dims, e1=float(rng.uniform(0.3, 1.8)), e2=float(rng.uniform(0.3, 1.8)), uv_scale=reps)
    elif kind == "rounded_box":
        r = float(rng.uniform(0.05, 0.3)) * float(dims.min())
        s = rounded_box(*(dims - r), r=r)
    elif kind == "cylinder":
        s = cylinder(dims[0], 2 * dims[2], uv_scale=reps)
    elif kind == "cone":
        s = cone(dims[0], 2 * dims[2], r_top=float(rng.choice([0.0, rng.uniform(0.1, 0.6)])) * dims[0],
                 uv_scale=reps)
    elif kind == "torus":
        R = dims[0]
        s = torus(R, R * float(rng.uniform(0.15, 0.45)), uv_scale=reps)
    else:  # pragma: no cover
        raise ValueError(kind)
    return s, kind
