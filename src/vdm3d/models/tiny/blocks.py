"""Building blocks shared by the tiny models: residual convs with FiLM, spatial and temporal attention.

Written by hand (not taken from diffusers) because the tiny models need exactly three things that
diffusers' blocks do not combine cheaply on CPU: a per-frame noise embedding (so every frame of a
video may sit at its own noise level), attention factorized into a spatial pass over the pixels of
one frame and a temporal pass over the frames of one pixel, and a few hundred thousand parameters.
Attention runs through ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def groups(channels: int) -> int:
    """Largest group count <= 8 dividing ``channels`` (GroupNorm)."""
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


def fourier_embedding(x: Tensor, dim: int, max_period: float = 100.0) -> Tensor:
    """Sinusoidal embedding of a scalar per element: ``[...] -> [..., dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float()[..., None] * freqs * 2 * math.pi
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a FiLM (scale, shift) from an embedding and a skip path."""

    def __init__(self, cin: int, cout: int, emb_dim: int = 0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout) if emb_dim else None
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        # x: [N, C, H, W]; emb: [N, E]
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and emb is not None:
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over a token axis with a pre-norm and a zero-initialized output."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        # tokens: [N, L, C] -> [N, L, C] (residual added by the caller)
        n, length, c = tokens.shape
        q, k, v = self.qkv(self.norm(tokens)).reshape(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)  # [N, heads, L, C/heads]
        return self.out(o.transpose(1, 2).reshape(n, length, c))


class SpatialAttention(nn.Module):
    """Attention among the pixels of each frame, or of each video (3D attention): ``[B*F, C, H, W]``.

    ``frames=1`` attends within a frame; ``frames=F`` attends over all pixels of the ``F`` frames of
    each video at once (used at the coarsest level, where ``F * H * W`` stays small: every frame
    carries its camera rays, so a target frame can look up what the reference frame shows)."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.attn = Attention(channels, heads)

    def forward(self, x: Tensor, frames: int = 1) -> Tensor:
        bf, c, h, w = x.shape
        n = bf // frames
        t = x.reshape(n, frames, c, h * w).permute(0, 1, 3, 2).reshape(n, frames * h * w, c)
        t = self.attn(t).reshape(n, frames, h * w, c).permute(0, 1, 3, 2).reshape(bf, c, h, w)
        return x + t


class TemporalAttention(nn.Module):
    """Attention among the frames at each pixel, with a learned frame-position embedding."""

    def __init__(self, channels: int, max_frames: int, heads: int = 4):
        super().__init__()
        self.attn = Attention(channels, heads)
        self.pos = nn.Parameter(torch.zeros(max_frames, channels))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        bf, c, h, w = x.shape
        b = bf // frames
        t = x.reshape(b, frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, frames, c)  # [B*HW, F, C]
        t = self.attn(t + self.pos[:frames])
        t = t.reshape(b, h * w, frames, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)
        return x + t
