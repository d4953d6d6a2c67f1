"""Camera trajectories: :class:`Trajectory` (cameras in time order + fps + provenance) and generators.

Generators (all return :class:`Trajectory`, OpenCV c2w, world z up unless they follow input cameras):

* :func:`orbit` - a circle around a target at fixed elevation (the demo path).
* :func:`sv3d_static_orbit` - SV3D's 21 views: azimuths ``linspace(0, 360, 22)[1:] % 360``, so the
  **last** frame is azimuth 0, the input view (SEED_SYSTEMS.md §1.3, §8.1).
* :func:`sv3d_dynamic_orbit` - SV3D's seeded random-sinusoid elevation with jittered, increasing
  azimuths (§1.5): 84 samples, 84 sine components with whole-cycle frequencies 1-4, amplitudes
  U(0.5, 10) deg, phases 0 or pi; azimuth steps U(0, 2) scaled to just under 360 deg; circular
  moving average of width 5; redraw until ``max |elevation| < 90``; every 4th sample; rolled so the
  input view (azimuth 0) is last. Uses ``numpy.random.default_rng(seed)``, so it is reproducible
  but not bit-identical to the reference's global-state draws.
* :func:`v3d_orbit` - V3D's 18 views, 20 degree steps, radius 2, fov 60, elevation 0 (§2.3).
* :func:`llff_spiral` - LLFF's forward-facing spiral around the average input camera, focused at a
  depth derived from the near/far bounds (``1 / ((1 - 0.75) / near + 0.75 / far)``).
* :func:`interpolate_keyframes` - slerp between keyframe rotations, a C2 cubic spline through the
  keyframe positions, optional constant-speed reparametrization (equal arc length per frame) and
  linearly interpolated field of view / principal point.

SV3D-style angles use :func:`vdm3d.cameras.io.cameras_from_sv3d`: azimuth 0 on +x, counter-clockwise
seen from above, elevation from the xy-plane.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras, intrinsics, look_at
from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.cameras.rotations import matrix_from_quat, quat_from_matrix, slerp
from vdm3d.errors import CameraError, ConfigError

Real = float | int  # beartype does not apply the int -> float numeric tower

SV3D_FRAMES = 21
V3D_FRAMES, V3D_RADIUS, V3D_FOV_DEG, V3D_SIZE = 18, 2.0, 60.0, 512


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Cameras ``[F]`` in time order, the frame rate, and where the path came from."""

    cameras: Cameras
    fps: Real = 24.0
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.cameras.shape) != 1 or self.cameras.shape[0] < 1:
            raise CameraError(f"Trajectory: cameras must be a non-empty 1D batch [F], got shape "
                              f"{tuple(self.cameras.shape)}.")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise CameraError(f"Trajectory: fps must be a positive number, got {self.fps}.")
        object.__setattr__(self, "fps", float(self.fps))

    def __len__(self) -> int:
        return self.cameras.shape[0]

    @property
    def duration_s(self) -> float:
        return len(self) / self.fps

    @property
    def times_s(self) -> Float[Tensor, "F"]:
        return torch.arange(len(self), dtype=torch.float64) / self.fps

    def path_length(self) -> float:
        c = self.cameras.centers.double()
        return float((c[1:] - c[:-1]).norm(dim=-1).sum()) if len(self) > 1 else 0.0

    def with_cameras(self, cameras: Cameras, **provenance: Any) -> "Trajectory":
        return Trajectory(cameras, self.fps, {**self.provenance, **provenance})


def _up() -> Tensor:
    return torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def orbit(frames: int = 36, radius: Real = 2.5, elevation_deg: Real = 20.0, fov_deg: Real = 50.0,
          width: int = 512, height: int = 512, start_azimuth_deg: Real = 0.0, turns: Real = 1.0,
          target: Sequence[Real] = (0.0, 0.0, 0.0), fps: Real = 24.0, dtype: torch.dtype = torch.float32
          ) -> Trajectory:
    """Cameras on a horizontal circle (z up) around ``target``, evenly spaced, looking at it; computed in float64
    and returned as ``dtype`` (``trajectory make`` writes float64: a target far from the origin, such as
    georeferenced coordinates, 5e6 away, would put float32 centres on a 0.5-unit grid)."""
    if frames < 1:
        raise ConfigError(f"orbit: frames must be >= 1, got {frames}.")
    az = start_azimuth_deg + 360.0 * turns * torch.arange(frames, dtype=torch.float64) / frames
    cams = cameras_from_sv3d(elevation_deg, az, radius, fov_deg, width, height, dtype=torch.float64)
    c2w = cams.c2w.clone()
    c2w[:, :3, 3] += torch.as_tensor(target, dtype=torch.float64)
    prov = dict(generator="orbit", frames=frames, radius=radius, elevation_deg=elevation_deg, fov_deg=fov_deg,
                start_azimuth_deg=start_azimuth_deg, turns=turns, target=list(target))
    return Trajectory(Cameras(cams.Ks, c2w, width, height).to(dtype), fps, prov)


