"""Adam for the Gaussians' parameters: ``torch.optim.Adam``'s update, without ``torch.optim``.

Why not ``torch.optim.Adam`` itself: constructing any ``torch.optim`` optimizer imports
``torch._dynamo`` (its ``add_param_group`` is wrapped by ``torch._disable_dynamo``), which pulls in
sympy and ~800 modules: 1.5 CPU-seconds in every process that fits Gaussians, a third of the object
demo's fitting stage. This class keeps the parts of the optimizer interface that the fitting loop,
:class:`vdm3d.splat.strategy.DensifyPolicy` and the checkpoints use (``param_groups`` with one
parameter each, ``state[param]`` with ``step``, ``exp_avg`` and ``exp_avg_sq`` under torch's names,
``step()`` and ``zero_grad()``), so checkpoints written with either load into the other.

The update is torch's (``amsgrad=False``, no weight decay): with ``t`` the step count,
``m = lerp(m, g, 1 - b1)``, ``v = b2 v + (1 - b2) g^2``,
``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``, computed by the same fused
kernel that ``torch.optim.Adam(fused=True)`` calls (one kernel per parameter instead of a dozen
tensor operations; 2.4-3.4x faster at 3.5k-40k Gaussians), or by those operations where a build of
torch lacks the kernel.

>>> p = torch.nn.Parameter(torch.zeros(2))
>>> opt = Adam([{"params": [p], "name": "x", "lr": 0.1}])
>>> p.grad = torch.tensor([1.0, -2.0])
>>> opt.step(); [round(v, 4) for v in p.tolist()]
[-0.1, 0.1]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


class Adam:
    """Adam over param groups of one parameter each (``{"params": [p], "lr": ..., **extra}``)."""

    def __init__(self, param_groups: list[dict[str, Any]], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.param_groups = [dict(group, params=list(group["params"])) for group in param_groups]
        self.betas, self.eps = betas, eps
        self.state: dict[Tensor, dict[str, Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if not state:
                    state = self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                             "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                state["step"] += 1
                if _FUSED:
                    torch._fused_adam_([p], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                                       lr=group["lr"], beta1=b1, beta2=b2, weight_decay=0.0, eps=self.eps,
                                       amsgrad=False, maximize=False)
                else:
                    _adam_update(p, p.grad, state, group["lr"], b1, b2, self.eps)


_FUSED = hasattr(torch, "_fused_adam_")


def _adam_update(p: Tensor, grad: Tensor, state: dict[str, Tensor], lr: float, b1: float, b2: float,
                 eps: float) -> None:
    """The same update in tensor operations (``torch.optim.Adam``'s single-tensor path)."""
    t = float(state["step"])
    state["exp_avg"].lerp_(grad, 1 - b1)
    state["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
    denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
    p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1 ** t))
