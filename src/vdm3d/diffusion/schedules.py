"""Noise schedules as VE sigmas, and per-element schedules (frozen-until-k, strength).

Every schedule is a descending tensor of ``S + 1`` VE noise levels ``sigma_0 > ... > sigma_S`` (the
last is normally 0): the sampler takes step ``m`` from ``sigma_m`` to ``sigma_{m+1}``.

* :class:`EdmSchedule`: Karras et al. (2022) ``(s_max^(1/rho) + i/(S-1) (s_min^(1/rho) -
  s_max^(1/rho)))^rho`` followed by 0; SV3D/SVD use ``s_min=0.002, s_max=700, rho=7``.
* :class:`DdimSchedule`: a DDPM ``alpha_bar`` table (linear / scaled-linear / cosine betas, optionally
  rescaled to zero terminal SNR, Lin et al. 2024) sampled at ``leading``, ``trailing`` or
  ``linspace`` timesteps exactly like diffusers' ``DDIMScheduler``, converted with
  ``sigma = sqrt((1 - ab) / ab)``.
* :class:`FlowSchedule`: rectified-flow times ``t`` shifted by ``t' = shift t / (1 + (shift-1) t)``
  as in diffusers' ``FlowMatchEulerDiscreteScheduler`` (Wan/WorldWarp use shift 5), converted with
  ``sigma = t / (1 - t)``; ``t = 1`` is capped at :data:`~vdm3d.diffusion.parameterizations.FLOW_T_MAX`
  because the VE form has no infinite sigma.

Per-element schedules have shape ``[S+1, *E]`` where ``E`` is left-aligned with the latent
``[B, F, C, h, w]`` (``[B]``, ``[B, F]``, ``[B, F, 1, h, w]``). :func:`frozen_until` makes element
``e`` wait at ``sigma_{k_e}`` until step ``k_e`` and then follow the schedule, which expresses
WorldWarp's fill-and-revise noise (§8.5: valid tokens start at ``k``, holes at 0, context frames
never move), img2img strength and clean context frames with one rule.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from vdm3d.diffusion.parameterizations import FLOW_T_MAX, sigma_from_alpha_bar, sigma_from_t
from vdm3d.errors import ConfigError


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise ConfigError(f"steps is {steps}; use at least 1 sampling step.")


@dataclasses.dataclass(frozen=True)
class EdmSchedule:
    """Karras et al. sigmas (EDM), as used by SVD, SV3D and V3D."""

    steps: int = 50
    """number of sampling steps"""
    sigma_min: float = 0.002
    """smallest nonzero noise level"""
    sigma_max: float = 700.0
    """largest noise level (the starting point)"""
    rho: float = 7.0
    """spacing exponent; larger spends more steps at low noise"""

    def sigmas(self) -> Float[Tensor, " S1"]:
        _check_steps(self.steps)
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError(f"sigma_min={self.sigma_min} and sigma_max={self.sigma_max} need "
                              "0 < sigma_min < sigma_max; fix the EDM schedule bounds.")
        ramp = torch.linspace(0, 1, self.steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        sig = (hi + ramp * (lo - hi)) ** self.rho
        return torch.cat([sig, sig.new_zeros(1)]).float()


BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]


def alpha_bars(num_train: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
               kind: BetaSchedule = "scaled_linear", zero_terminal_snr: bool = False) -> Float[Tensor, " T"]:
    """The DDPM cumulative product ``alpha_bar_t`` for ``t = 0..num_train-1`` (float64).

    ``scaled_linear`` with 0.00085..0.012 is Stable Diffusion's (and ViewCrafter's) schedule. With
    ``zero_terminal_snr`` the sqrt(alpha_bar) curve is shifted and rescaled so its last value is 0
    (Lin et al. 2024); the last value is then clamped to ``2^-24`` (as diffusers does) so that the
    VE sigma stays finite (~4096)."""
    if kind == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        def f(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - f((i + 1) / num_train) / f(i / num_train), 0.999)
                              for i in range(num_train)], dtype=torch.float64)
    else:
        raise ConfigError(f"beta schedule {kind!r} is unknown; use linear, scaled_linear or "
                          "squaredcos_cap_v2.")
    ab = torch.cumprod(1.0 - betas, 0)
    if zero_terminal_snr:
        root = ab.sqrt()
        first, last = root[0].clone(), root[-1].clone()
        root = (root - last) * first / (first - last)
        ab = root ** 2
        ab[-1] = 2.0 ** -24
    return ab


def ddim_timesteps(steps: int, num_train: int = 1000,
                   spacing: Literal["leading", "trailing", "linspace"] = "leading",
                   steps_offset: int = 0) -> Int[Tensor, " S"]:
    """Descending training timesteps, exactly as diffusers' ``DDIMScheduler.set_timesteps``."""
    _check_steps(steps)
    if spacing == "linspace":
        t = torch.linspace(0, num_train - 1, steps, dtype=torch.float64).round().flip(0)
    elif spacing == "leading":
        t = (torch.arange(steps, dtype=torch.float64) * (num_train // steps)).round().flip(0) + steps_offset
    elif spacing == "trailing":
        ratio = num_train / steps
        t = torch.from_numpy(np.round(np.arange(num_train, 0, -ratio))) - 1
    else:
        raise ConfigError(f"timestep spacing {spacing!r} is unknown; use leading, trailing or linspace.")
    return t.long()


@dataclasses.dataclass(frozen=True)
class DdimSchedule:
    """DDPM/DDIM discrete timesteps, expressed as VE sigmas."""

    steps: int = 50
    """number of sampling steps"""
    spacing: Literal["leading", "trailing", "linspace"] = "leading"
    """how the steps pick training timesteps (diffusers' ``timestep_spacing``)"""
    steps_offset: int = 0
    """added to leading timesteps (Stable Diffusion uses 1)"""
    num_train: int = 1000
    """training timesteps of the model"""
    beta_start: float = 0.00085
    """first beta"""
    beta_end: float = 0.012
    """last beta"""
    beta_schedule: BetaSchedule = "scaled_linear"
    """beta curve"""
    zero_terminal_snr: bool = False
    """rescale betas so the last timestep is pure noise (pair with trailing spacing)"""
    final_alpha_one: bool = True
    """end at sigma 0 (diffusers' ``set_alpha_to_one``); otherwise end at timestep 0's sigma"""

    def timesteps(self) -> Int[Tensor, " S"]:
        return ddim_timesteps(self.steps, self.num_train, self.spacing, self.steps_offset)

    def sigmas(self) -> Float[Tensor, " S1"]:
        ab = alpha_bars(self.num_train, self.beta_start, self.beta_end, self.beta_schedule,
                        self.zero_terminal_snr)
        t = self.timesteps()
        if int(t.max()) >= self.num_train or int(t.min()) < 0:
            raise ConfigError(f"DDIM timesteps {t.tolist()[:3]}... leave 0..{self.num_train - 1}; "
                              "lower steps_offset or the step count.")
        final = ab.new_ones(1) if self.final_alpha_one else ab[:1]
        return sigma_from_alpha_bar(torch.cat([ab[t], final])).float()


def shift_flow_time(t: Tensor, shift: float) -> Tensor:
    """SD3/Wan time shift ``t' = shift t / (1 + (shift - 1) t)`` (shift > 1 spends more steps at
    high noise)."""
    return shift * t / (1 + (shift - 1) * t)


@dataclasses.dataclass(frozen=True)
class FlowSchedule:
    """Rectified-flow (flow-matching) times with shift, as VE sigmas."""

    steps: int = 50
    """number of sampling steps"""
    shift: float = 1.0
    """time shift (Wan/WorldWarp: 5, FLUX at 1024px: ~3)"""
    num_train: int = 1000
    """training timesteps; the smallest time is the shifted ``1/num_train`` as in diffusers"""

    def times(self) -> Float[Tensor, " S1"]:
        """The ``S + 1`` flow times ``t`` (the last is 0)."""
        _check_steps(self.steps)
        if self.shift <= 0:
            raise ConfigError(f"flow shift is {self.shift}; use a positive shift (1 = none).")
        t_min = shift_flow_time(torch.tensor(1.0 / self.num_train, dtype=torch.float64), self.shift)
        t = torch.linspace(1.0, float(t_min), self.steps, dtype=torch.float64)
        t = shift_flow_time(t, self.shift)
        return torch.cat([t, t.new_zeros(1)]).float()

    def sigmas(self) -> Float[Tensor, " S1"]:
        t = self.times().double().clamp_max(FLOW_T_MAX)
        return sigma_from_t(t).float()


Schedule = EdmSchedule | DdimSchedule | FlowSchedule


# ---------------------------------------------------------------------------------------------------
# Per-element schedules
# ---------------------------------------------------------------------------------------------------

def start_step_for_strength(steps: int, strength: float) -> int:
    """First step for a given strength in (0, 1]: ``min(floor((1 - strength) S), S - 1)`` (WorldWarp's
    rule, ``minxs = 1 - strength``; the floor forgives float error so 0.8 at 50 steps gives 10, not
    9; strength 1 starts from pure noise)."""
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"strength is {strength}; use a value in (0, 1] (1 = start from pure noise).")
    return min(math.floor((1.0 - strength) * steps + 1e-9), steps - 1)


def frozen_until(sigmas: Float[Tensor, " S1"], start_step: Int[Tensor, "*E"] | int) -> Float[Tensor, "S1 *E"]:
    """Per-element schedule ``sched[m, e] = sigmas[max(m, k_e)]``.

    Element ``e`` sits at ``sigmas[k_e]`` (the sampler leaves it untouched while its sigma does not
    change) until step ``k_e``, then follows the shared schedule. ``k_e = 0`` is ordinary sampling,
    ``k_e = S`` keeps the element clean (``sigmas[S] = 0``) for the whole run."""
    s1 = sigmas.shape[0]
    k = torch.as_tensor(start_step, device=sigmas.device).long()
    if bool((k < 0).any()) or bool((k > s1 - 1).any()):
        raise ConfigError(f"start steps must lie in 0..{s1 - 1}; clamp the per-element start steps.")
    m = torch.arange(s1, device=sigmas.device).view(s1, *([1] * k.ndim))
    return sigmas[torch.maximum(m, k.unsqueeze(0))]


def strength_sigmas(sigmas: Float[Tensor, " S1"], strength: float) -> Float[Tensor, " S2"]:
    """The tail of a schedule for img2img-style sampling from ``x_init + sigma_k eps``."""
    return sigmas[start_step_for_strength(sigmas.shape[0] - 1, strength):]


def fill_and_revise(sigmas: Float[Tensor, " S1"], valid: Tensor, strength: float,
                    context_frames: int = 0) -> Float[Tensor, "S1 B F 1 h w"]:
    """WorldWarp's spatio-temporal schedule (§8.5) for ``valid`` of shape ``[B, F, 1, h, w]``.

    Valid (warped) tokens start at ``sigmas[k]`` with ``k = start_step_for_strength(S, strength)``
    and stay there until step ``k`` ("revise"); holes start from ``sigmas[0]`` ("fill"); the first
    ``context_frames`` latent frames stay clean throughout. Start the sampler from
    ``x_init + sched[0] * eps`` with ``x_init`` the warped latents."""
    if valid.ndim != 5:
        raise ConfigError(f"valid mask has shape {tuple(valid.shape)}; pass it as [B, F, 1, h, w].")
    steps = sigmas.shape[0] - 1
    k = start_step_for_strength(steps, strength)
    start = torch.where(valid.bool(), k, 0).long()
    if context_frames:
        start = start.clone()
        start[:, :context_frames] = steps
    return frozen_until(sigmas, start)


__all__ = [
    "DdimSchedule", "EdmSchedule", "FlowSchedule", "Schedule", "alpha_bars", "ddim_timesteps",
    "fill_and_revise", "frozen_until", "shift_flow_time", "start_step_for_strength", "strength_sigmas",
]
