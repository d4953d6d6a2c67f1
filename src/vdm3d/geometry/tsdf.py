"""TSDF fusion of rendered depth maps into a closed mesh (marching cubes + small-component removal).

For every voxel centre ``p`` and view ``i`` with z-depth ``z_i(p)`` and pixel depth ``D_i(u, v)``, the
signed distance along the ray is ``d = D_i - z_i`` (positive in front of the surface). Standard
truncated fusion (Curless & Levoy 1996) averages ``clamp(d / trunc, -1, 1)`` over the views where
``d > -trunc``. Two additions make the result a closed object mesh:

* background pixels (alpha below ``alpha_threshold``) have no surface: every voxel on that ray is
  free space, ``+1`` (this is space carving, and it removes floaters in front of the object);
* a voxel that some view sees but that lies deeper than ``trunc`` behind the surface in every view
  that sees it is interior, ``-1``; a voxel no view sees at all is exterior, ``+1``. The grid is padded
  with ``+1`` so marching cubes closes every surface.

Marching cubes at 0 runs in scikit-image; connected components and their removal in trimesh. The
fusion loop is plain torch (one projection per view, a gather and a running weighted average).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import trimesh
from jaxtyping import Bool, Float
from skimage import measure
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.pixels import pixel_hits
from vdm3d.errors import InputError
from vdm3d.geometry.carve import grid_points


@dataclasses.dataclass(frozen=True)
class TSDFVolume:
    """Fused truncated signed distances (in units of ``trunc``) on a cube of voxels."""

    tsdf: Float[Tensor, "R R R"]
    weight: Float[Tensor, "R R R"]
    lo: Float[Tensor, "3"]
    voxel: float


def fuse_tsdf(depths: Float[Tensor, "N H W"], cameras: Cameras, lo: Float[Tensor, "3"], side: float,
              resolution: int = 96, alphas: Float[Tensor, "N H W"] | None = None,
              trunc_voxels: float = 3.0, alpha_threshold: float = 0.5,
              allowed: Bool[Tensor, "R R R"] | None = None) -> TSDFVolume:
    """Fuse z-depth maps (OpenCV cameras) into a ``resolution^3`` TSDF over the cube ``lo + [0, side]^3``.

    ``allowed`` (optional, on this grid) marks where the object may be, e.g. a visual hull: voxels
    outside it are free space (+1) whatever the depth maps say. Without it, voxels that the views
    only see from behind the surface, and never from the front (outside the other views' frusta),
    would count as interior."""
    if depths.shape[0] != len(cameras) or tuple(depths.shape[1:]) != (cameras.height, cameras.width):
        raise InputError(f"fuse_tsdf: depths {tuple(depths.shape)} do not match {len(cameras)} cameras of "
                         f"{cameras.width}x{cameras.height}.")
    voxel = side / resolution
    trunc = trunc_voxels * voxel
    pts = grid_points(lo, voxel, resolution)  # [P, 3]
    acc = torch.zeros(pts.shape[0])
    wsum = torch.zeros(pts.shape[0])
    seen = torch.zeros(pts.shape[0], dtype=torch.bool)
    for i in range(depths.shape[0]):
        hits = pixel_hits(cameras[i], pts)
        z, inside = hits.z, hits.inside
        d_pix = hits.gather(depths[i])
        bg = ~torch.isfinite(d_pix) | (d_pix <= 0)
        if alphas is not None:
            bg |= hits.gather(alphas[i]) < alpha_threshold
        sdf = torch.where(bg, torch.ones_like(z), ((d_pix - z) / trunc).clamp(-1, 1))
        use = inside & (bg | (d_pix - z > -trunc))
        seen |= inside
        acc += torch.where(use, sdf, torch.zeros_like(sdf))
        wsum += use.float()
    tsdf = torch.where(wsum > 0, acc / wsum.clamp_min(1), torch.where(seen, -1.0, 1.0))
    if allowed is not None:
        tsdf = torch.where(allowed.reshape(-1), tsdf, torch.ones_like(tsdf))
    r = resolution
    return TSDFVolume(tsdf.reshape(r, r, r), wsum.reshape(r, r, r), lo.clone(), voxel)


def tsdf_to_mesh(volume: TSDFVolume, min_component_fraction: float = 0.1) -> trimesh.Trimesh:
    """Marching cubes at 0 (grid padded with +1), faces outward, components below
    ``min_component_fraction`` of the largest one's face count removed."""
    vol = np.pad(volume.tsdf.numpy().astype(np.float32), 1, constant_values=1.0)
    if vol.min() >= 0 or vol.max() <= 0:
        raise InputError("tsdf_to_mesh: the fused volume has no surface (no voxel is inside the object); "
                         "check that the depth maps show the object inside the grid.")
    verts, faces, _, _ = measure.marching_cubes(vol, 0.0)
    verts = (verts - 1 + 0.5) * volume.voxel + volume.lo.numpy()
    mesh = trimesh.Trimesh(verts, faces, process=True)
    mesh = remove_small_components(mesh, min_component_fraction)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def remove_small_components(mesh: trimesh.Trimesh, min_fraction: float = 0.1) -> trimesh.Trimesh:
    """Keep the connected components with at least ``min_fraction`` of the largest one's faces."""
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    sizes = np.array([len(p.faces) for p in parts])
    keep = [p for p, n in zip(parts, sizes) if n >= min_fraction * sizes.max()]
    return trimesh.util.concatenate(keep) if len(keep) > 1 else keep[0]


def tsdf_mesh(depths: Float[Tensor, "N H W"], cameras: Cameras, lo: Float[Tensor, "3"], side: float,
              resolution: int = 96, alphas: Float[Tensor, "N H W"] | None = None, trunc_voxels: float = 3.0,
              min_component_fraction: float = 0.1, allowed: Bool[Tensor, "R R R"] | None = None) -> trimesh.Trimesh:
    """Depth maps to a closed, cleaned mesh: :func:`fuse_tsdf` then :func:`tsdf_to_mesh`."""
    vol = fuse_tsdf(depths, cameras, lo, side, resolution, alphas, trunc_voxels, allowed=allowed)
    return tsdf_to_mesh(vol, min_component_fraction)
