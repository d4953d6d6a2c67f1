"""Check a camera path against scene geometry before an expensive run.

Per frame :func:`check_trajectory` reports

* ``nearest`` - distance from the camera center to the closest geometry (scene points, or for
  meshes their vertices plus 100k area-uniform surface samples: exact up to the sample spacing);
  ``too_close`` when it is below ``min_distance`` (default 2% of the scene's extent);
* ``inside`` - for meshes, the generalized winding number of the mesh around the camera center
  (exact for closed meshes, robust for open ones) is above 0.5. For point clouds there is no
  inside, so it is estimated: the camera is inside when it lies in the points' bounding box and
  geometry surrounds it within half the scene extent in at least 90% of 64 evenly spread
  directions (20 degree cones). Cameras meant to be inside geometry (rooms) should ignore it;
* ``coverage`` - the fraction of the image that sees known content, on a coarse grid of cells
  (``grid`` cells across the width; meshes sample 4 x 4 rays per cell): for meshes, a ray hits a triangle in
  front of the camera (triangles wholly in front are rasterized, those crossing the camera plane
  ray-cast with Moller-Trumbore); for points, at least one point in front projects into the cell
  (holes of one cell are closed morphologically).

Hand-written (numpy) because trimesh's inside/ray queries need ``rtree``/``embree``, which the
project does not depend on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.scene import Scene


@dataclasses.dataclass(frozen=True)
class FrameCheck:
    index: int
    nearest: float
    too_close: bool
    inside: bool
    coverage: float


@dataclasses.dataclass(frozen=True)
class CheckReport:
    frames: list[FrameCheck]
    min_distance: float
    min_coverage: float
    scene: str

    def problems(self, ignore_inside: bool = False) -> list[str]:
        """One line per problematic frame (empty when all frames are fine)."""
        out = []
        for f in self.frames:
            why = []
            if f.inside and not ignore_inside:
                why.append("inside geometry")
            if f.too_close:
                why.append(f"{f.nearest:.3g} from geometry (< {self.min_distance:.3g})")
            if f.coverage < self.min_coverage:
                why.append(f"sees known content in {100 * f.coverage:.0f}% of the image (< {100 * self.min_coverage:.0f}%)")
            if why:
                out.append(f"frame {f.index}: " + ", ".join(why))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "min_distance": self.min_distance, "min_coverage": self.min_coverage,
                "frames": [dataclasses.asdict(f) for f in self.frames]}


# -- inside tests ---------------------------------------------------------------------------------
def winding_numbers(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Generalized winding number of a triangle mesh at each query point ``[Q, 3]`` (solid angles / 4 pi)."""
    tri = vertices[faces]  # [T, 3, 3]
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk, None, None, :]  # [q, 1, 1, 3]
        a, b, c = (tri[None, :, i, :] - p[:, :, 0, :] for i in range(3))  # [q, T, 3]
        la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
        det = np.einsum("qti,qti->qt", a, np.cross(b, c))
        den = la * lb * lc + np.einsum("qti,qti->qt", a, b) * lc + np.einsum("qti,qti->qt", b, c) * la \
            + np.einsum("qti,qti->qt", c, a) * lb
        out[s:s + chunk] = (2 * np.arctan2(det, den)).sum(1) / (4 * np.pi)
    return out


def fibonacci_directions(n: int = 64) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)


def enclosed_fraction(centers: np.ndarray, tree: cKDTree, points: np.ndarray, radius: float,
                      directions: np.ndarray, cone_deg: float = 20.0) -> np.ndarray:
    """Fraction of ``directions`` in which some point lies within ``radius`` of each center."""
    cos_cone = np.cos(np.radians(cone_deg))
    out = np.zeros(len(centers))
    for i, c in enumerate(centers):
        idx = tree.query_ball_point(c, radius)
        if not idx:
            continue
        v = points[idx] - c
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        hit = (v @ directions.T > cos_cone).any(0)  # [D]
        out[i] = hit.mean()
    return out


# -- coverage -------------------------------------------------------------------------------------
def _grid_rays(cam: Cameras, grid: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    gw = grid
    gh = max(1, round(grid * cam.height / cam.width))
    u = (np.arange(gw) + 0.5) * cam.width / gw
    v = (np.arange(gh) + 0.5) * cam.height / gh
    uu, vv = np.meshgrid(u, v)
    K = cam.Ks.double().numpy()
    d_cam = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], -1).reshape(-1, 3)
    R = cam.c2w.double().numpy()[:3, :3]
    return d_cam @ R.T, cam.c2w.double().numpy()[:3, 3], (gh, gw)