def sv3d_static_azimuths_deg(frames: int = SV3D_FRAMES) -> Float[Tensor, "F"]:
    """SV3D's azimuths: ``frames`` steps of ``360 / frames`` degrees ending at 0 (the input view)."""
    a = torch.linspace(0, 360, frames + 1, dtype=torch.float64)[1:] % 360
    return (a - a[-1]) % 360  # re-referenced to the last frame (a no-op here: it is already 0)


def sv3d_static_orbit(elevation_deg: Real | Sequence[Real] = 10.0, frames: int = SV3D_FRAMES,
                      radius: Real = 2.0, fov_deg: Real = 33.8, width: int = 576, height: int = 576,
                      fps: Real = 7.0) -> Trajectory:
    """SV3D's static orbit: constant (or per-frame) elevation, the input view last.

    SV3D conditions on angles only; ``radius`` and ``fov_deg`` place the cameras for reconstruction
    (33.8 deg and 2.0 are the common Zero123/SV3D reimplementation choices, not values from SV3D).
    """
    az = sv3d_static_azimuths_deg(frames)
    elev = torch.as_tensor(elevation_deg, dtype=torch.float64).expand(frames)
    cams = cameras_from_sv3d(elev, az, radius, fov_deg, width, height)
    prov = dict(generator="sv3d_static_orbit", elevation_deg=elevation_deg, frames=frames, radius=radius,
                fov_deg=fov_deg, input_view="last")
    return Trajectory(cams, fps, prov)


def sv3d_dynamic_angles_deg(elevation_deg: Real = 10.0, frames: int = SV3D_FRAMES, seed: int = 0,
                            samples: int = 84) -> tuple[np.ndarray, np.ndarray]:
    """Elevations and azimuths (degrees) of SV3D's dynamic orbit; the input view (azimuth 0) is last."""
    if not 1 <= frames <= samples:
        raise ConfigError(f"sv3d_dynamic_orbit: frames must be in 1..{samples}, got {frames}.")
    rng = np.random.default_rng(seed)
    i = np.arange(samples)
    while True:
        freq = rng.integers(1, 5, samples)  # whole cycles over the loop: the path closes smoothly
        amp = rng.uniform(0.5, 10.0, samples)
        phase = rng.choice([0.0, np.pi], samples)
        elev = elevation_deg + (amp[:, None] * np.sin(2 * np.pi * freq[:, None] * i / samples + phase[:, None])).sum(0)
        steps = rng.uniform(0.0, 2.0, samples - 1)
        total = 360.0 - (360.0 / samples) * rng.uniform(0.0, 2.0)
        azim = np.concatenate([[0.0], np.cumsum(steps * total / steps.sum())])
        # circular moving average, window 5 centered on each sample
        elev = np.mean([np.roll(elev, s) for s in (-2, -1, 0, 1, 2)], axis=0)
        if np.abs(elev).max() < 90:
            break
    sub = samples // frames
    elev, azim = elev[::sub][:frames], azim[::sub][:frames]
    return np.roll(elev, -1), np.roll(azim, -1)


def sv3d_dynamic_orbit(elevation_deg: Real = 10.0, frames: int = SV3D_FRAMES, seed: int = 0, radius: Real = 2.0,
                       fov_deg: Real = 33.8, width: int = 576, height: int = 576, fps: Real = 7.0) -> Trajectory:
    """SV3D's dynamic orbit (random smooth elevation, uneven azimuth steps), seeded."""
    elev, azim = sv3d_dynamic_angles_deg(elevation_deg, frames, seed)
    cams = cameras_from_sv3d(torch.from_numpy(elev), torch.from_numpy(azim), radius, fov_deg, width, height)
    prov = dict(generator="sv3d_dynamic_orbit", elevation_deg=elevation_deg, frames=frames, seed=seed,
                radius=radius, fov_deg=fov_deg, input_view="last",
                elevations_deg=[round(float(e), 6) for e in elev], azimuths_deg=[round(float(a), 6) for a in azim])
    return Trajectory(cams, fps, prov)


