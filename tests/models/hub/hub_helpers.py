"""Helpers for the hub adapter tests: a reference image, two sampler steps with CFG, a model folder copied to
break, and the one-sentence check of a refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def copy_folder(folder: Path, tmp_path: Path, name: str) -> Path:
    """A copy of a saved model folder that a test may break."""
    return Path(shutil.copytree(folder, tmp_path / name))


def one_sentence(err) -> str:
    """The message of a ``pytest.raises`` refusal, checked to be one sentence (one line, a full stop)."""
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith("."), msg
    return msg
