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
* **Extra view pools** (:class:`ViewPool`): beside the step's training view, one view of each pool is
  drawn per step (pseudo views of a generative prior, say) and fitted with the pool's own loss weights
  (e.g. ``0.05 L1 + 0.005 perceptual``), per-view weights and confidence maps; its screen-space
  gradients feed densification too unless the pool says otherwise. ``between_steps`` may replace
  the pools before any step (a distillation loop regenerating its pseudo views from the current fit).
* **Growing from outside**: ``grow(step)`` runs before each step (after ``between_steps``)
  and may return Gaussians to append (zero Adam moments, no gradient statistics yet), e.g. points a
  generated view adds to the scene's holes.
* **Extra loss terms**: callables of a :class:`StepContext` (the differentiable Gaussians of the step,
  its background, SH degree and random generator) returning a scalar that is added to the loss, so a
  score-distillation prior runs in this loop instead of a second optimizer loop.
* **Resume.** :class:`FitState` (parameters, Adam moments, strategy state, random generator, step)
  is handed to ``on_checkpoint`` every ``checkpoint_every`` steps and can be saved with
  :func:`vdm3d.recon.checkpoint.save_state`; passing it back as ``state`` continues the run exactly
  where it stopped (the same numbers as an uninterrupted run). Pools and extra terms are the
  caller's: pass the same ones again (``between_steps`` is called at the resumed step).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Callable, Literal, NamedTuple, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError, raise_if_interrupted
from vdm3d.metrics.image import WINDOW, psnr
from vdm3d.options import SEED, Range, check_options
from vdm3d.recon import losses
from vdm3d.recon.adam import Adam
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.render import RenderOutput, render
from vdm3d.splat.strategy import DensifyPolicy
from vdm3d.views import Views


