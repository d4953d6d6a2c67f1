"""A shape proxy from one silhouette: the input view inflated into a closed balloon, warped to orbit views.

The object job's orbit model sees the input view once, as a reference frame it must learn to move
across the image. Giving it, in every target view, the input's pixels carried there by a rough 3D
shape (the ``maps`` slot: warped RGB + validity, as ViewCrafter does with a point cloud) turns the
near views into a correction task and tells the far views where the silhouette lies.

The shape needs no depth network: **silhouette inflation** (the "balloon" of sketch-based modelling).
Inside the input mask, at a distance ``d`` (pixels) from its boundary, the object is given the half
thickness ``t(d) = sqrt(R^2 - (R - d)^2)``, ``R`` the local radius (the distance to the boundary at the
nearest point of the mask's medial axis), i.e. a disk's silhouette inflates to a sphere and a thin
handle to a thin tube (a global ``R`` made thin parts as thick as the widest one). In world units one pixel spans ``z0 / fx`` at the depth ``z0`` of the
object's centre (the origin); the front surface is at z-depth ``z0 - t``, the back at ``z0 + t``, and
the back carries the input's colours too (a mirror guess the model learns to trust or not).

Both layers are forward-warped (z-buffered, :func:`vdm3d.geometry.warp.forward_warp`) into the
targets and the nearer hit wins. The result is laid out as the backbone's map channels
(:data:`vdm3d.models.tiny.denoiser.MAP_CHANNELS`: warped RGB, validity, edges = 0).
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from scipy import ndimage
from skimage.morphology import medial_axis
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.warp import forward_warp
from vdm3d.views import Views


def inflated_depth(alpha: Float[Tensor, "H W"], camera: Cameras, threshold: float = 0.5
                   ) -> tuple[Float[Tensor, "H W"], Float[Tensor, "H W"]]:
    """Front and back z-depth of the balloon inflated from ``alpha`` seen by ``camera`` (batch shape
    ``()``), centred on the world origin; ``inf`` outside the mask."""
    inside = (alpha > threshold).cpu().numpy()
    z0 = float(torch.linalg.vector_norm(camera.centers.double()))  # depth of the object's centre
    fx = float(camera.Ks[0, 0])
    d = ndimage.distance_transform_edt(inside)  # pixels to the nearest background pixel (>= 1 inside)
    skeleton = medial_axis(inside, rng=0)  # seeded: its thinning visits pixels in a random order
    if skeleton.any():  # each pixel takes the local radius of the nearest medial-axis point
        _, (iy, ix) = ndimage.distance_transform_edt(~skeleton, return_indices=True)
        r = np.maximum(d[iy, ix], d)
    else:
        r = d
    half_px = np.sqrt(np.clip(r * r - (r - d) ** 2, 0.0, None))
    half = torch.from_numpy(half_px * z0 / fx).to(alpha.dtype)
    mask = torch.from_numpy(inside)
    inf = torch.full_like(half, float("inf"))
    return torch.where(mask, z0 - half, inf), torch.where(mask, z0 + half, inf)


def proxy_maps(images: Float[Tensor, "B H W 3"], alphas: Float[Tensor, "B H W"], cameras: Cameras, targets: Cameras
               ) -> Float[Tensor, "B F H W 5"]:
    """Each input view (``cameras`` batch ``(B,)``) carried into its ``targets`` (batch ``(B, F)``) by its
    inflated balloon: map channels ``[warped R, G, B, validity, edges=0]`` (0 where nothing landed).

    One splat per source pixel (no supersampling, 3x cheaper), then two passes of :func:`close_cracks` on
    each layer fill the gaps that stretching leaves between splats; training and the job call this same function.
    """
    return carried_maps(images, balloon_layers(alphas, cameras), cameras, targets)


def balloon_layers(alphas: Float[Tensor, "B H W"], cameras: Cameras) -> Float[Tensor, "B 2 H W"]:
    """The front and back z-depth of the balloon inflated from each silhouette (:func:`inflated_depth`), as
    layers for :func:`carried_maps`."""
    return torch.stack([torch.stack(inflated_depth(a, cameras[i])) for i, a in enumerate(alphas)])


def depth_layers(depth: Float[Tensor, "B H W"], cameras: Cameras, back: bool = False) -> Float[Tensor, "B L H W"]:
    """The layers that carry an input by a z-depth map (exact, or a depth estimator's): the visible
    surface alone (``L = 1``), or with ``back`` also the back of the balloon inflated from the depth's own
    silhouette (``L = 2``: the far views then see the input's colours mirrored where the balloon is)."""
    front = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.full_like(depth, float("inf")))
    if not back:
        return front[:, None]
    alpha = torch.isfinite(front).to(depth.dtype)
    rear = torch.stack([inflated_depth(a, cameras[i])[1] for i, a in enumerate(alpha)])
    return torch.stack([front, torch.maximum(rear, front)], 1)


def carried_maps(images: Float[Tensor, "B H W 3"], layers: Float[Tensor, "B L H W"], cameras: Cameras,
                 targets: Cameras) -> Float[Tensor, "B F H W 5"]:
    """Each input view carried into its ``targets`` (batch ``(B, F)``) by ``L`` z-depth layers (``inf``: no
    surface), as map channels ``[warped R, G, B, validity, edges=0]``.

    Each layer is forward-warped with one splat per pixel and its cracks closed (two passes of
    :func:`close_cracks`) before the z-test between layers, so a back layer does not show through the
    gaps of a front one; the nearest layer wins.
    """
    b, f = targets.shape
    nl, h, w = layers.shape[1:]
    pick = torch.arange(b).repeat_interleave(nl * f)  # source of each (layer, target) pair, layer-major per source
    layer = torch.arange(nl).repeat_interleave(f).repeat(b)
    src = Views(images[pick].float(), cameras[pick].to(dtype=torch.float32), depths=layers[pick, layer].float())
    tgt = Cameras.cat([targets.reshape(b, 1, f).to(dtype=torch.float32)] * nl, dim=1).reshape(b * nl * f)
    warped = forward_warp(src, tgt, supersample=1)
    values = torch.cat([warped.images, warped.depths[..., None]], -1)
    values, valid = close_cracks(values, warped.confidence)
    values, valid = close_cracks(values, valid)
    z = torch.where(valid > 0, values[..., 3], torch.full_like(valid, float("inf"))).reshape(b, nl, f, h, w)
    rgb = values[..., :3].reshape(b, nl, f, h, w, 3)
    nearest = z.argmin(1, keepdim=True)[..., None].expand(b, 1, f, h, w, 3)  # [B, 1, F, H, W, 3]
    rgb = rgb.gather(1, nearest)[:, 0]
    valid = torch.isfinite(z.min(1).values).to(rgb.dtype)  # [B, F, H, W]
    return torch.cat([rgb * valid[..., None], valid[..., None], torch.zeros_like(valid)[..., None]], -1)


def close_cracks(values: Float[Tensor, "N H W C"], valid: Float[Tensor, "N H W"], min_neighbours: int = 4
                 ) -> tuple[Float[Tensor, "N H W C"], Float[Tensor, "N H W"]]:
    """Fill an empty pixel with the mean of its valid 8-neighbours when it has at least ``min_neighbours``
    of them (the gaps between stretched splats), leaving real holes (few neighbours) empty."""
    c = values.shape[-1]
    kernel = torch.ones(1, 1, 3, 3, dtype=values.dtype)
    kernel[..., 1, 1] = 0
    x = torch.cat([values * valid[..., None], valid[..., None]], -1).permute(0, 3, 1, 2)  # [N, C + 1, H, W]
    sums = torch.nn.functional.conv2d(x.reshape(-1, 1, *x.shape[2:]), kernel, padding=1).reshape(x.shape)
    count = sums[:, c]
    fill = (valid == 0) & (count >= min_neighbours)
    mean = sums[:, :c].permute(0, 2, 3, 1) / count.clamp_min(1)[..., None]
    return torch.where(fill[..., None], mean, values), torch.where(fill, torch.ones_like(valid), valid)
