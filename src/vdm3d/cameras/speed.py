"""Playing a camera path faster or slower: WorldWarp's speed multiplier (SEED_SYSTEMS.md §4.2 step 4).

``retime(cameras, speed)`` samples the path at times ``0, speed, 2 speed, ...`` (in units of the
original frames) up to its last frame: positions on a cubic spline through the camera centers
(scipy's ``CubicSpline``, natural ends), rotations by normalized linear interpolation of the
neighbouring quaternions (sign-aligned), intrinsics linearly. ``speed = 2`` covers the same path in
half as many frames; ``speed = 0.5`` in twice as many. The first camera is kept exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.rotations import matrix_from_quat, quat_from_matrix
from vdm3d.errors import ConfigError


def retime(cameras: Cameras, speed: float) -> Cameras:
    """``cameras [F]`` resampled at ``speed`` original frames per new frame (see the module docstring)."""
    if not (math.isfinite(speed) and speed > 0):
        raise ConfigError(f"--speed is {speed}; use a positive number (1 = the path as given).")
    cams = cameras.flatten().to(torch.float64)
    n = len(cams)
    if speed == 1.0 or n < 2:
        return cameras
    t = np.arange(0.0, n - 1 + 1e-9, speed)  # [F'] original-frame times
    from scipy.interpolate import CubicSpline

    centers = cams.centers.numpy()
    pos = CubicSpline(np.arange(n), centers, axis=0, bc_type="natural" if n > 2 else "not-a-knot")(t)
    q = quat_from_matrix(cams.R)  # [F, 4]
    for i in range(1, n):  # one hemisphere, so interpolation takes the short way
        if float((q[i] * q[i - 1]).sum()) < 0:
            q[i] = -q[i]
    i0 = np.minimum(np.floor(t).astype(np.int64), n - 2)
    a = torch.from_numpy(t - i0)[:, None]
    i0t = torch.from_numpy(i0)
    qi = (1 - a) * q[i0t] + a * q[i0t + 1]
    R = matrix_from_quat(qi / qi.norm(dim=-1, keepdim=True))
    Ks = (1 - a[:, :, None]) * cams.Ks[i0t] + a[:, :, None] * cams.Ks[i0t + 1]
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(t), 1, 1)
    c2w[:, :3, :3] = R
    c2w[:, :3, 3] = torch.from_numpy(pos)
    c2w[0] = cams.c2w[0]
    return Cameras(Ks, c2w, cams.width, cams.height).to(cameras.dtype)
