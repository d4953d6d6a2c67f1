"""Starting Gaussians for a fit: from sparse points (COLMAP, carving, depth) or random in the frusta.

* :func:`init_from_points`: one isotropic Gaussian per point with its color, sized by the distance to
  its three nearest neighbours (the 3DGS initialization, :meth:`Gaussians.from_points`); optionally
  subsampled to a budget.
* :func:`init_random`: points drawn inside the cameras' view frusta, uniform in inverse depth between
  ``near`` and ``far`` (so forward-facing scenes get as many points far away as near, per pixel),
  with random colors. This is the fallback when a data set has no points.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError
from vdm3d.splat.gaussians import Gaussians


def init_from_points(points_world: Float[Tensor, "N 3"], rgb: Float[Tensor, "N 3"], *, max_points: int | None = None,
                     opacity: float = 0.1, sh_degree: int = 3, generator: torch.Generator | None = None) -> Gaussians:
    """Gaussians at the given points (a random subset of ``max_points`` when there are more)."""
    if len(points_world) == 0:
        raise ConfigError("init_from_points: the point cloud is empty; use random initialization instead.")
    if max_points is not None and len(points_world) > max_points:
        keep = torch.randperm(len(points_world), generator=generator)[:max_points].sort().values
        points_world, rgb = points_world[keep], rgb[keep]
    return Gaussians.from_points(points_world.float(), rgb.float().clamp(0, 1), opacity=opacity, sh_degree=sh_degree)


def init_random(cameras: Cameras, num_points: int, near: float, far: float, *, opacity: float = 0.1,
                sh_degree: int = 3, generator: torch.Generator | None = None) -> Gaussians:
    """``num_points`` Gaussians with random colors inside the frusta of ``cameras`` (batch ``(B,)``)."""
    if not 0 < near < far:
        raise ConfigError(f"init_random: need 0 < near < far, got near={near}, far={far}.")
    cams = cameras.flatten()
    which = torch.randint(0, len(cams), (num_points,), generator=generator)
    u = torch.rand(num_points, generator=generator) * cams.width
    v = torch.rand(num_points, generator=generator) * cams.height
    inv = 1 / far + torch.rand(num_points, generator=generator) * (1 / near - 1 / far)
    depth = (1 / inv).to(cams.dtype)
    uv = torch.stack([u, v], -1).to(cams.dtype)
    sel = cams[which]  # one camera per point, batch (P,)
    points = sel.unproject(uv[:, None], depth[:, None])[:, 0]  # [P, 3]
    rgb = torch.rand(num_points, 3, generator=generator)
    return Gaussians.from_points(points.float(), rgb, opacity=opacity, sh_degree=sh_degree)