@dataclasses.dataclass(frozen=True)
class LearningRates:
    """Adam learning rates per parameter kind (3DGS defaults)."""

    lr_means: Annotated[float, Range(0)] = 1.6e-4
    """Initial rate of the centers, times the scene scale."""
    lr_means_final: Annotated[float, Range(0)] = 1.6e-6
    """Final rate of the centers (exponential decay over the run), times the scene scale."""
    lr_quats: Annotated[float, Range(0)] = 1e-3
    """Rate of the rotation quaternions."""
    lr_scales: Annotated[float, Range(0)] = 5e-3
    """Rate of the log-scales."""
    lr_opacity: Annotated[float, Range(0)] = 5e-2
    """Rate of the opacity logits."""
    lr_sh_dc: Annotated[float, Range(0)] = 2.5e-3
    """Rate of the SH DC (base color) coefficients."""
    lr_sh_rest: Annotated[float, Range(0)] = 2.5e-3 / 20
    """Rate of the higher SH bands."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How Gaussians are fitted to views."""

    steps: Annotated[int, Range(1)] = 3000
    """Optimizer steps (one view per step)."""
    lr: LearningRates = LearningRates()
    ssim_weight: Annotated[float, Range(0, 1)] = 0.2
    """lambda of (1 - lambda) L1 + lambda D-SSIM."""
    perceptual_weight: Annotated[float, Range(0)] = 0.0
    """Weight of the perceptual term (1 - MS-SSIM unless a perceptual callable is given)."""
    depth_weight: Annotated[float, Range(0)] = 0.0
    """Weight of the depth term (used for views that carry depths)."""
    depth_mode: Literal["l1", "pearson"] = "l1"
    """l1 for metric depth, pearson for depth known up to scale and shift."""
    alpha_weight: Annotated[float, Range(0)] = 0.0
    """Weight of the L1 between rendered coverage and Views.alphas."""
    opacity_weight: Annotated[float, Range(0)] = 0.0
    """Weight of the mean-opacity regularizer."""
    sh_degree: Annotated[int, Range(0, 3)] = 3
    """Final spherical-harmonics degree."""
    sh_warmup_every: Annotated[int, Range(0)] = 1000
    """Steps between enabling one more SH degree (0: all degrees from the start)."""
    background: Literal["black", "white", "random"] = "black"
    """Background behind the Gaussians during training (random: a new color each step)."""
    input_weight: Annotated[float, Range(0)] = 1.0
    """Loss weight of views whose origin is input."""
    generated_weight: Annotated[float, Range(0)] = 1.0
    """Loss weight of views whose origin is generated."""
    rendered_weight: Annotated[float, Range(0)] = 1.0
    """Loss weight of views whose origin is rendered."""
    patch_size: Annotated[int | None, Range(8)] = None
    """Train on random square patches of this size (fewer pixels per step; None: whole images)."""
    densify: DensifyPolicy = DensifyPolicy()
    scene_scale: Annotated[float | None, Range(0, open_min=True)] = None
    """Scene radius for learning rates and size thresholds (None: from the cameras)."""
    backend: Literal["auto", "torch_ref", "torch", "numba", "cpp", "gsplat"] = "auto"
    """Renderer backend."""
    checkpoint_every: Annotated[int, Range(0)] = 0
    """Steps between checkpoints handed to on_checkpoint (0: none)."""
    seed: Annotated[int, SEED] = 0


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the photometric terms on one view (see :mod:`vdm3d.recon.losses`)."""

    l1: float = 1.0
    dssim: float = 0.0
    perceptual: float = 0.0
    depth: float = 0.0
    alpha: float = 0.0


def loss_weights(config: FitConfig) -> LossWeights:
    """The photometric terms a FitConfig gives its training views (a pool can reuse them)."""
    return LossWeights(l1=1 - config.ssim_weight, dssim=config.ssim_weight, perceptual=config.perceptual_weight,
                       depth=config.depth_weight, alpha=config.alpha_weight)


@dataclasses.dataclass(frozen=True)
class ViewPool:
    """Views fitted beside the training views: one of them, drawn at random, every ``every`` steps.

    The drawn view's loss is ``weight * view_weights[i] * (terms of `loss`)``, with its confidence
    map (when present) as per-pixel weights inside each term."""

    views: Views
    loss: LossWeights = LossWeights()
    weight: float = 1.0
    """Multiplies the whole pool's loss against the training view's."""
    view_weights: Float[Tensor, " N"] | None = None
    """Per-view weights (None: 1 for every view)."""
    every: int = 1
    """Draw a view of this pool every ``every`` steps."""
    densify: bool = True
    """Whether the pool's renders add to the densification statistics."""

    def __post_init__(self) -> None:
        if len(self.views) == 0:
            raise ConfigError("fit_gaussians: a view pool is empty; pass at least one view or no pool.")
        if self.view_weights is not None and tuple(self.view_weights.shape) != (len(self.views),):
            raise ConfigError(f"fit_gaussians: a pool of {len(self.views)} views has view_weights of shape "
                              f"{tuple(self.view_weights.shape)}; give one weight per view.")
        if self.every < 1:
            raise ConfigError(f"fit_gaussians: a pool's `every` must be >= 1, got {self.every}.")


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What an extra loss term sees: the step's differentiable Gaussians and how it renders."""

    step: int
    steps: int
    gaussians: Gaussians
    sh_degree: int
    background: Float[Tensor, "3"]
    backend: str
    generator: torch.Generator


LossTerm = Callable[[StepContext], Tensor]
"""An extra loss: a scalar, already weighted, differentiable through ``StepContext.gaussians``."""


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


def _optimizer(params: dict[str, nn.Parameter], lr: LearningRates, scene_scale: float) -> Adam:
    rates = {"means": lr.lr_means * scene_scale, "quats": lr.lr_quats, "log_scales": lr.lr_scales,
             "opacity_logits": lr.lr_opacity, "sh_dc": lr.lr_sh_dc, "sh_rest": lr.lr_sh_rest}
    return Adam([{"params": [p], "name": k, "lr": rates[k]} for k, p in params.items()], eps=1e-15)


def _means_lr(config: FitConfig, scene_scale: float, step: int) -> float:
    t = min(step / max(config.steps, 1), 1.0)
    lo, hi = config.lr.lr_means_final, config.lr.lr_means
    return scene_scale * math.exp((1 - t) * math.log(hi) + t * math.log(lo))


