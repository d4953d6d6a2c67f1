"""One sampler loop for Euler-EDM, DDIM (with eta) and flow-matching Euler, with per-element noise.

In the VE form ``x = x0 + sigma eps`` (:mod:`vdm3d.protocols`) the three samplers are one
update. With ``x0 = D(x, sigma)`` and ``eps = (x - x0) / sigma``, a step from ``sigma`` to ``sigma'``
is::

    noise = eta * sigma' * sqrt(1 - sigma'^2 / sigma^2)          # DDIM's sigma_t, in VE units
    x'    = x0 + sqrt(sigma'^2 - noise^2) * eps + noise * z      # z ~ N(0, I) from the generator

* ``eta = 0`` is EDM's Euler step (SV3D/SVD, ``s_churn = 0``), deterministic DDIM, and the
  flow-matching Euler step ``x_t' = x_t + (t' - t) v`` (divide by ``1 + sigma`` to see it);
* ``eta = 1`` is DDPM's ancestral step. Written for VP, DDIM's
  ``x_{t-1} = sqrt(ab') x0 + sqrt(1 - ab' - s^2) eps + s z`` divided by ``sqrt(ab')`` is exactly the
  line above, so the loop is DDIM for any process; only the schedule differs
  (:mod:`vdm3d.diffusion.schedules`).

Noise levels may differ per batch item, frame and latent pixel: the schedule has shape
``[S + 1, *E]`` with ``E`` left-aligned to the latent ``[B, F, C, h, w]``. An element whose sigma does
not change at a step is left bitwise untouched (WorldWarp's frozen tokens, clean context frames);
an element whose sigma *rises* is re-noised with fresh noise of variance ``sigma'^2 - sigma^2``.
A step where every element is frozen skips the denoiser.

Guidance cost: where the guider is active, the conditional and unconditional branches run in one
denoiser call on the batch ``[x; x]`` when the backbone can join its encoded conditions
(``backbone.concat_conditions(conds, batch)``, see :mod:`vdm3d.models.batching`) and the latents are
on an accelerator (on CPU two calls measured faster), else in two calls;
where no step is guided (no guider, a window that excludes every step, or every frame's weight 1)
the unconditional branch is neither encoded nor evaluated.

The loop calls the backbone only through the protocol, takes a ``torch.Generator``, never edits its
inputs in place, calls step hooks (:mod:`vdm3d.diffusion.hooks`) and reports progress through a
callable ``progress(done_steps, total_steps)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.diffusion.guiders import Guider
from vdm3d.diffusion.hooks import StepHook, StepState
from vdm3d.diffusion.parameterizations import NativeView, align_sigma
from vdm3d.diffusion.schedules import DdimSchedule, EdmSchedule, FlowSchedule
from vdm3d.errors import ConfigError, InputError, raise_if_interrupted
from vdm3d.options import Range
from vdm3d.protocols import Conditioning

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """A schedule plus the stochasticity of the shared update."""

    schedule: EdmSchedule | DdimSchedule | FlowSchedule = EdmSchedule()
    """where the noise levels come from (EDM Karras, DDPM alpha-bar, shifted flow)"""
    eta: Annotated[float, Range(0, 1)] = 0.0
    """DDIM eta: 0 = deterministic (Euler/DDIM/flow Euler), 1 = ancestral (DDPM)"""
    sigma_data: Annotated[float, Range(0, open_min=True)] = 1.0
    """data standard deviation assumed for the starting noise ``sqrt(sigma_0^2 + sigma_data^2) eps``"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"sampler eta is {self.eta}; use a value in [0, 1].")

    def sigmas(self) -> Float[Tensor, " S1"]:
        return self.schedule.sigmas()