def _ray_hits(origin: np.ndarray, dirs: np.ndarray, tri: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Whether each ray ``origin + t d`` (t > 0) hits any triangle (Moller-Trumbore)."""
    hits = np.zeros(len(dirs), bool)
    if len(tri) == 0:
        return hits
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]  # [T, 3]
    s = origin - tri[:, 0]  # [T, 3]
    q = np.cross(s, e1)  # [T, 3]
    for a in range(0, len(dirs), chunk):
        d = dirs[a:a + chunk]  # [r, 3]
        p = np.cross(d[:, None, :], e2[None])  # [r, T, 3]
        det = np.einsum("rti,ti->rt", p, e1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = np.einsum("rti,ti->rt", p, s) * inv
        v = np.einsum("ri,ti->rt", d, q) * inv
        t = np.einsum("ti,ti->t", e2, q)[None] * inv
        hits[a:a + chunk] = (ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)).any(1)
    return hits


def coverage_mesh(cam: Cameras, vertices: np.ndarray, faces: np.ndarray, grid: int = 40,
                  supersample: int = 4) -> float:
    """Fraction of the image whose viewing rays hit the mesh in front of the camera, sampled at the
    centers of ``grid * supersample`` cells across the width.

    Triangles wholly in front of the camera hit a ray exactly when the cell center lies inside
    their projection, so they are rasterized at grid resolution (OpenCV ``fillConvexPoly``, 8 bits of
    sub-cell precision); only triangles that cross the camera plane are ray-cast.
    """
    import cv2

    dirs, origin, (gh, gw) = _grid_rays(cam, grid * supersample)
    vc = (vertices - origin) @ cam.c2w.double().numpy()[:3, :3]  # camera coordinates [V, 3]
    tri_c = vc[faces]  # [T, 3, 3]
    z = tri_c[..., 2]
    front = z > 1e-9
    K = cam.Ks.double().numpy()
    zs = np.where(front, z, 1.0)
    # projected corners in grid units, shifted so that cell centers sit on integers (OpenCV's pixel centers)
    gu = (K[0, 0] * tri_c[..., 0] / zs + K[0, 2]) * gw / cam.width - 0.5
    gv = (K[1, 1] * tri_c[..., 1] / zs + K[1, 2]) * gh / cam.height - 0.5
    whole = front.all(1)
    outside = whole & ((gu < -1).all(1) | (gu > gw).all(1) | (gv < -1).all(1) | (gv > gh).all(1))
    raster = whole & ~outside
    mask = np.zeros((gh, gw), np.uint8)
    if raster.any():
        pts = np.round(np.stack([gu[raster], gv[raster]], -1) * 256).clip(-2**20, 2**20).astype(np.int32)
        for tri in pts:  # one at a time: fillPoly on many contours would cancel overlaps (even-odd)
            cv2.fillConvexPoly(mask, tri, 1, lineType=cv2.LINE_8, shift=8)
    crossing = front.any(1) & ~whole
    hits = mask.reshape(-1).astype(bool)
    if crossing.any():
        todo = ~hits
        hits[todo] = _ray_hits(origin, dirs[todo], vertices[faces[crossing]])
    return float(hits.mean())


def coverage_points(cam: Cameras, points: np.ndarray, grid: int = 40) -> float:
    gw = grid
    gh = max(1, round(grid * cam.height / cam.width))
    uv, z = cam.to(torch.float64).project(torch.from_numpy(points)[None])
    uv, z = uv[0].numpy(), z[0].numpy()
    m = (z > 1e-9) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    occ = np.zeros((gh, gw), bool)
    ci = np.minimum((uv[m, 0] * gw / cam.width).astype(int), gw - 1)
    ri = np.minimum((uv[m, 1] * gh / cam.height).astype(int), gh - 1)
    occ[ri, ci] = True
    closed = ndimage.binary_closing(np.pad(occ, 1, mode="edge"), structure=np.ones((3, 3)))[1:-1, 1:-1]
    return float((occ | closed).mean())


def check_trajectory(cameras: Cameras, scene: Scene, min_distance: float | None = None,
                     min_coverage: float = 0.05, grid: int = 40) -> CheckReport:
    """Per-frame proximity, inside and coverage checks of ``cameras [F]`` against ``scene``."""
    cams = cameras.flatten().to(torch.float64)
    extent = scene.extent()
    min_distance = 0.02 * extent if min_distance is None else float(min_distance)
    centers = cams.centers.numpy()
    geo = scene.points if not scene.is_mesh else np.concatenate([scene.points, scene.vertices])
    tree = cKDTree(geo)
    nearest, _ = tree.query(centers)
    if scene.is_mesh:
        inside = np.abs(winding_numbers(centers, scene.vertices, scene.faces)) > 0.5
    else:
        lo, hi = np.percentile(scene.points, [1, 99], axis=0)
        in_box = ((centers >= lo) & (centers <= hi)).all(1)
        sub = geo if len(geo) <= 20_000 else geo[np.random.default_rng(0).choice(len(geo), 20_000, replace=False)]
        enclosed = enclosed_fraction(centers, cKDTree(sub), sub, 0.5 * extent, fibonacci_directions(64)) >= 0.9
        inside = in_box & enclosed
    frames = []
    for i in range(len(cams)):
        cov = coverage_mesh(cams[i], scene.vertices, scene.faces, grid) if scene.is_mesh else \
            coverage_points(cams[i], scene.points, grid)
        frames.append(FrameCheck(i, float(nearest[i]), bool(nearest[i] < min_distance), bool(inside[i]), cov))
    return CheckReport(frames, min_distance, float(min_coverage), scene.source)
