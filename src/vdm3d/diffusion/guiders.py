"""Guiders: how the conditional and unconditional predictions combine into one ``x0``.

Classifier-free guidance on the denoised prediction, per frame:
``x0 = x0_u + w_f (x0_c - x0_u)``. Because every parameterization is affine in the raw network output
for a fixed input, this equals CFG on eps, v or velocity with the same weights; only the *rescale*
(Lin et al. 2024, ``phi``) is nonlinear, so it is computed on the network's raw output through a
:class:`~vdm3d.diffusion.parameterizations.NativeView`, as ViewCrafter/GuidedVD do on v.

Frame schedules for ``w_f`` (``F`` latent frames, ``f = 0..F-1``, ``v = f / (F - 1)``):

* ``constant``: ``w_f = scale`` (V3D: 3.5-4.5, WorldWarp: 5, ViewCrafter: 7.5);
* ``linear``: ``linspace(min_scale, scale, F)``, SVD's ``LinearPredictionGuider``;
* ``triangular``: ``min + (scale - min) * 2 |v/p - floor(v/p + 1/2)|``, SV3D's
  ``TrianglePredictionGuider`` (``p = period``): 1.0, 1.15, ..., 2.5 at the back view (f=10), ..., 1.0
  for 21 frames.

A step window (``start``/``stop`` as fractions of the run) turns guidance off outside it; then the
unconditional branch is not evaluated at all (FLUX's ``timestep_to_start_cfg``). Nor is it where every
frame's weight is 1, since ``x0_u + 1 (x0_c - x0_u)`` is the conditional prediction (and the rescale
of a prediction against itself is the identity).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.diffusion.parameterizations import NativeView
from vdm3d.errors import ConfigError


@runtime_checkable
class Guider(Protocol):
    """What the sampler loop needs from a guider."""

    def active(self, step: int, steps: int, frames: int | None = None) -> bool:
        """Whether step ``step`` of ``steps`` uses the unconditional branch for a clip of ``frames``
        latent frames (``None``: unknown)."""

    def combine(self, x0_cond: Tensor, x0_uncond: Tensor, native_cond: NativeView | None = None) -> Tensor:
        """The guided ``x0`` (``native_cond`` gives the step's native units, for nonlinear guiders)."""


def triangle_wave(v: Tensor, period: float = 1.0) -> Tensor:
    """``2 |v/p - floor(v/p + 1/2)|``: 0 at multiples of ``p``, 1 half-way between."""
    u = v / period
    return 2.0 * (u - torch.floor(u + 0.5)).abs()


@dataclasses.dataclass(frozen=True)
class CFG:
    """Classifier-free guidance with a frame schedule, rescale and a step window."""

    scale: float = 1.0
    """guidance weight (the maximum for linear/triangular schedules); 1 = conditional only"""
    min_scale: float = 1.0
    """the weight at the low end of the linear/triangular frame schedules"""
    over_frames: Literal["constant", "linear", "triangular"] = "constant"
    """how the weight varies over frames (SVD: linear, SV3D: triangular)"""
    period: float = 1.0
    """period of the triangular schedule, in units of the whole clip"""
    rescale: float = 0.0
    """CFG rescale phi (0 = off; ViewCrafter/GuidedVD: 0.7), computed on the raw network output"""
    start: float = 0.0
    """guidance is active from this fraction of the steps..."""
    stop: float = 1.0
    """...until (excluding) this fraction"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= self.stop <= 1.0:
            raise ConfigError(f"CFG window start={self.start}, stop={self.stop} must satisfy "
                              "0 <= start <= stop <= 1; fix the guidance window.")
        if not 0.0 <= self.rescale <= 1.0:
            raise ConfigError(f"CFG rescale is {self.rescale}; use a value in [0, 1].")

    def frame_scales(self, frames: int) -> Float[Tensor, " F"]:
        """The per-frame weights ``w_f``."""
        if self.over_frames == "constant":
            return torch.full((frames,), float(self.scale))
        if self.over_frames == "linear":
            return torch.linspace(self.min_scale, self.scale, frames)
        if self.over_frames == "triangular":
            v = torch.arange(frames, dtype=torch.float64) / max(frames - 1, 1)
            w = self.min_scale + (self.scale - self.min_scale) * triangle_wave(v, self.period)
            return w.float()
        raise ConfigError(f"over_frames {self.over_frames!r} is unknown; use constant, linear or triangular.")

    def unit(self, frames: int | None = None) -> bool:
        """Whether every frame's weight is 1, so guidance returns the conditional prediction."""
        if frames is None:
            return self.scale == 1.0 and (self.over_frames == "constant" or self.min_scale == 1.0)
        return bool((self.frame_scales(frames) == 1.0).all())

    def active(self, step: int, steps: int, frames: int | None = None) -> bool:
        # Step m covers the fraction [m/S, (m+1)/S); it is guided when its start lies in the window.
        return self.start <= step / steps < self.stop and not self.unit(frames)

    def weights_like(self, x: Tensor) -> Tensor:
        """``w_f`` shaped to broadcast over ``x`` (``[1, F, 1, ...]`` for video latents)."""
        if x.ndim >= 3:
            w = self.frame_scales(x.shape[1]).to(x)
            return w.view(1, -1, *([1] * (x.ndim - 2)))
        return torch.tensor(float(self.scale), dtype=x.dtype, device=x.device)

    def combine(self, x0_cond: Tensor, x0_uncond: Tensor, native_cond: NativeView | None = None) -> Tensor:
        w = self.weights_like(x0_cond)
        guided = x0_uncond + w * (x0_cond - x0_uncond)
        if self.rescale == 0.0:
            return guided
        if native_cond is None:
            raise ConfigError("CFG rescale needs the native view of the step; call it through the sampler.")
        raw_c, raw_g = native_cond.raw(x0_cond), native_cond.raw(guided)
        dims = tuple(range(1, raw_g.ndim))
        std_c = raw_c.std(dim=dims, keepdim=True)
        std_g = raw_g.std(dim=dims, keepdim=True).clamp_min(1e-12)
        raw = self.rescale * raw_g * (std_c / std_g) + (1.0 - self.rescale) * raw_g
        return native_cond.x0(raw)


def sv3d_cfg() -> CFG:
    """SV3D's guider: triangular over frames, 1.0 -> 2.5 (frame 10 of 21) -> 1.0."""
    return CFG(scale=2.5, min_scale=1.0, over_frames="triangular", period=1.0)


def svd_cfg(min_scale: float = 1.0, max_scale: float = 3.0) -> CFG:
    """SVD's ``LinearPredictionGuider``: a linear ramp over frames."""
    return CFG(scale=max_scale, min_scale=min_scale, over_frames="linear")


__all__ = ["CFG", "Guider", "sv3d_cfg", "svd_cfg", "triangle_wave"]
