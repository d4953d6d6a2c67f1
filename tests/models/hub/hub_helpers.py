"""Helpers for the hub adapter tests: a reference image and two sampler steps with CFG."""

from __future__ import annotations

import torch

from vdm3d.protocols import Conditioning

SIZE = 32


def reference_image(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, SIZE, SIZE, 3, generator=g)


def two_steps(
    backbone, sigmas, shape, cond: Conditioning, *, scale: float = 2.0, seed: int = 0
) -> torch.Tensor:
    """Two sampler steps through vdm3d's shared loop, with classifier-free guidance."""
    from vdm3d.diffusion.guiders import CFG
    from vdm3d.diffusion.samplers import sample

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return sample(backbone, sigmas, cond=cond, shape=shape, generator=g, guider=CFG(scale=scale))
