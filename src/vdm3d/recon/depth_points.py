"""Starting points from the training views' own depth maps (no held-out view is ever used).

Each pixel with a known depth (> 0) is unprojected with its camera; a regular ``stride`` keeps the
count reasonable. Colours are the pixels' own.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError


def points_from_depths(images: Float[Tensor, "N H W 3"], depths: Float[Tensor, "N H W"], cameras: Cameras,
                       stride: int = 1) -> tuple[Float[Tensor, "P 3"], Float[Tensor, "P 3"]]:
    """World points and colours of every ``stride``-th pixel (in both axes) with a depth > 0."""
    pts, rgb = [], []
    uv = cameras.pixel_grid().to(depths.dtype)  # [H, W, 2], pixel centres
    for i in range(len(cameras)):
        d = depths[i, ::stride, ::stride]
        keep = (d > 0) & torch.isfinite(d)
        if not keep.any():
            continue
        px = uv[::stride, ::stride][keep]  # [P, 2]
        pts.append(cameras[i].unproject(px, d[keep]))
        rgb.append(images[i, ::stride, ::stride][keep])
    if not pts:
        raise ConfigError("points_from_depths: no training view has a valid depth; initialize from points instead.")
    return torch.cat(pts).float(), torch.cat(rgb).float()
