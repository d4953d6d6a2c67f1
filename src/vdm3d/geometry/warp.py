"""Forward warping of RGB-D views into other cameras (warp-and-refine: ViewCrafter, WorldWarp).

Each source pixel is split into ``supersample x supersample`` sub-points that share its color and
depth, unprojected with the source camera, projected into the target camera and z-buffered: the
nearest point wins a pixel, and among equally near points the first in source order (row-major
pixels, then sub-points), so the result is deterministic. Sub-pixel splatting closes the
one-pixel cracks that plain point splatting leaves when the camera moves forward, so the remaining
holes are real disocclusions and out-of-view regions, the content a video model has to invent.

Everything runs in torch, batched over the target cameras: the z-buffer is two ``scatter_reduce``
passes (the minimum depth per target pixel, then the first point that reaches it), written by
hand because no library splats points with a nearest-wins depth test on the CPU. Projection goes
through :class:`~vdm3d.cameras.Cameras` in float64.
"""

from __future__ import annotations

import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError
from vdm3d.geometry.pixels import pixel_hits
from vdm3d.views import Views


def forward_warp(source: Views, cameras: Cameras, supersample: int = 2) -> Views:
    """Warp ``source`` (images with z-``depths``; 0 or inf = no surface) into ``cameras`` (batch ``(N,)``).

    ``source`` holds one view, warped into every camera, or ``N`` views, view ``i`` into camera ``i``.
    Returns Views at ``cameras`` (their own size and intrinsics) with the warped colors (0 in holes),
    the warped z-depth in ``depths`` (0 in holes) and the validity mask (1 where a point landed)
    in ``confidence``; origin ``rendered``.
    """
    if source.depths is None:
        raise InputError("forward_warp: the source views carry no depths; pass Views(..., depths=z-depth maps).")
    n = len(cameras)
    if len(cameras.shape) != 1 or len(source) not in (1, n):
        raise InputError(f"forward_warp: {len(source)} source views for cameras of batch shape "
                         f"{tuple(cameras.shape)}; give one source view, or one per target camera.")
    src = source[[0] * n] if len(source) != n else source
    h, w, s = src.height, src.width, supersample
    dtype = torch.float64
    offs = (torch.arange(s, dtype=dtype) + 0.5) / s
    v, u = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    uu = (u[:, :, None, None] + offs[None, None, None, :]).expand(h, w, s, s).reshape(-1)  # [M] sub-points
    vv = (v[:, :, None, None] + offs[None, None, :, None]).expand(h, w, s, s).reshape(-1)
    owner = torch.arange(h * w).repeat_interleave(s * s)  # [M] source pixel of each sub-point
    m = owner.shape[0]
    z = src.depths.to(dtype).reshape(n, h * w)[:, owner]  # [N, M]
    surface = torch.isfinite(z) & (z > 0)
    z = torch.where(surface, z, torch.ones_like(z))
    uv = torch.stack([uu, vv], -1).expand(n, m, 2)
    points_world = src.cameras.to(dtype=dtype).unproject(uv, z)  # [N, M, 3]
    hits = pixel_hits(cameras.to(dtype=dtype), points_world)

    ht, wt = cameras.height, cameras.width
    keep = surface & hits.inside  # [N, M]
    key = (torch.arange(n)[:, None] * (ht * wt) + hits.v * wt + hits.u)[keep]  # [K] target pixel, flattened
    depth = hits.z[keep]
    zbuf = torch.full((n * ht * wt,), float("inf"), dtype=dtype).scatter_reduce(0, key, depth, "amin")
    nearest = depth == zbuf[key]
    order = torch.arange(n * m).reshape(n, m)[keep]  # [K] point index, in source order
    first = torch.full((n * ht * wt,), n * m, dtype=torch.long).scatter_reduce(0, key[nearest], order[nearest], "amin")
    valid = first < n * m  # [N*Ht*Wt]
    winner = first[valid]
    colors = src.images.reshape(n, h * w, 3)[winner // m, owner[winner % m]]

    images = torch.zeros(n * ht * wt, 3, dtype=src.images.dtype)
    images[valid] = colors
    depths = torch.zeros(n * ht * wt, dtype=src.depths.dtype)
    depths[valid] = zbuf[valid].to(src.depths.dtype)
    return Views(images.reshape(n, ht, wt, 3), cameras, depths=depths.reshape(n, ht, wt),
                 confidence=valid.reshape(n, ht, wt).to(src.images.dtype), origin=("rendered",) * n)