#: name -> (description, config): the published samplers.
SAMPLERS: dict[str, tuple[str, SamplerConfig]] = {
    "euler_edm": ("SV3D/SVD: Euler on EDM sigmas 0.002-700, rho 7, 50 steps",
                  SamplerConfig(EdmSchedule(50, 0.002, 700.0, 7.0))),
    "ddim": ("ViewCrafter/GuidedVD: DDIM eta 1, 50 trailing steps, SD betas rescaled to zero terminal SNR",
             SamplerConfig(DdimSchedule(50, "trailing", zero_terminal_snr=True), eta=1.0)),
    "ddim_leading": ("Stable Diffusion: DDIM eta 0, 50 leading steps (offset 1), SD betas",
                     SamplerConfig(DdimSchedule(50, "leading", steps_offset=1), eta=0.0)),
    "flow_euler": ("Wan/WorldWarp: flow-matching Euler, shift 5, 50 steps",
                   SamplerConfig(FlowSchedule(50, shift=5.0))),
}


def _backbone_sigma(row: Tensor, batch: int, per_element: bool, name: str) -> Tensor:
    """The compact sigma handed to ``denoise``: ``[B]`` when uniform over non-batch axes, else the
    schedule's own left-aligned shape with the batch axis expanded (needs ``per_element_sigma``)."""
    if row.ndim == 0:
        return row.expand(batch)
    flat = row.reshape(row.shape[0], -1)
    if bool((flat == flat[:, :1]).all()):
        return flat[:, 0].expand(batch)
    if not per_element:
        raise ConfigError(f"backbone {name!r} does not accept per-frame or per-token noise levels; use a "
                          "uniform schedule or a backbone with per_element_sigma.")
    return row.expand(batch, *row.shape[1:])


def _check_inputs(sched: Tensor, x_like: Tensor) -> None:
    if sched.ndim < 1 or sched.shape[0] < 2:
        raise ConfigError(f"the schedule has shape {tuple(sched.shape)}; it needs S + 1 >= 2 noise levels "
                          "along its first axis.")
    if not bool(torch.isfinite(sched).all()) or bool((sched < 0).any()):
        raise ConfigError("the schedule holds negative or non-finite noise levels; fix the sigmas.")
    e = sched.shape[1:]
    if len(e) > x_like.ndim or any(a not in (1, b) for a, b in zip(e, x_like.shape)):
        raise ConfigError(f"per-element schedule shape {tuple(e)} does not left-align with the latent "
                          f"shape {tuple(x_like.shape)}; use [B], [B, F] or [B, F, 1, h, w].")


def _start(sigmas: Tensor, shape: Sequence[int] | None, x_init: Tensor | None, noise: Tensor | None,
           generator: torch.Generator | None, sigma_data: float) -> tuple[Tensor, Tensor, Tensor]:
    """Validate the inputs; return the schedule (on the latents' device/dtype), the starting sample
    and the unit starting noise."""
    given = x_init if x_init is not None else noise
    if shape is None:
        if given is None:
            raise ConfigError("sample() needs the latent shape: pass shape, x_init or noise.")
        shape = tuple(given.shape)
    shape = tuple(int(v) for v in shape)
    device = given.device if given is not None else torch.as_tensor(sigmas).device
    dtype = given.dtype if given is not None else torch.get_default_dtype()
    sched = torch.as_tensor(sigmas).to(device=device, dtype=dtype)
    proto = torch.empty(shape, device=device, dtype=dtype)
    _check_inputs(sched, proto)
    for label, t in (("starting noise", noise), ("x_init", x_init)):
        if t is not None and tuple(t.shape) != shape:
            raise InputError(f"{label} has shape {tuple(t.shape)}, expected {shape}; match the latents.")
    if noise is None:
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    sigma0 = align_sigma(sched[0], proto)
    if x_init is not None:
        return sched, x_init + sigma0 * noise, noise
    if bool((sched[0] != sched[0].max()).any()):
        raise ConfigError("the schedule starts at different noise levels per element; pass x_init "
                          "with the clean latents those elements start from.")
    return sched, torch.sqrt(sigma0 * sigma0 + sigma_data * sigma_data) * noise, noise


