"""V3D's texture refinement: optimize a mesh's UV texture against the views it was baked from.

After meshing, a baked texture is an average of splat renders: soft, and wrong where views disagree.
V3D (SEED_SYSTEMS.md §2.5, ``mesh_recon/refine.py``) refines it with a differentiable rasterizer and
an LPIPS term. Here the rasterization runs once, not per step, because the mesh does not move:

1. :func:`texel_lookup`: the GL renderer (:func:`vdm3d.geometry.mesh_render.render_buffers`) gives the
   exact z-depth of the mesh at every pixel of every view; the pixel's surface point is unprojected,
   snapped to its triangle (:func:`snap_to_triangles`: triangle id and barycentrics), and the
   triangle's UVs are interpolated there -- per pixel, where in the texture it looks.
2. :func:`refine_texture`: the texture is a tensor sampled with ``grid_sample`` at those UVs
   (differentiable in the texels), composited on white with the mesh's coverage, and optimized with
   Adam on ``L1 + perceptual`` (the job's perceptual term) against the views, the input view weighted
   ``input_weight`` times, one view per step in a seeded random order.

UV convention (as :func:`vdm3d.geometry.texture.rasterize_uv`): texel ``(row, col)`` has UV
``((col + 0.5) / S, 1 - (row + 0.5) / S)``, so ``grid_sample``'s ``x = 2u - 1``, ``y = 1 - 2v``
(``align_corners=False``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Callable

import numpy as np
import torch
import trimesh
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.flow import unproject_depth
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.geometry.mesh_scene import Light, MeshScene
from vdm3d.options import Range
from vdm3d.views import Views

UNLIT = Light(ambient=1.0, diffuse=0.0)


@dataclasses.dataclass(frozen=True)
class TextureRefineConfig:
    """Settings of the texture refinement."""

    steps: Annotated[int, Range(1)] = 100
    """Adam steps (one view per step)"""
    lr: Annotated[float, Range(0, open_min=True)] = 0.02
    """learning rate of the texels (colours in [0, 1])"""
    l1_weight: Annotated[float, Range(0)] = 1.0
    perceptual_weight: Annotated[float, Range(0)] = 2.0
    input_weight: Annotated[float, Range(0)] = 4.0
    """loss weight of the input view relative to a generated one"""
    seed: int = 0


def texel_lookup(mesh: trimesh.Trimesh, cameras: Cameras) -> tuple[Float[Tensor, "V H W 2"], Float[Tensor, "V H W"]]:
    """Per pixel of each camera (batch ``(V,)``), the ``grid_sample`` coordinates of the texel the mesh
    shows there, and the mesh's coverage (1 on the surface). ``mesh`` must carry UVs."""
    uv_vertex = np.asarray(mesh.visual.uv, np.float64)
    buf = render_buffers(MeshScene.from_trimesh(mesh, light=UNLIT), cameras, light=UNLIT)
    depth = buf.depth.double()  # [V, H, W], 0 where empty
    v, h, w = depth.shape
    cover = depth > 0
    grid = torch.zeros(v, h, w, 2, dtype=torch.float32)
    points = unproject_depth(depth, cameras).reshape(v, -1, 3)  # [V, H*W, 3]
    hit = cover.reshape(v, -1)
    surface, tri = snap_to_triangles(mesh, points[hit].numpy())
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], surface)
    uv = (uv_vertex[mesh.faces[tri]] * bary[..., None]).sum(1)  # [P, 2]
    coords = torch.from_numpy(np.stack([2 * uv[:, 0] - 1, 1 - 2 * uv[:, 1]], -1)).float()
    flat = grid.reshape(v, -1, 2)
    flat[hit] = coords
    return flat.reshape(v, h, w, 2), cover.float()


def snap_to_triangles(mesh: trimesh.Trimesh, points: np.ndarray, candidates: int = 8
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The closest surface point and its triangle for points on (or very near) the mesh.

    The candidates are the triangles with the ``candidates`` nearest centroids (a KD-tree; marching
    cubes triangles are small and even, so a surface point's own triangle is among them), and the
    exact closest point on each decides. (trimesh's own query needs the optional rtree package.)"""
    from scipy.spatial import cKDTree

    k = min(candidates, len(mesh.faces))
    _, near = cKDTree(mesh.triangles_center).query(points, k=k)
    near = near.reshape(len(points), k)
    tris = mesh.triangles[near.reshape(-1)]  # [P*k, 3, 3]
    closest = trimesh.triangles.closest_point(tris, np.repeat(points, k, axis=0)).reshape(len(points), k, 3)
    best = np.linalg.norm(closest - points[:, None], axis=-1).argmin(1)
    rows = np.arange(len(points))
    return closest[rows, best], near[rows, best]


def sample_texture(texture: Float[Tensor, "S S 3"], grid: Float[Tensor, "V H W 2"], cover: Float[Tensor, "V H W"]
                   ) -> Float[Tensor, "V H W 3"]:
    """The mesh's colours at each pixel (bilinear in the texels), composited on white."""
    tex = texture.permute(2, 0, 1)[None].expand(len(grid), -1, -1, -1)
    rgb = torch.nn.functional.grid_sample(tex, grid, mode="bilinear", padding_mode="border",
                                          align_corners=False).permute(0, 2, 3, 1)
    return rgb * cover[..., None] + (1 - cover[..., None])


def refine_texture(mesh: trimesh.Trimesh, views: Views, config: TextureRefineConfig = TextureRefineConfig(),
                   perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
                   progress: Callable[[str], None] | None = None) -> trimesh.Trimesh:
    """``mesh`` with its UV texture optimized against ``views`` (on white; see the module docstring)."""
    image = mesh.visual.material.baseColorTexture if hasattr(mesh.visual.material, "baseColorTexture") \
        else mesh.visual.material.image
    start = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255)
    grid, cover = texel_lookup(mesh, views.cameras)
    texture = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.Adam([texture], lr=config.lr)
    weights = [config.input_weight if o == "input" else 1.0 for o in views.origin]
    targets = views.images.float()
    gen = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    for step in range(config.steps):
        if not order:
            order = torch.randperm(len(views), generator=gen).tolist()
        i = order.pop()
        pred = sample_texture(texture, grid[i:i + 1], cover[i:i + 1])
        target = targets[i:i + 1]
        loss = config.l1_weight * (pred - target).abs().mean()
        if config.perceptual_weight > 0 and perceptual is not None:
            loss = loss + config.perceptual_weight * perceptual(pred, target)
        (weights[i] * loss).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            texture.clamp_(0, 1)
        if progress is not None and (step + 1) % max(1, config.steps // 4) == 0:
            progress(f"refine_texture {step + 1}/{config.steps}: loss {float(loss.detach()):.4f}")
    out = Image.fromarray((texture.detach().numpy() * 255).round().astype(np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=out, metallicFactor=0.0, roughnessFactor=1.0)
    return trimesh.Trimesh(mesh.vertices, mesh.faces, visual=trimesh.visual.TextureVisuals(uv=mesh.visual.uv,
                                                                                           material=material),
                           process=False)
