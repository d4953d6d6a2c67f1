"""Compiled CPU rasterizer: the ``numba`` backend, and the fallback of the default ``cpp`` one.

The per-Gaussian half (EWA projection, SH colors, culling) is the compiled twin of
:mod:`vdm3d.splat.projection` in :mod:`.numba_projection`; the per-pixel half is here, with the rules
of the dense reference (:mod:`.torch_ref`), pixel for pixel:

1. **Bin**: the visible Gaussians, sorted front to back by camera z (stable, as ``torch_ref``: a
   radix sort on the depths' bit patterns), are appended to the list of every ``tile x tile`` pixel
   tile their alpha >= 1/255 box overlaps, so each tile's list is already in depth order (no
   per-tile sort).
2. **Forward**, in parallel over tiles: the tile walks its list front to back, each Gaussian over
   the pixels of its box, ``alpha = min(0.99, o exp(-0.5 d^T Sigma^-1 d))`` (skipped below 1/255);
   a pixel stops at the first Gaussian that would take its transmittance below 1e-4 (that one is
   not blended) and keeps the final transmittance and the position after its last blended
   Gaussian. The ``exp`` is stepped over the pixel lattice by products (exact for a quadratic
   exponent; see ``_lattice``), so a Gaussian costs six ``exp`` per tile, not one per pixel. The
   tile then finishes its pixels as :func:`vdm3d.splat.output.finish` does (background, depth
   normalization), so the images leave the kernel final: no torch ops per pixel after it.
3. **Backward**, in parallel over tiles: each tile first takes the chain rule of that finish, then
   each pixel walks back from its last blended Gaussian, recovering ``T_i = T_{i+1} / (1 - alpha_i)``,
   and applies ``dL/dalpha_i = g_i T_i - S_i / (1 - alpha_i)`` with ``g_i = dL/dw_i`` and
   ``S_i = sum_{j > i} g_j w_j`` (as 3DGS does). Gradients go to one slot per (tile, Gaussian)
   pair, which only the thread that owns the tile writes, and a serial pass adds the slots up per
   Gaussian: no atomics, and the result does not depend on the thread count.

All cameras of a render go through one autograd function (:class:`RasterizeNumba`), which takes the
projection's ``[B, N, ...]`` tensors whole.

Sums along a pixel are carried in float64 (the inputs stay float32), so the backward's division
recovers the forward's transmittances to well under the float32 tolerance of the tests.

The CPU default is the ``cpp`` backend (:mod:`.cpp`): this
module's projection and binning with a float32 C++ twin of the two kernels below, whose row steps
gcc vectorizes (0.54x this forward's time and 0.60x this backward's at 20k Gaussians, 128 px,
measured side by side). These kernels stay as its fallback where no C++ compiler is present
and for float64 Gaussians: numba installs as a wheel, its kernels compile on first use
(15-50 s on the shared 2-core machine) and are cached beside this file (``cache=True``; about 1 s
to load afterwards), and its ``prange`` threads follow :func:`vdm3d.threads.set_threads`.

Tried and not kept (measured on the 20k-Gaussian, 128-pixel benchmark scene, one thread): a
lane-parallel forward that evaluates whole 16-pixel tile rows with branch-free float masks (all
state in one buffer at constant offsets, so LLVM vectorizes it without alias checks): 7.1-7.8 ms
against 6.5 ms for the scalar loop below, since a Gaussian's box covers about 7 of the 16 lanes;
an exact per-row span of the ellipse costs a ``sqrt`` per row, about what it saves.
"""

from __future__ import annotations

import dataclasses
import math
from typing import no_type_check

import numba
import numpy as np
import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.output import RenderOutput
from vdm3d.splat.backends.numba_projection import project_gaussians_numba
from vdm3d.splat.projection import ALPHA_MAX, ALPHA_MIN, T_MIN

TILE = 16
_N_GRAD = 10  # per-pair gradient slots: means2d (2), conic (3), color (3), depth (1), opacity (1)


@dataclasses.dataclass
class TileLists:
    """Per-tile Gaussian lists for one camera: tile ``t`` holds ``gauss[offsets[t]:offsets[t + 1]]``."""

    width: int
    height: int
    tile: int
    tiles_x: int
    offsets: np.ndarray  # [tiles + 1] int64
    gauss: np.ndarray  # [pairs] int32, Gaussian indices front to back within each tile
    boxes: np.ndarray  # [N, 4] int32 pixel box (x0, x1, y0, y1) of each Gaussian's alpha >= 1/255 ellipse


