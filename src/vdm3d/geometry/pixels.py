"""Which pixel a world point falls on, and the values of per-pixel maps there.

Carving, TSDF fusion, colour baking, coloring Gaussians from views and forward warping all do the
same three things: project points into cameras, take the pixel that contains each projection
(``floor``, since pixel centres are at +0.5), and read maps at that pixel when it exists (in front
of the camera, inside the image). :func:`pixel_hits` does the first two once, and
:meth:`PixelHits.gather` the third, batched over cameras.

>>> import torch
>>> from vdm3d.cameras.camera import Cameras
>>> cam = Cameras.from_fov(90.0, 4, 4, torch.eye(4))
>>> hits = pixel_hits(cam, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]))
>>> hits.u.tolist(), hits.v.tolist(), hits.inside.tolist()
([2, 2], [2, 2], [True, False])
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from vdm3d.cameras.camera import Cameras


@dataclasses.dataclass(frozen=True)
class PixelHits:
    """Projections of ``P`` points into cameras of batch shape ``*B``."""

    u: Int[Tensor, "*B P"]
    """pixel column, clamped into the image (meaningful only where ``inside``)"""
    v: Int[Tensor, "*B P"]
    """pixel row, clamped into the image"""
    z: Float[Tensor, "*B P"]
    """z-depth in the camera (<= 0 behind it)"""
    inside: Bool[Tensor, "*B P"]
    """in front of the camera (``z > near``) and inside the image"""

    def gather(self, maps: Tensor) -> Tensor:
        """``maps [*B, H, W, *C]`` (one per camera) at the hit pixels: ``[*B, P, *C]``. Points outside
        read the clamped border pixel; mask them with ``inside``."""
        batch = self.u.shape[:-1]
        if not batch:
            return maps[self.v, self.u]
        p = self.u.shape[-1]
        flat = maps.reshape(-1, *maps.shape[len(batch):])  # [Bf, H, W, *C]
        b = torch.arange(flat.shape[0], device=maps.device)[:, None]
        out = flat[b, self.v.reshape(-1, p), self.u.reshape(-1, p)]
        return out.reshape(*batch, p, *maps.shape[len(batch) + 2:])


def pixel_hits(cameras: Cameras, points_world: Float[Tensor, "*B P 3"], near: float = 1e-6) -> PixelHits:
    """Project ``points_world`` (broadcast against the cameras' batch) to the pixels containing them."""
    uv, z = cameras.project(points_world)
    u = torch.floor(uv[..., 0]).long()
    v = torch.floor(uv[..., 1]).long()
    w, h = cameras.width, cameras.height
    inside = (z > near) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return PixelHits(u.clamp(0, w - 1), v.clamp(0, h - 1), z, inside)
