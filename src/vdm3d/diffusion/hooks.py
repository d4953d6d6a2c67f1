"""Step hooks: techniques that act inside any sampler loop, seen through a frozen :class:`StepState`.

A hook may replace the sample before the denoiser runs (:meth:`StepHook.before_denoise`) and the
sampler's proposal for the next sample (:meth:`StepHook.after_step`); it returns a new tensor (or
``None`` to leave it) and never edits one in place. A hook that needs gradients through the denoiser
says so in :meth:`StepHook.wants_grad`; the loop then runs that step with ``x`` requiring grad.

* :class:`LatentBlend` - VideoFrom3D's sparse appearance guidance (§5.3/§8.8): during the first
  ``k`` steps, known regions are put back on the noisy path of an encoded target,
  ``x <- M x + (1 - M) (target + sigma eps_0)`` (the VE form of ``(1-t) x1 + t x0`` with the run's
  initial noise), ``M`` the soft unobserved mask.
* :class:`X0Guidance` - GuidedVD's scene-grounding guidance (§3.4): decode the ``x0`` prediction
  differentiably, take a masked loss against target images
  (``sum_f 0.5 sum (D - G)^2 M_f / sum M_f``, the mask counted over 3 channels), pull the gradient
  back to ``x_t`` through the denoiser, and move the next sample by ``-rho g`` with the normalized
  step ``rho = w * RMS(CFG correction) / RMS(g)``, all in the backbone's native units as in the
  original (v-space correction, VP sample), converted back to the VE form.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.diffusion.parameterizations import NativeView, native_scale
from vdm3d.errors import ConfigError, InputError


@dataclasses.dataclass(frozen=True)
class StepState:
    """Everything a hook may read about one step (tensors are never to be edited in place)."""

    step: int
    """index of this step, 0-based"""
    steps: int
    """number of steps in the run"""
    x: Tensor
    """the sample entering the step (VE form); requires grad when a hook asked for gradients"""
    sigma: Tensor
    """its noise level, aligned to ``x`` (left-aligned broadcasting)"""
    sigma_next: Tensor
    """the noise level after the step, aligned to ``x``"""
    noise: Tensor
    """the unit Gaussian noise the run started from"""
    backbone: Any
    """the backbone (protocol object) being sampled"""
    cond: Any
    """the encoded condition"""
    uncond: Any = None
    """the encoded null condition (``None`` without guidance)"""
    x0: Tensor | None = None
    """the guided x0 prediction (``None`` before the denoiser ran)"""
    x0_cond: Tensor | None = None
    """the conditional x0 prediction"""
    x0_uncond: Tensor | None = None
    """the unconditional x0 prediction (``None`` when guidance was off at this step)"""
    x_next: Tensor | None = None
    """the sampler's proposal for the next sample"""
    generator: torch.Generator | None = None
    """the run's generator, for hooks that draw noise"""

    def native(self) -> NativeView:
        """The step's native units (for converting predictions to raw network outputs)."""
        bb = self.backbone
        return NativeView.from_ve(self.x.detach(), self.sigma, bb.prediction, bb.process)


@runtime_checkable
class StepHook(Protocol):
    """What a step hook provides; subclass it for do-nothing defaults and override what you need."""

    def wants_grad(self, step: int, steps: int) -> bool:
        return False

    def before_denoise(self, state: StepState) -> Tensor | None:
        return None

    def after_step(self, state: StepState) -> Tensor | None:
        return None


def masked_image_loss(images: Float[Tensor, "B F H W 3"], target: Float[Tensor, "B F H W 3"],
                      mask: Float[Tensor, "B F H W"]) -> Float[Tensor, ""]:
    """GuidedVD's loss ``sum_f 0.5 sum_px (D - G)^2 M_f / sum_px 3 M_f`` (per-frame normalized, the
    mask counted over the 3 colour channels)."""
    if images.shape != target.shape:
        raise InputError(f"x0 guidance: decoded frames {tuple(images.shape)} do not match the target "
                         f"{tuple(target.shape)}; give targets at the backbone's resolution.")
    per_frame = (0.5 * (images - target) ** 2 * mask.unsqueeze(-1)).sum(dim=(-3, -2, -1))
    norm = (3.0 * mask.sum(dim=(-2, -1))).clamp_min(1.0)
    return (per_frame / norm).sum()


def _in_window(step: int, steps: int, start: float, stop: float) -> bool:
    return start <= step / steps < stop


