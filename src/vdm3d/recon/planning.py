"""Hole-driven camera paths: where a sparse-view 3DGS is empty, seen from near a training view.

GuidedVD-3DGS (§3.5 / §8.4 of ``SEED_SYSTEMS.md``) plans the paths along which a video model fills
a baseline's holes. For each training camera:

1. **Pivots.** A point on the optical axis at ``center depth x s`` for ``s`` in
   :attr:`PlanConfig.pivot_scales` (1, 1/3, 1/10): the depth of the baseline at the centre pixel,
   so the largest pivot sits on the surface the camera looks at and the smallest just in front of it.
2. **Candidates.** The camera orbits the pivot by ``(d_theta, d_phi)`` on the 5 x 5 angle grid
   ``{-30, -15, 0, 15, 30}^2`` deg: ``theta`` tilts about the camera's x axis (up/down), ``phi`` pans
   about its y axis (left/right), the distance to the pivot is kept (``d_r = 0``), and the camera
   keeps looking at the pivot (:func:`orbit_pivot`).
3. **Holes.** The frozen baseline is rendered at every candidate; a hole is ``alpha < 0.7``, eroded
   with a 5 x 5 square (isolated low-alpha pixels are not holes).
4. **Selection.** Candidates whose hole area is 10 % of the image or more are dropped (too far off
   what the video model can ground); of the rest, the ones with the *largest* hole area are kept,
   3 / 2 / 1 per pivot scale.
5. **Paths.** ``(theta, phi)`` go linearly from ``(0, 0)`` (the training camera itself) to the
   candidate's angles over the backbone's clip length.

ViewCrafter's spherical frame is tilted by a fixed 5 deg "elevation"; here the frame is the training
camera's own, which is the same family of paths without the tilt (a choice, not a constant).
:func:`fixed_orbit` gives the ablation that ignores holes: a left-right arc around the middle pivot.

**Hybrid trajectory** (GuidedVD's ``train_*_hybrid_traj``, where a fixed trajectory comes before the
hole-driven pool): in a forward-facing sweep (LLFF's fern) the views differ by where the camera stands,
the held-out views lie between and beside the training ones, and the hole-driven candidates above
swing 15-30 deg away from anything such a view sees. :func:`between_views` gives paths from each
training camera halfway toward its neighbours along the capture (and outward at its two ends);
:attr:`PlanConfig.hybrid` schedules them first, for every capture or only for forward-facing ones
(:func:`forward_facing`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Literal

import cv2
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.rotations import matrix_from_quat, quat_from_matrix, slerp
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.errors import ConfigError
from vdm3d.options import Range
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.render import render


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """How candidate paths are enumerated and chosen (GuidedVD's constants by default)."""

    angles_deg: Annotated[tuple[float, ...], Range()] = (-30.0, -15.0, 0.0, 15.0, 30.0)
    """Angle offsets (deg) of the candidate grid, used for both theta (tilt) and phi (pan)."""
    pivot_scales: Annotated[tuple[float, ...], Range(0, open_min=True)] = (1.0, 1.0 / 3.0, 1.0 / 10.0)
    """Pivot distances as fractions of the centre depth."""
    keep: Annotated[tuple[int, ...], Range(1)] = (3, 2, 1)
    """How many candidates to keep per pivot scale (the largest holes first)."""
    hole_alpha: Annotated[float, Range(0, 1)] = 0.7
    """A pixel is a hole where the baseline's accumulated alpha is below this."""
    erode: Annotated[int, Range(0)] = 5
    """Side of the square that erodes the hole mask (0: no erosion)."""
    max_hole_fraction: Annotated[float, Range(0, 1)] = 0.1
    """Candidates with this fraction of hole pixels or more are dropped."""
    hybrid: Literal["off", "on", "auto"] = "off"
    """GuidedVD's hybrid trajectory: paths between the training cameras go first, then the hole-driven ones;
    auto: only for a forward-facing capture (see --plan.forward-deg)."""
    forward_deg: Annotated[float, Range(0, 90)] = 15.0
    """A capture is forward-facing when every training camera's axis is within this many deg of their mean."""
    between_reach: Annotated[float, Range(0, 1, open_min=True)] = 0.5
    """How far toward each neighbouring training camera a hybrid path goes (0.5: to the middle of the gap)."""

    def __post_init__(self) -> None:
        if len(self.keep) != len(self.pivot_scales):
            raise ConfigError(f"--plan.keep {self.keep} needs one count per --plan.pivot-scales value "
                              f"{self.pivot_scales}; give both the same length.")
        # positive pivot scales: the declared Range, checked with every option (vdm3d.options)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One scored candidate target pose."""

    view: int
    pivot_scale: float
    theta_deg: float
    phi_deg: float
    hole_fraction: float


def _rot_x(a: Tensor) -> Tensor:
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([torch.stack([o, z, z], -1), torch.stack([z, c, -s], -1), torch.stack([z, s, c], -1)], -2)


def _rot_y(a: Tensor) -> Tensor:
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([torch.stack([c, z, s], -1), torch.stack([z, o, z], -1), torch.stack([-s, z, c], -1)], -2)


def orbit_pivot(c2w: Float[Tensor, "4 4"], pivot_distance: float, theta_deg: Float[Tensor, " K"],
                phi_deg: Float[Tensor, " K"]) -> Float[Tensor, "K 4 4"]:
    """Camera-to-world poses that orbit the point ``pivot_distance`` ahead of ``c2w`` on its optical axis.

    The rotation ``Rot = R_y(phi) R_x(theta)`` is expressed in the camera's own (OpenCV) axes: the
    camera centre moves from ``(0, 0, -d)`` to ``Rot (0, 0, -d)`` relative to the pivot and turns by
    ``Rot``, so it keeps looking at the pivot. ``theta = phi = 0`` returns ``c2w`` itself.
    """
    dtype = c2w.dtype
    rot = _rot_y(torch.deg2rad(phi_deg.to(dtype))) @ _rot_x(torch.deg2rad(theta_deg.to(dtype)))  # [K, 3, 3]
    offset = torch.tensor([0.0, 0.0, -float(pivot_distance)], dtype=dtype)
    pivot_cam = -offset  # the pivot in camera coordinates: (0, 0, d)
    out = torch.eye(4, dtype=dtype).repeat(len(rot), 1, 1)
    out[:, :3, :3] = c2w[:3, :3] @ rot
    center_cam = pivot_cam + rot @ offset  # [K, 3] camera-frame position of the new centre
    out[:, :3, 3] = (c2w[:3, :3] @ center_cam.T).T + c2w[:3, 3]
    return out


def center_depth(gaussians: Gaussians, camera: Cameras, backend: str = "auto") -> float:
    """Depth of the baseline at the centre of ``camera`` (batch ``(1,)``): the alpha-normalised depth
    of the central 3 x 3 pixels, or the median over opaque pixels when the centre is empty."""
    with torch.no_grad():
        out = render(gaussians, camera, backend=backend)
    depth, alpha = out.depth[0], out.alpha[0]
    z = depth / alpha.clamp_min(1e-6)
    h, w = z.shape
    c = z[h // 2 - 1:h // 2 + 2, w // 2 - 1:w // 2 + 2]
    a = alpha[h // 2 - 1:h // 2 + 2, w // 2 - 1:w // 2 + 2]
    if bool((a > 0.5).all()):
        return float(c.median())
    opaque = z[alpha > 0.5]
    if len(opaque) == 0:
        raise ConfigError("planning: the baseline renders nothing at a training camera; fit it longer or "
                          "check the cameras.")
    return float(opaque.median())


def hole_fraction(alpha: Float[Tensor, "K H W"], hole_alpha: float = 0.7, erode: int = 5) -> Float[Tensor, " K"]:
    """Fraction of pixels that are holes: ``alpha < hole_alpha``, eroded by an ``erode`` square
    (pixels beyond the border count as holes, so a hole along the image edge shrinks from its inner
    side only, as a hole that continues outside the view should)."""
    out = []
    kernel = np.ones((erode, erode), np.uint8) if erode > 1 else None
    for a in alpha.detach().cpu().numpy():
        mask = (a < hole_alpha).astype(np.uint8)
        if kernel is not None:
            mask = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
        out.append(mask.mean())
    return torch.tensor(np.array(out, dtype=np.float64))


def score_candidates(gaussians: Gaussians, cameras: Cameras, config: PlanConfig = PlanConfig(),
                     backend: str = "auto") -> list[Candidate]:
    """Every candidate of every training camera (batch ``(N,)``) with its hole fraction."""
    grid = torch.tensor(config.angles_deg, dtype=torch.float64)
    theta, phi = torch.meshgrid(grid, grid, indexing="ij")
    theta, phi = theta.reshape(-1), phi.reshape(-1)
    out = []
    for i in range(len(cameras)):
        cam = cameras[i:i + 1]
        depth = center_depth(gaussians, cam, backend)
        for scale in config.pivot_scales:
            c2w = orbit_pivot(cam.c2w[0].double(), depth * scale, theta, phi).to(cam.dtype)
            cands = Cameras(cam.Ks.expand(len(c2w), 3, 3), c2w, cam.width, cam.height)
            alphas = []
            with torch.no_grad():
                for k in range(len(cands)):
                    alphas.append(render(gaussians, cands[k:k + 1], backend=backend).alpha)
            holes = hole_fraction(torch.cat(alphas), config.hole_alpha, config.erode)
            out += [Candidate(i, scale, float(t), float(p), float(h)) for t, p, h in zip(theta, phi, holes)]
    return out


def select_candidates(candidates: list[Candidate], config: PlanConfig = PlanConfig()) -> list[Candidate]:
    """Per view and pivot scale: drop hole fractions >= the limit, keep the largest remaining holes."""
    chosen = []
    for view in sorted({c.view for c in candidates}):
        for scale, k in zip(config.pivot_scales, config.keep):
            pool = [c for c in candidates if c.view == view and c.pivot_scale == scale
                    and c.hole_fraction < config.max_hole_fraction]
            # stable order: largest hole first, ties broken by the grid order (deterministic)
            chosen += sorted(pool, key=lambda c: -c.hole_fraction)[:k]
    return chosen


def path_to(camera: Cameras, pivot_distance: float, theta_deg: float, phi_deg: float, frames: int,
            fps: float = 8.0, **provenance) -> Trajectory:
    """``frames`` cameras whose angles go linearly from the training ``camera`` (batch ``(1,)``) to
    ``(theta, phi)`` around the pivot; frame 0 is the training camera."""
    if frames < 2:
        raise ConfigError(f"planning: a path needs at least 2 frames, got {frames}.")
    t = torch.linspace(0, 1, frames, dtype=torch.float64)
    c2w = orbit_pivot(camera.c2w[0].double(), pivot_distance, t * theta_deg, t * phi_deg).to(camera.dtype)
    c2w[0] = camera.c2w[0]  # exactly the training pose (no round-off)
    cams = Cameras(camera.Ks.expand(frames, 3, 3), c2w, camera.width, camera.height)
    return Trajectory(cams, fps, {"generator": "vdm3d.recon.planning", "pivot_distance": pivot_distance,
                                  "theta_deg": theta_deg, "phi_deg": phi_deg, **provenance})


def plan_paths(gaussians: Gaussians, cameras: Cameras, frames: int, config: PlanConfig = PlanConfig(),
               backend: str = "auto") -> list[Trajectory]:
    """Hole-driven paths for every training camera (batch ``(N,)``), up to ``sum(keep)`` per view."""
    candidates = score_candidates(gaussians, cameras, config, backend)
    depths = {i: center_depth(gaussians, cameras[i:i + 1], backend) for i in range(len(cameras))}
    return [path_to(cameras[c.view:c.view + 1], depths[c.view] * c.pivot_scale, c.theta_deg, c.phi_deg, frames,
                    view=c.view, pivot_scale=c.pivot_scale, hole_fraction=c.hole_fraction)
            for c in select_candidates(candidates, config)]


def fixed_orbit(gaussians: Gaussians, cameras: Cameras, frames: int, angle_deg: float = 30.0,
                pivot_scale: float = 1.0 / 3.0, backend: str = "auto") -> list[Trajectory]:
    """The ablation without hole planning: per training camera, a pan to the left and to the right by
    ``angle_deg`` around the pivot at ``pivot_scale`` of the centre depth."""
    out = []
    for i in range(len(cameras)):
        cam = cameras[i:i + 1]
        d = center_depth(gaussians, cam, backend) * pivot_scale
        out += [path_to(cam, d, 0.0, sign * angle_deg, frames, view=i, pivot_scale=pivot_scale, hole_fraction=math.nan)
                for sign in (-1.0, 1.0)]
    return out


def forward_facing(cameras: Cameras, max_angle_deg: float = 15.0) -> bool:
    """Whether a capture (cameras ``[N]``) is forward-facing: every optical axis within ``max_angle_deg``
    of their mean direction, so the views differ mainly by where the camera stands (LLFF's sweeps)
    rather than by where it looks (a walk through a room)."""
    axes = cameras.c2w[:, :3, 2].double()
    mean = axes.mean(0)
    if float(mean.norm()) < 1e-9:
        return False
    cos = axes @ (mean / mean.norm())
    return bool((cos >= math.cos(math.radians(max_angle_deg))).all())


def chain_order(cameras: Cameras) -> list[int]:
    """Cameras ``[N]`` as a chain: from the one farthest from the centroid, always the nearest next."""
    c = cameras.centers.double()
    left = list(range(len(c)))
    cur = int((c - c.mean(0)).norm(dim=-1).argmax())
    order = [cur]
    left.remove(cur)
    while left:
        cur = min(left, key=lambda j: float((c[j] - c[cur]).norm()))
        order.append(cur)
        left.remove(cur)
    return order


def toward(camera: Cameras, target: Cameras, reach: float, frames: int, fps: float = 8.0,
           **provenance) -> Trajectory:
    """``frames`` cameras from ``camera`` ``reach`` of the way to ``target`` (both batch ``(1,)``):
    centres linear, rotations slerped, the intrinsics of ``camera``; frame 0 is ``camera`` exactly and
    ``reach = 1`` ends exactly at ``target``'s pose. A negative ``reach`` mirrors the move: the centre
    goes the other way and the camera turns by the inverse of the relative rotation."""
    if frames < 2:
        raise ConfigError(f"planning: a path needs at least 2 frames, got {frames}.")
    t = torch.linspace(0, 1, frames, dtype=torch.float64) * reach
    a, b = camera.c2w[0].double(), target.c2w[0].double()
    ra, rb = a[:3, :3], b[:3, :3]
    if reach < 0:
        rb = ra @ rb.T @ ra  # (R_b R_a^T)^-1 R_a: the same turn as toward the target, reversed
    qa, qb = quat_from_matrix(ra), quat_from_matrix(rb)
    c2w = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    c2w[:, :3, :3] = matrix_from_quat(slerp(qa.expand(frames, 4), qb.expand(frames, 4), t.abs()))
    c2w[:, :3, 3] = a[:3, 3] + t[:, None] * (b[:3, 3] - a[:3, 3])
    c2w = c2w.to(camera.dtype)
    c2w[0] = camera.c2w[0]  # exactly the training pose (no round-off)
    cams = Cameras(camera.Ks.expand(frames, 3, 3), c2w, camera.width, camera.height)
    return Trajectory(cams, fps, {"generator": "vdm3d.recon.planning.between_views", "reach": reach,
                                  **provenance})


def between_views(cameras: Cameras, frames: int, reach: float = 0.5, ends: bool = True) -> list[Trajectory]:
    """GuidedVD's hybrid trajectory for a forward-facing sweep: paths between the training cameras
    (batch ``(N,)``), where such a capture's other views lie. The cameras are ordered into a chain
    (:func:`chain_order`); each gets a path ``reach`` of the way toward each chain neighbour (with 0.5
    the two halves of a gap meet in its middle, and every frame is closer to its own photo than to
    the neighbour's), and with ``ends`` each end of the chain also one as far outward, away from its
    only neighbour. Each path's provenance names its ``view`` and ``to_view``."""
    order = chain_order(cameras)
    out = []
    for k, i in enumerate(order):
        cam = cameras[i:i + 1]
        for nb in (order[k - 1] if k > 0 else None, order[k + 1] if k + 1 < len(order) else None):
            if nb is not None:
                out.append(toward(cam, cameras[nb:nb + 1], reach, frames, view=i, to_view=nb))
        if ends and len(order) > 1 and k in (0, len(order) - 1):
            nb = order[1] if k == 0 else order[-2]
            out.append(toward(cam, cameras[nb:nb + 1], -reach, frames, view=i, to_view=nb))
    return out


__all__ = ["Candidate", "PlanConfig", "between_views", "center_depth", "chain_order", "fixed_orbit",
           "forward_facing", "hole_fraction", "orbit_pivot", "path_to", "plan_paths", "score_candidates",
           "select_candidates", "toward"]
