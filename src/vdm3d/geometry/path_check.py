"""Check a camera path against the depth of its first view before generating along it.

A path for one image is only known to be sensible where the image saw the scene. Per frame:

* ``inside`` - the camera center lies *behind* the surface the first view sees (it projects into the
  first view, in front of it, deeper than the depth there by more than ``margin``): the camera would
  be inside or beyond that geometry;
* ``too_close`` - its distance to the nearest unprojected point of the first view is below
  ``min_distance`` (default 5 % of the first view's median depth);
* ``scale`` - the mean step per frame is more than ``max_step`` (default 10 %) of the median depth,
  or the whole path wanders more than ``max_extent`` (default 10) median depths from its start:
  the path's units probably do not match the scene's (lower ``--speed`` or rescale the path).
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Float
from scipy.spatial import cKDTree
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.flow import unproject_depth


@dataclasses.dataclass(frozen=True)
class PathReport:
    """Problems found, one sentence each (empty: the path looks fine)."""

    problems: list[str]
    first_inside: int | None
    first_too_close: int | None
    mean_step: float
    median_depth: float


def check_path(cameras: Cameras, depth: Float[Tensor, "H W"], margin: float = 0.05,
               min_distance: float | None = None, max_step: float = 0.1, max_extent: float = 10.0,
               max_points: int = 20_000) -> PathReport:
    """Check ``cameras [F]`` (frame 0 is the view whose z-depth is ``depth``); see the module docstring."""
    cams = cameras.flatten().to(torch.float64)
    d = depth.double()
    med = float(d[d > 0].median()) if bool((d > 0).any()) else 1.0
    min_distance = 0.05 * med if min_distance is None else float(min_distance)
    first = cams[0]
    centers = cams.centers  # [F, 3]
    uv, z = first.project(centers)  # [F, 2], [F]
    h, w = d.shape
    u, v = torch.floor(uv[:, 0]).long(), torch.floor(uv[:, 1]).long()
    seen = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    surface = d[v.clamp(0, h - 1), u.clamp(0, w - 1)]
    inside = seen & (surface > 0) & (z > surface * (1 + margin))
    pts = unproject_depth(d, first)[d > 0].numpy()
    if len(pts) > max_points:
        pts = pts[torch.linspace(0, len(pts) - 1, max_points).long().numpy()]
    nearest = cKDTree(pts).query(centers.numpy())[0] if len(pts) else [float("inf")] * len(cams)
    close = torch.as_tensor(nearest) < min_distance
    steps = (centers[1:] - centers[:-1]).norm(dim=-1)
    mean_step = float(steps.mean()) if len(steps) else 0.0
    extent = float((centers - centers[0]).norm(dim=-1).max())
    problems = []
    fi = int(inside.nonzero()[0]) if bool(inside.any()) else None
    fc = int(close.nonzero()[0]) if bool(close.any()) else None
    if fi is not None:
        problems.append(f"frame {fi} of the path is inside the scene's geometry (behind the surface the image "
                        f"shows, {int(inside.sum())} frames in all)")
    if fc is not None:
        problems.append(f"frame {fc} of the path is {float(nearest[fc]):.3g} from the scene's surface, closer than "
                        f"{min_distance:.3g} ({int(close.sum())} frames in all)")
    if mean_step > max_step * med:
        problems.append(f"the path moves {mean_step:.3g} per frame, {mean_step / med:.2f} of the scene's median "
                        f"depth {med:.3g}; lower --speed or scale the path down")
    elif extent > max_extent * med:
        problems.append(f"the path wanders {extent:.3g} from its start, {extent / med:.1f} times the scene's "
                        f"median depth {med:.3g}; scale the path down")
    return PathReport(problems, fi, fc, mean_step, med)