def v3d_orbit(frames: int = V3D_FRAMES, radius: Real = V3D_RADIUS, elevation_deg: Real = 0.0,
              fov_deg: Real = V3D_FOV_DEG, width: int = V3D_SIZE, height: int = V3D_SIZE, fps: Real = 3.0) -> Trajectory:
    """V3D's reconstruction cameras: azimuth ``k * 360 / frames`` (20 degree steps for 18), look-at origin."""
    az = 360.0 * torch.arange(frames, dtype=torch.float64) / frames
    cams = cameras_from_sv3d(elevation_deg, az, radius, fov_deg, width, height)
    prov = dict(generator="v3d_orbit", frames=frames, radius=radius, elevation_deg=elevation_deg, fov_deg=fov_deg)
    return Trajectory(cams, fps, prov)


def average_c2w(cameras: Cameras) -> Float[Tensor, "4 4"]:
    """A representative camera: mean center, mean viewing direction and mean image-up direction."""
    c = cameras.flatten().to(torch.float64)
    forward = c.forward.mean(0)
    up = -c.c2w[:, :3, 1].mean(0)  # OpenCV y points down; image up is -y
    center = c.centers.mean(0)
    return look_at(center, center + forward, up)


SPIRAL_SPREAD_DEG = 60
"""The most a camera may look away from the cameras' mean direction for ``llff_spiral`` (LLFF scenes: within
about 20 degrees; an orbit's cameras: 80 degrees and more)."""


def llff_spiral(cameras: Cameras, bounds: Float[Tensor, "N 2"] | None = None, frames: int = 120,
                rotations: Real = 2.0, zrate: Real = 0.5, radius_percentile: Real = 90.0,
                focus_depth: Real | None = None, fps: Real = 30.0) -> Trajectory:
    """LLFF's spiral render path around the average of forward-facing ``cameras``.

    Radii per axis are the ``radius_percentile`` of the input centers' offsets in the average
    camera's frame; the path circles ``rotations`` times in the image plane while moving
    ``sin(zrate * theta)`` along the view axis, always looking at the focus point ``focus_depth``
    ahead (default from ``bounds``: LLFF's weighted harmonic mean of 0.9 * near and 5 * far).
    """
    cams = cameras.flatten().to(torch.float64)
    mean_forward = cams.forward.mean(0)
    mean_forward = mean_forward / mean_forward.norm().clamp_min(1e-12)
    sideways = int((cams.forward @ mean_forward < math.cos(math.radians(SPIRAL_SPREAD_DEG))).sum())
    if sideways:  # an orbit's cameras look from every side: their average camera (and look_at's up) is meaningless
        raise ConfigError(f"llff_spiral: {sideways} of the {len(cams)} cameras look more than {SPIRAL_SPREAD_DEG} "
                          "degrees away from "
                          "their average direction, so they are not forward-facing (an orbit or a walk around "
                          "something); a spiral needs cameras that all look one way, as an LLFF scene's: for cameras "
                          "around an object use `vdm3d trajectory make orbit`.")
    avg = average_c2w(cams)
    if focus_depth is None:
        if bounds is None:
            raise ConfigError("llff_spiral: pass bounds (near/far per camera) or focus_depth.")
        b = torch.as_tensor(bounds, dtype=torch.float64)
        near, far = 0.9 * float(b.min()), 5.0 * float(b.max())
        focus_depth = 1.0 / ((1 - 0.75) / near + 0.75 / far)
    offsets = (cams.centers - avg[:3, 3]) @ avg[:3, :3]  # in the average camera's frame
    rads = torch.quantile(offsets.abs(), radius_percentile / 100.0, dim=0)
    theta = torch.linspace(0, 2 * math.pi * rotations, frames + 1, dtype=torch.float64)[:-1]
    local = torch.stack([torch.cos(theta), torch.sin(theta), torch.sin(theta * zrate)], -1) * rads
    eye = avg[:3, 3] + local @ avg[:3, :3].T
    focus = avg[:3, 3] + focus_depth * avg[:3, 2]
    c2w = look_at(eye, focus.expand_as(eye), (-avg[:3, 1]).expand_as(eye))
    K = cams.Ks[0].expand(frames, 3, 3)
    prov = dict(generator="llff_spiral", frames=frames, rotations=rotations, zrate=zrate,
                radius_percentile=radius_percentile, focus_depth=focus_depth, radii=rads.tolist())
    return Trajectory(Cameras(K.clone(), c2w, cams.width, cams.height).to(cameras.dtype), fps, prov)


