"""Tiled CPU renderer in plain torch: the ``torch`` backend, the readable twin of the compiled ``numba`` one.

Same rules as the dense reference (:mod:`.torch_ref`), organized so the work is proportional to the
pixel-Gaussian pairs that can matter, and so that autograd never sees a per-pair tensor:

1. **Bin** (no gradients): each visible Gaussian's exact alpha >= 1/255 box (see
   :mod:`vdm3d.splat.projection`) is cut into the ``tile x tile`` pixel tiles it overlaps; the
   (tile, Gaussian) pairs are made from the depth-sorted Gaussians and stably sorted by tile, so each
   tile's list is already front to back (one global sort, as in 3DGS).
2. **Group**: tiles are sorted by list length and packed into groups of a padded
   ``[tiles, length]`` index matrix holding about ``CHUNK`` pixel-Gaussian evaluations; long lists
   are walked in segments that carry the transmittance, and a group stops early once every pixel in
   it is opaque (transmittance < 1e-4).
3. **Evaluate** each group with one matmul: relative to its tile center ``(X, Y)``, the log-alpha
   ``log o - 0.5 d^T Sigma^-1 d`` is a quadratic ``k . (X^2, XY, Y^2, X, Y, 1)``, so six per-pair
   coefficients times a fixed ``[6, P]`` basis give all ``[tiles, length, P]`` values, and one
   batched matmul blends colors, depths and alpha.
4. **Backward** is analytic (:class:`RasterizeTiles`): the forward saves only per-Gaussian inputs,
   the binning and one transmittance per pixel and segment; the backward recomputes each group and
   applies ``dL/dalpha_i = g_i T_i - S_i / (1 - alpha_i)`` with ``g_i = dL/dw_i`` and
   ``S_i = sum_{j > i} g_j w_j`` (back-to-front, as 3DGS does), then reduces to the six coefficients
   with one matmul against the basis and chains them to means, conics and opacities by hand.

Why hand-written: the dense formulation needs ~10 stored floats per (pixel, Gaussian) pair for
autograd (16.6 GB at 20k Gaussians, 128x128), and a Python loop over tiles with autograd was still
~100x above the arithmetic; nothing in the allowed dependencies rasterizes splats on the CPU.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.output import RenderOutput, finish
from vdm3d.splat.projection import ALPHA_MAX, ALPHA_MIN, T_MIN, project_gaussians

TILE = 8
CHUNK = 1 << 17  # pixel-Gaussian evaluations per step (512 KB per float32 array; ~8 live at once)
_EMPTY_LOG_OPACITY = -1.0e4  # padding entries: exp() of it is exactly 0


@dataclasses.dataclass
class Group:
    tiles: Tensor  # [t] tile indices (row-major over the tile grid)
    gauss: Tensor  # [t, L] Gaussian indices, front to back; padding = N (an empty Gaussian)
    seg: int  # segment length along L


@dataclasses.dataclass
class Binning:
    width: int
    height: int
    tile: int
    tiles_x: int
    tiles_y: int
    groups: list[Group]
    pairs: int  # (tile, Gaussian) pairs


def bin_gaussians(means2d: Tensor, conics: Tensor, opacities: Tensor, extents: Tensor, depths: Tensor,
                  visible: Tensor, width: int, height: int, tile: int = TILE, chunk: int = CHUNK) -> Binning:
    """Sorted per-tile Gaussian lists, packed into groups (all inputs detached, one camera).

    A (tile, Gaussian) pair is kept when the tile's pixel-center rectangle meets the Gaussian's
    alpha >= 1/255 ellipse: the bounding box gives the candidate tiles, and the exact minimum of the
    Mahalanobis distance over the rectangle removes the tiles that only the box corners reach.
    """
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    n_tiles, P = tiles_x * tiles_y, tile * tile
    vis = visible.nonzero().squeeze(1)
    order = vis[torch.argsort(depths[vis], stable=True)]  # front to back
    m, e = means2d[order], extents[order]
    # Pixels whose centers (i + 0.5) lie inside [m - e, m + e], widened by a hair against rounding.
    lo = torch.ceil(m - e - 0.5 - 1e-3).long()
    hi = torch.floor(m + e - 0.5 + 1e-3).long()
    lo[:, 0].clamp_(0, width - 1), lo[:, 1].clamp_(0, height - 1)
    hi[:, 0].clamp_(max=width - 1), hi[:, 1].clamp_(max=height - 1)
    keep = (hi >= lo).all(1)
    order, lo, hi = order[keep], lo[keep] // tile, hi[keep] // tile
    nx, ny = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    counts = nx * ny  # tiles per Gaussian
    K = int(counts.sum())
    pair_g = torch.repeat_interleave(torch.arange(len(order)), counts)  # [K] position in `order`
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(K) - first[pair_g]
    ix = lo[pair_g, 0] + local % nx[pair_g]
    iy = lo[pair_g, 1] + torch.div(local, nx[pair_g], rounding_mode="floor")
    # Exact test: min over the tile's pixel centers of d^T Sigma^-1 d <= 2 ln(255 opacity).
    gid = order[pair_g]
    reach = 2.0 * torch.log((opacities[gid] / ALPHA_MIN).clamp_min(1.0)) + 1e-3
    near = _min_quadratic_over_rect(means2d[gid], conics[gid], ix * tile + 0.5,
                                    (ix * tile + tile - 0.5).clamp_max(width - 0.5), iy * tile + 0.5,
                                    (iy * tile + tile - 0.5).clamp_max(height - 0.5)) <= reach
    pair_g, ix, iy = pair_g[near], ix[near], iy[near]
    K = int(near.sum())
    tile_id = iy * tiles_x + ix
    tile_sorted, perm = torch.sort(tile_id, stable=True)  # stable: keeps front-to-back inside a tile
    pair_gauss = order[pair_g[perm]]
    per_tile = torch.bincount(tile_sorted, minlength=n_tiles)
    starts = torch.cumsum(per_tile, 0) - per_tile
    busy = torch.argsort(per_tile, descending=True, stable=True)
    busy = busy[per_tile[busy] > 0]
    lengths = per_tile[busy].tolist()

    n = means2d.shape[0]
    groups, i = [], 0
    while i < len(busy):
        L = lengths[i]
        t = max(1, min(len(busy) - i, chunk // max(1, L * P)))
        tiles = busy[i:i + t]
        ar = torch.arange(L)
        pos = starts[tiles, None] + ar  # [t, L]
        valid = ar[None, :] < per_tile[tiles, None]
        gauss = torch.where(valid, pair_gauss[pos.clamp_max(max(K - 1, 0))], torch.full_like(pos, n))
        groups.append(Group(tiles, gauss, seg=max(1, chunk // (t * P))))
        i += t
    return Binning(width, height, tile, tiles_x, tiles_y, groups, K)


def _min_quadratic_over_rect(m: Tensor, conic: Tensor, x0: Tensor, x1: Tensor, y0: Tensor, y1: Tensor) -> Tensor:
    """``min (p - m)^T [[a, b], [b, c]] (p - m)`` over the rectangles ``[x0, x1] x [y0, y1]``, per row.

    Zero when the center is inside; otherwise the minimum of the convex quadratic lies on an edge,
    where it is a 1D quadratic minimized in closed form and clamped to the edge.
    """
    a, b, c = conic.unbind(-1)
    mx, my = m.unbind(-1)
    x0, x1, y0, y1 = (t.to(m.dtype) for t in (x0, x1, y0, y1))

    def q(dx, dy):
        return a * dx * dx + 2 * b * dx * dy + c * dy * dy

    best = None
    for xe in (x0, x1):  # vertical edges: the best y for this x, clamped
        dx = xe - mx
        y = (my - b * dx / c).clamp(min=y0).minimum(y1)
        val = q(dx, y - my)
        best = val if best is None else torch.minimum(best, val)
    for ye in (y0, y1):  # horizontal edges
        dy = ye - my
        x = (mx - b * dy / a).clamp(min=x0).minimum(x1)
        best = torch.minimum(best, q(x - mx, dy))
    inside = (mx >= x0) & (mx <= x1) & (my >= y0) & (my <= y1)
    return torch.where(inside, torch.zeros_like(best), best)


def _tile_basis(tile: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Monomials ``(X^2, XY, Y^2, X, Y, 1)`` of pixel centers relative to the tile center, ``[6, P]``,
    and the tile-center offset within a tile (``tile / 2``)."""
    r = torch.arange(tile, dtype=dtype) + 0.5 - tile / 2
    Y, X = torch.meshgrid(r, r, indexing="ij")
    X, Y = X.reshape(-1), Y.reshape(-1)
    return torch.stack([X * X, X * Y, Y * Y, X, Y, torch.ones_like(X)]), torch.tensor(tile / 2, dtype=dtype)


