"""One entry point for splatting: ``render(gaussians, cameras, backend=...)``.

Backends (all follow the same 3DGS rules, documented in :mod:`vdm3d.splat.projection` and
:mod:`vdm3d.splat.backends.torch_ref`):

* ``torch_ref``: dense reference, every Gaussian at every pixel; for tests and tiny scenes;
* ``torch``: tiled CPU renderer in plain torch with per-tile culling and an analytic backward: the
  readable middle twin between the reference and the compiled kernel;
* ``numba``: the same tiles and backward as compiled parallel loops (projection and rasterizer);
* ``cpp``: the ``numba`` projection with a float32 C++/OpenMP rasterizer that gcc vectorizes, built
  on first use; the default when the Gaussians are not on a CUDA device (it hands float64
  Gaussians, and machines without a C++ compiler, to ``numba``);
* ``gsplat``: gsplat 1.5's CUDA ``rasterization``, imported lazily; the default for CUDA tensors.

All are differentiable in every Gaussian parameter. ``means2d`` is the projected-center tensor that
the rasterizer consumed; when gradients are on it keeps its ``.grad`` after ``backward`` (for
densification statistics, in pixels).

>>> from vdm3d.cameras import Cameras
>>> g = Gaussians.from_points(torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[1.0, 0.0, 0.0]]),
...                           scales=torch.tensor([0.2]), opacity=0.9, sh_degree=0)
>>> cams = Cameras.from_fov(60.0, 16, 16, torch.eye(4))
>>> out = render(g, cams, backend="torch_ref")
>>> out.rgb.shape, round(float(out.alpha[0, 8, 8]), 2), round(float(out.depth[0, 8, 8]), 3)
(torch.Size([1, 16, 16, 3]), 0.8, 2.0)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError
from vdm3d.splat.backends import cpp as cpp_backend
from vdm3d.splat.backends import gsplat as gsplat_backend
from vdm3d.splat.backends import numba as numba_backend
from vdm3d.splat.backends import torch as torch_backend
from vdm3d.splat.backends import torch_ref as torch_ref_backend
from vdm3d.io.runs import note_used
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.output import RenderOutput

__all__ = ["Backend", "RenderOutput", "render"]

Backend = Literal["auto", "torch_ref", "torch", "numba", "cpp", "gsplat"]


def render(gaussians: Gaussians, cameras: Cameras, *, backend: Backend = "auto", sh_degree: int | None = None,
           background: Tensor | None = None) -> RenderOutput:
    """Render ``gaussians`` from ``cameras`` (batch shape ``(B,)`` or ``()``).

    ``sh_degree`` defaults to the Gaussians' own degree (it may be lower, never higher);
    ``background`` is an RGB color ``[3]`` or one per camera ``[B, 3]`` (default black).
    """
    if len(cameras.shape) > 1:
        raise ConfigError(f"render: cameras must have batch shape (B,) or (), got {tuple(cameras.shape)}; "
                          "flatten them first.")
    flat = cameras.reshape(1) if len(cameras.shape) == 0 else cameras
    flat = flat.to(device=gaussians.device, dtype=gaussians.dtype)
    degree = gaussians.sh_degree if sh_degree is None else int(sh_degree)
    if not 0 <= degree <= gaussians.sh_degree:
        raise ConfigError(f"render: sh_degree={degree} but the Gaussians carry degree {gaussians.sh_degree}; "
                          f"pass a value from 0 to {gaussians.sh_degree}.")
    B = flat.shape[0]
    if background is None:
        background = torch.zeros(3, dtype=gaussians.dtype, device=gaussians.device)
    background = torch.as_tensor(background, dtype=gaussians.dtype, device=gaussians.device)
    if background.shape not in ((3,), (B, 3)):
        raise ConfigError(f"render: background must be [3] or [{B}, 3], got {tuple(background.shape)}.")
    background = background.expand(B, 3)
    name = backend
    if name == "auto":
        name = "gsplat" if gaussians.device.type == "cuda" else "cpp"
    backends = {"torch_ref": torch_ref_backend, "torch": torch_backend, "numba": numba_backend,
                "cpp": cpp_backend, "gsplat": gsplat_backend}
    if name not in backends:
        raise ConfigError(f"render: unknown backend {backend!r}; choose auto, torch_ref, torch, numba, cpp or gsplat.")
    ran = "numba" if name == "cpp" and (gaussians.dtype != torch.float32 or not cpp_backend.available()[0]) else name
    note_used("rasterizer", ran)  # the manifest names it: numba's images differ from the C++ kernels' in the last bits
    return backends[name].render_backend(gaussians, flat, degree, background)

