"""Fit Gaussians to Views: the one optimization loop every job uses (fit, object, complete, explore).

One step picks one view (epochs of a seeded random order), optionally a random patch of it, renders
it, and takes an Adam step on the weighted sum of the loss terms in :mod:`vdm3d.recon.losses`:

``(1 - ssim_weight) L1 + ssim_weight D-SSIM + perceptual + depth + alpha + opacity``

* **Per-view weights.** A view's weight comes from its ``origin`` (``input_weight``,
  ``generated_weight``, ``rendered_weight``) unless ``view_weights`` are given, and is multiplied
  per pixel by ``Views.confidence`` when present, so a generated view only teaches where it is trusted.
* **Masks.** ``Views.alphas`` are foreground masks: the target is composited over the step's
  background and the render uses the same background, so empty space has to become transparent;
  ``alpha_weight`` adds a direct L1 on the rendered coverage.
* **Per-parameter learning rates** as in 3DGS; the means' rate is relative to the scene scale and
  decays exponentially to ``means_final``. SH bands are switched on one degree every
  ``sh_warmup_every`` steps.
* **Density control** by :class:`vdm3d.splat.strategy.DensifyPolicy` with its explicit state.
* **Resume.** :class:`FitState` (parameters, Adam moments, strategy state, random generator, step)
  is handed to ``on_checkpoint`` every ``checkpoint_every`` steps and can be saved with
  :func:`vdm3d.recon.checkpoint.save_state`; passing it back as ``state`` continues the run exactly
  where it stopped (the same numbers as an uninterrupted run).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.errors import ConfigError
from vdm3d.metrics.image import WINDOW, psnr
from vdm3d.recon import losses
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.render import render
from vdm3d.splat.strategy import DensifyPolicy
from vdm3d.views import Views


@dataclasses.dataclass(frozen=True)
class LearningRates:
    """Adam learning rates per parameter kind (3DGS defaults)."""

    lr_means: float = 1.6e-4
    """Initial rate of the centers, times the scene scale."""
    lr_means_final: float = 1.6e-6
    """Final rate of the centers (exponential decay over the run), times the scene scale."""
    lr_quats: float = 1e-3
    """Rate of the rotation quaternions."""
    lr_scales: float = 5e-3
    """Rate of the log-scales."""
    lr_opacity: float = 5e-2
    """Rate of the opacity logits."""
    lr_sh_dc: float = 2.5e-3
    """Rate of the SH DC (base color) coefficients."""
    lr_sh_rest: float = 2.5e-3 / 20
    """Rate of the higher SH bands."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How Gaussians are fitted to views."""

    steps: int = 3000
    """Optimizer steps (one view per step)."""
    lr: LearningRates = LearningRates()
    ssim_weight: float = 0.2
    """lambda of (1 - lambda) L1 + lambda D-SSIM."""
    perceptual_weight: float = 0.0
    """Weight of the perceptual term (1 - MS-SSIM unless a perceptual callable is given)."""
    depth_weight: float = 0.0
    """Weight of the depth term (used for views that carry depths)."""
    depth_mode: Literal["l1", "pearson"] = "l1"
    """l1 for metric depth, pearson for depth known up to scale and shift."""
    alpha_weight: float = 0.0
    """Weight of the L1 between rendered coverage and Views.alphas."""
    opacity_weight: float = 0.0
    """Weight of the mean-opacity regularizer."""
    sh_degree: int = 3
    """Final spherical-harmonics degree."""
    sh_warmup_every: int = 1000
    """Steps between enabling one more SH degree (0: all degrees from the start)."""
    background: Literal["black", "white", "random"] = "black"
    """Background behind the Gaussians during training (random: a new color each step)."""
    input_weight: float = 1.0
    """Loss weight of views whose origin is input."""
    generated_weight: float = 1.0
    """Loss weight of views whose origin is generated."""
    rendered_weight: float = 1.0
    """Loss weight of views whose origin is rendered."""
    patch_size: int | None = None
    """Train on random square patches of this size (fewer pixels per step; None: whole images)."""
    densify: DensifyPolicy = DensifyPolicy()
    scene_scale: float | None = None
    """Scene radius for learning rates and size thresholds (None: from the cameras)."""
    backend: Literal["auto", "torch_ref", "torch", "numba", "gsplat"] = "auto"
    """Renderer backend."""
    checkpoint_every: int = 0
    """Steps between checkpoints handed to on_checkpoint (0: none)."""
    seed: int = 0


