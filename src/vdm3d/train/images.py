"""Batch samplers and losses of the two image models: the VAE and the depth network.

* VAE: random ``crop x crop`` crops (with horizontal flips) of object renders and room frames; the
  model is fully convolutional, so crops cost a fraction of full images and teach the same filters.
  Loss: L1 + MSE + a small KL (:func:`vdm3d.models.tiny.vae.vae_loss`).
* depth: whole room frames with their z-depth (flipped at random); loss: scale-invariant log loss
  (:func:`vdm3d.models.tiny.depth.silog_loss`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
import torch
from torch import Tensor

from vdm3d.models.tiny.depth import TinyDepth, silog_loss
from vdm3d.models.tiny.vae import TinyVAE, vae_loss
from vdm3d.options import Range


@dataclasses.dataclass(frozen=True)
class VAETaskConfig:
    """Batches of the VAE."""

    batch: Annotated[int, Range(1)] = 32
    """crops per step"""
    crop: Annotated[int, Range(1)] = 32
    """crop side in pixels (a multiple of the VAE factor)"""
    kl_weight: Annotated[float, Range(0)] = 1e-4
    """weight of the KL term"""


@dataclasses.dataclass(frozen=True)
class DepthTaskConfig:
    """Batches of the depth network."""

    batch: Annotated[int, Range(1)] = 16
    """images per step"""


def image_pool(*sets: dict[str, np.ndarray] | None) -> np.ndarray:
    """All RGB frames of the given sets, ``uint8 [N, H, W, 3]``."""
    return np.concatenate([s["rgb"].reshape(-1, *s["rgb"].shape[-3:]) for s in sets if s is not None])


def vae_step(vae: TinyVAE, pool: np.ndarray, cfg: VAETaskConfig, rng: np.random.Generator,
             gen: torch.Generator, device) -> tuple[Tensor, dict[str, float]]:
    n, h, w, _ = pool.shape
    i = rng.integers(n, size=cfg.batch)
    y = rng.integers(0, h - cfg.crop + 1, size=cfg.batch)
    x = rng.integers(0, w - cfg.crop + 1, size=cfg.batch)
    crops = np.stack([pool[a, b:b + cfg.crop, c:c + cfg.crop] for a, b, c in zip(i, y, x)])
    flip = rng.random(cfg.batch) < 0.5
    crops[flip] = crops[flip, :, ::-1]
    images = torch.from_numpy(crops).float().div(255).to(device)
    return vae_loss(vae, images, cfg.kl_weight, generator=gen)


def depth_step(net: TinyDepth, rooms: dict[str, np.ndarray], cfg: DepthTaskConfig, rng: np.random.Generator,
               gen: torch.Generator, device) -> tuple[Tensor, dict[str, float]]:
    rgb = rooms["rgb"].reshape(-1, *rooms["rgb"].shape[-3:])
    depth = rooms["depth"].reshape(-1, *rooms["depth"].shape[-2:])
    i = rng.integers(len(rgb), size=cfg.batch)
    img, d = rgb[i], depth[i]
    flip = rng.random(cfg.batch) < 0.5
    img[flip], d[flip] = img[flip, :, ::-1], d[flip, :, ::-1]
    images = torch.from_numpy(np.ascontiguousarray(img)).float().div(255).to(device)
    target = torch.from_numpy(np.ascontiguousarray(d)).float().to(device)
    loss = silog_loss(net.log_depth(images), target)
    return loss, {}
