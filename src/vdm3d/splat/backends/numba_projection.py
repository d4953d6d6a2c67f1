"""Compiled EWA projection for the ``numba`` backend: :func:`vdm3d.splat.projection.project_gaussians`
as one fused loop per Gaussian, with its analytic backward.

The torch projection spends ~40 small tensor ops per render and again as many in autograd's
backward (3x3 matrix products on ``[B, N, 3, 3]`` tensors, SH bands, normalizations), which cost more
than the compiled rasterizer at the jobs' sizes. Here each Gaussian is projected by scalar code, in
float64, with exactly the rules of :mod:`vdm3d.splat.projection` (near plane, frustum-clamped
Jacobian, +0.3 px dilation, ``det`` clamp, SH with the clamp at 0, opacity-aware extents), and the
backward is the chain rule of those same lines written out:

* colors: ``v_sh[k] = Y_k v_rgb`` where ``0.5 + sum_k Y_k sh_k >= 0``; the direction's gradient
  goes through the normalization ``(I - d d^T) / |v|`` to the mean;
* conic ``(c, -b, a) / det`` -> 2D covariance -> ``J C J^T`` -> ``C = R Sigma R^T`` ->
  ``Sigma = M M^T`` with ``M = R_q diag(s)`` -> scales and the normalized quaternion;
* the Jacobian ``J(x, y, z)`` and the pixel mean ``f x / z + c`` -> camera point -> world mean.

Cameras are constants here (no gradient reaches ``c2w`` or ``Ks``), as in training.
"""

from __future__ import annotations

import math
from typing import no_type_check

import numba
import numpy as np
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.projection import ALPHA_MIN, EPS_2D, MAX_EXTENT_SIGMA, NEAR_PLANE, Projected
from vdm3d.splat.sh import C0, C1, C2, C3, num_sh_bases

_CHUNK = 256  # Gaussians per parallel task (scratch arrays are allocated once per task)
# LLVM may contract a * b + c into FMAs, reassociate sums and use reciprocals (15 % off both kernels,
# 20k Gaussians at SH degree 3), but not assume finite values: the forward's isfinite test culls
# Gaussians whose projection overflows.
_FAST = {"contract", "reassoc", "arcp", "nsz"}


@numba.njit(cache=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _sh_basis(x, y, z, degree, out):  # pragma: no cover - compiled
    """Fill ``out [4, 16]`` with ``Y_k(d)`` and its partial derivatives ``dY_k/dx, dY_k/dy, dY_k/dz``
    (0 past ``degree``), in the basis and sign convention of :mod:`vdm3d.splat.sh`."""
    out[:] = 0.0
    Y, Yx, Yy, Yz = out[0], out[1], out[2], out[3]
    Y[0] = C0
    if degree >= 1:
        Y[1], Yy[1] = -C1 * y, -C1
        Y[2], Yz[2] = C1 * z, C1
        Y[3], Yx[3] = -C1 * x, -C1
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        Y[4], Yx[4], Yy[4] = C2[0] * x * y, C2[0] * y, C2[0] * x
        Y[5], Yy[5], Yz[5] = C2[1] * y * z, C2[1] * z, C2[1] * y
        Y[6], Yx[6], Yy[6], Yz[6] = C2[2] * (2 * zz - xx - yy), -2 * C2[2] * x, -2 * C2[2] * y, 4 * C2[2] * z
        Y[7], Yx[7], Yz[7] = C2[3] * x * z, C2[3] * z, C2[3] * x
        Y[8], Yx[8], Yy[8] = C2[4] * (xx - yy), 2 * C2[4] * x, -2 * C2[4] * y
    if degree >= 3:
        xx, yy, zz = x * x, y * y, z * z
        Y[9], Yx[9], Yy[9] = C3[0] * y * (3 * xx - yy), 6 * C3[0] * x * y, C3[0] * (3 * xx - 3 * yy)
        Y[10], Yx[10], Yy[10], Yz[10] = C3[1] * x * y * z, C3[1] * y * z, C3[1] * x * z, C3[1] * x * y
        Y[11] = C3[2] * y * (4 * zz - xx - yy)
        Yx[11], Yy[11], Yz[11] = -2 * C3[2] * x * y, C3[2] * (4 * zz - xx - 3 * yy), 8 * C3[2] * y * z
        Y[12] = C3[3] * z * (2 * zz - 3 * xx - 3 * yy)
        Yx[12], Yy[12], Yz[12] = -6 * C3[3] * x * z, -6 * C3[3] * y * z, C3[3] * (6 * zz - 3 * xx - 3 * yy)
        Y[13] = C3[4] * x * (4 * zz - xx - yy)
        Yx[13], Yy[13], Yz[13] = C3[4] * (4 * zz - 3 * xx - yy), -2 * C3[4] * x * y, 8 * C3[4] * x * z
        Y[14], Yx[14], Yy[14], Yz[14] = C3[5] * z * (xx - yy), 2 * C3[5] * x * z, -2 * C3[5] * y * z, C3[5] * (xx - yy)
        Y[15], Yx[15], Yy[15] = C3[6] * x * (xx - 3 * yy), C3[6] * (3 * xx - 3 * yy), -6 * C3[6] * x * y


@numba.njit(inline="always")
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _sh_values(x, y, z, degree, Y):  # pragma: no cover - compiled
    """Fill ``Y[:(degree + 1) ** 2]`` with ``Y_k(d)``: the forward's half of :func:`_sh_basis` (no
    derivatives, no zeroing)."""
    Y[0] = C0
    if degree >= 1:
        Y[1], Y[2], Y[3] = -C1 * y, C1 * z, -C1 * x
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        Y[4], Y[5], Y[6] = C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy)
        Y[7], Y[8] = C2[3] * x * z, C2[4] * (xx - yy)
        if degree >= 3:
            Y[9], Y[10] = C3[0] * y * (3 * xx - yy), C3[1] * x * y * z
            Y[11], Y[12] = C3[2] * y * (4 * zz - xx - yy), C3[3] * z * (2 * zz - 3 * xx - 3 * yy)
            Y[13], Y[14], Y[15] = C3[4] * x * (4 * zz - xx - yy), C3[5] * z * (xx - yy), C3[6] * x * (xx - 3 * yy)