@dataclasses.dataclass
class FitState:
    """Everything needed to continue a fit: the step to run next and the optimizer's world."""

    step: int
    params: dict[str, Tensor]
    moments: dict[str, dict[str, Tensor]]
    strategy: dict
    generator: Tensor
    scene_scale: float


@dataclasses.dataclass(frozen=True)
class FitProgress:
    """What the progress callback sees after each step."""

    step: int
    steps: int
    loss: float
    psnr: float
    num_gaussians: int
    report: dict


def view_weights_from_origin(views: Views, config: FitConfig) -> Float[Tensor, " N"]:
    by_origin = {"input": config.input_weight, "generated": config.generated_weight,
                 "rendered": config.rendered_weight}
    return torch.tensor([by_origin[o] for o in views.origin], dtype=views.images.dtype)


def scene_scale_of(cameras_centers: Float[Tensor, "N 3"], means: Float[Tensor, "M 3"]) -> float:
    """1.1 times the largest camera distance from the rig's center (3DGS); for a single camera
    position, half the median distance from the camera to the Gaussians."""
    center = cameras_centers.mean(0)
    radius = float((cameras_centers - center).norm(dim=-1).max()) * 1.1
    if radius > 1e-6 or len(means) == 0:
        return max(radius, 1e-6)
    return max(0.5 * float((means - center).norm(dim=-1).median()), 1e-6)


def _optimizer(params: dict[str, nn.Parameter], lr: LearningRates, scene_scale: float) -> torch.optim.Adam:
    rates = {"means": lr.lr_means * scene_scale, "quats": lr.lr_quats, "log_scales": lr.lr_scales,
             "opacity_logits": lr.lr_opacity, "sh_dc": lr.lr_sh_dc, "sh_rest": lr.lr_sh_rest}
    return torch.optim.Adam([{"params": [p], "name": k, "lr": rates[k]} for k, p in params.items()], eps=1e-15)


def _means_lr(config: FitConfig, scene_scale: float, step: int) -> float:
    t = min(step / max(config.steps, 1), 1.0)
    lo, hi = config.lr.lr_means_final, config.lr.lr_means
    return scene_scale * math.exp((1 - t) * math.log(hi) + t * math.log(lo))


def _background(config: FitConfig, generator: torch.Generator, dtype) -> Tensor:
    if config.background == "random":
        return torch.rand(3, generator=generator).to(dtype)
    return torch.full((3,), 1.0 if config.background == "white" else 0.0, dtype=dtype)


