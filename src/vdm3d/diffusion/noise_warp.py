"""Flow-warped Gaussian noise (Go-with-the-Flow, §6): noise that moves with the video yet stays N(0, I).

Noise lives on a fine grid (``grid_scale`` times the flow resolution) as per-pixel values ``n`` (C
channels) with a weight ``w``. One step with a forward flow (frame t -> t+1, in pixels):

1. **Contraction** (forward splat): every grid pixel ``q`` moves to ``p = q + round(F(q))``; pixels
   leaving the frame are dropped. ``shrink[p]`` marks targets that received at least one pixel.
2. **Expansion** (backward pull): a target nothing landed on takes the nearest source
   ``round(p - F(p))`` (the backward flow approximated by the negated forward flow, as the authors
   do); if that lies outside the frame it gets fresh noise with weight 1.
3. **Regaussianization**: a source copied ``k`` times (its own splat plus the pulls) hands each copy
   ``n / sqrt(k) + (z - mean(z))`` with fresh ``z`` over its ``k`` copies, and weight ``w / k``: each
   copy has unit variance, copies are uncorrelated, and their sum is ``sqrt(k) n``.
4. **Accumulation** at each shrink target: ``w = sum w_i``,
   ``n = sum w_i n_i / sqrt(sum w_i^2)`` (variance preserving).
5. Weights are renormalized ``w <- (w / mean w + 1e-5) ^ 0.9999``.

Read-out pools ``block = grid_scale * downscale`` grid pixels into one latent pixel as
``sum(n w) / sqrt(sum w^2)``, which is exactly unit variance for independent unit values. (The
original pools twice: weighted to the flow resolution, then an unweighted ``x d`` average; the
one-stage pooling here has the same variance and keeps the weights all the way.) The optional
degradation mixes in fresh noise, ``(a new + (1 - a) warped) / sqrt(a^2 + (1 - a)^2)``
(``a = 0.5`` at inference in GwtF and VideoFrom3D).

Differences from the reference code, on purpose: sub-pixel offsets are not tracked (its default
``xy_mode='none'`` discards them too); sources that leave the frame are dropped instead of splatting
a zero-weight placeholder onto their own position; copies are grouped by source index instead of by
equal noise values; the flow is scaled by ``grid / flow`` size only (the reference multiplies by the
scale factor a second time). Hand-written in torch because it is scatter/gather on index arrays, with
no library equivalent.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as tnf
from jaxtyping import Float
from torch import Tensor

from vdm3d.errors import ConfigError, InputError


@dataclasses.dataclass(frozen=True)
class NoiseState:
    """Warped noise on the fine grid."""

    noise: Float[Tensor, "C Hg Wg"]
    weight: Float[Tensor, "Hg Wg"]


def init_noise_state(channels: int, height: int, width: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> NoiseState:
    """Fresh i.i.d. noise with unit weights on a ``height x width`` grid."""
    noise = torch.randn(channels, height, width, generator=generator, device=device)
    return NoiseState(noise, torch.ones(height, width, device=device))


def upsample_flow(flow: Float[Tensor, "H W 2"], grid_hw: tuple[int, int]) -> Float[Tensor, "Hg Wg 2"]:
    """Bilinear flow on the grid, in grid pixels (displacements scaled by the size ratio)."""
    h, w = flow.shape[:2]
    gh, gw = grid_hw
    up = tnf.interpolate(flow.permute(2, 0, 1)[None], size=(gh, gw), mode="bilinear", align_corners=False)[0]
    scale = torch.tensor([gw / w, gh / h], dtype=flow.dtype, device=flow.device).view(2, 1, 1)
    return (up * scale).permute(1, 2, 0)


def warp_noise_state(state: NoiseState, flow_grid: Float[Tensor, "Hg Wg 2"],
                     generator: torch.Generator | None = None) -> NoiseState:
    """One Go-with-the-Flow step (see the module docstring); ``flow_grid`` is in grid pixels."""
    c, gh, gw = state.noise.shape
    if flow_grid.shape != (gh, gw, 2):
        raise InputError(f"flow on the grid has shape {tuple(flow_grid.shape)}, expected {(gh, gw, 2)}; "
                         "upsample the flow to the noise grid first (upsample_flow).")
    device, dtype = state.noise.device, state.noise.dtype
    npx = gh * gw
    n_flat = state.noise.reshape(c, npx)
    w_flat = state.weight.reshape(npx)
    ys, xs = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    shift = flow_grid.round().long()
    dx, dy = shift[..., 0], shift[..., 1]

    # 1. contraction: source q -> target q + F(q)
    tx, ty = xs + dx, ys + dy
    inside = ((tx >= 0) & (tx < gw) & (ty >= 0) & (ty < gh)).reshape(npx)
    src_shrink = torch.arange(npx, device=device)[inside]
    tgt_shrink = (ty * gw + tx).reshape(npx)[inside]
    shrink = torch.zeros(npx, dtype=torch.bool, device=device)
    shrink[tgt_shrink] = True

    # 2. expansion: empty target p pulls from p - F(p)
    sx, sy = xs - dx, ys - dy
    pull_ok = ((sx >= 0) & (sx < gw) & (sy >= 0) & (sy < gh)).reshape(npx)
    tgt_expand = torch.nonzero(~shrink & pull_ok).squeeze(1)
    src_expand = (sy * gw + sx).reshape(npx)[tgt_expand]
    tgt_fresh = torch.nonzero(~shrink & ~pull_ok).squeeze(1)

    # 3. regaussianize the copies of each source
    src_all = torch.cat([src_shrink, src_expand])
    k = torch.bincount(src_all, minlength=npx).to(dtype)
    z = torch.randn(c, src_all.numel(), generator=generator, device=device, dtype=dtype)
    z_sum = torch.zeros(c, npx, device=device, dtype=dtype).index_add_(1, src_all, z)
    k_all = k[src_all]
    values = n_flat[:, src_all] / k_all.sqrt() + (z - z_sum[:, src_all] / k_all)
    weights = w_flat[src_all] / k_all
    n_s, n_e = values[:, :src_shrink.numel()], values[:, src_shrink.numel():]
    w_s, w_e = weights[:src_shrink.numel()], weights[src_shrink.numel():]

    # 4. accumulate contractions: variance-preserving weighted sums
    w_out = torch.zeros(npx, device=device, dtype=dtype)
    w_out.index_add_(0, tgt_shrink, w_s)
    w2 = torch.zeros(npx, device=device, dtype=dtype).index_add_(0, tgt_shrink, w_s * w_s)
    n_out = torch.zeros(c, npx, device=device, dtype=dtype).index_add_(1, tgt_shrink, n_s * w_s)
    n_out[:, shrink] = n_out[:, shrink] / w2[shrink].sqrt()
    n_out[:, tgt_expand] = n_e
    w_out[tgt_expand] = w_e
    n_out[:, tgt_fresh] = torch.randn(c, tgt_fresh.numel(), generator=generator, device=device, dtype=dtype)
    w_out[tgt_fresh] = 1.0

    # 5. keep the weights near 1
    w_out = (w_out / w_out.mean() + 1e-5) ** 0.9999
    return NoiseState(n_out.reshape(c, gh, gw), w_out.reshape(gh, gw))


def read_noise(state: NoiseState, block: int) -> Float[Tensor, "C h w"]:
    """Pool ``block x block`` grid pixels into one: ``sum(n w) / sqrt(sum w^2)`` (unit variance)."""
    num = tnf.avg_pool2d((state.noise * state.weight)[None], block)[0]
    den = tnf.avg_pool2d((state.weight ** 2)[None, None], block)[0].sqrt()
    return num / den * block


def mix_new_noise(noise: Tensor, alpha: float, generator: torch.Generator | None = None) -> Tensor:
    """Degrade warped noise toward fresh noise: ``(a new + (1-a) noise) / sqrt(a^2 + (1-a)^2)``."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"noise degradation alpha is {alpha}; use a value in [0, 1] (0 = pure warped).")
    fresh = torch.randn(noise.shape, generator=generator, device=noise.device, dtype=noise.dtype)
    return (alpha * fresh + (1.0 - alpha) * noise) / (alpha**2 + (1.0 - alpha) ** 2) ** 0.5


