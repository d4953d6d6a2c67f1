"""Densification and pruning of Gaussians: a frozen policy plus an explicit state dict.

The adaptive density control of 3D Gaussian splatting (Kerbl et al. 2023), organized as gsplat's
``strategy/default.py`` is: :class:`DensifyPolicy` holds only constants, and everything that changes
during training lives in a plain ``state`` dict that the caller keeps (and checkpoints):

* ``grad2d [N]``: sum over views of the norm of the screen-space gradient of each Gaussian's center,
  in the normalized-device units of the original paper (pixel gradient times ``(W/2, H/2)``),
  so the published threshold 0.0002 keeps its meaning at any image size;
* ``count [N]``: in how many rendered views the Gaussian was visible (radius > 0);
* ``scene_scale``: the radius of the camera rig; 3D size thresholds are relative to it.

Every ``refine_every`` steps inside ``[refine_start, refine_stop)``, Gaussians whose mean gradient
exceeds ``grow_grad2d`` are grown: small ones (largest axis <= ``grow_scale3d * scene_scale``) are
*cloned*, large ones are *split* into two children drawn from the parent's own Gaussian with scales
divided by 1.6. Then nearly transparent Gaussians (opacity < ``prune_opacity``) are pruned, and after
the first opacity reset also those larger than ``prune_scale3d * scene_scale``. Every
``reset_every`` steps all opacities are clamped down to ``2 * prune_opacity`` so that floaters have
to earn their opacity again. ``max_gaussians`` caps growth (the highest gradients win), which keeps
CPU runs inside a time budget.

Parameters are a ``dict[str, nn.Parameter]`` whose tensors all have the Gaussians on dim 0, with at
least ``means``, ``quats`` (w, x, y, z), ``log_scales`` and ``opacity_logits``; any other entries
(SH bands) are carried along. The optimizer must hold exactly one parameter per param group; its
Adam moments are kept for surviving Gaussians and start at zero for new ones. :meth:`refine` and
:meth:`reset_opacity` replace entries of ``params`` and the optimizer's references (like gsplat):
that is the one place where this module changes its inputs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any, Callable, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from vdm3d.cameras.rotations import matrix_from_quat
from vdm3d.options import Range

State = dict[str, Any]
SPLIT_SCALE_DIVISOR = 1.6


@runtime_checkable
class Optimizer(Protocol):
    """What density control needs of an optimizer (``torch.optim.Adam`` or :class:`vdm3d.recon.adam.Adam`):
    param groups of one parameter each, and per-parameter state (the Adam moments)."""

    param_groups: list[dict[str, Any]]
    state: dict


@dataclasses.dataclass(frozen=True)
class DensifyPolicy:
    """When and how Gaussians are cloned, split, pruned and made transparent again."""

    grow_grad2d: Annotated[float, Range(0, open_min=True)] = 0.0002
    """Mean screen-space gradient (normalized-device units) above which a Gaussian is grown."""
    grow_scale3d: Annotated[float, Range(0, open_min=True)] = 0.01
    """Gaussians whose largest axis is at most this fraction of the scene scale are cloned, larger
    ones are split."""
    prune_opacity: Annotated[float, Range(0, 1)] = 0.005
    """Gaussians less opaque than this are removed at each refinement."""
    prune_scale3d: Annotated[float, Range(0, open_min=True)] = 0.1
    """After the first opacity reset, Gaussians larger than this fraction of the scene scale are removed."""
    refine_start: Annotated[int, Range(0)] = 500
    """First step at which Gaussians are grown and pruned."""
    refine_stop: Annotated[int, Range(0)] = 15_000
    """No growing or pruning from this step on."""
    refine_every: Annotated[int, Range(1)] = 100
    """Steps between refinements."""
    reset_every: Annotated[int, Range(0)] = 3000
    """Steps between opacity resets (0 disables them)."""
    max_gaussians: Annotated[int | None, Range(1)] = None
    """Upper bound on the number of Gaussians after growing (None: no bound)."""

    # -- state ------------------------------------------------------------------------------------
    def initial_state(self, num_gaussians: int, scene_scale: float, device: torch.device | str = "cpu") -> State:
        """A fresh state for ``num_gaussians`` Gaussians in a scene of radius ``scene_scale``."""
        return {"grad2d": torch.zeros(num_gaussians, device=device),
                "count": torch.zeros(num_gaussians, device=device),
                "scene_scale": float(scene_scale),
                "resets": 0}

    def accumulate(self, state: State, v_means2d: Float[Tensor, "B N 2"], radii: Int[Tensor, "B N"] | Float[Tensor, "B N"],
                   width: int, height: int) -> State:
        """Add the screen-space gradients of one step (``v_means2d`` in pixels) to a new state."""
        to_ndc = torch.tensor([width / 2.0, height / 2.0], dtype=v_means2d.dtype, device=v_means2d.device)
        norms = (v_means2d.detach() * to_ndc).norm(dim=-1)  # [B, N]
        visible = (radii > 0).to(norms.dtype)
        return {**state, "grad2d": state["grad2d"] + (norms * visible).sum(0).to(state["grad2d"].dtype),
                "count": state["count"] + visible.sum(0).to(state["count"].dtype)}

    # -- the per-step hook ------------------------------------------------------------------------
    def step(self, params: dict[str, nn.Parameter], optimizer: Optimizer, state: State, step: int,
             generator: torch.Generator | None = None) -> tuple[State, dict[str, int]]:
        """Run whatever is due after optimizer step ``step`` (0-based); returns the new state and counts."""
        report = {"cloned": 0, "split": 0, "pruned": 0, "reset": 0}
        n = step + 1
        if self.refine_start <= n < self.refine_stop and n % self.refine_every == 0:
            state, report = self.refine(params, optimizer, state, generator)
        if self.reset_every > 0 and n < self.refine_stop and n % self.reset_every == 0:
            state = self.reset_opacity(params, optimizer, state)
            report["reset"] = 1
        return state, report

    def refine(self, params: dict[str, nn.Parameter], optimizer: Optimizer, state: State,
               generator: torch.Generator | None = None) -> tuple[State, dict[str, int]]:
        """Clone, split and prune now; the gradient statistics start again from zero."""
        scene_scale = state["scene_scale"]
        with torch.no_grad():
            mean_grad = state["grad2d"] / state["count"].clamp_min(1)
            high = mean_grad > self.grow_grad2d
            max_scale = params["log_scales"].exp().amax(-1)
            small = max_scale <= self.grow_scale3d * scene_scale
            clone, split = high & small, high & ~small
            n = mean_grad.numel()
            if self.max_gaussians is not None:
                # a split adds one Gaussian net, a clone adds one: keep the largest gradients
                room = max(0, self.max_gaussians - n)
                grow = (clone | split).nonzero().squeeze(-1)
                if grow.numel() > room:
                    keep = grow[mean_grad[grow].argsort(descending=True)[:room]]
                    chosen = torch.zeros_like(high)
                    chosen[keep] = True
                    clone, split = clone & chosen, split & chosen
            n_clone, n_split = int(clone.sum()), int(split.sum())
            if n_clone:
                _duplicate(params, optimizer, clone)
            if n_split:
                _split(params, optimizer, torch.cat([split, torch.zeros(n_clone, dtype=torch.bool,
                                                                        device=split.device)]), generator)
            opacity = torch.sigmoid(params["opacity_logits"].detach())
            prune = opacity < self.prune_opacity
            if state["resets"] > 0:
                prune |= params["log_scales"].detach().exp().amax(-1) > self.prune_scale3d * scene_scale
            n_prune = int(prune.sum())
            if n_prune:
                _keep(params, optimizer, ~prune)
        m = params["means"].shape[0]
        device = state["grad2d"].device
        new_state = {**state, "grad2d": torch.zeros(m, device=device), "count": torch.zeros(m, device=device)}
        return new_state, {"cloned": n_clone, "split": n_split, "pruned": n_prune, "reset": 0}

    def append(self, params: dict[str, nn.Parameter], optimizer: Optimizer, state: State,
               new: dict[str, Tensor]) -> State:
        """Append Gaussians given as a parameter dict (the keys of ``params``) with zero Adam moments
        and zero gradient statistics, e.g. points a prior added to the scene's holes."""
        missing = sorted(set(params) - set(new))
        if missing:
            raise ValueError(f"DensifyPolicy.append: the new Gaussians lack {missing}.")
        k = int(new["means"].shape[0])
        if k == 0:
            return state
        _replace(params, optimizer, list(params),
                 lambda name, p: torch.cat([p, new[name].to(device=p.device, dtype=p.dtype)]),
                 lambda name, v: torch.cat([v, v.new_zeros((k, *v.shape[1:]))]))
        zeros = state["grad2d"].new_zeros(k)
        return {**state, "grad2d": torch.cat([state["grad2d"], zeros]), "count": torch.cat([state["count"], zeros])}

    def reset_opacity(self, params: dict[str, nn.Parameter], optimizer: Optimizer, state: State
                      ) -> State:
        """Clamp every opacity to at most ``2 * prune_opacity`` and zero that parameter's Adam moments."""
        cap = math.log(2 * self.prune_opacity / (1 - 2 * self.prune_opacity))  # logit(2 * prune_opacity)
        _replace(params, optimizer, ["opacity_logits"], lambda name, p: p.clamp(max=cap),
                 lambda name, v: torch.zeros_like(v))
        return {**state, "resets": state["resets"] + 1}


