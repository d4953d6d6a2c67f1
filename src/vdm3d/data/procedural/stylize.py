"""Stylization cases with ground truth: a textured world, a camera path through it, and a style view
off the path (VideoFrom3D's task, made measurable).

The job sees only the geometry (the coarse, untextured mesh) and the style image, a textured render
from :attr:`StylizeCase.style_camera`; the ground truth is the textured render along
:attr:`StylizeCase.cameras`. Objects are filmed on an arc of their orbit, rooms on a walk
(:func:`~vdm3d.data.procedural.rooms.room_path`), real meshes on an arc like objects.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vdm3d.cameras.camera import Cameras
from vdm3d.data.procedural.cameras import orbit_cameras, orbit_distance
from vdm3d.data.procedural.objects import make_object
from vdm3d.data.procedural.rooms import make_room, room_path
from vdm3d.geometry.mesh_scene import MeshScene

OBJECT_FOV_DEG = 40.0
ROOM_FOV_DEG = 60.0
ROOM_STEP = 0.04          # metres per frame
STYLE_ELEVATION_DEG = 30.0  # the style view looks from this much higher than the arc's middle


@dataclasses.dataclass(frozen=True)
class StylizeCase:
    """A world, its path ``cameras [F]`` and the style camera ``[1]`` (same size)."""

    name: str
    scene: MeshScene
    cameras: Cameras
    style_camera: Cameras


def _arc(scene: MeshScene, name: str, seed: int, frames: int, size: int, deg_per_frame: float | None
         ) -> StylizeCase:
    rng = np.random.default_rng([int(seed), 0x57])
    step = float(rng.uniform(2.0, 6.0)) if deg_per_frame is None else float(deg_per_frame)
    elev = float(rng.uniform(5.0, 30.0))
    az0 = float(rng.uniform(0.0, 360.0))
    full = orbit_cameras(int(round(360.0 / step)), width=size, height=size, fov_deg=OBJECT_FOV_DEG,
                         elevation_deg=elev, azimuth0_deg=az0)
    cams = full[: frames] if frames <= len(full) else Cameras.cat([full] * (frames // len(full) + 1))[:frames]
    mid = az0 + step * (frames - 1) / 2
    style = orbit_cameras(1, width=size, height=size, fov_deg=OBJECT_FOV_DEG,
                          elevation_deg=min(elev + STYLE_ELEVATION_DEG, 75.0), azimuth0_deg=mid,
                          radius=orbit_distance(OBJECT_FOV_DEG))
    return StylizeCase(name, scene, cams, style)


def object_case(seed: int, frames: int, size: int = 64, deg_per_frame: float | None = None) -> StylizeCase:
    """A procedural object (unit sphere) on an arc of its orbit at ``deg_per_frame`` (seeded 2-6 deg)."""
    return _arc(make_object(seed), f"object-{seed}", seed, frames, size, deg_per_frame)


def mesh_case(scene: MeshScene, name: str, seed: int, frames: int, size: int = 64,
              deg_per_frame: float | None = None) -> StylizeCase:
    """A loaded mesh (normalized to the unit sphere) on an arc, like :func:`object_case`."""
    return _arc(scene.normalized(1.0), name, seed, frames, size, deg_per_frame)


def room_case(seed: int, frames: int, size: int = 64, step: float = ROOM_STEP) -> StylizeCase:
    """A furnished room walked for ``frames`` frames; the style view is the middle of another walk in
    the same room. Raises ``ValueError`` when the room has no free path that long (skip the seed)."""
    scene = make_room(seed)
    cams = room_path(scene, frames, seed * 16 + 1, width=size, height=size, fov_deg=ROOM_FOV_DEG, step=step)
    other = room_path(scene, 9, seed * 16 + 2, width=size, height=size, fov_deg=ROOM_FOV_DEG, step=step)
    return StylizeCase(f"room-{seed}", scene, cams, other[4:5])