def warped_noise(flows: Float[Tensor, "T1 H W 2"], channels: int, *, grid_scale: int = 4, downscale: int = 8,
                 degradation: float = 0.0,
                 generator: torch.Generator | None = None) -> Float[Tensor, "T C h w"]:
    """Noise for ``T = len(flows) + 1`` frames that follows the forward flows (frame t -> t+1).

    ``flows[t, y, x] = (dx, dy)`` in pixels of the flow's own ``H x W`` resolution; the noise grid
    is ``grid_scale`` times finer and the output ``downscale`` times coarser than the flow
    (``h = H / downscale``). VideoFrom3D: flow 240x360, grid x8, output 60x90 (downscale 4), C=16."""
    if flows.ndim != 4 or flows.shape[-1] != 2:
        raise InputError(f"flows have shape {tuple(flows.shape)}; pass forward flows as [T-1, H, W, 2] "
                         "(dx, dy).")
    if not bool(torch.isfinite(flows).all()):
        raise InputError("flows contain NaN or infinite values; fill invalid flow before warping noise.")
    h, w = flows.shape[1:3]
    if grid_scale < 1 or downscale < 1 or h % downscale or w % downscale:
        raise ConfigError(f"flow size {h}x{w} must be divisible by downscale={downscale} (both >= 1, "
                          f"grid_scale={grid_scale}); crop the flow or pick another factor.")
    gh, gw = h * grid_scale, w * grid_scale
    state = init_noise_state(channels, gh, gw, generator, flows.device)
    block = grid_scale * downscale
    frames = [read_noise(state, block)]
    for flow in flows:
        state = warp_noise_state(state, upsample_flow(flow.to(state.noise.dtype), (gh, gw)), generator)
        frames.append(read_noise(state, block))
    out = torch.stack(frames)  # [T, C, h, w]
    return mix_new_noise(out, degradation, generator) if degradation > 0 else out


def subsample_frames(noise: Float[Tensor, "T C h w"], count: int) -> Float[Tensor, "N C h w"]:
    """Nearest temporal subsampling to ``count`` latent frames (49 -> 13 keeps every 4th frame)."""
    t = noise.shape[0]
    if not 1 <= count <= t:
        raise ConfigError(f"cannot subsample {t} noise frames to {count}; use 1..{t} latent frames.")
    idx = torch.linspace(0, t - 1, count).round().long()
    return noise[idx]


__all__ = ["NoiseState", "init_noise_state", "mix_new_noise", "read_noise", "subsample_frames",
           "upsample_flow", "warp_noise_state", "warped_noise"]
