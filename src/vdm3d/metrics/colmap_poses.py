"""Camera accuracy of a generated video: poses that COLMAP recovers from its frames against the requested ones
(WorldWarp's R_dist / T_dist, SEED_SYSTEMS.md §4).

A camera-controlled video is only as good as its agreement with the path it was asked to follow. The
frames are given to COLMAP's incremental mapper (pycolmap: SIFT, sequential matching, the known pinhole
intrinsics held fixed), which recovers each registered frame's pose up to a similarity. The recovered
poses are aligned to the requested ones by one similarity (:func:`align_similarity`: the rotation from
the camera orientations, then scale and translation by least squares on the centres; orientations make
the rotation well posed even for a straight path, where centres alone leave a roll free), and scored:

* ``rotation_deg``: mean geodesic angle between the aligned and the requested camera orientations;
* ``translation``: mean distance between the aligned and the requested centres, in the path's units,
  and ``translation_rel``, the same over the requested path's extent (the largest distance between two
  of its centres), which is scale-free like WorldWarp's T_dist;
* ``registered``: the fraction of frames COLMAP could place (unregistered frames are not scored; a
  video COLMAP cannot reconstruct at all scores nan).

Frames of 64 px give SIFT too few keypoints, so they are upscaled (bicubic) first, with the intrinsics
scaled to match (as :mod:`vdm3d.metrics.colmap_points`).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.sfm import solve_poses


def recover_poses(images: Float[Tensor, "N H W 3"], cameras: Cameras, upscale: int = 4, overlap: int = 10,
                  seed: int = 0) -> dict[int, np.ndarray]:
    """Camera-to-world ``4x4`` poses COLMAP recovers for the frames it registers (by frame index), in the
    largest model's own frame (:func:`vdm3d.cameras.sfm.solve_poses`); the intrinsics are the first camera's
    field of view, fixed. ``overlap``: each frame is matched with the next ``overlap`` frames."""
    frames = (images.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    side = max(frames.shape[1:3]) * upscale
    return solve_poses(frames, float(cameras.fov_x_deg.reshape(-1)[0]), side, overlap, seed).poses


def align_similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity ``x -> s R x + t`` that maps camera-to-world poses ``source [N, 4, 4]`` onto ``target``:
    ``R`` is the rotation closest (chordal mean) to the orientations' differences ``R_t R_s^T``, then ``s``
    and ``t`` minimise the squared distance between the mapped and the target centres."""
    M = sum(t[:3, :3] @ s[:3, :3].T for s, t in zip(source, target))
    U, _, Vt = np.linalg.svd(M)
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    cs = source[:, :3, 3] @ R.T  # rotated source centres
    ct = target[:, :3, 3]
    ds, dt = cs - cs.mean(0), ct - ct.mean(0)
    denom = float((ds ** 2).sum())
    scale = float((ds * dt).sum() / denom) if denom > 1e-12 else 1.0
    t = ct.mean(0) - scale * cs.mean(0)
    return scale, R, t


def pose_errors(recovered: dict[int, np.ndarray], requested: Cameras) -> dict[str, float]:
    """Rotation and translation errors of ``recovered`` poses (by frame index) against the ``requested``
    cameras after :func:`align_similarity` (see the module docstring); nan when fewer than 3 are registered."""
    n = len(requested)
    c2w = requested.c2w.double().numpy()
    ext = c2w[:, :3, 3]
    extent = float(np.linalg.norm(ext[:, None] - ext[None], axis=-1).max())
    out = {"registered": len(recovered) / n, "rotation_deg": float("nan"), "translation": float("nan"),
           "translation_rel": float("nan")}
    if len(recovered) < 3:
        return out
    ids = sorted(recovered)
    src, dst = np.stack([recovered[i] for i in ids]), c2w[ids]
    s, R, t = align_similarity(src, dst)
    rot = np.einsum("ij,njk->nik", R, src[:, :3, :3])
    # ||R_a - R_b||_F = 2 sqrt(2) sin(angle / 2): accurate near 0, where arccos of the trace is not
    chord = np.linalg.norm(rot - dst[:, :3, :3], axis=(1, 2))
    angle = np.degrees(2 * np.arcsin(np.clip(chord / (2 * np.sqrt(2)), 0.0, 1.0)))
    centres = s * src[:, :3, 3] @ R.T + t
    dist = np.linalg.norm(centres - dst[:, :3, 3], axis=-1)
    out.update(rotation_deg=float(angle.mean()), translation=float(dist.mean()),
               translation_rel=float(dist.mean() / extent) if extent > 0 else float("nan"))
    return out


def camera_accuracy(images: Float[Tensor, "N H W 3"], requested: Cameras, upscale: int = 4) -> dict[str, float]:
    """COLMAP's poses of ``images`` against the ``requested`` cameras (see the module docstring)."""
    return pose_errors(recover_poses(images, requested, upscale), requested)


__all__ = ["align_similarity", "camera_accuracy", "pose_errors", "recover_poses"]
