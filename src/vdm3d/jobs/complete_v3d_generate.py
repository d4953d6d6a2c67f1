"""The generation stage of ``vdm3d complete --method v3d``: a clip along a camera path conditioned on
the input views' features reprojected into every frame (V3D's scene mode, SEED_SYSTEMS.md §2.1).

* **Paths** (:func:`between_paths`, or the planner's, or a file): by default the input cameras are
  ordered into a chain (start at the one farthest from their centroid, then always the nearest one
  left) and each consecutive pair is joined by a clip whose first and last frames are the two input
  cameras (positions interpolated linearly, rotations slerped), so the clips sweep the space between
  the photos, where held-out views of a sparse capture usually are.
* **Condition**: the reference image (the clip's first input), the clip's cameras relative to it,
  and every input view with its camera, reprojected by the model at ``depths`` planes between
  ``near`` and ``far`` (:func:`vdm3d.geometry.reproject.depth_range` of the baseline's depth at the
  input views). When the scene's median depth is more than :data:`SCALE_TOLERANCE` times off
  :data:`TRAINING_MEDIAN_DEPTH` (a COLMAP scene has any scale), cameras and depths are rescaled to it,
  the scale the model was trained at.
* **Sampling**: one pass per clip, DDIM with trailing spacing and CFG (the null branch drops the
  reference and the reprojected features).
* Frames at an input camera are replaced by the photo and are not returned as pseudo views.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.trajectory import Trajectory, interpolate_keyframes
from vdm3d.diffusion.guiders import CFG
from vdm3d.diffusion.samplers import sample
from vdm3d.diffusion.schedules import DdimSchedule
from vdm3d.jobs.complete_generate import _resize, generation_size
from vdm3d.options import Range
from vdm3d.protocols import Conditioning
from vdm3d.recon.planning import chain_order
from vdm3d.views import Views

#: median z-depth of the rooms the embedded V3D model was trained on (metres; 2nd-98th percentiles 0.97-5.15)
TRAINING_MEDIAN_DEPTH = 2.74
#: scenes whose median depth is within this factor of it keep their own scale (metric rooms vary that much)
SCALE_TOLERANCE = 2.0


@dataclasses.dataclass(frozen=True)
class V3dConfig:
    """V3D's scene mode (``--method v3d``): reprojected-feature video along a path, then 3DGS."""

    model: str = "v3d_scene"
    """Embedded model with the reprojected-feature condition (vdm3d models list), or the .json file a `vdm3d train
    v3d` run wrote."""
    paths: Literal["between", "planned"] = "between"
    """'between' (clips joining consecutive input cameras) or 'planned' (the hole-driven planner)."""
    max_clips: Annotated[int, Range(1)] = 6
    """Generate at most this many clips (the first ones in path order)."""
    steps: Annotated[int, Range(1)] = 25
    """DDIM steps per clip."""
    cfg_scale: Annotated[float, Range(0)] = 2.0
    """Classifier-free guidance scale (1 turns CFG off)."""
    cfg_rescale: Annotated[float, Range(0, 1)] = 0.7
    """CFG rescale phi."""
    eta: Annotated[float, Range(0, 1)] = 0.0
    """DDIM eta (0: deterministic)."""
    pseudo_weight: Annotated[float, Range(0)] = 0.1
    """Weight of a generated frame's loss against an input view's (the generated ones count less)."""
    pseudo_perceptual: Annotated[float, Range(0)] = 0.1
    """Perceptual term inside the generated frames' loss."""
    hole_boost: Annotated[float, Range(0)] = 1.0
    """Per-pixel weight of a generated frame where the baseline is empty there (alpha 0), rising linearly
    from 1 where it is opaque: the frames count most where the photos say nothing."""


def between_paths(cameras: Cameras, frames: int, fps: float = 8.0) -> list[Trajectory]:
    """One clip of ``frames`` cameras between each consecutive pair of the chain of input cameras."""
    order = chain_order(cameras)
    out = []
    for a, b in zip(order[:-1], order[1:]):
        path = interpolate_keyframes(Cameras.cat([cameras[a:a + 1], cameras[b:b + 1]]), frames,
                                     constant_speed=False, fps=fps)
        cams = path.cameras
        c2w = cams.c2w.clone()
        c2w[0], c2w[-1] = cameras.c2w[a], cameras.c2w[b]  # exactly the input poses (no round-off)
        out.append(Trajectory(Cameras(cams.Ks, c2w, cams.width, cams.height), fps,
                              {**path.provenance, "generator": "vdm3d.jobs.complete_v3d.between", "view": a,
                               "to_view": b}))
    return out