def _pair_terms(b: Binning, g: Group, gi: Tensor, means2d: Tensor, conics: Tensor, log_o: Tensor):
    """Per-pair local center ``(u, v)``, conic, and the six coefficients of the log-alpha quadratic."""
    tx = (g.tiles % b.tiles_x).to(means2d.dtype) * b.tile + b.tile / 2  # tile centers, [t]
    ty = torch.div(g.tiles, b.tiles_x, rounding_mode="floor").to(means2d.dtype) * b.tile + b.tile / 2
    u = means2d[gi, 0] - tx[:, None]  # [t, Ls]
    v = means2d[gi, 1] - ty[:, None]
    ca, cb, cc = conics[gi].unbind(-1)
    k3 = ca * u + cb * v
    k4 = cb * u + cc * v
    k5 = log_o[gi] - 0.5 * (u * k3 + v * k4)
    coef = torch.stack([-0.5 * ca, -cb, -0.5 * cc, k3, k4, k5], -1)  # [t, Ls, 6]
    return u, v, ca, cb, cc, coef


def _composite(coef: Tensor, basis: Tensor, T_start: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Alpha ``[t, Ls, P]``, transmittances ``T [t, Ls+1, P]`` (``T[:, i]`` before Gaussian ``i``,
    ``T[:, i+1]`` after it) and blend weights ``[t, Ls, P]`` of one segment. In-place ops keep the
    number of passes over the ``[t, Ls, P]`` arrays low: this is the hot loop."""
    alpha = torch.matmul(coef, basis).exp_().clamp_max_(ALPHA_MAX)
    # alpha >= 1/255 is kept: threshold() keeps x > thr, so thr is the float just below 1/255.
    thr = torch.nextafter(torch.tensor(ALPHA_MIN, dtype=alpha.dtype), torch.tensor(0.0, dtype=alpha.dtype))
    torch.nn.functional.threshold(alpha, float(thr), 0.0, inplace=True)
    t, L, P = alpha.shape
    T = torch.empty(t, L + 1, P, dtype=alpha.dtype)
    T[:, 0] = T_start
    torch.sub(1.0, alpha, out=T[:, 1:])
    T.cumprod_(1)
    w = alpha * T[:, :-1]
    if bool(T[:, -1].min() < T_MIN):  # some pixel stops here: later Gaussians are not blended
        w.masked_fill_(T[:, 1:] < T_MIN, 0.0)
    return alpha, T, w


class RasterizeTiles(torch.autograd.Function):
    """``(means2d, conics, opacities, colors, depths) -> (sum w c [H,W,3], sum w z [H,W], A [H,W])``
    for one camera, with the analytic backward described in the module docstring."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, binning: Binning):
        b, dtype = binning, means2d.dtype
        P = b.tile * b.tile
        basis, _ = _tile_basis(b.tile, dtype)
        m2, co, lo, feat = _extended(means2d, conics, opacities, colors, depths)
        out = torch.zeros(b.tiles_x * b.tiles_y, P, 5, dtype=dtype)
        T_starts = []
        for g in b.groups:
            t, L = g.gauss.shape
            T = torch.ones(t, P, dtype=dtype)
            acc = torch.zeros(t, P, 5, dtype=dtype)
            starts = []
            for l0 in range(0, L, g.seg):
                gi = g.gauss[:, l0:l0 + g.seg]
                coef = _pair_terms(b, g, gi, m2, co, lo)[-1]
                starts.append(T)
                _, T_all, w = _composite(coef, basis, T)
                acc += torch.matmul(w.transpose(1, 2), feat[gi])  # [t, P, 5]
                T = T_all[:, -1]
                if bool((T < T_MIN).all()):
                    break
            out[g.tiles] = acc
            T_starts.append(starts)
        ctx.binning, ctx.T_starts = b, T_starts
        ctx.save_for_backward(means2d, conics, opacities, colors, depths)
        img = out.reshape(b.tiles_y, b.tiles_x, b.tile, b.tile, 5).permute(0, 2, 1, 3, 4)
        img = img.reshape(b.tiles_y * b.tile, b.tiles_x * b.tile, 5)[:b.height, :b.width]
        return img[..., :3].contiguous(), img[..., 3].contiguous(), img[..., 4].contiguous()

    @staticmethod
    def backward(ctx, v_rgb, v_dsum, v_alpha):
        means2d, conics, opacities, colors, depths = ctx.saved_tensors
        b, dtype, n = ctx.binning, means2d.dtype, means2d.shape[0]
        P = b.tile * b.tile
        basis, _ = _tile_basis(b.tile, dtype)
        m2, co, lo, feat = _extended(means2d, conics, opacities, colors, depths)
        v_img = torch.zeros(b.tiles_y * b.tile, b.tiles_x * b.tile, 5, dtype=dtype)
        v_img[:b.height, :b.width, :3] = v_rgb
        v_img[:b.height, :b.width, 3] = v_dsum
        v_img[:b.height, :b.width, 4] = v_alpha
        v_out = v_img.reshape(b.tiles_y, b.tile, b.tiles_x, b.tile, 5).permute(0, 2, 1, 3, 4)
        v_out = v_out.reshape(b.tiles_x * b.tiles_y, P, 5)
        v_m2 = torch.zeros(n + 1, 2, dtype=dtype)
        v_co = torch.zeros(n + 1, 3, dtype=dtype)
        v_lo = torch.zeros(n + 1, dtype=dtype)
        v_feat = torch.zeros(n + 1, 5, dtype=dtype)
        for g, starts in zip(b.groups, ctx.T_starts):
            vo = v_out[g.tiles]  # [t, P, 5]
            vo_T = vo.transpose(1, 2)  # [t, 5, P]
            S_after = torch.zeros(g.gauss.shape[0], P, dtype=dtype)  # sum of g_j w_j over later segments
            for k in reversed(range(len(starts))):
                gi = g.gauss[:, k * g.seg:(k + 1) * g.seg]
                u, v, ca, cb, cc, coef = _pair_terms(b, g, gi, m2, co, lo)
                alpha, _, w = _composite(coef, basis, starts[k])
                gw = torch.matmul(feat[gi], vo_T)  # g_i = dL/dw_i, [t, Ls, P]
                contrib = gw.mul_(w)  # g_i w_i
                csum = contrib.cumsum(1)
                total = csum[:, -1] + S_after
                S = total[:, None, :] - csum  # S_i = sum_{j > i} g_j w_j, this and later segments
                S_after = total
                # dL/dlog(alpha_i) = alpha_i dL/dalpha_i = g_i w_i - alpha_i S_i / (1 - alpha_i); it is 0
                # for Gaussians past the stop (w = 0 and S = 0) and below 1/255 (alpha = 0).
                odds = torch.sub(1.0, alpha)
                torch.div(alpha, odds, out=odds)
                v_ell = contrib.sub_(S.mul_(odds))
                if bool(alpha.max() >= ALPHA_MAX):  # clamped alphas pass no gradient
                    v_ell.masked_fill_(alpha >= ALPHA_MAX, 0.0)
                gk = torch.matmul(v_ell, basis.T)  # dL/dcoef, [t, Ls, 6]
                g0, g1, g2, g3, g4, g5 = gk.unbind(-1)
                flat = gi.reshape(-1)
                v_feat.index_add_(0, flat, torch.matmul(w, vo).reshape(-1, 5))
                uu = (g3 * ca + g4 * cb - g5 * (ca * u + cb * v))
                vv = (g3 * cb + g4 * cc - g5 * (cb * u + cc * v))
                v_m2.index_add_(0, flat, torch.stack([uu, vv], -1).reshape(-1, 2))
                va = -0.5 * g0 + g3 * u - 0.5 * g5 * u * u
                vb = -g1 + g3 * v + g4 * u - g5 * u * v
                vc = -0.5 * g2 + g4 * v - 0.5 * g5 * v * v
                v_co.index_add_(0, flat, torch.stack([va, vb, vc], -1).reshape(-1, 3))
                v_lo.index_add_(0, flat, g5.reshape(-1))
        v_opac = v_lo[:n] / opacities.clamp_min(1e-30)
        v_opac = torch.where(opacities > 0, v_opac, torch.zeros_like(v_opac))
        return v_m2[:n], v_co[:n], v_opac, v_feat[:n, :3], v_feat[:n, 3], None


def _extended(means2d, conics, opacities, colors, depths):
    """Inputs with one appended empty Gaussian (index N) for padding, detached."""
    dtype = means2d.dtype
    zero1 = torch.zeros(1, dtype=dtype)
    m2 = torch.cat([means2d.detach(), torch.zeros(1, 2, dtype=dtype)])
    co = torch.cat([conics.detach(), torch.zeros(1, 3, dtype=dtype)])
    o = opacities.detach()
    log_o = torch.where(o > 0, o.clamp_min(1e-30).log(), torch.full_like(o, _EMPTY_LOG_OPACITY))
    log_o = torch.cat([log_o, zero1 + _EMPTY_LOG_OPACITY])
    feat = torch.cat([colors.detach(), depths.detach()[:, None], torch.ones_like(depths.detach())[:, None]], 1)
    feat = torch.cat([feat, torch.zeros(1, 5, dtype=dtype)])
    return m2, co, log_o, feat


def render_backend(gaussians: Gaussians, cameras: Cameras, sh_degree: int, background: Tensor,
                   tile: int = TILE, chunk: int = CHUNK) -> RenderOutput:
    """Render a flat batch of cameras ``(B,)``; see :func:`vdm3d.splat.render.render`."""
    if gaussians.device.type != "cpu":
        raise ConfigError(f"render backend 'torch' runs on the CPU but the Gaussians are on {gaussians.device}; "
                          "move them with gaussians.to('cpu') or use backend='gsplat'.")
    proj = project_gaussians(gaussians, cameras, sh_degree)
    means2d = proj.means2d
    if means2d.requires_grad:
        means2d.retain_grad()
    rgbs, dsums, alphas = [], [], []
    for i in range(len(cameras.c2w)):
        with torch.no_grad():
            binning = bin_gaussians(means2d[i].detach(), proj.conics[i].detach(), proj.opacities[i].detach(),
                                    proj.extents[i], proj.depths[i].detach(), proj.visible[i], cameras.width,
                                    cameras.height, tile, chunk)
        rgb, dsum, alpha = RasterizeTiles.apply(means2d[i], proj.conics[i], proj.opacities[i], proj.colors[i],
                                                proj.depths[i], binning)
        rgbs.append(rgb), dsums.append(dsum), alphas.append(alpha)
    return finish(torch.stack(rgbs), torch.stack(dsums), torch.stack(alphas), background, means2d, proj.radii)