def fit_gaussians(views: Views | Sequence[Views], init: Gaussians, config: FitConfig = FitConfig(), *,
                  view_weights: Sequence[Tensor] | Tensor | None = None,
                  perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
                  progress: Callable[[FitProgress], None] | None = None,
                  state: FitState | None = None,
                  on_checkpoint: Callable[[FitState], None] | None = None) -> Gaussians:
    """Optimize ``init`` so that its renders match ``views`` (one Views, or several of other sizes).

    ``view_weights`` (one ``[N]`` tensor per Views) override the origin-based weights;
    ``perceptual(pred, target) -> scalar`` replaces 1 - MS-SSIM as the perceptual term; ``state``
    continues an earlier run (then ``init`` only gives the device and dtype).
    """
    groups = [views] if isinstance(views, Views) else list(views)
    if not groups or any(len(v) == 0 for v in groups):
        raise ConfigError("fit_gaussians: no views to fit; pass at least one view.")
    if view_weights is None:
        weights = [view_weights_from_origin(v, config) for v in groups]
    else:
        weights = [view_weights] if torch.is_tensor(view_weights) else list(view_weights)
    if config.patch_size is not None and config.patch_size < WINDOW:
        raise ConfigError(f"fit: patch_size must be at least {WINDOW} pixels (the SSIM window), got {config.patch_size}.")
    index = [(g, i) for g, v in enumerate(groups) for i in range(len(v))]
    dtype, device = init.dtype, init.device

    generator = torch.Generator().manual_seed(config.seed)
    if state is None:
        start = init.with_sh_degree(config.sh_degree)
        centers = torch.cat([v.cameras.centers.reshape(-1, 3) for v in groups]).to(dtype)
        scene_scale = config.scene_scale or scene_scale_of(centers, start.means.detach())
        params = {k: nn.Parameter(v) for k, v in start.parameters().items()}
        optimizer = _optimizer(params, config.lr, scene_scale)
        strategy = config.densify.initial_state(len(start), scene_scale, device)
        first = 0
    else:
        scene_scale, first = state.scene_scale, state.step
        params = {k: nn.Parameter(v.to(device=device, dtype=dtype).clone()) for k, v in state.params.items()}
        optimizer = _optimizer(params, config.lr, scene_scale)
        for name, p in params.items():
            if state.moments.get(name):
                optimizer.state[p] = {k: v.clone() for k, v in state.moments[name].items()}
        strategy = dict(state.strategy)
        generator.set_state(state.generator)

    for step in range(first, config.steps):
        g, i = index[_epoch_order(len(index), step // len(index), config.seed)[step % len(index)]]
        view = groups[g][i].to(device)
        w_view = float(weights[g][i])
        bg = _background(config, generator, dtype).to(device)
        image, cams, alpha, depth, conf = _crop(view, config.patch_size, generator)
        target = image if alpha is None else image * alpha[..., None] + bg * (1 - alpha[..., None])
        pixel_w = torch.full(target.shape[:-1], w_view, dtype=dtype, device=device) if conf is None else w_view * conf

        for group in optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = _means_lr(config, scene_scale, step)
        active_sh = config.sh_degree if config.sh_warmup_every <= 0 else min(config.sh_degree,
                                                                               step // config.sh_warmup_every)
        gaussians = Gaussians.from_parameters(params)
        out = render(gaussians, cams.to(device=device, dtype=dtype), backend=config.backend, sh_degree=active_sh,
                     background=bg)
        pred = out.rgb
        loss = (1 - config.ssim_weight) * losses.l1_loss(pred, target, pixel_w)
        if config.ssim_weight > 0:
            loss = loss + config.ssim_weight * losses.dssim_loss(pred, target, pixel_w)
        if config.perceptual_weight > 0:
            term = perceptual(pred, target) if perceptual else losses.ms_ssim_loss(pred, target, pixel_w)
            loss = loss + config.perceptual_weight * w_view * term
        if config.depth_weight > 0 and depth is not None:
            loss = loss + config.depth_weight * losses.depth_loss(out.depth, depth, pixel_w, config.depth_mode)
        if config.alpha_weight > 0 and alpha is not None:
            loss = loss + config.alpha_weight * losses.alpha_loss(out.alpha, alpha, pixel_w)
        if config.opacity_weight > 0:
            loss = loss + config.opacity_weight * losses.opacity_loss(params["opacity_logits"])
        loss.backward()

        if out.means2d.grad is not None:
            # gradients of a mean over a patch are larger by (image area / patch area): undo that, so
            # the densification threshold means the same with and without patches
            area = (cams.width * cams.height) / (view.width * view.height)
            strategy = config.densify.accumulate(strategy, out.means2d.grad * area, out.radii,
                                                 view.width, view.height)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        strategy, report = config.densify.step(params, optimizer, strategy, step, generator)

        if progress is not None:
            with torch.no_grad():
                p = float(psnr(pred.detach().clamp(0, 1), target).mean())
            progress(FitProgress(step + 1, config.steps, float(loss.detach()), p, len(params["means"]), report))
        done = step + 1
        if on_checkpoint is not None and config.checkpoint_every > 0 and (
                done % config.checkpoint_every == 0 or done == config.steps):
            on_checkpoint(_snapshot(done, params, optimizer, strategy, generator, scene_scale))
    return Gaussians.from_parameters({k: v.detach() for k, v in params.items()})


def _snapshot(step: int, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer, strategy: dict,
              generator: torch.Generator, scene_scale: float) -> FitState:
    moments = {name: {k: v.detach().clone() for k, v in optimizer.state.get(p, {}).items()}
               for name, p in params.items()}
    return FitState(step, {k: v.detach().clone() for k, v in params.items()}, moments,
                    {k: (v.clone() if torch.is_tensor(v) else v) for k, v in strategy.items()},
                    generator.get_state(), scene_scale)


def _epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    """A random order of the views per epoch, a pure function of (seed, epoch) so resuming is exact."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def _crop(view: Views, size: int | None, generator: torch.Generator):
    """The view's tensors with a batch axis, cut to a random ``size`` x ``size`` patch if asked."""
    image, cams = view.images, view.cameras
    maps = [view.alphas, view.depths, view.confidence]
    if size is None or (size >= view.width and size >= view.height):
        return (image, cams, *maps)
    w, h = min(size, view.width), min(size, view.height)
    left = int(torch.randint(0, view.width - w + 1, (1,), generator=generator))
    top = int(torch.randint(0, view.height - h + 1, (1,), generator=generator))
    cut = lambda t: None if t is None else t[:, top:top + h, left:left + w]  # noqa: E731
    return (cut(image), cams.crop(left, top, w, h), *(cut(m) for m in maps))
