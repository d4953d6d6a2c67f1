"""Analytic and tiny backbones for testing and benchmarking the diffusion core.

:class:`GaussianDataDenoiser` is the exact (Bayes-optimal) denoiser when every latent element is an
independent Gaussian ``x0 ~ N(mu, var)``: for ``x = x0 + sigma eps``,
``E[x0 | x] = mu + var / (var + sigma^2) (x - mu)``. A correct sampler driven by it must reproduce
the data mean and variance, which is what the sampler tests check. :class:`ConvDenoiser` is a small
seeded conv net with SV3D-style v-scaling, used by the benchmark as a realistic cost reference. Both
implement :class:`vdm3d.protocols.Backbone`, with a 3-channel latent that decodes to images by
``(x + 1) / 2`` (differentiable, so x0 guidance can be tested exactly).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.diffusion.parameterizations import align_sigma, edm_precondition
from vdm3d.protocols import Conditioning


class _ImageLatents:
    """Latents are images in [-1, 1], channels first: ``[B, F, 3, H, W]``."""

    slots = frozenset({"reference"})
    latent_channels = 3
    spatial_factor = 1
    temporal_factor = 1

    def encode(self, images: Float[Tensor, "B F H W 3"]) -> Float[Tensor, "B F C h w"]:
        return (images * 2.0 - 1.0).permute(0, 1, 4, 2, 3)

    def decode(self, latents: Float[Tensor, "B F C h w"]) -> Float[Tensor, "B F H W 3"]:
        return ((latents + 1.0) * 0.5).permute(0, 1, 3, 4, 2)


class GaussianDataDenoiser(_ImageLatents):
    """The closed-form denoiser for independent Gaussian data ``N(mean, var)``.

    ``mean``/``var`` broadcast to one sample ``[F, C, h, w]``. The null condition (CFG's
    unconditional branch) uses ``null_mean``; a :class:`Conditioning` may override the mean with
    ``extras["mean"]``. ``calls`` counts denoiser evaluations."""

    name = "gaussian-data"
    prediction = "x0"
    process = "edm"

    def __init__(self, mean: Tensor | float = 0.0, var: Tensor | float = 1.0, *,
                 null_mean: Tensor | float | None = None, resolution: tuple[int, int] = (8, 8),
                 frames: int | None = None, per_element_sigma: bool = True):
        self.mean = torch.as_tensor(mean, dtype=torch.get_default_dtype())
        self.var = torch.as_tensor(var, dtype=torch.get_default_dtype())
        self.null_mean = self.mean if null_mean is None else torch.as_tensor(null_mean, dtype=self.mean.dtype)
        self.resolution, self.frames = resolution, frames
        self.per_element_sigma = per_element_sigma
        self.calls = 0

    def condition(self, cond: Conditioning, *, null: bool = False) -> Tensor:
        if null:
            return self.null_mean
        return torch.as_tensor(cond.extras.get("mean", self.mean), dtype=self.mean.dtype)

    def denoise(self, x: Float[Tensor, "B Fl C h w"], sigma: Tensor,
                cond: Any) -> Float[Tensor, "B Fl C h w"]:
        self.calls += 1
        s = align_sigma(sigma.to(x.dtype), x)
        mean, var = cond.to(x), self.var.to(x)
        return mean + var / (var + s * s) * (x - mean)


class ConvDenoiser(nn.Module, _ImageLatents):
    """A seeded 3-layer conv net with v-scaling (``c_skip x + c_out F(c_in x, c_noise)``), per frame.

    The noise level enters as an extra input channel, so it may vary per latent pixel."""

    name = "conv-denoiser"
    prediction = "v"
    process = "edm"
    per_element_sigma = True

    def __init__(self, width: int = 32, seed: int = 0, resolution: tuple[int, int] = (32, 32)):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3 + 1 + 3, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 3, 3, padding=1),
        )
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        self.resolution, self.frames = resolution, None
        self.calls = 0

    def condition(self, cond: Conditioning, *, null: bool = False) -> Tensor:
        ref = cond.reference
        if ref is None or null:
            h, w = self.resolution if ref is None else ref.shape[1:3]
            b = 1 if ref is None else ref.shape[0]
            return torch.zeros(b, 3, h, w)
        return ref.permute(0, 3, 1, 2) * 2.0 - 1.0

    def concat_conditions(self, conds: list[Tensor], batch: int) -> Tensor:
        """Reference images ``[B or 1, 3, H, W]`` stacked on the batch (one call for both CFG branches)."""
        return torch.cat([c.expand(batch, *c.shape[1:]) for c in conds])

    def denoise(self, x: Float[Tensor, "B Fl C h w"], sigma: Tensor,
                cond: Any) -> Float[Tensor, "B Fl C h w"]:
        self.calls += 1
        b, f, c, h, w = x.shape
        s = align_sigma(sigma.to(x.dtype), x).expand(b, f, 1, h, w)
        c_skip, c_out, c_in, c_noise = edm_precondition(s)
        ref = cond.to(x).unsqueeze(1).expand(b, f, 3, h, w)
        inp = torch.cat([c_in * x, c_noise, ref], dim=2).reshape(b * f, c + 4, h, w)
        v = self.net(inp).reshape(b, f, c, h, w)
        return c_skip * x + c_out * v


__all__ = ["ConvDenoiser", "GaussianDataDenoiser"]