def _join_branches(backbone: Any, cond_enc: Any, uncond_enc: Any, batch: int) -> Any | None:
    """The two encoded CFG branches as one condition for a ``2B`` batch, or ``None`` (two calls)."""
    join = getattr(backbone, "concat_conditions", None)
    return None if join is None else join([cond_enc, uncond_enc], batch)


def _denoise_branches(backbone: Any, x: Tensor, sigma: Tensor, cond_enc: Any, uncond_enc: Any,
                      joined: Any | None) -> tuple[Tensor, Tensor]:
    """``(x0_cond, x0_uncond)``: one call on ``[x; x]`` with the joined condition, else two calls."""
    if joined is None:
        return backbone.denoise(x, sigma, cond_enc), backbone.denoise(x, sigma, uncond_enc)
    both = backbone.denoise(torch.cat([x, x]), torch.cat([sigma, sigma]), joined)
    x0_cond, x0_uncond = both.chunk(2)
    return x0_cond, x0_uncond


def sample(backbone: Any, sigmas: Tensor, *, cond: Conditioning | None = None,
           shape: Sequence[int] | None = None, x_init: Tensor | None = None, noise: Tensor | None = None,
           generator: torch.Generator | None = None, guider: Guider | None = None,
           hooks: Sequence[StepHook] = (), eta: float = 0.0, sigma_data: float = 1.0,
           progress: Progress | None = None, batch_guidance: bool | None = None,
           step_noise: Callable[[int], Tensor] | None = None) -> Tensor:
    """Run the shared loop and return the final sample (clean where the schedule ends at 0).

    Args:
        backbone: a :class:`~vdm3d.protocols.Backbone`.
        sigmas: ``[S + 1]`` or per-element ``[S + 1, *E]`` VE noise levels.
        cond: the condition (``None``: an empty :class:`Conditioning`).
        shape: latent shape ``[B, F, C, h, w]`` when neither ``x_init`` nor ``noise`` gives it.
        x_init: clean latents to start from: ``x = x_init + sigma_0 * noise`` (strength, context
            frames, fill-and-revise). Without it ``x = sqrt(sigma_0^2 + sigma_data^2) * noise``.
        noise: the unit starting noise (e.g. flow-warped noise); drawn from ``generator`` if absent.
        generator: the only source of randomness.
        guider: e.g. :class:`~vdm3d.diffusion.guiders.CFG`; ``None`` = conditional only.
        hooks: step hooks, applied in order.
        eta: DDIM eta (0 deterministic, 1 ancestral).
        progress: called as ``progress(done, total)`` after every step.
        batch_guidance: run both CFG branches in one denoiser call where the backbone can join its
            conditions; ``None`` (default): on accelerators only. On CPU a batch of ``2B`` measured
            slower than two calls of ``B`` (``benchmarks/sampling.py``, table 4: oneDNN convolutions
            and matmuls lose cache locality), so two calls stay the CPU default.
        step_noise: ``step_noise(m)`` is the unit noise ``z`` that step ``m`` adds (where ``eta > 0`` or a
            sigma rises), e.g. a new flow-warped field each step; ``None``: drawn from ``generator``.
    """
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"sampler eta is {eta}; use a value in [0, 1].")
    sched, x, noise = _start(sigmas, shape, x_init, noise, generator, sigma_data)
    shape = tuple(x.shape)
    steps = sched.shape[0] - 1

    cond = cond if cond is not None else Conditioning()
    cond_enc = backbone.condition(cond)
    frames = shape[1] if len(shape) >= 3 else None  # the guider's weights are per latent frame
    guided_steps = [guider is not None and guider.active(m, steps, frames) for m in range(steps)]
    uncond_enc = backbone.condition(cond, null=True) if any(guided_steps) else None
    if batch_guidance is None:  # one call on a 2B batch where the backbone runs on a GPU (its --device)
        batch_guidance = getattr(backbone, "device", x.device).type != "cpu"
    joined = (_join_branches(backbone, cond_enc, uncond_enc, shape[0])
              if any(guided_steps) and batch_guidance else None)
    per_element = bool(getattr(backbone, "per_element_sigma", False))
    name = getattr(backbone, "name", type(backbone).__name__)

    for m in range(steps):
        raise_if_interrupted()
        s = align_sigma(sched[m], x)
        s_next = align_sigma(sched[m + 1], x)
        frozen = s_next == s
        if bool(frozen.all()):
            if progress is not None:
                progress(m + 1, steps)
            continue
        x_start = x
        base = dict(step=m, steps=steps, sigma=s, sigma_next=s_next, noise=noise, backbone=backbone,
                    cond=cond_enc, uncond=uncond_enc, generator=generator)
        for hook in hooks:
            new = hook.before_denoise(StepState(x=x, **base))
            x = new if new is not None else x

        want_grad = any(h.wants_grad(m, steps) for h in hooks)
        x_in = x.detach().requires_grad_(True) if want_grad else x
        sigma_bb = _backbone_sigma(sched[m], shape[0], per_element, name)
        guided = guided_steps[m]
        with torch.set_grad_enabled(want_grad):
            if guided:
                x0_cond, x0_uncond = _denoise_branches(backbone, x_in, sigma_bb, cond_enc, uncond_enc, joined)
            else:
                x0_cond, x0_uncond = backbone.denoise(x_in, sigma_bb, cond_enc), None
            if guided:
                native = NativeView.from_ve(x_in.detach(), s, backbone.prediction, backbone.process)
                x0 = guider.combine(x0_cond, x0_uncond, native)
            else:
                x0 = x0_cond
            x_next = _update(x_in.detach(), x0.detach(), s, s_next, eta, generator,
                             None if step_noise is None else lambda: step_noise(m))

        for hook in hooks:
            state = StepState(x=x_in, x0=x0, x0_cond=x0_cond, x0_uncond=x0_uncond, x_next=x_next, **base)
            new = hook.after_step(state)
            x_next = new if new is not None else x_next
        x = torch.where(frozen, x_start, x_next.detach()) if bool(frozen.any()) else x_next.detach()
        if progress is not None:
            progress(m + 1, steps)
    return x


