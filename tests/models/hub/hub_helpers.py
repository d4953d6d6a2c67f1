"""Helpers for the hub adapter tests: a reference image, two sampler steps with CFG, a model folder copied to
break, and the one-sentence check of a refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from vdm3d.diffusion.schedules import DdimSchedule, EdmSchedule, FlowSchedule
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


def latent_shape(backbone, frames: int) -> tuple[int, ...]:
    """The latents of ``frames`` pixel frames at SIZE x SIZE for ``backbone`` (its temporal compression too)."""
    return (1, (frames - 1) // backbone.temporal_factor + 1, backbone.latent_channels,
            SIZE // backbone.spatial_factor, SIZE // backbone.spatial_factor)


def copy_folder(folder: Path, tmp_path: Path, name: str) -> Path:
    """A copy of a saved model folder that a test may break."""
    return Path(shutil.copytree(folder, tmp_path / name))


def one_sentence(err) -> str:
    """The message of a ``pytest.raises`` refusal, checked to be one sentence (one line, a full stop)."""
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith("."), msg
    return msg


# every hub adapter: its fixture, a schedule, frames of pixels, a condition
CASES = {
    "svd": ("tiny_svd", EdmSchedule(2), 2, lambda: Conditioning(reference=reference_image())),
    "sv3d": (
        "tiny_sv3d",
        EdmSchedule(2),
        2,
        lambda: Conditioning(
            reference=reference_image(), extras={"polars_rad": [1.2, 1.4], "azimuths_rad": [3.0, 0.0]}
        ),
    ),
    "cogvideox": (
        "tiny_cogvideox",
        DdimSchedule(2, "trailing"),
        9,
        lambda: Conditioning(reference=reference_image(), text="a red house", negative_text=""),
    ),
    "wan": (
        "tiny_wan",
        FlowSchedule(2, shift=5.0),
        5,
        lambda: Conditioning(text="a blue car", negative_text=""),
    ),
    "flux": (
        "tiny_flux",
        FlowSchedule(2, shift=3.0),
        2,
        lambda: Conditioning(
            text="a red house",
            maps=torch.rand(1, 2, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(3)),
        ),
    ),
}
