"""The tiny latent video denoiser: a two-level UNet with factorized spatial and temporal blocks.

Input per frame (all at latent resolution ``h x w``, concatenated on channels):

=====================  ====  ======================================================================
what                   ch    notes
=====================  ====  ======================================================================
noisy latent           C     ``c_in * x`` (EDM preconditioning)
noise level map        1     ``c_noise = ln(sigma) / 4`` per latent pixel (per-element sigma works)
reference latent       C+1   VAE latent of the reference view, repeated on every frame, + a flag
camera rays            6+1   Plucker ``(d, o x d)`` of the frame's camera *in the reference camera's
                             frame*, at latent resolution, + a flag
map latent             C     VAE latent of the warped RGB (map channels 0-2)
map features           M     a learned stride-4 conv stem over all pixel maps (RGB, validity, edges)
keyframe latent        C+1   VAE latent of a known frame at its index, zeros elsewhere, + a mask
=====================  ====  ======================================================================

Levels: ``h x w`` (``channels[0]``) and ``h/2 x w/2`` (``channels[1]``, with spatial attention), each
block followed by temporal attention across frames. The per-frame noise embedding modulates every
residual block (FiLM). Absent (or CFG-dropped) conditions are zeros with their flag at 0.

With ``attention="views"`` the two coarse attention layers attend over the pixels of *all* frames at
once (3D attention, as multi-view diffusion models do) instead of one frame at a time; with
``reference_frame=True`` the backbone also puts the reference view in front of the video as a clean
frame (noise level ~0, its own rays), so target frames can attend to it. Both let the reference's
content move to where the target cameras see it, which channel concatenation alone does poorly.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vdm3d.errors import InputError
from vdm3d.models.tiny.blocks import ResBlock, SpatialAttention, TemporalAttention, fourier_embedding, groups
from vdm3d.options import Range

#: order of the per-pixel map channels the tiny video model expects (``Conditioning.maps``)
MAP_CHANNELS: tuple[str, ...] = ("warp_r", "warp_g", "warp_b", "valid", "edges")


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
    """Shape of the tiny video denoiser."""

    latent_channels: Annotated[int, Range(1)] = 4
    """channels of the VAE latent"""
    channels: Annotated[tuple[int, int], Range(1)] = (64, 128)
    """feature channels at latent resolution and at half of it"""
    map_features: Annotated[int, Range(1)] = 16
    """channels of the learned stem over the pixel maps"""
    emb_dim: Annotated[int, Range(1)] = 128
    """width of the noise-level embedding"""
    max_frames: Annotated[int, Range(1)] = 16
    """longest video the temporal position embedding covers"""
    heads: Annotated[int, Range(1)] = 4
    """attention heads"""
    spatial_factor: Annotated[int, Range(1)] = 4
    """pixels per latent pixel (the VAE's factor), for the map stem"""
    attention: Literal["frame", "views"] = "views"
    """coarse-level attention over the pixels of each frame, or of all frames together"""
    reference_frame: bool = True
    """the backbone prepends the reference view as a clean frame (see the module docstring)"""

    @property
    def cond_channels(self) -> int:
        c = self.latent_channels
        return (c + 1) + 7 + c + self.map_features + (c + 1)


class VideoDenoiser(nn.Module):
    """``F(c_in x, c_noise, cond) -> raw`` on latents ``[B, F, C, h, w]``."""

    def __init__(self, config: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.config = config
        c0, c1 = config.channels
        e = config.emb_dim
        cin = config.latent_channels + 1 + config.cond_channels
        self.emb = nn.Sequential(nn.Linear(64, e), nn.SiLU(), nn.Linear(e, e))
        stem: list[nn.Module] = []
        cm = len(MAP_CHANNELS)
        for _ in range(max(1, config.spatial_factor.bit_length() - 1)):
            stem += [nn.Conv2d(cm, config.map_features, 3, stride=2, padding=1), nn.SiLU()]
            cm = config.map_features
        self.map_stem = nn.Sequential(*stem[:-1])
        self.conv_in = nn.Conv2d(cin, c0, 3, padding=1)
        self.down0 = ResBlock(c0, c0, e)
        self.t_down0 = TemporalAttention(c0, config.max_frames, config.heads)
        self.down = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.mid1 = ResBlock(c1, c1, e)
        self.s_mid1 = SpatialAttention(c1, config.heads)
        self.t_mid1 = TemporalAttention(c1, config.max_frames, config.heads)
        self.mid2 = ResBlock(c1, c1, e)
        self.s_mid2 = SpatialAttention(c1, config.heads)
        self.t_mid2 = TemporalAttention(c1, config.max_frames, config.heads)
        self.up = nn.Conv2d(c1, c0, 3, padding=1)
        self.up0 = ResBlock(2 * c0, c0, e)
        self.t_up0 = TemporalAttention(c0, config.max_frames, config.heads)
        self.norm_out = nn.GroupNorm(groups(c0), c0)
        self.conv_out = nn.Conv2d(c0, config.latent_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed_maps(self, maps: Tensor) -> Tensor:
        """Pixel maps ``[N, H, W, Cm]`` to stem features ``[N, M, h, w]``."""
        return self.map_stem(maps.permute(0, 3, 1, 2))

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Tensor, extra: Tensor | None = None) -> Tensor:
        """``x_in [B, F, C, h, w]``, ``c_noise [B, F, 1, h, w]``, ``cond [B, F, Cc, h, w]`` -> raw output.

        ``extra [B, F, channels[0], h, w]``, when given, is added to the first convolution's output: the
        entry of conditions computed by a wrapping model (V3D's reprojected features,
        :mod:`vdm3d.models.tiny.v3d`); absent, the network is exactly the plain video denoiser."""
        b, f, c, h, w = x_in.shape
        if f > self.config.max_frames:
            raise InputError(f"the tiny video denoiser takes at most {self.config.max_frames} frames (a prepended "
                             f"reference frame counts), got {f}; generate longer videos in chunks.")
        emb = self.emb(fourier_embedding(c_noise.mean(dim=(2, 3, 4)), 64, max_period=10.0))  # [B, F, E]
        emb = emb.reshape(b * f, -1)
        z = torch.cat([x_in, c_noise, cond], 2).reshape(b * f, -1, h, w)
        h0 = self.conv_in(z)
        if extra is not None:
            h0 = h0 + extra.reshape(b * f, -1, h, w)
        h0 = self.t_down0(self.down0(h0, emb), f)
        h1 = self.down(h0)
        group = f if self.config.attention == "views" else 1  # frames one coarse attention spans
        h1 = self.t_mid1(self.s_mid1(self.mid1(h1, emb), group), f)
        h1 = self.t_mid2(self.s_mid2(self.mid2(h1, emb), group), f)
        u = self.up(F.interpolate(h1, size=(h, w), mode="nearest"))
        u = self.t_up0(self.up0(torch.cat([u, h0], 1), emb), f)
        out = self.conv_out(F.silu(self.norm_out(u)))
        return out.reshape(b, f, c, h, w)
