"""Camera sets for procedural objects: orbits around the unit sphere (world up is ``+z``).

Built on :func:`vdm3d.cameras.camera.look_at`. The default distance keeps the whole unit sphere in
view: a sphere of radius 1 seen from distance ``d`` spans a half-angle ``asin(1 / d)``, so
``d = margin / sin(fov / 2)`` leaves ``margin - 1`` of slack.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vdm3d.cameras.camera import Cameras, look_at


def orbit_distance(fov_deg: float, margin: float = 1.1) -> float:
    """Distance at which the unit sphere fills the view up to ``margin``."""
    return margin / math.sin(math.radians(fov_deg) / 2)


def orbit_cameras(n_views: int, *, width: int = 64, height: int = 64, fov_deg: float = 40.0,
                  elevation_deg: float | list[float] = 20.0, azimuth0_deg: float = 0.0,
                  radius: float | None = None) -> Cameras:
    """``n_views`` cameras evenly spaced in azimuth around the z axis, looking at the origin.

    ``elevation_deg`` is one angle for all views or one per view. Batch shape ``[n_views]``.
    """
    radius = orbit_distance(fov_deg) if radius is None else radius
    az = torch.deg2rad(torch.tensor(azimuth0_deg, dtype=torch.float64) + torch.arange(n_views) * 360.0 / n_views)
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float64).expand(n_views))
    eye = radius * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(eye))
    return Cameras.from_fov(fov_deg, width, height, c2w.float())


def random_object_cameras(n_views: int, seed: int, *, width: int = 64, height: int = 64,
                          fov_deg: float = 40.0, elevation_range=(-10.0, 45.0)) -> Cameras:
    """An orbit with a random start azimuth and one random elevation (seeded)."""
    rng = np.random.default_rng([int(seed), 0xCA3])
    return orbit_cameras(n_views, width=width, height=height, fov_deg=fov_deg,
                         elevation_deg=float(rng.uniform(*elevation_range)),
                         azimuth0_deg=float(rng.uniform(0, 360)))
