"""Distances between surfaces: Chamfer distance and F-score on point samples (scipy cKDTree).

Definitions (the common ones of the 3D reconstruction literature, in world units, not squared):

* accuracy ``acc = mean_{p in pred} min_{g in gt} |p - g|``; completeness
  ``comp = mean_{g in gt} min_{p in pred} |p - g|``; **Chamfer** ``= (acc + comp) / 2``;
* **F-score** at threshold ``tau``: precision ``P`` = fraction of predicted points within ``tau`` of
  the ground truth, recall ``R`` = fraction of ground-truth points within ``tau`` of the prediction,
  ``F = 2PR / (P + R)``.

Meshes are compared through ``num_points`` area-uniform surface samples with a fixed seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import trimesh
from scipy.spatial import cKDTree


@dataclasses.dataclass(frozen=True)
class SurfaceDistance:
    chamfer: float
    accuracy: float
    completeness: float
    precision: float
    recall: float
    fscore: float
    tau: float


def surface_samples(mesh: trimesh.Trimesh, num_points: int = 20000, seed: int = 0) -> np.ndarray:
    """Area-uniform points on a mesh surface, ``[num_points, 3]``."""
    points, _ = trimesh.sample.sample_surface(mesh, num_points, seed=seed)
    return np.asarray(points, np.float64)


def point_distance(pred: np.ndarray, gt: np.ndarray, tau: float) -> SurfaceDistance:
    """Chamfer distance and F-score at ``tau`` between two point sets ``[N, 3]`` and ``[M, 3]``."""
    d_pred, _ = cKDTree(gt).query(pred)  # each predicted point to the ground truth
    d_gt, _ = cKDTree(pred).query(gt)
    acc, comp = float(d_pred.mean()), float(d_gt.mean())
    precision, recall = float((d_pred < tau).mean()), float((d_gt < tau).mean())
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return SurfaceDistance((acc + comp) / 2, acc, comp, precision, recall, f, tau)


def chamfer_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance ``(acc + comp) / 2`` between two point sets."""
    return point_distance(pred, gt, tau=0.0).chamfer


def mesh_distance(pred: trimesh.Trimesh | np.ndarray, gt: trimesh.Trimesh | np.ndarray, tau: float,
                  num_points: int = 20000, seed: int = 0) -> SurfaceDistance:
    """:func:`point_distance` between meshes (sampled) or point sets (used as given)."""
    p = surface_samples(pred, num_points, seed) if isinstance(pred, trimesh.Trimesh) else np.asarray(pred)
    g = surface_samples(gt, num_points, seed + 1) if isinstance(gt, trimesh.Trimesh) else np.asarray(gt)
    return point_distance(p, g, tau)