@numba.njit(cache=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _depth_order(depth_bits, visible):  # pragma: no cover - compiled
    """Indices of the visible Gaussians sorted front to back, stably (ties in index order, as
    ``torch_ref``'s stable sort): an LSD radix sort, 8 bits a pass, on the depths' IEEE bit patterns
    (``depth_bits``, unsigned integers of the depths' width), whose order is the depths' order because
    every visible depth is positive (at least the near plane). 0.16 against 0.9 ms for numba's
    merge sort of 12k depths."""
    n = 0
    for i in range(visible.shape[0]):
        n += visible[i]
    idx, tmp = np.empty(n, np.int64), np.empty(n, np.int64)
    j = 0
    for i in range(visible.shape[0]):
        if visible[i]:
            idx[j] = i
            j += 1
    if n == 0:
        return idx
    count = np.empty(257, np.int64)
    for shift in range(0, 8 * depth_bits.itemsize, 8):
        count[:] = 0
        for j in range(n):
            count[((depth_bits[idx[j]] >> shift) & 255) + 1] += 1
        if count[1 + ((depth_bits[idx[0]] >> shift) & 255)] == n:
            continue  # every key has the same byte here: the pass would not move anything
        for k in range(256):
            count[k + 1] += count[k]
        for j in range(n):
            b = (depth_bits[idx[j]] >> shift) & 255
            tmp[count[b]] = idx[j]
            count[b] += 1
        idx, tmp = tmp, idx
    return idx


@numba.njit(cache=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _bin_kernel(means2d, extents, depth_bits, visible, width, height, tile, tiles_x, tiles_y):  # pragma: no cover
    """The visible Gaussians front to back, appended to the list of every tile their box overlaps."""
    order = _depth_order(depth_bits, visible)
    n_tiles = tiles_x * tiles_y
    boxes = np.empty((means2d.shape[0], 4), np.int32)
    counts = np.zeros(n_tiles + 1, np.int64)
    for k in range(order.shape[0]):
        g = order[k]
        # Pixels whose centers (i + 0.5) lie inside [m - e, m + e], widened by a hair against rounding.
        mx, my, ex, ey = np.float64(means2d[g, 0]), np.float64(means2d[g, 1]), extents[g, 0], extents[g, 1]
        x0 = max(int(math.ceil(mx - ex - 0.5 - 1e-3)), 0)
        x1 = min(int(math.floor(mx + ex - 0.5 + 1e-3)), width - 1)
        y0 = max(int(math.ceil(my - ey - 0.5 - 1e-3)), 0)
        y1 = min(int(math.floor(my + ey - 0.5 + 1e-3)), height - 1)
        boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3] = x0, x1, y0, y1
        if x1 < x0 or y1 < y0:
            continue
        for ty in range(y0 // tile, y1 // tile + 1):
            for tx in range(x0 // tile, x1 // tile + 1):
                counts[ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    gauss = np.empty(offsets[-1], np.int32)
    cursor = offsets[:-1].copy()
    for k in range(order.shape[0]):
        g = order[k]
        x0, x1, y0, y1 = boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3]
        if x1 < x0 or y1 < y0:
            continue
        for ty in range(y0 // tile, y1 // tile + 1):
            for tx in range(x0 // tile, x1 // tile + 1):
                t = ty * tiles_x + tx
                gauss[cursor[t]] = g
                cursor[t] += 1
    return offsets, gauss, boxes


def bin_gaussians(means2d: np.ndarray, extents: np.ndarray, depths: np.ndarray, visible: np.ndarray, width: int,
                  height: int, tile: int = TILE) -> TileLists:
    """Front-to-back Gaussian lists per tile for one camera (arrays ``[N, ...]``)."""
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    depth_bits = np.ascontiguousarray(depths).view(np.uint32 if depths.dtype == np.float32 else np.uint64)
    offsets, gauss, boxes = _bin_kernel(means2d, extents, depth_bits, visible, width, height, tile, tiles_x, tiles_y)
    return TileLists(width, height, tile, tiles_x, offsets, gauss, boxes)


@numba.njit(inline="always")
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _lattice(mx, my, ca, cb, cc, x0, y0):  # pragma: no cover - compiled
    """``G = exp(-0.5 d^T C d)`` at pixel ``(x0, y0)`` and the factors that step it over the pixel
    lattice: one pixel right ``G *= Rx`` (then ``Rx *= exp(-a)``), one row down ``G *= Ry`` (then
    ``Ry *= exp(-c)``, and the row's ``Rx *= exp(-b)``). Exact for a quadratic exponent, so a
    Gaussian's pixels in a tile cost six ``exp`` in all instead of one each. ``ok`` is false where
    the exponent at the corner is so large that the products could underflow (then the caller
    takes one ``exp`` per pixel)."""
    dx, dy = x0 + 0.5 - mx, y0 + 0.5 - my
    power = ca * dx * dx + 2.0 * cb * dx * dy + cc * dy * dy
    step_x = ca * (2.0 * dx + 1.0) + 2.0 * cb * dy
    step_y = cc * (2.0 * dy + 1.0) + 2.0 * cb * dx
    # every factor within exp(+-250): no product of a few dozen of them under- or overflows in float64
    ok = (power < 500.0 and abs(step_x) < 500.0 and abs(step_y) < 500.0
          and ca < 500.0 and cc < 500.0 and abs(cb) < 500.0)
    if not ok:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    return (True, math.exp(-0.5 * power), math.exp(-0.5 * step_x), math.exp(-0.5 * step_y), math.exp(-ca),
            math.exp(-cc), math.exp(-cb))


@numba.njit(parallel=True, cache=True, fastmath=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _forward_kernel(means2d, conics, opacities, colors, depths, offsets, gauss, boxes, width, height, tile,
                    tiles_x, background, out_rgb, out_depth, out_alpha, alpha64, depth64, T_final,
                    last):  # pragma: no cover - compiled
    """The finished images ``out_rgb [H, W, 3] = sum w c + (1 - A) background``, ``out_alpha [H, W]
    = A = sum w`` and ``out_depth [H, W] = sum w z / A`` (0 where ``A <= 1e-6``), as :func:`..output.finish`
    makes them; for the backward ``A`` and the depth in float64, ``T_final [H, W]`` and
    ``last [H, W]`` = one past the position (in ``gauss``) of the pixel's last blended Gaussian.

    Each tile walks its list front to back and visits only the pixels inside the Gaussian's
    alpha >= 1/255 box (the others are below 1/255 by construction); a pixel is marked done at the
    Gaussian that would end it, and the tile stops when all its pixels are done."""
    n_tiles = offsets.shape[0] - 1
    for t in numba.prange(n_tiles):
        start, end = offsets[t], offsets[t + 1]
        ox, oy = (t % tiles_x) * tile, (t // tiles_x) * tile
        tw, th = min(tile, width - ox), min(tile, height - oy)
        T = np.ones((th, tw))
        acc = np.zeros((th, tw, 5))
        stop = np.full((th, tw), start)
        done = np.zeros((th, tw), np.bool_)
        row_left = np.full(th, tw)  # pixels of each row not done yet
        n_done = 0
        for k in range(start, end):
            i = gauss[k]
            mx, my = means2d[i, 0], means2d[i, 1]
            ca, cb, cc, o = conics[i, 0], conics[i, 1], conics[i, 2], opacities[i]
            c0, c1, c2, z = colors[i, 0], colors[i, 1], colors[i, 2], depths[i]
            x0, x1 = max(boxes[i, 0], ox), min(boxes[i, 1], ox + tw - 1)
            y0, y1 = max(boxes[i, 2], oy), min(boxes[i, 3], oy + th - 1)
            ok, G_row, Rx_row, Ry, Qx, Qy, Qxy = _lattice(mx, my, ca, cb, cc, x0, y0)
            for py in range(y0, y1 + 1):
                ly = np.uint64(py - oy)  # unsigned indices: no negative-index wraparound code per access
                if row_left[ly] == 0:  # every pixel of this row is done
                    G_row *= Ry
                    Ry *= Qy
                    Rx_row *= Qxy
                    continue
                G, Rx = G_row, Rx_row
                for px in range(x0, x1 + 1):
                    G_here = G
                    G *= Rx
                    Rx *= Qx
                    lx = np.uint64(px - ox)
                    if done[ly, lx]:
                        continue
                    if not ok:
                        dx, dy = px + 0.5 - mx, py + 0.5 - my
                        G_here = math.exp(-0.5 * (ca * dx * dx + 2.0 * cb * dx * dy + cc * dy * dy))
                    alpha = min(ALPHA_MAX, o * G_here)
                    if alpha < ALPHA_MIN:
                        continue
                    T_here = T[ly, lx]
                    T_next = T_here * (1.0 - alpha)
                    if T_next < T_MIN:  # this Gaussian would end the pixel: it is not blended
                        done[ly, lx] = True
                        row_left[ly] -= 1
                        n_done += 1
                        continue
                    w = alpha * T_here
                    acc[ly, lx, 0] += w * c0
                    acc[ly, lx, 1] += w * c1
                    acc[ly, lx, 2] += w * c2
                    acc[ly, lx, 3] += w * z
                    acc[ly, lx, 4] += w
                    T[ly, lx] = T_next
                    stop[ly, lx] = k + 1
                G_row *= Ry
                Ry *= Qy
                Rx_row *= Qxy
            if n_done == tw * th:
                break
        for ly in range(th):
            for lx in range(tw):
                py, px = oy + ly, ox + lx
                a = acc[ly, lx, 4]
                rest = 1.0 - a
                out_rgb[py, px, 0] = acc[ly, lx, 0] + rest * background[0]
                out_rgb[py, px, 1] = acc[ly, lx, 1] + rest * background[1]
                out_rgb[py, px, 2] = acc[ly, lx, 2] + rest * background[2]
                z = acc[ly, lx, 3] / a if a > 1e-6 else 0.0
                out_depth[py, px], out_alpha[py, px], depth64[py, px], alpha64[py, px] = z, a, z, a
                T_final[py, px] = T[ly, lx]
                last[py, px] = stop[ly, lx]


@numba.njit(parallel=True, cache=True, fastmath=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _backward_kernel(means2d, conics, opacities, colors, depths, offsets, gauss, boxes, width, height, tile,
                     tiles_x, background, alpha64, depth64, T_final, last, v_rgb, v_depth, v_alpha,
                     v_pairs):  # pragma: no cover - compiled
    """Per-pair gradients ``v_pairs [pairs, 10]`` from the cotangents of the finished images: each
    tile first turns them into those of ``sum w c``, ``sum w z`` and ``sum w`` (the chain rule of
    the background and the depth normalization), then walks its list back to front, each pixel
    starting at its own last blended Gaussian."""
    n_tiles = offsets.shape[0] - 1
    for t in numba.prange(n_tiles):
        start, end_all = offsets[t], offsets[t + 1]
        ox, oy = (t % tiles_x) * tile, (t // tiles_x) * tile
        tw, th = min(tile, width - ox), min(tile, height - oy)
        T = np.empty((th, tw))  # after the current Gaussian, walking back
        S = np.zeros((th, tw))  # sum of g_j w_j over the blended Gaussians behind the current one
        v_px = np.empty((th, tw, 5))  # the tile's cotangents, one cache line per pixel
        stop = np.empty((th, tw), np.int64)  # the tile's ``last``
        row_end = np.full(th, start)  # the largest ``last`` of each row: rows end their walk there
        end = start
        for ly in range(th):
            for lx in range(tw):
                py, px = oy + ly, ox + lx
                T[ly, lx] = T_final[py, px]
                stop[ly, lx] = last[py, px]
                row_end[ly] = max(row_end[ly], last[py, px])
                end = max(end, last[py, px])
                v_r, v_g, v_b = v_rgb[py, px, 0], v_rgb[py, px, 1], v_rgb[py, px, 2]
                v_a = v_alpha[py, px] - (v_r * background[0] + v_g * background[1] + v_b * background[2])
                v_z = 0.0
                a = alpha64[py, px]
                if a > 1e-6:  # depth = sum w z / A
                    v_z = v_depth[py, px] / a
                    v_a -= v_z * depth64[py, px]
                v_px[ly, lx, 0], v_px[ly, lx, 1], v_px[ly, lx, 2] = v_r, v_g, v_b
                v_px[ly, lx, 3], v_px[ly, lx, 4] = v_z, v_a
        for k in range(end, end_all):  # behind every pixel's last blended Gaussian: no gradient
            for c in range(_N_GRAD):
                v_pairs[k, c] = 0.0
        for k in range(end - 1, start - 1, -1):
            i = gauss[k]
            mx, my = means2d[i, 0], means2d[i, 1]
            ca, cb, cc, o = conics[i, 0], conics[i, 1], conics[i, 2], opacities[i]
            c0, c1, c2, z = colors[i, 0], colors[i, 1], colors[i, 2], depths[i]
            x0, x1 = max(boxes[i, 0], ox), min(boxes[i, 1], ox + tw - 1)
            y0, y1 = max(boxes[i, 2], oy), min(boxes[i, 3], oy + th - 1)
            ok, G_row, Rx_row, Ry, Qx, Qy, Qxy = _lattice(mx, my, ca, cb, cc, x0, y0)
            g0 = g1 = g2 = g3 = g4 = g5 = g6 = g7 = g8 = g9 = 0.0
            for py in range(y0, y1 + 1):
                ly = np.uint64(py - oy)
                if k >= row_end[ly]:  # every pixel of this row ended in front of this Gaussian
                    G_row *= Ry
                    Ry *= Qy
                    Rx_row *= Qxy
                    continue
                dy = py + 0.5 - my
                G, Rx = G_row, Rx_row
                m0 = m1 = m2 = 0.0  # this row's sums of v_power, v_power dx, v_power dx^2
                for px in range(x0, x1 + 1):
                    G_here = G
                    G *= Rx
                    Rx *= Qx
                    lx = np.uint64(px - ox)  # unsigned indices: no negative-index wraparound code per access
                    if k >= stop[ly, lx]:
                        continue
                    dx = px + 0.5 - mx
                    if not ok:
                        G_here = math.exp(-0.5 * (ca * dx * dx + 2.0 * cb * dx * dy + cc * dy * dy))
                    raw = o * G_here
                    alpha = min(ALPHA_MAX, raw)
                    if alpha < ALPHA_MIN:
                        continue
                    inv = 1.0 / (1.0 - alpha)
                    T_before = T[ly, lx] * inv
                    T[ly, lx] = T_before
                    w = alpha * T_before
                    v_r, v_g, v_b, v_d = v_px[ly, lx, 0], v_px[ly, lx, 1], v_px[ly, lx, 2], v_px[ly, lx, 3]
                    g_w = v_r * c0 + v_g * c1 + v_b * c2 + v_d * z + v_px[ly, lx, 4]
                    g5 += w * v_r
                    g6 += w * v_g
                    g7 += w * v_b
                    g8 += w * v_d
                    v_a = g_w * T_before - S[ly, lx] * inv
                    S[ly, lx] += g_w * w
                    if raw > ALPHA_MAX:  # clamped: no gradient through alpha
                        continue
                    v_power = -0.5 * alpha * v_a  # d power = dx^2 d a + 2 dx dy d b + dy^2 d c, d dx = -d mx
                    m0 += v_power
                    m1 += v_power * dx
                    m2 += v_power * dx * dx
                    g9 += v_a * G_here
                g0 -= 2.0 * (ca * m1 + cb * dy * m0)
                g1 -= 2.0 * (cb * m1 + cc * dy * m0)
                g2 += m2
                g3 += 2.0 * dy * m1
                g4 += dy * dy * m0
                G_row *= Ry
                Ry *= Qy
                Rx_row *= Qxy
            v_pairs[k, 0], v_pairs[k, 1], v_pairs[k, 2], v_pairs[k, 3], v_pairs[k, 4] = g0, g1, g2, g3, g4
            v_pairs[k, 5], v_pairs[k, 6], v_pairs[k, 7], v_pairs[k, 8], v_pairs[k, 9] = g5, g6, g7, g8, g9


@numba.njit(cache=True)
@no_type_check  # compiled: the tests' jaxtyping import hook must not wrap it
def _reduce_pairs(gauss, v_pairs, v_means2d, v_conics, v_opacities, v_colors, v_depths):  # pragma: no cover
    """Add the per-pair gradients up per Gaussian, in pair order (deterministic), into the outputs
    (every entry written)."""
    v_means2d[:] = 0.0
    v_conics[:] = 0.0
    v_opacities[:] = 0.0
    v_colors[:] = 0.0
    v_depths[:] = 0.0
    for k in range(gauss.shape[0]):
        i = gauss[k]
        v_means2d[i, 0] += v_pairs[k, 0]
        v_means2d[i, 1] += v_pairs[k, 1]
        v_conics[i, 0] += v_pairs[k, 2]
        v_conics[i, 1] += v_pairs[k, 3]
        v_conics[i, 2] += v_pairs[k, 4]
        v_colors[i, 0] += v_pairs[k, 5]
        v_colors[i, 1] += v_pairs[k, 6]
        v_colors[i, 2] += v_pairs[k, 7]
        v_depths[i] += v_pairs[k, 8]
        v_opacities[i] += v_pairs[k, 9]


_scratch: dict[np.dtype, np.ndarray] = {}


def _pair_scratch(pairs: int, dtype: np.dtype) -> np.ndarray:
    """A ``[pairs, 10]`` scratch array for the per-pair gradients, kept between calls and grown on
    demand: a fresh 1-3 MB array every backward costs more in page faults (first touch of new pages)
    than the reduction that reads it. Only used inside one backward call (the kernels hold the GIL)."""
    buf = _scratch.get(dtype)
    if buf is None or buf.shape[0] < pairs:
        buf = _scratch[dtype] = np.empty((max(pairs, 1024) * 5 // 4, _N_GRAD), dtype)
    return buf[:pairs]


class RasterizeNumba(torch.autograd.Function):
    """``(means2d, conics, opacities, colors, depths [B, N, ...], background [B, 3]) -> (rgb [B, H, W, 3],
    depth [B, H, W], alpha [B, H, W])``, the finished images of every camera, with the analytic
    backward described in the module docstring (``extents`` and ``visible`` are constants)."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, background, extents, visible, width: int,
                height: int, tile: int):
        arrays = [t.detach().contiguous().numpy() for t in (means2d, conics, opacities, colors, depths)]
        bg = background.detach().contiguous().numpy()
        ext, vis = extents.contiguous().numpy(), visible.contiguous().numpy()
        B, H, W, dtype = arrays[0].shape[0], height, width, arrays[0].dtype
        rgb, depth, alpha = np.empty((B, H, W, 3), dtype), np.empty((B, H, W), dtype), np.empty((B, H, W), dtype)
        alpha64, depth64, T_final = np.empty((B, H, W)), np.empty((B, H, W)), np.empty((B, H, W))
        last = np.empty((B, H, W), np.int64)
        lists = []
        for b in range(B):
            lists.append(bin_gaussians(arrays[0][b], ext[b], arrays[4][b], vis[b], W, H, tile))
            L = lists[-1]
            _forward_kernel(*(a[b] for a in arrays), L.offsets, L.gauss, L.boxes, W, H, tile, L.tiles_x, bg[b],
                            rgb[b], depth[b], alpha[b], alpha64[b], depth64[b], T_final[b], last[b])
        ctx.lists, ctx.arrays, ctx.bg, ctx.saved = lists, arrays, bg, (alpha64, depth64, T_final, last)
        return torch.from_numpy(rgb), torch.from_numpy(depth), torch.from_numpy(alpha)

    @staticmethod
    def backward(ctx, v_rgb, v_depth, v_alpha):
        arrays, bg = ctx.arrays, ctx.bg
        alpha64, depth64, T_final, last = ctx.saved
        cot = [t.detach().contiguous().numpy() for t in (v_rgb, v_depth, v_alpha)]
        grads = [np.empty_like(a) for a in arrays]  # means2d, conics, opacities, colors, depths
        for b, L in enumerate(ctx.lists):
            v_pairs = _pair_scratch(L.gauss.shape[0], arrays[0].dtype)  # the kernel writes every pair
            _backward_kernel(*(a[b] for a in arrays), L.offsets, L.gauss, L.boxes, L.width, L.height, L.tile,
                             L.tiles_x, bg[b], alpha64[b], depth64[b], T_final[b], last[b], *(c[b] for c in cot),
                             v_pairs)
            _reduce_pairs(L.gauss, v_pairs, *(g[b] for g in grads))
        v_background = None
        if ctx.needs_input_grad[5]:  # rgb = ... + (1 - A) background
            v_background = torch.einsum("bhwc,bhw->bc", v_rgb, 1.0 - torch.from_numpy(alpha64).to(v_rgb.dtype))
        return (*(torch.from_numpy(g) for g in grads), v_background, None, None, None, None, None)


def render_backend(gaussians: Gaussians, cameras: Cameras, sh_degree: int, background: Tensor,
                   tile: int = TILE) -> RenderOutput:
    """Render a flat batch of cameras ``(B,)``; see :func:`vdm3d.splat.render.render`."""
    if gaussians.device.type != "cpu":
        raise ConfigError(f"render backend 'numba' runs on the CPU but the Gaussians are on {gaussians.device}; "
                          "move them with gaussians.to('cpu') or use backend='gsplat'.")
    proj = project_gaussians_numba(gaussians, cameras, sh_degree)
    means2d = proj.means2d
    if means2d.requires_grad:
        means2d.retain_grad()
    rgb, depth, alpha = RasterizeNumba.apply(means2d, proj.conics, proj.opacities, proj.colors, proj.depths,
                                             background, proj.extents, proj.visible, cameras.width,
                                             cameras.height, tile)
    return RenderOutput(rgb=rgb, depth=depth, alpha=alpha, means2d=means2d, radii=proj.radii)
