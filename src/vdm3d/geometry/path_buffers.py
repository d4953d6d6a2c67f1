"""Geometry buffers of a mesh along a camera path: what VideoFrom3D renders in Blender, without Blender.

For a :class:`~vdm3d.geometry.mesh_scene.MeshScene` (any mesh file, see
:func:`~vdm3d.geometry.mesh_scene.load_mesh_scene`) and cameras ``[F]`` in time order,
:func:`render_path` gives per frame the z-depth, world normals, coverage, line-art edges (silhouettes,
creases, boundaries; :mod:`vdm3d.geometry.mesh_render`) and soft edges (:func:`~vdm3d.geometry.edges.soft_edges`),
plus the exact forward flow between consecutive frames. The mesh's own colours are never read: the
job only ever sees its geometry.

Correspondences come from depth and poses (:func:`~vdm3d.geometry.flow.flow_from_depth`), so they are
exact up to the depth buffer's precision and come with an occlusion test; they replace Blender's
16-bit colour-coded "projector" maps. :meth:`PathBuffers.correspondence` relates any two frames
(an arc's end view back to its start), :meth:`PathBuffers.warp` pulls an image of one frame into
another through it. :func:`fuse_along_path` averages a video's frames along these correspondences
(temporal fusion: what a projector texture does in Blender, without baking a texture).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.edges import soft_edges
from vdm3d.geometry.flow import flow_from_depth, warp_backward
from vdm3d.geometry.mesh_render import SceneLike, as_scene, render_buffers

PATH_SSAA = 3  # render_path's supersampling of the line art and coverage
FLOW_REL_TOL = 0.02  # occlusion test: a point is seen when the target's depth agrees within 2 %


@dataclasses.dataclass(frozen=True)
class PathBuffers:
    """Geometry of the mesh seen from each camera of a path (batch ``F`` in time order)."""

    cameras: Cameras
    depth: Float[Tensor, "F H W"]
    """camera z-depth, 0 where no surface"""
    normals: Float[Tensor, "F H W 3"]
    """world-frame unit normals facing the camera, 0 where no surface"""
    alpha: Float[Tensor, "F H W"]
    """coverage in [0, 1]"""
    edges: Float[Tensor, "F H W"]
    """line art: 1 on silhouette, crease, boundary and instance-boundary pixels"""
    soft: Float[Tensor, "F H W"]
    """soft edges from depth/normal/coverage discontinuities (the HED substitute)"""
    flow: Float[Tensor, "F1 H W 2"]
    """forward flow frame t -> t+1 in pixels, 0 where frame t sees no surface"""
    flow_valid: Bool[Tensor, "F1 H W"]
    """the point of frame t is seen by frame t+1 (inside, in front, not occluded)"""

    def __len__(self) -> int:
        return self.depth.shape[0]

    def correspondence(self, dst: int, src: int) -> tuple[Float[Tensor, "H W 2"], Bool[Tensor, "H W"]]:
        """For every pixel of frame ``dst``: its position in frame ``src`` (as a flow) and whether
        ``src`` sees that point (VideoFrom3D's ``corres_end`` with ``dst`` = the arc's end)."""
        return flow_from_depth(self.depth[dst], self.cameras[dst], self.cameras[src], self.depth[src],
                               rel_tol=FLOW_REL_TOL)

    def warp(self, image_src: Float[Tensor, "H W C"], src: int, dst: int
             ) -> tuple[Float[Tensor, "H W C"], Bool[Tensor, "H W"]]:
        """``image_src`` (frame ``src``) seen from frame ``dst``: each ``dst`` pixel takes the colour at
        its correspondence (bilinear); pixels that ``src`` does not see are 0 and invalid."""
        flow, valid = self.correspondence(dst, src)
        out = warp_backward(image_src, flow)
        return torch.where(valid[..., None], out, torch.zeros_like(out)), valid


def fuse_along_path(buffers: PathBuffers, frames: Float[Tensor, "F H W C"], radius: int, tau: float
                    ) -> Float[Tensor, "F H W C"]:
    """Temporal fusion along the exact correspondence: frame ``t`` becomes the weighted mean of itself
    (weight 1) and every frame ``s`` with ``0 < |s - t| <= radius`` warped into it where ``s`` sees
    the point (weight ``exp(-(s - t)^2 / (2 tau^2))``, occluded and out-of-view points take none).

    A surface point then carries nearly the same colour in every frame that sees it, so frame-to-frame
    flicker of a generator (and the jump where two anchors meet) is spread over ``~2 tau`` frames,
    while disocclusions keep the frame's own colours. Written here (not a library call) because it
    needs the depth-tested mesh correspondences of :class:`PathBuffers`. ``radius = 0`` returns the
    frames unchanged.
    """
    if radius <= 0 or len(frames) < 2:
        return frames
    out = []
    for t in range(len(frames)):
        acc = frames[t].clone()
        weight = torch.ones(frames.shape[1:3], dtype=frames.dtype)
        for s in range(max(0, t - radius), min(len(frames), t + radius + 1)):
            if s == t:
                continue
            w = math.exp(-0.5 * ((s - t) / tau) ** 2)
            warped, valid = buffers.warp(frames[s], s, t)
            seen = valid.to(frames.dtype) * w
            acc += seen[..., None] * warped
            weight += seen
        out.append(acc / weight[..., None])
    return torch.stack(out)


def consecutive_flows(depth: Float[Tensor, "F H W"], cameras: Cameras
                      ) -> tuple[Float[Tensor, "F1 H W 2"], Bool[Tensor, "F1 H W"]]:
    """Forward flow ``t -> t+1`` for every frame with a surface (0 elsewhere) and its validity."""
    flows, valids = [], []
    for t in range(depth.shape[0] - 1):
        flow, valid = flow_from_depth(depth[t], cameras[t], cameras[t + 1], depth[t + 1], rel_tol=FLOW_REL_TOL)
        flows.append(torch.where((depth[t] > 0)[..., None], flow, torch.zeros_like(flow)))
        valids.append(valid)
    h, w = depth.shape[1:]
    if not flows:
        return depth.new_zeros(0, h, w, 2), torch.zeros(0, h, w, dtype=torch.bool)
    return torch.stack(flows), torch.stack(valids)


def render_path(scene: SceneLike, cameras: Cameras, *, ssaa: int = PATH_SSAA, crease_deg: float = 30.0,
                progress: Callable[[int, int], None] | None = None, chunk: int = 16) -> PathBuffers:
    """Render the geometry buffers and consecutive flows of ``scene`` along ``cameras [F]``.

    ``ssaa`` (odd) supersamples coverage and OR-s the line art over the sub-pixels (as the tiny models'
    training renders do), while depth and normals stay exact at pixel centres. With ``progress``, the
    frames are rendered ``chunk`` at a time (the same pictures; the scene is uploaded once) and
    ``progress(done, frames)`` is called after each chunk.
    """
    scene = as_scene(scene)
    cams = cameras.reshape(-1)
    step = len(cams) if progress is None else max(1, chunk)
    parts = []
    for s in range(0, len(cams), step):
        b = render_buffers(scene, cams[s:s + step], ssaa=ssaa, crease_deg=crease_deg)
        parts.append((b.depth, b.normals, b.alpha, b.edges))
        if progress is not None:
            progress(min(s + step, len(cams)), len(cams))
    depth, normals, alpha, edges = (torch.cat(x) for x in zip(*parts))
    soft = soft_edges(depth, normals, alpha)
    flow, valid = consecutive_flows(depth, cams)
    return PathBuffers(cams, depth, normals, alpha, edges, soft, flow, valid)