def _update(x: Tensor, x0: Tensor, s: Tensor, s_next: Tensor, eta: float,
            generator: torch.Generator | None, draw: Callable[[], Tensor] | None = None) -> Tensor:
    """The shared DDIM/Euler step from ``s`` to ``s_next`` (elementwise; see the module docstring);
    ``draw()`` gives the step's unit noise instead of the generator."""
    safe = torch.where(s > 0, s, torch.ones_like(s))
    eps = torch.where(s > 0, (x - x0) / safe, torch.zeros_like(x))
    ratio = (s_next / safe).clamp(max=1.0)
    rises = s_next > s
    need_z = eta > 0 or bool(rises.any())
    z = None
    if need_z:
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if draw is None else draw()
        if tuple(z.shape) != tuple(x.shape):
            raise InputError(f"step noise has shape {tuple(z.shape)}, expected {tuple(x.shape)}; match the latents.")
    if eta > 0:
        std = eta * s_next * (1.0 - ratio * ratio).clamp_min(0.0).sqrt()
        det = (s_next * s_next - std * std).clamp_min(0.0).sqrt()
        down = x0 + det * eps + std * z
    else:
        down = x0 + s_next * eps
    if not bool(rises.any()):
        return down
    up = x + (s_next * s_next - s * s).clamp_min(0.0).sqrt() * z
    return torch.where(rises, up, down)


def sample_with(config: SamplerConfig, backbone: Any, **kwargs: Any) -> Tensor:
    """:func:`sample` with the schedule and eta of a :class:`SamplerConfig`."""
    return sample(backbone, config.sigmas(), eta=config.eta, sigma_data=config.sigma_data, **kwargs)


__all__ = ["SAMPLERS", "Progress", "SamplerConfig", "sample", "sample_with"]