# -- parameter surgery that keeps the optimizer consistent -----------------------------------------
def _replace(params: dict[str, nn.Parameter], optimizer: Optimizer, names: list[str],
             new_param: Callable[[str, Tensor], Tensor], new_moment: Callable[[str, Tensor], Tensor]) -> None:
    """Swap ``params[name]`` for ``new_param(name, old)`` and its Adam moments for ``new_moment``."""
    for name in names:
        old = params[name]
        new = nn.Parameter(new_param(name, old.detach()), requires_grad=old.requires_grad)
        for group in optimizer.param_groups:
            if len(group["params"]) != 1:
                raise ValueError("DensifyPolicy needs one parameter per optimizer param group.")
            if group["params"][0] is old:
                moments = optimizer.state.pop(old, {})
                for key, value in list(moments.items()):
                    if key != "step" and torch.is_tensor(value) and value.shape == old.shape:
                        moments[key] = new_moment(name, value)
                group["params"][0] = new
                if moments:
                    optimizer.state[new] = moments
        params[name] = new


def _duplicate(params: dict[str, nn.Parameter], optimizer: Optimizer, mask: Tensor) -> None:
    """Append exact copies of the masked Gaussians; copies start with zero moments."""
    k = int(mask.sum())
    _replace(params, optimizer, list(params), lambda name, p: torch.cat([p, p[mask]]),
             lambda name, v: torch.cat([v, v.new_zeros((k, *v.shape[1:]))]))


