"""A small convolutional image VAE shared by all tiny video models.

``64x64x3`` images become ``16x16x4`` latents (``spatial_factor = 4``): two stride-2 levels of
residual convolutions, no attention, so it is fully convolutional and can be trained on crops. The
encoder outputs a diagonal Gaussian posterior; :meth:`TinyVAE.encode` returns its mean, shifted and
scaled (``latent_shift``, ``latent_scale``, measured on the training set after training) so that
latents have roughly zero mean and unit variance, which is what the denoiser's EDM preconditioning
with ``sigma_data = 1`` assumes. Frames are encoded independently (``temporal_factor = 1``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.models.tiny.blocks import ResBlock, groups
from vdm3d.options import Range


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Shape of the tiny image VAE."""

    channels: Annotated[tuple[int, ...], Range(1)] = (16, 64)
    """feature channels per resolution level; the spatial factor is ``2 ** len(channels)``"""
    latent_channels: Annotated[int, Range(1)] = 4
    """channels of the latent"""

    @property
    def spatial_factor(self) -> int:
        return 2 ** len(self.channels)


class TinyVAE(nn.Module):
    """Images ``[N, H, W, 3]`` in [0, 1] <-> latents ``[N, C, H/f, W/f]``."""

    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        ch = config.channels
        enc: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            cin = ch[i - 1] if i else ch[0]
            enc += [ResBlock(cin, c), nn.Conv2d(c, c, 3, stride=2, padding=1)]
        enc += [ResBlock(ch[-1], ch[-1]), nn.GroupNorm(groups(ch[-1]), ch[-1]), nn.SiLU(),
                nn.Conv2d(ch[-1], 2 * config.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(config.latent_channels, ch[-1], 3, padding=1), ResBlock(ch[-1], ch[-1])]
        for i in reversed(range(len(ch))):
            cout = ch[i - 1] if i else ch[0]
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[i], ch[i], 3, padding=1),
                    ResBlock(ch[i], cout)]
        dec += [nn.GroupNorm(groups(ch[0]), ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("latent_shift", torch.zeros(config.latent_channels))
        self.register_buffer("latent_scale", torch.ones(config.latent_channels))

    # -- raw posterior (training) ---------------------------------------------------------------
    def posterior(self, images: Float[Tensor, "N H W 3"]) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of the (unnormalized) posterior, each ``[N, C, h, w]``."""
        x = images.permute(0, 3, 1, 2) * 2 - 1
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)

    def decode_raw(self, z: Tensor) -> Tensor:
        """Unnormalized latents ``[N, C, h, w]`` to images ``[N, H, W, 3]`` (unclamped)."""
        return (self.decoder(z).permute(0, 2, 3, 1) + 1) / 2

    # -- normalized interface (what the backbones use) ------------------------------------------
    def encode(self, images: Float[Tensor, "N H W 3"]) -> Float[Tensor, "N C h w"]:
        """Posterior means, normalized to about zero mean and unit variance."""
        mean, _ = self.posterior(images)
        return (mean - self.latent_shift[:, None, None]) * self.latent_scale[:, None, None]

    def decode(self, latents: Float[Tensor, "N C h w"]) -> Float[Tensor, "N H W 3"]:
        """Normalized latents to images in [0, 1] (clamped, differentiable inside the range)."""
        z = latents / self.latent_scale[:, None, None] + self.latent_shift[:, None, None]
        return self.decode_raw(z).clamp(0, 1)


def vae_loss(vae: TinyVAE, images: Tensor, kl_weight: float = 1e-4,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
    """L1 + MSE reconstruction of a posterior sample plus a small KL term (per latent element)."""
    mean, logvar = vae.posterior(images)
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    z = mean + torch.exp(0.5 * logvar) * noise
    recon = vae.decode_raw(z)
    l1 = (recon - images).abs().mean()
    mse = F.mse_loss(recon, images)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    loss = l1 + mse + kl_weight * kl
    return loss, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}
