"""Parameterizations: how each network's raw output and noise process map to the one VE form.

Samplers in vdm3d work in the variance-exploding form ``x = x0 + sigma * eps`` (see
:mod:`vdm3d.protocols`). A backbone trained in another process converts at its own edge with
:func:`ve_to_native`, runs its network, and turns the raw output back into a data-space ``x0`` with
:func:`x0_from_prediction`. Every native process is written as ``x_native = a * x0 + b * eps``:

=========  ======================================  =============================  ========================
process    native input                            native time ``t_native``       ``(a, b)``
=========  ======================================  =============================  ========================
``edm``    ``x`` (preconditioning is separate)     ``sigma``                      ``(1, sigma)``
``vp``     ``x / sqrt(1 + sigma^2)``               ``alpha_bar = 1/(1+sigma^2)``  ``(sqrt ab, sqrt(1-ab))``
``flow``   ``x / (1 + sigma)``                     ``t = sigma / (1 + sigma)``    ``(1 - t, t)``
=========  ======================================  =============================  ========================

Predictions (``raw`` is what the network outputs, in native units):

* ``eps``: the noise; ``x0 = (x_native - b * raw) / a``.
* ``x0``: the data itself.
* ``v``: ``v = a' eps - b' x0`` with ``(a', b') = (a, b) / sqrt(a^2 + b^2)`` (Salimans & Ho). For VP
  this is the usual v; for EDM it is SVD/SV3D's ``VScalingWithEDMcNoise`` (``c_skip = 1/(s^2+1)``,
  ``c_out = -s/sqrt(s^2+1)``); ``x0 = a' x~ - b' v`` with ``x~ = x_native / sqrt(a^2 + b^2)``.
* ``flow``: the rectified-flow velocity ``u = eps - x0``; ``x0 = (x_native - b * u) / (a + b)``,
  which is ``x_native - t u`` for the flow process.

:func:`training_target` is the inverse direction (what the network should output for a given
``(x0, eps)``), used by training code together with :func:`edm_loss_weight`.

Everything is written out by hand because it is a few lines of broadcasting arithmetic on arbitrary
shapes (sigma per batch, frame, or latent pixel) and must stay differentiable.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.errors import ConfigError
from vdm3d.protocols import Prediction, Process


AnyTensor = Float[Tensor, "..."]

#: flow time never reaches exactly 1 in VE form (sigma would be infinite); this caps it.
FLOW_T_MAX = 1.0 - 1e-5


def _as_tensor(value: float | Tensor, like: Tensor | None = None) -> Tensor:
    if isinstance(value, Tensor):
        return align_sigma(value, like) if like is not None else value
    if like is not None:
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return torch.as_tensor(value, dtype=torch.get_default_dtype())


def align_sigma(sigma: AnyTensor, x: AnyTensor) -> AnyTensor:
    """Pad ``sigma`` with trailing singleton dims so it broadcasts to ``x`` *left-aligned*.

    The protocol's noise levels are ``[B]``, ``[B, F]`` or ``[B, F, 1, h, w]`` for a latent
    ``[B, F, C, h, w]``: a ``[B]`` sigma must meet the batch axis, not (as plain broadcasting would
    have it) the last one. Scalars and full-rank tensors pass through unchanged."""
    if sigma.ndim == 0 or sigma.ndim >= x.ndim:
        return sigma
    return sigma.reshape(*sigma.shape, *([1] * (x.ndim - sigma.ndim)))


# ---------------------------------------------------------------------------------------------------
# Noise-level conversions (all elementwise, any shape)
# ---------------------------------------------------------------------------------------------------

def alpha_bar_from_sigma(sigma: AnyTensor) -> AnyTensor:
    """VP signal fraction ``alpha_bar = 1 / (1 + sigma^2)`` for a VE noise level."""
    return 1.0 / (1.0 + sigma * sigma)


def sigma_from_alpha_bar(alpha_bar: AnyTensor) -> AnyTensor:
    """VE noise level ``sigma = sqrt((1 - ab) / ab)`` of a VP ``alpha_bar`` in (0, 1]."""
    return ((1.0 - alpha_bar) / alpha_bar).clamp_min(0.0).sqrt()


def t_from_sigma(sigma: AnyTensor) -> AnyTensor:
    """Rectified-flow time ``t = sigma / (1 + sigma)`` (written ``1 - 1/(1+sigma)`` so that
    ``sigma = inf`` gives ``t = 1`` rather than NaN)."""
    return 1.0 - 1.0 / (1.0 + sigma)


def sigma_from_t(t: AnyTensor) -> AnyTensor:
    """VE noise level ``sigma = t / (1 - t)`` of a flow time ``t`` in [0, 1) (``t = 1`` gives inf)."""
    return t / (1.0 - t)


def native_coefficients(t_native: AnyTensor, process: Process) -> tuple[AnyTensor, AnyTensor]:
    """``(a, b)`` with ``x_native = a * x0 + b * eps`` for the native time of ``process``."""
    if process == "edm":
        return torch.ones_like(t_native), t_native
    if process == "vp":
        return t_native.sqrt(), (1.0 - t_native).clamp_min(0.0).sqrt()
    if process == "flow":
        return 1.0 - t_native, t_native
    raise ConfigError(f"process {process!r} is not one of 'edm', 'vp', 'flow'; pick one of those.")


def ve_to_native(x: AnyTensor, sigma: AnyTensor | float, process: Process) -> tuple[AnyTensor, AnyTensor]:
    """Convert a VE sample ``x = x0 + sigma * eps`` to the native input and time of ``process``.

    * ``edm``: ``(x, sigma)`` (apply :func:`edm_precondition`'s ``c_in`` in the backbone);
    * ``vp``: ``(x / sqrt(1 + sigma^2), alpha_bar)``;
    * ``flow``: ``(x / (1 + sigma), t)``.

    ``sigma`` broadcasts to ``x`` left-aligned (:func:`align_sigma`); the returned time has the
    aligned shape.
    """
    sigma = _as_tensor(sigma, x)
    if process == "edm":
        return x, sigma
    if process == "vp":
        alpha_bar = alpha_bar_from_sigma(sigma)
        return x * alpha_bar.sqrt(), alpha_bar
    if process == "flow":
        return x / (1.0 + sigma), t_from_sigma(sigma)
    raise ConfigError(f"process {process!r} is not one of 'edm', 'vp', 'flow'; pick one of those.")


def native_to_ve(x_native: AnyTensor, t_native: AnyTensor | float,
                 process: Process) -> tuple[AnyTensor, AnyTensor]:
    """Inverse of :func:`ve_to_native`: ``(x, sigma)`` from a native sample and time."""
    t_native = _as_tensor(t_native, x_native)
    if process == "edm":
        return x_native, t_native
    if process == "vp":
        return x_native / t_native.sqrt(), sigma_from_alpha_bar(t_native)
    if process == "flow":
        return x_native / (1.0 - t_native), sigma_from_t(t_native)
    raise ConfigError(f"process {process!r} is not one of 'edm', 'vp', 'flow'; pick one of those.")


def native_scale(sigma: AnyTensor, process: Process) -> AnyTensor:
    """The factor ``c`` with ``x_native = c * x`` (1, ``1/sqrt(1+sigma^2)`` or ``1/(1+sigma)``)."""
    if process == "edm":
        return torch.ones_like(sigma)
    if process == "vp":
        return alpha_bar_from_sigma(sigma).sqrt()
    if process == "flow":
        return 1.0 / (1.0 + sigma)
    raise ConfigError(f"process {process!r} is not one of 'edm', 'vp', 'flow'; pick one of those.")


# ---------------------------------------------------------------------------------------------------
# Raw network output <-> x0
# ---------------------------------------------------------------------------------------------------

def x0_from_prediction(raw: AnyTensor, x_native: AnyTensor, t_native: AnyTensor | float,
                       prediction: Prediction, process: Process) -> AnyTensor:
    """Data-space ``x0`` (the same in every process) from a network's raw output.

    ``raw`` and ``x_native`` are in the native units of ``process`` at native time ``t_native``
    (what :func:`ve_to_native` returned). Differentiable in ``raw`` and ``x_native``.
    """
    t_native = _as_tensor(t_native, x_native)
    a, b = native_coefficients(t_native, process)
    if prediction == "x0":
        return raw
    if prediction == "eps":
        return (x_native - b * raw) / a
    if prediction == "v":
        norm = (a * a + b * b).sqrt()
        return (a * x_native / norm - b * raw) / norm
    if prediction == "flow":
        return (x_native - b * raw) / (a + b)
    raise ConfigError(f"prediction {prediction!r} is not one of 'eps', 'v', 'x0', 'flow'; pick one of those.")


def raw_from_x0(x0: AnyTensor, x_native: AnyTensor, t_native: AnyTensor | float,
                prediction: Prediction, process: Process) -> AnyTensor:
    """The raw output that :func:`x0_from_prediction` maps to ``x0`` at this ``x_native`` (its
    inverse for a fixed input); guiders use it to work in the network's own units (CFG rescale,
    GuidedVD's step size). Undefined at zero noise for every prediction but ``x0``."""
    t_native = _as_tensor(t_native, x_native)
    a, b = native_coefficients(t_native, process)
    if prediction == "x0":
        return x0
    b = b.clamp_min(1e-12)
    if prediction == "eps":
        return (x_native - a * x0) / b
    if prediction == "v":
        norm = (a * a + b * b).sqrt()
        return (a * x_native / norm - norm * x0) / b
    if prediction == "flow":
        return (x_native - (a + b) * x0) / b
    raise ConfigError(f"prediction {prediction!r} is not one of 'eps', 'v', 'x0', 'flow'; pick one of those.")


@dataclasses.dataclass(frozen=True)
class NativeView:
    """One step's sample seen in a backbone's native units, to move predictions between ``x0`` and
    the network's raw output (CFG rescale and GuidedVD's step size are defined on the raw output)."""

    x_native: AnyTensor
    t_native: AnyTensor
    prediction: Prediction
    process: Process

    @classmethod
    def from_ve(cls, x: AnyTensor, sigma: AnyTensor, prediction: Prediction,
                process: Process) -> "NativeView":
        x_native, t_native = ve_to_native(x, sigma, process)
        return cls(x_native, t_native, prediction, process)

    def raw(self, x0: AnyTensor) -> AnyTensor:
        return raw_from_x0(x0, self.x_native, self.t_native, self.prediction, self.process)

    def x0(self, raw: AnyTensor) -> AnyTensor:
        return x0_from_prediction(raw, self.x_native, self.t_native, self.prediction, self.process)


def training_target(x0: AnyTensor, eps: AnyTensor, sigma: AnyTensor | float,
                    prediction: Prediction, process: Process) -> AnyTensor:
    """What a network of ``(prediction, process)`` should output for ``x = x0 + sigma * eps``.

    The inverse of :func:`x0_from_prediction`: feeding this target back as ``raw`` recovers ``x0``.
    """
    sigma = _as_tensor(sigma, x0)
    _, t_native = ve_to_native(x0, sigma, process)
    a, b = native_coefficients(t_native, process)
    if prediction == "x0":
        return x0.expand(torch.broadcast_shapes(x0.shape, eps.shape))
    if prediction == "eps":
        return eps.expand(torch.broadcast_shapes(x0.shape, eps.shape))
    if prediction == "v":
        norm = (a * a + b * b).sqrt()
        return (a * eps - b * x0) / norm
    if prediction == "flow":
        return eps - x0
    raise ConfigError(f"prediction {prediction!r} is not one of 'eps', 'v', 'x0', 'flow'; pick one of those.")


# ---------------------------------------------------------------------------------------------------
# EDM preconditioning and loss weighting
# ---------------------------------------------------------------------------------------------------

def edm_precondition(sigma: AnyTensor, sigma_data: float = 1.0, kind: Literal["v", "eps", "edm"] = "v"
                     ) -> tuple[AnyTensor, AnyTensor, AnyTensor, AnyTensor]:
    """``(c_skip, c_out, c_in, c_noise)`` so that ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)``.

    * ``v``: SVD/SV3D's ``VScalingWithEDMcNoise`` (``F`` predicts v): ``c_skip = sd^2/(s^2+sd^2)``,
      ``c_out = -s sd/sqrt(s^2+sd^2)``, ``c_in = 1/sqrt(s^2+sd^2)``, ``c_noise = ln(s)/4``
      (with ``sd = 1``: ``1/(s^2+1)``, ``-s/sqrt(s^2+1)``, ``1/sqrt(s^2+1)``).
    * ``eps``: ``c_skip = 1``, ``c_out = -s``, ``c_in = 1/sqrt(s^2+sd^2)``, ``c_noise = s``
      (sgm's ``EpsScaling``).
    * ``edm``: Karras et al. (2022): as ``v`` but ``c_out = +s sd/sqrt(s^2+sd^2)``.
    """
    s2 = sigma * sigma
    sd2 = sigma_data * sigma_data
    root = (s2 + sd2).sqrt()
    c_in = 1.0 / root
    if kind == "v" or kind == "edm":
        c_skip = sd2 / (s2 + sd2)
        c_out = sigma * sigma_data / root
        if kind == "v":
            c_out = -c_out
        c_noise = 0.25 * sigma.clamp_min(1e-20).log()
        return c_skip, c_out, c_in, c_noise
    if kind == "eps":
        return torch.ones_like(sigma), -sigma, c_in, sigma.clone()
    raise ConfigError(f"edm_precondition kind {kind!r} is not one of 'v', 'eps', 'edm'; pick one of those.")


def edm_loss_weight(sigma: AnyTensor, sigma_data: float = 1.0) -> AnyTensor:
    """Karras/sgm ``EDMWeighting``: ``(s^2 + sd^2) / (s sd)^2`` for an MSE on the denoised ``x0``.

    With ``v`` or ``edm`` preconditioning this equals ``1 / c_out^2``, i.e. a unit weight on the raw
    network output (:func:`training_target`)."""
    sd2 = sigma_data * sigma_data
    return (sigma * sigma + sd2) / (sigma * sigma * sd2)


def edm_training_sigmas(n: int, *, p_mean: float = -1.2, p_std: float = 1.2,
                        generator: torch.Generator | None = None,
                        device: torch.device | str | None = None) -> Float[Tensor, " n"]:
    """Log-normal training noise levels ``ln sigma ~ N(p_mean, p_std^2)`` (Karras et al.; SVD uses
    ``p_mean=0.7, p_std=1.6``, V3D's config ``1.5, 2.0``)."""
    z = torch.randn(n, generator=generator, device=device)
    return (p_mean + p_std * z).exp()


__all__ = [
    "FLOW_T_MAX", "NativeView", "Prediction", "Process", "align_sigma", "alpha_bar_from_sigma",
    "edm_loss_weight",
    "edm_precondition", "edm_training_sigmas", "native_coefficients", "native_scale", "native_to_ve",
    "raw_from_x0", "sigma_from_alpha_bar", "sigma_from_t", "t_from_sigma",
    "training_target", "ve_to_native", "x0_from_prediction",
]
