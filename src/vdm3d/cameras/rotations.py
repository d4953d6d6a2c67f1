"""Rotation helpers: quaternions ``(w, x, y, z)`` <-> matrices, slerp, and re-orthonormalization.

Written by hand (a few lines of torch each) because they must be batched, differentiable and dtype
preserving; quaternion order is (w, x, y, z) everywhere in vdm3d, the same order COLMAP stores.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def matrix_from_quat(q: Float[Tensor, "*B 4"]) -> Float[Tensor, "*B 3 3"]:
    """Rotation matrices from (not necessarily unit) quaternions ``(w, x, y, z)``."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def quat_from_matrix(R: Float[Tensor, "*B 3 3"]) -> Float[Tensor, "*B 4"]:
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` from rotation matrices.

    Uses the largest of the four candidate denominators per matrix (Shepperd's method), so it is
    accurate for every rotation, including 180 degree ones.
    """
    m = R
    t0 = 1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    t1 = 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2]
    t2 = 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2]
    t3 = 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]
    cand = torch.stack([
        torch.stack([t0, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], t1, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], t2, m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], t3], -1),
    ], -2)  # [*B, 4 candidates, 4]
    best = torch.stack([t0, t1, t2, t3], -1).argmax(-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def slerp(q0: Float[Tensor, "*B 4"], q1: Float[Tensor, "*B 4"], t: Float[Tensor, "*B"]) -> Float[Tensor, "*B 4"]:
    """Spherical linear interpolation along the shorter arc; ``t`` in [0, 1]."""
    q0 = q0 / q0.norm(dim=-1, keepdim=True)
    q1 = q1 / q1.norm(dim=-1, keepdim=True)
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)  # same rotation, shorter way round
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    s = torch.sin(theta)
    t = t[..., None]
    near = s < 1e-6  # nearly identical: linear interpolation is exact to first order
    w0 = torch.where(near, 1 - t, torch.sin((1 - t) * theta) / torch.where(near, torch.ones_like(s), s))
    w1 = torch.where(near, t, torch.sin(t * theta) / torch.where(near, torch.ones_like(s), s))
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


def orthonormalize(R: Float[Tensor, "*B 3 3"]) -> Float[Tensor, "*B 3 3"]:
    """Nearest rotation (polar decomposition through SVD, det forced to +1)."""
    U, _, Vh = torch.linalg.svd(R)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.ones_like(R[..., 0])
    D[..., 2] = d
    return U @ torch.diag_embed(D) @ Vh


def axis_angle_matrix(axis: Float[Tensor, "*B 3"], angle_rad: Float[Tensor, "*B"]) -> Float[Tensor, "*B 3 3"]:
    """Rotation by ``angle_rad`` about the unit ``axis`` (right-hand rule), Rodrigues' formula."""
    axis = axis / axis.norm(dim=-1, keepdim=True)
    half = angle_rad / 2
    q = torch.cat([torch.cos(half)[..., None], axis * torch.sin(half)[..., None]], -1)
    return matrix_from_quat(q)