def _arc_length_params(spline, u_knots: np.ndarray, frames: int, closed: bool) -> np.ndarray:
    """Parameters ``u`` at equal arc length along a position spline (dense sampling + inversion)."""
    u_dense = np.linspace(u_knots[0], u_knots[-1], max(2000, 50 * len(u_knots)))
    p = spline(u_dense)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-12:  # the camera does not move: keep the keyframe timing
        return np.linspace(u_knots[0], u_knots[-1], frames, endpoint=not closed)
    targets = np.linspace(0.0, s[-1], frames, endpoint=not closed)
    return np.interp(targets, s, u_dense)


def interpolate_keyframes(keyframes: Cameras, frames: int, times: Sequence[Real] | None = None,
                          constant_speed: bool = True, closed: bool = False, fps: Real = 24.0) -> Trajectory:
    """A smooth path through keyframe cameras ``[K]``.

    Positions follow a C2 cubic spline (natural ends, or periodic when ``closed``) over the
    keyframe times (default 0, 1, ..., K-1); rotations are slerped between consecutive keyframes;
    horizontal field of view, aspect ``fy / fx`` and principal point are interpolated linearly.
    With ``constant_speed`` the frames are spaced at equal arc length along the position spline
    (so a keyframe need not land on a frame); otherwise they are equally spaced in time.
    """
    from scipy.interpolate import CubicSpline

    kf = keyframes.flatten().to(torch.float64)
    n = len(kf)
    if n < 2 or frames < 2:
        raise ConfigError(f"interpolate_keyframes: need at least 2 keyframes and 2 frames, got {n} and {frames}.")
    centers = kf.centers.numpy()
    quats = quat_from_matrix(kf.R)
    fov = kf.fov_x_deg.numpy()
    aspect, cx, cy = (kf.fy / kf.fx).numpy(), kf.cx.numpy(), kf.cy.numpy()
    if closed:  # repeat the first keyframe at the end so the loop closes
        centers = np.concatenate([centers, centers[:1]])
        quats = torch.cat([quats, quats[:1]])
        fov, aspect, cx, cy = (np.concatenate([a, a[:1]]) for a in (fov, aspect, cx, cy))
    u = np.arange(len(centers), dtype=np.float64) if times is None else np.asarray(times, np.float64)
    if closed and times is not None and len(u) == n:
        u = np.concatenate([u, [u[-1] + (u[-1] - u[0]) / max(n - 1, 1)]])
    if len(u) != len(centers) or np.any(np.diff(u) <= 0):
        raise ConfigError("interpolate_keyframes: times must be strictly increasing, one per keyframe.")
    spline = CubicSpline(u, centers, bc_type="periodic" if closed else "natural")
    uf = _arc_length_params(spline, u, frames, closed) if constant_speed else \
        np.linspace(u[0], u[-1], frames, endpoint=not closed)
    seg = np.clip(np.searchsorted(u, uf, side="right") - 1, 0, len(u) - 2)
    t = (uf - u[seg]) / (u[seg + 1] - u[seg])
    q = slerp(quats[seg], quats[seg + 1], torch.from_numpy(t))
    c2w = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    c2w[:, :3, :3] = matrix_from_quat(q)
    c2w[:, :3, 3] = torch.from_numpy(spline(uf))
    lerp = lambda a: torch.from_numpy(np.interp(uf, u, a))  # noqa: E731
    fx = 0.5 * kf.width / torch.tan(torch.deg2rad(lerp(fov)) / 2)
    Ks = intrinsics(fx, fx * lerp(aspect), lerp(cx), lerp(cy))
    prov = dict(generator="interpolate_keyframes", keyframes=n, frames=frames, constant_speed=constant_speed,
                closed=closed)
    return Trajectory(Cameras(Ks, c2w, kf.width, kf.height).to(keyframes.dtype), fps, prov)