@numba.njit(cache=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _rotation(qw, qx, qy, qz):  # pragma: no cover - compiled
    """Rotation matrix of the normalized quaternion, as nine scalars (row-major), and its norm."""
    n = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w, x, y, z = qw / n, qx / n, qy / n, qz / n
    return (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)), (w, x, y, z), n


@numba.njit(cache=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _camera_terms(cam, width, height):  # pragma: no cover - compiled
    """``fx, fy, cx, cy`` and the frustum limits of the Jacobian clamp (``lim_x_neg, lim_x_pos, ...``)."""
    fx, fy, cx, cy = cam[12], cam[13], cam[14], cam[15]
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    return (fx, fy, cx, cy, cx / fx + 0.3 * tan_x, (width - cx) / fx + 0.3 * tan_x,
            cy / fy + 0.3 * tan_y, (height - cy) / fy + 0.3 * tan_y)


@numba.njit(cache=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _covariance(scales, i, Rq, M, S):  # pragma: no cover - compiled
    """Fill ``M = R_q diag(s)`` and ``Sigma = M M^T`` (row-major, 9 each); return ``s``."""
    s0, s1, s2 = scales[i, 0], scales[i, 1], scales[i, 2]
    for r in range(3):
        M[3 * r], M[3 * r + 1], M[3 * r + 2] = Rq[3 * r] * s0, Rq[3 * r + 1] * s1, Rq[3 * r + 2] * s2
    for r in range(3):
        for c in range(3):
            S[3 * r + c] = M[3 * r] * M[3 * c] + M[3 * r + 1] * M[3 * c + 1] + M[3 * r + 2] * M[3 * c + 2]
    return s0, s1, s2


@numba.njit(cache=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _rotate_covariance(cam, Sig, RS, C):  # pragma: no cover - compiled
    """``C = R Sigma R^T`` for the camera rotation ``R`` (rows of ``cam``), through ``RS = R Sigma``."""
    for r in range(3):
        for c in range(3):
            RS[3 * r + c] = cam[4 * r] * Sig[c] + cam[4 * r + 1] * Sig[3 + c] + cam[4 * r + 2] * Sig[6 + c]
    for r in range(3):
        for c in range(3):
            C[3 * r + c] = RS[3 * r] * cam[4 * c] + RS[3 * r + 1] * cam[4 * c + 1] + RS[3 * r + 2] * cam[4 * c + 2]


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _project_forward(means, quats, scales, opac, r_exts, sh, degree, cams, width, height, near, eps2d,
                     means2d, conics, depths, opacities, colors, extents, visible, radii):  # pragma: no cover
    """Fill the ``[B, N, ...]`` outputs; ``cams [B, 16]`` = w2c rows 0-2 (12 values), fx, fy, cx, cy;
    ``scales``, ``opac`` and ``r_exts`` are :func:`_per_gaussian`'s."""
    n_cams, n = cams.shape[0], means.shape[0]
    n_coef = (degree + 1) ** 2
    for chunk in numba.prange((n + _CHUNK - 1) // _CHUNK):  # scratch arrays allocated once per chunk
        Y, M, Sig, RS, C = np.empty(16), np.empty(9), np.empty(9), np.empty(9), np.empty(9)
        for i in range(chunk * _CHUNK, min(n, chunk * _CHUNK + _CHUNK)):
            Rq, _, _ = _rotation(quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3])
            _covariance(scales, i, Rq, M, Sig)
            o, r_ext = opac[i], r_exts[i]
            mx, my, mz = means[i, 0], means[i, 1], means[i, 2]
            for b in range(n_cams):
                cam = cams[b]
                fx, fy, cx, cy, lxn, lxp, lyn, lyp = _camera_terms(cam, width, height)
                x = cam[0] * mx + cam[1] * my + cam[2] * mz + cam[3]
                y = cam[4] * mx + cam[5] * my + cam[6] * mz + cam[7]
                z = cam[8] * mx + cam[9] * my + cam[10] * mz + cam[11]
                in_front = z >= near
                zs = z if in_front else 1.0
                u, v = fx * x / zs + cx, fy * y / zs + cy
                tx = zs * min(max(x / zs, -lxn), lxp)
                ty = zs * min(max(y / zs, -lyn), lyp)
                J00, J02, J11, J12 = fx / zs, -fx * tx / (zs * zs), fy / zs, -fy * ty / (zs * zs)
                # C = R Sigma R^T (camera frame), then cov2d = J C J^T.
                _rotate_covariance(cam, Sig, RS, C)
                a = J00 * (J00 * C[0] + J02 * C[2]) + J02 * (J00 * C[6] + J02 * C[8]) + eps2d
                bb = J00 * (J11 * C[1] + J12 * C[2]) + J02 * (J11 * C[7] + J12 * C[8])
                c_ = J11 * (J11 * C[4] + J12 * C[5]) + J12 * (J11 * C[7] + J12 * C[8]) + eps2d
                det = max(a * c_ - bb * bb, 1e-12)
                means2d[b, i, 0], means2d[b, i, 1] = u, v
                conics[b, i, 0], conics[b, i, 1], conics[b, i, 2] = c_ / det, -bb / det, a / det
                depths[b, i] = z
                # Color along the world direction camera center -> Gaussian.
                dxw, dyw, dzw = mx - cam[16], my - cam[17], mz - cam[18]
                norm = max(math.sqrt(dxw * dxw + dyw * dyw + dzw * dzw), 1e-12)
                _sh_values(dxw / norm, dyw / norm, dzw / norm, degree, Y)
                r0 = r1 = r2 = 0.5
                for k in range(n_coef):
                    r0 += Y[k] * sh[i, k, 0]
                    r1 += Y[k] * sh[i, k, 1]
                    r2 += Y[k] * sh[i, k, 2]
                colors[b, i, 0], colors[b, i, 1], colors[b, i, 2] = max(r0, 0.0), max(r1, 0.0), max(r2, 0.0)
                ex, ey = r_ext * math.sqrt(a), r_ext * math.sqrt(c_)
                on_image = (u + ex > 0) and (u - ex < width) and (v + ey > 0) and (v - ey < height)
                vis = in_front and o >= ALPHA_MIN and on_image and math.isfinite(u) and math.isfinite(v)
                visible[b, i] = vis
                opacities[b, i] = o if vis else 0.0
                if vis:
                    extents[b, i, 0], extents[b, i, 1] = ex, ey
                    radii[b, i] = int(math.ceil(max(np.float32(ex), np.float32(ey))))
                else:
                    extents[b, i, 0], extents[b, i, 1] = 0.0, 0.0
                    radii[b, i] = 0


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _project_backward(means, quats, scales, opac, sh, degree, cams, width, height, near, eps2d, visible,
                      v_means2d, v_conics, v_depths, v_opacities, v_colors,
                      v_means, v_quats, v_log_scales, v_logits, v_sh):  # pragma: no cover - compiled
    """Write the parameter gradients (every entry) from the cotangents of the ``[B, N, ...]`` outputs.

    A Gaussian whose cotangents are all zero in every camera (every culled one, when the loss is
    on the image) gets zero gradients without the chain rule: they are linear in the cotangents."""
    n_cams, n = cams.shape[0], means.shape[0]
    n_coef = (degree + 1) ** 2
    for chunk in numba.prange((n + _CHUNK - 1) // _CHUNK):  # scratch arrays allocated once per chunk
        basis, M, Sig, RS, C = np.empty((4, 16)), np.empty(9), np.empty(9), np.empty(9), np.empty(9)
        vm, vSig, vC, vM, v = np.empty(3), np.empty(9), np.empty(9), np.empty(9), np.empty(9)
        JC, vsh = np.empty(6), np.empty((n_coef, 3))
        for i in range(chunk * _CHUNK, min(n, chunk * _CHUNK + _CHUNK)):
            v_logit = 0.0
            vsh[:] = 0.0
            if not _any_cotangent(i, v_means2d, v_conics, v_depths, v_opacities, v_colors):
                _write_gradients(i, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, vsh, v_means, v_quats,
                                 v_log_scales, v_logits, v_sh)
                continue
            Rq, qn, qnorm = _rotation(quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3])
            s = _covariance(scales, i, Rq, M, Sig)
            o = opac[i]
            mx, my, mz = means[i, 0], means[i, 1], means[i, 2]
            vm[:] = 0.0
            vSig[:] = 0.0  # gradient of Sigma (not symmetrized)
            for b in range(n_cams):
                cam = cams[b]
                fx, fy, cx, cy, lxn, lxp, lyn, lyp = _camera_terms(cam, width, height)
                if visible[b, i]:
                    v_logit += v_opacities[b, i] * o * (1.0 - o)
                # Colors -> SH coefficients and the viewing direction.
                dxw, dyw, dzw = mx - cam[16], my - cam[17], mz - cam[18]
                raw_norm = math.sqrt(dxw * dxw + dyw * dyw + dzw * dzw)
                norm = max(raw_norm, 1e-12)
                d0, d1, d2 = dxw / norm, dyw / norm, dzw / norm
                _sh_basis(d0, d1, d2, degree, basis)
                Y, Yx, Yy, Yz = basis[0], basis[1], basis[2], basis[3]
                r0 = r1 = r2 = 0.5
                for k in range(n_coef):
                    r0 += Y[k] * sh[i, k, 0]
                    r1 += Y[k] * sh[i, k, 1]
                    r2 += Y[k] * sh[i, k, 2]
                # a channel clamped at 0 passes no gradient
                vc0 = v_colors[b, i, 0] if r0 >= 0.0 else 0.0
                vc1 = v_colors[b, i, 1] if r1 >= 0.0 else 0.0
                vc2 = v_colors[b, i, 2] if r2 >= 0.0 else 0.0
                vd0 = vd1 = vd2 = 0.0
                for k in range(n_coef):
                    vsh[k, 0] += Y[k] * vc0
                    vsh[k, 1] += Y[k] * vc1
                    vsh[k, 2] += Y[k] * vc2
                    s_k = sh[i, k, 0] * vc0 + sh[i, k, 1] * vc1 + sh[i, k, 2] * vc2  # d color . v_color / d Y_k
                    vd0 += Yx[k] * s_k
                    vd1 += Yy[k] * s_k
                    vd2 += Yz[k] * s_k
                if raw_norm >= 1e-12:
                    dot = d0 * vd0 + d1 * vd1 + d2 * vd2
                    vm[0] += (vd0 - d0 * dot) / norm
                    vm[1] += (vd1 - d1 * dot) / norm
                    vm[2] += (vd2 - d2 * dot) / norm
                else:
                    vm[0] += vd0 / norm
                    vm[1] += vd1 / norm
                    vm[2] += vd2 / norm
                # Recompute the forward quantities of this camera.
                x = cam[0] * mx + cam[1] * my + cam[2] * mz + cam[3]
                y = cam[4] * mx + cam[5] * my + cam[6] * mz + cam[7]
                z = cam[8] * mx + cam[9] * my + cam[10] * mz + cam[11]
                in_front = z >= near
                zs = z if in_front else 1.0
                rx, ry = x / zs, y / zs
                rxc, ryc = min(max(rx, -lxn), lxp), min(max(ry, -lyn), lyp)
                tx, ty = zs * rxc, zs * ryc
                J00, J02, J11, J12 = fx / zs, -fx * tx / (zs * zs), fy / zs, -fy * ty / (zs * zs)
                _rotate_covariance(cam, Sig, RS, C)
                a = J00 * (J00 * C[0] + J02 * C[2]) + J02 * (J00 * C[6] + J02 * C[8]) + eps2d
                bb = J00 * (J11 * C[1] + J12 * C[2]) + J02 * (J11 * C[7] + J12 * C[8])
                c_ = J11 * (J11 * C[4] + J12 * C[5]) + J12 * (J11 * C[7] + J12 * C[8]) + eps2d
                det_raw = a * c_ - bb * bb
                det = max(det_raw, 1e-12)
                # Conic (c, -b, a) / det -> a, b, c of the dilated 2D covariance.
                q0, q1, q2 = v_conics[b, i, 0], v_conics[b, i, 1], v_conics[b, i, 2]
                va, vb, vc_ = q2 / det, -q1 / det, q0 / det
                if det_raw >= 1e-12:
                    v_det = -(q0 * c_ - q1 * bb + q2 * a) / (det * det)
                    va += v_det * c_
                    vb += v_det * (-2.0 * bb)
                    vc_ += v_det * a
                # cov2d = J C J^T with V = [[va, vb], [0, vc]] (only the upper entry b is read).
                J = (J00, 0.0, J02, 0.0, J11, J12)
                V = (va, vb, 0.0, vc_)
                for r in range(3):
                    for c in range(3):
                        vC[3 * r + c] = (J[r] * (V[0] * J[c] + V[1] * J[3 + c])
                                         + J[3 + r] * (V[2] * J[c] + V[3] * J[3 + c]))
                # v_J = (V + V^T) J C
                Vs = (2.0 * va, vb, vb, 2.0 * vc_)
                for r in range(2):
                    for c in range(3):
                        JC[3 * r + c] = J[3 * r] * C[c] + J[3 * r + 1] * C[3 + c] + J[3 * r + 2] * C[6 + c]
                vJ00 = Vs[0] * JC[0] + Vs[1] * JC[3]
                vJ02 = Vs[0] * JC[2] + Vs[1] * JC[5]
                vJ11 = Vs[2] * JC[1] + Vs[3] * JC[4]
                vJ12 = Vs[2] * JC[2] + Vs[3] * JC[5]
                # C = R Sigma R^T -> v_Sigma += R^T vC R
                for r in range(3):  # RS = vC R (reusing the scratch)
                    for c in range(3):
                        RS[3 * r + c] = vC[3 * r] * cam[c] + vC[3 * r + 1] * cam[4 + c] + vC[3 * r + 2] * cam[8 + c]
                for p in range(3):
                    for q in range(3):
                        vSig[3 * p + q] += cam[p] * RS[q] + cam[4 + p] * RS[3 + q] + cam[8 + p] * RS[6 + q]
                # Jacobian and pixel mean -> camera point.
                zs2 = zs * zs
                vx = v_means2d[b, i, 0] * fx / zs
                vy = v_means2d[b, i, 1] * fy / zs
                vzs = (-(v_means2d[b, i, 0] * fx * x + v_means2d[b, i, 1] * fy * y) / zs2
                       - fx / zs2 * vJ00 - fy / zs2 * vJ11 + 2.0 * fx * tx / (zs2 * zs) * vJ02
                       + 2.0 * fy * ty / (zs2 * zs) * vJ12)
                vtx, vty = -fx / zs2 * vJ02, -fy / zs2 * vJ12
                if rx == rxc:  # tx = x: no dependence on z
                    vx += vtx
                else:  # tx = z * limit
                    vzs += vtx * rxc
                if ry == ryc:
                    vy += vty
                else:
                    vzs += vty * ryc
                vz = v_depths[b, i] + (vzs if in_front else 0.0)
                for r in range(3):
                    vm[r] += cam[r] * vx + cam[4 + r] * vy + cam[8 + r] * vz
            # Sigma = M M^T -> M -> scales and the rotation.
            for r in range(3):
                for c in range(3):
                    acc = 0.0
                    for p in range(3):
                        acc += (vSig[3 * r + p] + vSig[3 * p + r]) * M[3 * p + c]
                    vM[3 * r + c] = acc
            vs0 = (vM[0] * Rq[0] + vM[3] * Rq[3] + vM[6] * Rq[6]) * s[0]
            vs1 = (vM[1] * Rq[1] + vM[4] * Rq[4] + vM[7] * Rq[7]) * s[1]
            vs2 = (vM[2] * Rq[2] + vM[5] * Rq[5] + vM[8] * Rq[8]) * s[2]
            for r in range(3):
                for c in range(3):
                    v[3 * r + c] = vM[3 * r + c] * s[c]
            w, x, y, z = qn
            vw = 2 * (-z * v[1] + y * v[2] + z * v[3] - x * v[5] - y * v[6] + x * v[7])
            vx = 2 * (y * v[1] + z * v[2] + y * v[3] - 2 * x * v[4] - w * v[5] + z * v[6] + w * v[7] - 2 * x * v[8])
            vy = 2 * (-2 * y * v[0] + x * v[1] + w * v[2] + x * v[3] + z * v[5] - w * v[6] + z * v[7] - 2 * y * v[8])
            vz = 2 * (-2 * z * v[0] - w * v[1] + x * v[2] + w * v[3] - 2 * z * v[4] + y * v[5] + x * v[6] + y * v[7])
            dot = w * vw + x * vx + y * vy + z * vz
            _write_gradients(i, vm[0], vm[1], vm[2], (vw - w * dot) / qnorm, (vx - x * dot) / qnorm,
                             (vy - y * dot) / qnorm, (vz - z * dot) / qnorm, vs0, vs1, vs2, v_logit, vsh,
                             v_means, v_quats, v_log_scales, v_logits, v_sh)


@numba.njit(inline="always")
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _any_cotangent(i, v_means2d, v_conics, v_depths, v_opacities, v_colors):  # pragma: no cover - compiled
    """Whether any output of Gaussian ``i`` has a nonzero cotangent in any camera."""
    for b in range(v_means2d.shape[0]):
        if (v_means2d[b, i, 0] != 0.0 or v_means2d[b, i, 1] != 0.0 or v_conics[b, i, 0] != 0.0
                or v_conics[b, i, 1] != 0.0 or v_conics[b, i, 2] != 0.0 or v_depths[b, i] != 0.0
                or v_opacities[b, i] != 0.0 or v_colors[b, i, 0] != 0.0 or v_colors[b, i, 1] != 0.0
                or v_colors[b, i, 2] != 0.0):
            return True
    return False


@numba.njit(inline="always")
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _write_gradients(i, vm0, vm1, vm2, vq0, vq1, vq2, vq3, vs0, vs1, vs2, v_logit, vsh, v_means, v_quats,
                     v_log_scales, v_logits, v_sh):  # pragma: no cover - compiled
    """Store Gaussian ``i``'s gradients (every entry, in the outputs' dtype; SH past ``vsh`` are 0)."""
    v_means[i, 0], v_means[i, 1], v_means[i, 2] = vm0, vm1, vm2
    v_quats[i, 0], v_quats[i, 1], v_quats[i, 2], v_quats[i, 3] = vq0, vq1, vq2, vq3
    v_log_scales[i, 0], v_log_scales[i, 1], v_log_scales[i, 2] = vs0, vs1, vs2
    v_logits[i] = v_logit
    for k in range(v_sh.shape[1]):
        for ch in range(3):
            v_sh[i, k, ch] = vsh[k, ch] if k < vsh.shape[0] else 0.0


def _camera_table(cameras: Cameras) -> np.ndarray:
    """``[B, 19]`` float64: w2c rows 0-2, fx, fy, cx, cy, camera center. ``w2c = [R^T | -R^T t]`` from the
    rigid c2w as :attr:`Cameras.w2c` computes it, here in float64 numpy: 18 us where the torch ops took 73
    (a quarter of the ``cpp`` backend's Python path of a render), and -R^T t no longer rounded to float32
    on the way (it moves by up to 3e-8)."""
    c2w = cameras.c2w.detach().reshape(-1, 4, 4).double().numpy()
    Ks = cameras.Ks.detach().reshape(-1, 3, 3).double().numpy()
    table = np.empty((c2w.shape[0], 19))
    Rt = c2w[:, :3, :3].transpose(0, 2, 1)
    w2c = table[:, :12].reshape(-1, 3, 4)  # a view: rows 0-2 of [R^T | -R^T t]
    w2c[:, :, :3] = Rt
    w2c[:, :, 3] = -(Rt @ c2w[:, :3, 3:])[:, :, 0]
    table[:, 12], table[:, 13], table[:, 14], table[:, 15] = Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2]
    table[:, 16:] = c2w[:, :3, 3]
    return table


class ProjectNumba(torch.autograd.Function):
    """``(means, quats, log_scales, opacity_logits, sh) -> (means2d, conics, depths, opacities, colors)``
    for ``B`` cameras, plus the non-differentiable ``extents``, ``visible`` and ``radii``."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, opacity_logits, sh, cameras: Cameras, degree: int,
                near: float, eps2d: float):
        params = [t.detach().contiguous().numpy() for t in (means, quats, log_scales, opacity_logits, sh)]
        scales, opac, r_exts = _per_gaussian(params[2], params[3])
        cams = _camera_table(cameras)
        B, N, dtype = cams.shape[0], means.shape[0], params[0].dtype
        means2d, conics = np.empty((B, N, 2), dtype), np.empty((B, N, 3), dtype)
        depths, opacs = np.empty((B, N), dtype), np.empty((B, N), dtype)
        colors, extents = np.empty((B, N, 3), dtype), np.empty((B, N, 2), dtype)
        visible, radii = np.empty((B, N), np.bool_), np.empty((B, N), np.int32)
        _project_forward(params[0], params[1], scales, opac, r_exts, params[4], degree, cams, cameras.width,
                         cameras.height, near, eps2d, means2d, conics, depths, opacs, colors, extents, visible, radii)
        ctx.params, ctx.per_gaussian, ctx.cams, ctx.visible = params, (scales, opac), cams, visible
        ctx.consts = (degree, cameras.width, cameras.height, near, eps2d)
        out = [torch.from_numpy(a) for a in (means2d, conics, depths, opacs, colors, extents, visible, radii)]
        ctx.mark_non_differentiable(*out[5:])
        return tuple(out)

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, v_opac, v_colors, *_):
        params = ctx.params
        degree, width, height, near, eps2d = ctx.consts
        cot = [t.detach().contiguous().numpy() for t in (v_means2d, v_conics, v_depths, v_opac, v_colors)]
        grads = [np.empty_like(p) for p in params]  # the kernel writes every entry
        _project_backward(params[0], params[1], *ctx.per_gaussian, params[4], degree, ctx.cams, width, height,
                          near, eps2d, ctx.visible, *cot, *grads)
        return (*(torch.from_numpy(g) for g in grads), None, None, None, None)


def _per_gaussian(log_scales: np.ndarray, logits: np.ndarray, dtype: type = np.float64
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-Gaussian transcendentals, as whole-array numpy ops in ``dtype`` (SIMD, ~0.5 ns an
    element against ~10 ns for a scalar ``exp`` in the kernels; float64 for these kernels, float32 for
    the C++ ones, as :mod:`.torch_ref` computes them): ``scales = exp(log_scales)``,
    ``opac = sigmoid(logits)`` and the extent radius ``min(sqrt(2 ln(opac / (1/255))), 3.33)``."""
    scales = np.exp(log_scales.astype(dtype, copy=False))
    opac = 1.0 / (1.0 + np.exp(-logits.astype(dtype, copy=False)))
    r_exts = np.minimum(np.sqrt(2.0 * np.log(np.maximum(opac / dtype(ALPHA_MIN), 1.0))), dtype(MAX_EXTENT_SIGMA))
    return scales, opac, r_exts


def project_gaussians_numba(gaussians: Gaussians, cameras: Cameras, sh_degree: int, near: float = NEAR_PLANE,
                            eps2d: float = EPS_2D) -> Projected:
    """:func:`vdm3d.splat.projection.project_gaussians`, compiled (``cameras.shape == (B,)``)."""
    num_sh_bases(sh_degree)
    g = gaussians
    means2d, conics, depths, opac, colors, extents, visible, radii = ProjectNumba.apply(
        g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, cameras, sh_degree, near, eps2d)
    return Projected(means2d, conics, depths, opac, colors, extents, visible, radii)