def _keep(params: dict[str, nn.Parameter], optimizer: Optimizer, mask: Tensor) -> None:
    """Keep only the masked Gaussians (moments follow their Gaussians)."""
    _replace(params, optimizer, list(params), lambda name, p: p[mask], lambda name, v: v[mask])


def _split(params: dict[str, nn.Parameter], optimizer: Optimizer, mask: Tensor,
           generator: torch.Generator | None) -> None:
    """Replace each masked Gaussian by two children sampled from it, with scales divided by 1.6."""
    means, quats, log_scales = params["means"].detach(), params["quats"].detach(), params["log_scales"].detach()
    k = int(mask.sum())
    rot = matrix_from_quat(quats[mask])  # [k, 3, 3]
    scales = log_scales[mask].exp()  # [k, 3]
    noise = torch.randn((2, k, 3), generator=generator, dtype=means.dtype,
                        device="cpu" if generator is None else generator.device).to(means.device)
    offsets = torch.einsum("kij,skj->ski", rot, noise * scales)  # [2, k, 3]
    children = {
        "means": (means[mask] + offsets).reshape(2 * k, 3),
        "log_scales": (log_scales[mask] - math.log(SPLIT_SCALE_DIVISOR)).repeat(2, 1),
    }
    keep = ~mask

    def new_param(name: str, p: Tensor) -> Tensor:
        child = children.get(name)
        if child is None:
            child = p[mask].repeat(2, *([1] * (p.dim() - 1)))
        return torch.cat([p[keep], child])

    _replace(params, optimizer, list(params), new_param,
             lambda name, v: torch.cat([v[keep], v.new_zeros((2 * k, *v.shape[1:]))]))