def _background(config: FitConfig, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    if config.background == "random":
        return torch.rand(3, generator=generator).to(dtype)
    return torch.full((3,), 1.0 if config.background == "white" else 0.0, dtype=dtype)


def fit_gaussians(views: Views | Sequence[Views], init: Gaussians, config: FitConfig = FitConfig(), *,
                  view_weights: Sequence[Tensor] | Tensor | None = None,
                  perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
                  pools: Sequence[ViewPool] = (),
                  extra_losses: Sequence[LossTerm] = (),
                  between_steps: Callable[[int, Gaussians], Sequence[ViewPool] | None] | None = None,
                  appearance: Callable[[Gaussians], Gaussians] | None = None,
                  grow: Callable[[int], Gaussians | None] | None = None,
                  progress: Callable[[FitProgress], None] | None = None,
                  state: FitState | None = None,
                  on_checkpoint: Callable[[FitState], None] | None = None) -> Gaussians:
    """Optimize ``init`` so that its renders match ``views`` (one Views, or several of other sizes).

    ``view_weights`` (one ``[N]`` tensor per Views) override the origin-based weights;
    ``perceptual(pred, target) -> scalar`` replaces 1 - MS-SSIM as the perceptual term; ``pools``
    are fitted beside the views and ``extra_losses`` added to every step (see the module docstring);
    ``between_steps(step, gaussians)`` runs before each step and may return new pools;
    ``appearance(gaussians) -> gaussians`` (differentiably) changes what every render of the step sees,
    e.g. colours = albedo x shading of a fitted light (:mod:`vdm3d.recon.illumination`); its own
    parameters are the caller's to step; the returned Gaussians stay the fitted parameters;
    ``grow(step)`` may return Gaussians to append before the step;
    ``state`` continues an earlier run (then ``init`` only gives the device and dtype).
    """
    check_options(config, fields=True)  # a library caller's FitConfig(steps=0) or ssim_weight=nan: refused, not fitted silently
    groups = [views] if isinstance(views, Views) else list(views)
    if not groups or any(len(v) == 0 for v in groups):
        raise ConfigError("fit_gaussians: no views to fit; pass at least one view.")
    # the Gaussians set the arithmetic: float64 views of float32 Gaussians are fitted in float32
    groups = [v if v.images.dtype == init.dtype else v.to(dtype=init.dtype) for v in groups]
    if view_weights is None:
        weights = [view_weights_from_origin(v, config) for v in groups]
    else:
        weights = [view_weights] if torch.is_tensor(view_weights) else list(view_weights)
    if config.patch_size is not None and config.patch_size < WINDOW:
        raise ConfigError(f"fit: patch_size must be at least {WINDOW} pixels (the SSIM window), got {config.patch_size}.")
    index = [(g, i) for g, v in enumerate(groups) for i in range(len(v))]
    dtype, device = init.dtype, init.device
    main_loss = loss_weights(config)
    pools = list(pools)

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
        raise_if_interrupted()
        if between_steps is not None:
            fresh = between_steps(step, Gaussians.from_parameters({k: v.detach() for k, v in params.items()}))
            pools = pools if fresh is None else list(fresh)
        if grow is not None:
            extra = grow(step)
            if extra is not None and len(extra):
                degree = Gaussians.from_parameters(params).sh_degree
                strategy = config.densify.append(params, optimizer, strategy,
                                                 extra.to(dtype=dtype, device=device).with_sh_degree(degree).parameters())
        g, i = index[_epoch_order(len(index), step // len(index), config.seed)[step % len(index)]]
        draws = [_Draw(groups[g][i], float(weights[g][i]), main_loss, True), *_draw_pools(pools, step, generator)]
        bg = _background(config, generator, dtype).to(device)

        for group in optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = _means_lr(config, scene_scale, step)
        active_sh = config.sh_degree if config.sh_warmup_every <= 0 else min(config.sh_degree,
                                                                               step // config.sh_warmup_every)
        gaussians = Gaussians.from_parameters(params)
        if appearance is not None:
            gaussians = appearance(gaussians)
        loss = torch.zeros((), dtype=dtype, device=device)
        renders = []
        for view, w_view, terms, densify in draws:
            if w_view == 0:  # teaches nothing: neither a loss nor visibility counts for densification
                continue
            view = view.to(device)
            image, cams, alpha, depth, conf = _crop(view, config.patch_size, generator)
            target = image if alpha is None else image * alpha[..., None] + bg * (1 - alpha[..., None])
            out = render(gaussians, cams.to(device=device, dtype=dtype), backend=config.backend,
                         sh_degree=active_sh, background=bg)
            loss = loss + w_view * view_loss(out, target, alpha, depth, conf, terms, config.depth_mode, perceptual)
            renders.append((out, cams, view, densify, target))
        if config.opacity_weight > 0:
            loss = loss + config.opacity_weight * losses.opacity_loss(params["opacity_logits"])
        if extra_losses:
            ctx = StepContext(step, config.steps, gaussians, active_sh, bg, config.backend, generator)
            for term in extra_losses:
                loss = loss + term(ctx)
        if loss.requires_grad:
            loss.backward()

        for out, cams, view, densify, _ in renders:
            if densify and out.means2d.grad is not None:
                # gradients of a mean over a patch are larger by (image area / patch area): undo that, so
                # the densification threshold means the same with and without patches
                area = (cams.width * cams.height) / (view.width * view.height)
                strategy = config.densify.accumulate(strategy, out.means2d.grad * area, out.radii,
                                                     view.width, view.height)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        strategy, report = config.densify.step(params, optimizer, strategy, step, generator)

        if progress is not None:
            p = float("nan")
            if renders:  # the first view rendered: the training view unless its weight is 0
                with torch.no_grad():
                    p = float(psnr(renders[0][0].rgb.detach().clamp(0, 1), renders[0][4]).mean())
            progress(FitProgress(step + 1, config.steps, float(loss.detach()), p, len(params["means"]), report))
        done = step + 1
        if on_checkpoint is not None and config.checkpoint_every > 0 and (
                done % config.checkpoint_every == 0 or done == config.steps):
            on_checkpoint(_snapshot(done, params, optimizer, strategy, generator, scene_scale))
    return Gaussians.from_parameters({k: v.detach() for k, v in params.items()})


class _Draw(NamedTuple):
    """A view fitted at one step, with its weight, loss weights and whether it feeds densification."""

    view: Views
    weight: float
    loss: LossWeights
    densify: bool


def _draw_pools(pools: Sequence[ViewPool], step: int, generator: torch.Generator) -> list[_Draw]:
    """One random view of every pool due at ``step``."""
    draws = []
    for pool in pools:
        if step % pool.every == 0:
            j = int(torch.randint(len(pool.views), (1,), generator=generator))
            w = 1.0 if pool.view_weights is None else float(pool.view_weights[j])
            draws.append(_Draw(pool.views[j], pool.weight * w, pool.loss, pool.densify))
    return draws


def view_loss(out: RenderOutput, target: Float[Tensor, "B H W 3"], alpha: Float[Tensor, "B H W"] | None,
              depth: Float[Tensor, "B H W"] | None, confidence: Float[Tensor, "B H W"] | None,
              weights: LossWeights, depth_mode: Literal["l1", "pearson"] = "l1",
              perceptual: Callable[[Tensor, Tensor], Tensor] | None = None) -> Float[Tensor, ""]:
    """The weighted photometric terms of one render against its target; ``confidence`` weights pixels.

    Each term is a weighted mean over the pixels, so a view's own weight multiplies the result."""
    pred = out.rgb
    loss = torch.zeros((), dtype=pred.dtype, device=pred.device)
    if weights.l1 > 0:
        loss = loss + weights.l1 * losses.l1_loss(pred, target, confidence)
    if weights.dssim > 0:
        loss = loss + weights.dssim * losses.dssim_loss(pred, target, confidence)
    if weights.perceptual > 0:
        term = perceptual(pred, target) if perceptual else losses.ms_ssim_loss(pred, target, confidence)
        loss = loss + weights.perceptual * term
    if weights.depth > 0 and depth is not None:
        loss = loss + weights.depth * losses.depth_loss(out.depth, depth, confidence, depth_mode)
    if weights.alpha > 0 and alpha is not None:
        loss = loss + weights.alpha * losses.alpha_loss(out.alpha, alpha, confidence)
    return loss


def _snapshot(step: int, params: dict[str, nn.Parameter], optimizer: Adam, strategy: dict,
              generator: torch.Generator, scene_scale: float) -> FitState:
    moments = {name: {k: v.detach().clone() for k, v in optimizer.state.get(p, {}).items()}
               for name, p in params.items()}
    return FitState(step, {k: v.detach().clone() for k, v in params.items()}, moments,
                    {k: (v.clone() if torch.is_tensor(v) else v) for k, v in strategy.items()},
                    generator.get_state(), scene_scale)


def _epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    """A random order of the views per epoch, a pure function of (seed, epoch) so resuming is exact."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def _crop(view: Views, size: int | None, generator: torch.Generator
          ) -> tuple[Tensor, Cameras, Tensor | None, Tensor | None, Tensor | None]:
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
