"""The backbone protocol: what a job may ask of a video (or image) diffusion model.

This module sits below both :mod:`vdm3d.diffusion` (whose samplers drive a backbone) and
:mod:`vdm3d.models` (whose tiny and hub backbones use the diffusion parameterizations), and imports
neither, so the two packages no longer import each other in a circle. It depends on cameras alone.

Jobs and samplers depend on this protocol, never on a model class, so every technique (x0 guidance,
latent blending, per-token noise levels, warped noise) works with every backbone: the embedded tiny
models (``vdm3d.models.tiny``) and the hub adapters (``vdm3d.models.hub``).

**One noise space for every sampler.** Samplers work in the variance-exploding form
``x = x0 + sigma * eps`` with ``sigma`` broadcastable to ``x`` (per batch, per frame, or per latent
pixel/token). A backbone trained as VP/DDPM (``x_t = sqrt(ab) x0 + sqrt(1-ab) eps``) or as
rectified flow (``x_t = (1-t) x0 + t eps``) converts at its own edge: VP uses
``sigma = sqrt((1-ab)/ab)`` and input ``x / sqrt(1 + sigma^2)``; flow uses ``t = sigma / (1 + sigma)``
and input ``x / (1 + sigma)``. Deterministic DDIM, EDM Euler and flow-matching Euler are then the
same update ``x' = x0_hat + sigma' * eps_hat`` (scaled), so one loop serves all three;
``vdm3d.diffusion.parameterizations`` holds these conversions.

**Latents are video-shaped**: ``[B, F, C, h, w]`` where ``F`` is the number of latent frames
(``F = frames`` for per-frame VAEs, ``(frames - 1) // temporal_factor + 1`` for causal video VAEs).

Condition slots (``Backbone.slots``) name what a model can be conditioned on:

==============  =================================================================================
``reference``   a reference image ``[B, H, W, 3]`` (image-to-video, the SV3D/SVD input view)
``cameras``     per-frame target cameras ``[B, F_pix]`` (OpenCV c2w), relative to the reference
``maps``        per-frame pixel maps concatenated on channels ``[B, F_pix, H, W, Cm]`` (forward-warped
                renders with validity masks, edge maps)
``keyframes``   known frames ``{frame_index: image [B, H, W, 3]}`` (start/end of an inbetween)
``text``        a prompt (hub models that take text)
==============  =================================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol, runtime_checkable

from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras

Slot = Literal["reference", "cameras", "maps", "keyframes", "text"]
Prediction = Literal["eps", "v", "x0", "flow"]
Process = Literal["edm", "vp", "flow"]


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """What to condition on, in pixel space; the backbone encodes it (:meth:`Backbone.condition`)."""

    reference: Float[Tensor, "B H W 3"] | None = None
    cameras: Cameras | None = None
    maps: Float[Tensor, "B F H W Cm"] | None = None
    keyframes: dict[int, Float[Tensor, "B H W 3"]] | None = None
    text: str | None = None
    negative_text: str | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def used_slots(self) -> set[str]:
        return {f.name for f in dataclasses.fields(self)
                if f.name in ("reference", "cameras", "maps", "keyframes", "text")
                and getattr(self, f.name) is not None}


@runtime_checkable
class Backbone(Protocol):
    """A latent (video) diffusion model as the samplers and jobs see it."""

    name: str
    #: condition slots this model understands
    slots: frozenset[str]
    #: native pixel resolution (H, W) and frame count (``None`` when flexible)
    resolution: tuple[int, int]
    frames: int | None
    #: latent layout: channels, spatial and temporal down-sampling factors
    latent_channels: int
    spatial_factor: int
    temporal_factor: int
    #: what the raw network predicts and in which noise process it was trained
    prediction: Prediction
    process: Process
    #: whether ``denoise`` accepts sigma varying per latent pixel/token (WorldWarp's ST noise)
    per_element_sigma: bool

    def encode(self, images: Float[Tensor, "B F H W 3"]) -> Float[Tensor, "B Fl C h w"]:
        """Images in [0, 1] to latents (deterministic: the posterior mean/mode)."""

    def decode(self, latents: Float[Tensor, "B Fl C h w"]) -> Float[Tensor, "B F H W 3"]:
        """Latents to images in [0, 1]; differentiable (x0 guidance backpropagates through it)."""

    def condition(self, cond: Conditioning, *, null: bool = False) -> Any:
        """Encode a condition once per sampling run; ``null=True`` gives the unconditional branch
        for classifier-free guidance (which slots are dropped is the model's own recipe, e.g. SV3D
        zeroes the image embeddings and keeps the cameras)."""

    def denoise(self, x: Float[Tensor, "B Fl C h w"], sigma: Tensor, cond: Any) -> Float[Tensor, "B Fl C h w"]:
        """The x0 prediction ``D(x, sigma, cond)`` for ``x = x0 + sigma * eps`` (VE form).

        ``sigma`` broadcasts to ``x``: shape ``[B]``, ``[B, Fl]`` or ``[B, Fl, 1, h, w]``-like."""