class LatentBlend(StepHook):
    """Keep known regions on the noisy path of an encoded target for the first ``blend_steps`` steps."""

    def __init__(self, target: Float[Tensor, "B F C h w"], unobserved: Float[Tensor, "B F #C h w"],
                 blend_steps: int):
        if blend_steps < 0:
            raise ConfigError(f"blend_steps is {blend_steps}; use 0 or more steps.")
        if float(unobserved.min()) < 0.0 or float(unobserved.max()) > 1.0:
            raise InputError("latent blending: unobserved mask values must lie in [0, 1]; rescale the mask.")
        self.target = target
        self.unobserved = unobserved
        self.blend_steps = blend_steps

    def before_denoise(self, state: StepState) -> Tensor | None:
        if state.step >= self.blend_steps:
            return None
        known = self.target + state.sigma * state.noise
        return self.unobserved * state.x + (1.0 - self.unobserved) * known


class X0Guidance(StepHook):
    """Scene-grounding guidance: gradient of a masked image loss on the decoded x0 prediction."""

    def __init__(self, target: Float[Tensor, "B Fp H W 3"], mask: Float[Tensor, "B Fp H W"],
                 weight: float = 0.2, step_size: Literal["cfg", "fixed"] = "cfg",
                 start: float = 0.0, stop: float = 1.0, decode_chunk: int | None = None):
        """``mask`` is 1 where the target is trusted (GuidedVD: baseline alpha >= 0.9). With
        ``step_size="cfg"`` the update's RMS is ``weight * RMS(CFG correction)`` (needs guidance);
        with ``"fixed"`` it is ``weight``. ``decode_chunk`` latent frames are decoded at a time
        (``None``: all at once; 1 is GuidedVD's per-frame decode, valid for per-frame VAEs)."""
        if target.shape[:-1] != mask.shape:
            raise InputError(f"x0 guidance: mask shape {tuple(mask.shape)} does not match target images "
                             f"{tuple(target.shape)}; pass one [B, F, H, W] mask per target frame.")
        if weight < 0:
            raise ConfigError(f"x0 guidance weight is {weight}; use a non-negative weight.")
        self.target, self.mask = target, mask.to(target.dtype)
        self.weight, self.step_size = weight, step_size
        self.start, self.stop = start, stop
        self.decode_chunk = decode_chunk

    def wants_grad(self, step: int, steps: int) -> bool:
        return _in_window(step, steps, self.start, self.stop) and self.weight > 0

    def loss(self, latents: Tensor, backbone: Any, frames: slice = slice(None)) -> Tensor:
        """The guidance loss of ``latents`` against target frames ``frames``."""
        images = backbone.decode(latents).clamp(0.0, 1.0)  # [B, F, H, W, 3]
        return masked_image_loss(images, self.target[:, frames], self.mask[:, frames])

    def _grad_x0(self, x0: Tensor, backbone: Any) -> Tensor:
        """d loss / d x0, decoding ``decode_chunk`` latent frames at a time (per-frame VAEs only)."""
        chunk = self.decode_chunk
        if chunk is None or getattr(backbone, "temporal_factor", 1) != 1:
            chunk = x0.shape[1]
        grads = []
        for f0 in range(0, x0.shape[1], chunk):
            z0 = x0[:, f0:f0 + chunk].detach().requires_grad_(True)
            frames = slice(f0, f0 + chunk) if chunk < x0.shape[1] else slice(None)
            with torch.enable_grad():
                grads.append(torch.autograd.grad(self.loss(z0, backbone, frames), z0)[0])
        return torch.cat(grads, dim=1)

    def after_step(self, state: StepState) -> Tensor | None:
        if not self.wants_grad(state.step, state.steps):
            return None
        if state.x0 is None or state.x_next is None or not state.x.requires_grad:
            raise ConfigError("x0 guidance needs the sampler to run the step with gradients; "
                              "use vdm3d.diffusion.samplers.sample.")
        bb = state.backbone
        g0 = self._grad_x0(state.x0, bb)
        g_ve = torch.autograd.grad(state.x0, state.x, grad_outputs=g0, retain_graph=True)[0]
        # x_native = c x, so d/dx_native = (d/dx) / c: the gradient in the backbone's own units.
        g = g_ve / native_scale(state.sigma, bb.process)
        dims = tuple(range(1, g.ndim))
        rms_g = g.pow(2).mean(dim=dims, keepdim=True).sqrt().clamp_min(1e-20)
        if self.step_size == "cfg":
            if state.x0_uncond is None:
                raise ConfigError("x0 guidance with step_size='cfg' needs classifier-free guidance at "
                                  "every guided step; enable CFG or use step_size='fixed'.")
            native = state.native()
            with torch.no_grad():
                correction = native.raw(state.x0.detach()) - native.raw(state.x0_uncond.detach())
            ref = correction.pow(2).mean(dim=dims, keepdim=True).sqrt()
        else:
            ref = torch.ones_like(rms_g)
        rho = self.weight * ref / rms_g
        update_native = -rho * g
        return state.x_next.detach() + update_native / native_scale(state.sigma_next, bb.process)


__all__ = ["LatentBlend", "StepHook", "StepState", "X0Guidance", "masked_image_loss"]
