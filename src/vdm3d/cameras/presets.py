"""Camera movement presets: dolly, pan, tilt, orbit, truck, pedestal, zoom - composable, per-frame speeds.

A :class:`Movement` is one kind of motion with a speed per frame; :func:`apply_movements` starts
from one camera and, frame after frame, applies every movement's increment in the camera's
**current** local frame (so "pan left while dollying in" curves the path, as on a real rig).

Axes and signs (OpenCV camera: x right, y down, z forward; "up" is the camera's -y):

==========  ====================================================  ======================
kind        motion per frame                                       positive speed means
==========  ====================================================  ======================
dolly       move along the viewing direction, scene units          forward (in)
truck       move along the camera's right axis, scene units        right
pedestal    move along the camera's up axis, scene units           up
pan         turn about the camera's up axis, degrees               left
tilt        turn about the camera's right axis, degrees            up
orbit       circle a pivot ``pivot_depth`` ahead about the camera's up axis, degrees (keeps the pivot centered)   left (camera moves left)
zoom        scale the focal length by ``(1 + speed)``                in (narrower view)
==========  ====================================================  ======================

:data:`PRESETS` maps a name (``dolly-in``, ``pan-left``, ``orbit-right``, ...) to a description and
its movements. Default speeds follow WorldWarp's presets where they exist (dolly 0.008 units and
orbit 0.1 deg per frame; SEED_SYSTEMS.md §4.2) and are scaled by the ``speed`` factor.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Sequence

import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.rotations import axis_angle_matrix
from vdm3d.errors import ConfigError

MovementKind = Literal["dolly", "truck", "pedestal", "pan", "tilt", "orbit", "zoom"]


@dataclasses.dataclass(frozen=True)
class Movement:
    """One motion with its speed per frame (units: see the module table)."""

    kind: MovementKind
    speed: float | int
    pivot_depth: float | int = 2.0
    """orbit only: distance ahead of the camera of the point it circles."""


PRESETS: dict[str, tuple[str, tuple[Movement, ...]]] = {
    "static": ("no motion", ()),
    "dolly-in": ("move forward 0.008 units per frame", (Movement("dolly", 0.008),)),
    "dolly-out": ("move backward 0.008 units per frame", (Movement("dolly", -0.008),)),
    "truck-left": ("slide left 0.008 units per frame", (Movement("truck", -0.008),)),
    "truck-right": ("slide right 0.008 units per frame", (Movement("truck", 0.008),)),
    "pedestal-up": ("rise 0.008 units per frame", (Movement("pedestal", 0.008),)),
    "pedestal-down": ("sink 0.008 units per frame", (Movement("pedestal", -0.008),)),
    "pan-left": ("turn left 0.1 degree per frame", (Movement("pan", 0.1),)),
    "pan-right": ("turn right 0.1 degree per frame", (Movement("pan", -0.1),)),
    "tilt-up": ("look up 0.1 degree per frame", (Movement("tilt", 0.1),)),
    "tilt-down": ("look down 0.1 degree per frame", (Movement("tilt", -0.1),)),
    "orbit-left": ("circle left around a point 2 units ahead, 0.1 degree per frame", (Movement("orbit", 0.1),)),
    "orbit-right": ("circle right around a point 2 units ahead, 0.1 degree per frame", (Movement("orbit", -0.1),)),
    "zoom-in": ("focal length x1.005 per frame", (Movement("zoom", 0.005),)),
    "zoom-out": ("focal length /1.005 per frame", (Movement("zoom", -0.005 / 1.005),)),
    "dolly-zoom": ("dolly out while zooming in (vertigo effect)", (Movement("dolly", -0.008), Movement("zoom", 0.004))),
    "dolly-in-pan-left": ("move forward while turning left", (Movement("dolly", 0.008), Movement("pan", 0.1))),
}


def preset_movements(names: Sequence[str], speed: float | int = 1.0) -> list[Movement]:
    """The movements of one or more presets (composed), with speeds multiplied by ``speed``."""
    out = []
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"unknown movement preset {name!r}; choose from: {', '.join(PRESETS)}.")
        out += [dataclasses.replace(m, speed=m.speed * speed) for m in PRESETS[name][1]]
    return out


def _step(c2w: torch.Tensor, f: float, m: Movement) -> tuple[torch.Tensor, float]:
    """Apply one movement increment to a single ``c2w [4, 4]`` and focal scale."""
    R, t = c2w[:3, :3], c2w[:3, 3]
    right, up, fwd = R[:, 0], -R[:, 1], R[:, 2]
    out = c2w.clone()
    ang = torch.tensor(math.radians(m.speed), dtype=c2w.dtype)
    if m.kind == "dolly":
        out[:3, 3] = t + m.speed * fwd
    elif m.kind == "truck":
        out[:3, 3] = t + m.speed * right
    elif m.kind == "pedestal":
        out[:3, 3] = t + m.speed * up
    elif m.kind == "pan":  # right-hand rotation about "up" turns the view to the left
        out[:3, :3] = axis_angle_matrix(up, ang) @ R
    elif m.kind == "tilt":  # right-hand rotation about "right" lifts forward toward up (-y)
        out[:3, :3] = axis_angle_matrix(right, ang) @ R
    elif m.kind == "orbit":  # rotate the rig about the pivot; -angle about "up" moves the camera left
        rot = axis_angle_matrix(up, -ang)
        pivot = t + m.pivot_depth * fwd
        out[:3, :3] = rot @ R
        out[:3, 3] = pivot + rot @ (t - pivot)
    elif m.kind == "zoom":
        f = f * (1.0 + m.speed)
    else:  # pragma: no cover - Literal guards this
        raise ConfigError(f"unknown movement kind {m.kind!r}.")
    return out, f


def apply_movements(start: Cameras, movements: Sequence[Movement], frames: int,
                    speed_per_frame: Sequence[float | int] | None = None) -> Cameras:
    """Cameras ``[frames]``: frame 0 is ``start`` (one camera), each next frame adds every movement once.

    ``speed_per_frame`` (length ``frames - 1``) scales the step into each frame, e.g. an ease-in
    ramp; by default every step has speed 1.
    """
    if start.shape not in ((), (1,)):
        raise ConfigError(f"apply_movements: start must be one camera, got batch {tuple(start.shape)}.")
    if frames < 1:
        raise ConfigError(f"apply_movements: frames must be >= 1, got {frames}.")
    scales = [1.0] * (frames - 1) if speed_per_frame is None else [float(s) for s in speed_per_frame]
    if len(scales) != frames - 1:
        raise ConfigError(f"apply_movements: speed_per_frame needs {frames - 1} values, got {len(scales)}.")
    cam = start.reshape(1).to(torch.float64)
    c2w, f = cam.c2w[0], 1.0
    c2ws, fs = [c2w], [f]
    for s in scales:
        for m in movements:
            c2w, f = _step(c2w, f, dataclasses.replace(m, speed=m.speed * s))
        c2ws.append(c2w)
        fs.append(f)
    Ks = cam.Ks.repeat(frames, 1, 1)
    scale = torch.tensor(fs, dtype=torch.float64)
    Ks[:, 0, 0] *= scale
    Ks[:, 1, 1] *= scale
    return Cameras(Ks, torch.stack(c2ws), start.width, start.height).to(start.dtype)