def input_frames(path: Cameras, inputs: Cameras, tol: float = 1e-5) -> dict[int, int]:
    """``{frame: input index}`` for the frames of ``path`` that sit exactly at an input camera."""
    d = (path.c2w[:, None].double() - inputs.c2w[None].double()).abs().flatten(2).amax(-1)  # [F, N]
    hit = d.min(1)
    return {int(f): int(hit.indices[f]) for f in torch.nonzero(hit.values < tol).flatten().tolist()}


def _scaled(cameras: Cameras, s: float) -> Cameras:
    c2w = cameras.c2w.clone()
    c2w[..., :3, 3] = c2w[..., :3, 3] * s
    return Cameras(cameras.Ks, c2w, cameras.width, cameras.height)


def generate_v3d_clip(backbone: Any, inputs: Views, path: Trajectory, reference: int, depth_range: tuple[float, float],
                      median_depth: float, config: V3dConfig = V3dConfig(), seed: int = 0
                      ) -> tuple[Views | None, Tensor]:
    """Sample one clip along ``path`` from the posed ``inputs`` (all of them reprojected).

    Returns the pseudo views (the frames not at an input camera; ``None`` when every frame is an input)
    and the whole clip ``[F, H, W, 3]`` with the photos at the frames that are input cameras, both at
    the path cameras' size: the model samples at ``generation_size`` (multiples of 16, e.g. 64 x 48
    for a 63 x 47 scene) and its frames are resized back, so that the clip's video matches the
    cameras saved beside it."""
    cams = path.cameras
    frames = len(cams)
    w, h = generation_size(cams.width, cams.height, max(backbone.resolution), backbone.spatial_factor)
    s = TRAINING_MEDIAN_DEPTH / max(median_depth, 1e-9)
    s = 1.0 if 1 / SCALE_TOLERANCE <= s <= SCALE_TOLERANCE else s
    small = _scaled(cams.resize(w, h), s).to(dtype=torch.float32)
    src = _scaled(inputs.cameras.resize(w, h), s).to(dtype=torch.float32)
    images = _resize(inputs.images.float(), w, h)  # [N, h, w, 3]
    order = [reference] + [i for i in range(len(inputs)) if i != reference]
    near, far = depth_range
    cond = Conditioning(reference=images[reference][None], cameras=small.reshape(1, frames),
                        extras={"reference_c2w": src.c2w[reference][None], "scene_images": images[order][None],
                                "scene_cameras": src[order].reshape(1, len(order)),
                                "scene_depth_range": torch.tensor([[near * s, far * s]])})
    guider = CFG(scale=config.cfg_scale, rescale=config.cfg_rescale) if config.cfg_scale != 1.0 else None
    hl, wl = h // backbone.spatial_factor, w // backbone.spatial_factor
    z = sample(backbone, DdimSchedule(config.steps, "trailing").sigmas(), cond=cond,
               shape=(1, frames, backbone.latent_channels, hl, wl), generator=torch.Generator().manual_seed(seed),
               guider=guider, eta=config.eta)
    with torch.no_grad():
        clip = backbone.decode(z)[0].clamp(0, 1).float()  # [F, h, w, 3]
    clip = _resize(clip, cams.width, cams.height)
    known = input_frames(cams, inputs.cameras)
    for f, i in known.items():
        clip[f] = _resize(inputs.images[i:i + 1].float(), cams.width, cams.height)[0]
    keep = [f for f in range(frames) if f not in known]
    if not keep:
        return None, clip
    return Views(clip[keep], cams[keep], origin=("generated",) * len(keep), fps=path.fps), clip


__all__ = ["SCALE_TOLERANCE", "TRAINING_MEDIAN_DEPTH", "V3dConfig", "between_paths", "chain_order", "generate_v3d_clip", "input_frames"]
