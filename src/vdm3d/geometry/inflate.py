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
from vdm3d.geometry.pixels import pixel_hits
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
    return nearest_layer(*warped_layers(images, layers, cameras, targets))


def warped_layers(images: Float[Tensor, "B H W 3"], layers: Float[Tensor, "B L H W"], cameras: Cameras,
                  targets: Cameras) -> tuple[Float[Tensor, "B L F H W 3"], Float[Tensor, "B L F H W"]]:
    """The colours and z-depth (``inf`` where nothing landed) of every layer of every input view, warped into
    its targets with its cracks closed (:func:`carried_maps`, before the z-test)."""
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
    return values[..., :3].reshape(b, nl, f, h, w, 3), z


def nearest_layer(rgb: Float[Tensor, "B L F H W 3"], z: Float[Tensor, "B L F H W"]) -> Float[Tensor, "B F H W 5"]:
    """Per target pixel, the colour of the nearest of ``L`` warped layers, as map channels ``[R, G, B,
    validity, edges=0]`` (0 where no layer landed)."""
    b, _, f, h, w = z.shape
    nearest = z.argmin(1, keepdim=True)[..., None].expand(b, 1, f, h, w, 3)  # [B, 1, F, H, W, 3]
    rgb = rgb.gather(1, nearest)[:, 0]
    valid = torch.isfinite(z.min(1).values).to(rgb.dtype)  # [B, F, H, W]
    return torch.cat([rgb * valid[..., None], valid[..., None], torch.zeros_like(valid)[..., None]], -1)


def mirror_plane(camera: Cameras) -> Float[Tensor, "3 3"]:
    """The reflection through the plane through the world origin (the object's centre) that is perpendicular to
    ``camera``'s optical axis (batch shape ``()``), as a matrix acting on world points."""
    n = camera.forward.reshape(3) / torch.linalg.vector_norm(camera.forward.reshape(3))
    return torch.eye(3, dtype=n.dtype) - 2 * n[:, None] * n[None, :]


def mirrored_camera(camera: Cameras) -> Cameras:
    """``camera`` (batch shape ``()``) reflected through its :func:`mirror_plane` (:meth:`Cameras.mirrored`): the
    camera whose image of the reflection of a shape is the input's image of that shape flipped left to right."""
    return camera.reshape(()).mirrored(camera.forward.reshape(3))


def mirrored_balloon_maps(image: Float[Tensor, "H W 3"], alpha: Float[Tensor, "H W"], camera: Cameras,
                          targets: Cameras) -> Float[Tensor, "F H W 5"]:
    """The input view carried into ``targets`` (batch ``(F,)``) by a balloon that is its own mirror image about
    the plane through the object's centre (the origin) perpendicular to the view: the front of the balloon
    inflated from ``alpha`` (:func:`inflated_depth`), and behind it that front reflected through the plane,
    the input's colours with it; map channels as :func:`carried_maps`.

    The back layer of :func:`balloon_layers` lies on the input's rays, which widen with depth, so seen from
    behind it is wider than the input's outline (a ball's disk by about a fifth in radius at the embedded
    model's framing). This balloon is seen from the camera opposite the input as exactly the input's outline,
    mirrored, as a real object is by a distant camera: its back is the front seen by :func:`mirrored_camera`."""
    front = inflated_depth(alpha, camera)[0]
    images = torch.stack([image, image.flip(1)])
    layers = torch.stack([front, front.flip(1)])[:, None]  # [2 views, 1 layer, H, W]
    cams = Cameras.cat([camera.reshape(1), mirrored_camera(camera).reshape(1)])
    rgb, z = warped_layers(images, layers, cams, Cameras.cat([targets.reshape(1, -1)] * 2))
    return nearest_layer(rgb.transpose(0, 1), z.transpose(0, 1))[0]  # the two views as two layers of one


def mirrored_balloon_outlines(alpha: Float[Tensor, "H W"], camera: Cameras, targets: Cameras, samples: int = 128
                              ) -> Float[Tensor, "F H W"]:
    """The outline of the solid :func:`mirrored_balloon_maps` carries by its surfaces, seen by each of ``targets``
    (batch ``(F,)``): 1 where a target's ray meets it. Its surfaces, warped one splat per pixel, leave gaps where
    a target sees them edge-on (the middle of a side view); the solid has none.

    A point is inside when it lies behind the balloon's front along the input camera's ray, and so does its
    reflection through the :func:`mirror_plane`. Each ray is sampled at ``samples`` points across the unit ball around
    its closest approach to the origin (the object job's assumption: the object fits in the unit sphere)."""
    front = inflated_depth(alpha, camera)[0]  # inf off the mask
    reflect = mirror_plane(camera)
    steps = torch.linspace(-1.0, 1.0, samples, dtype=reflect.dtype)
    out = []
    for i in range(len(targets)):
        origins, dirs = targets[i].rays()  # [H, W, 3]
        closest = -(origins * dirs).sum(-1, keepdim=True)  # distance along the ray to its closest approach
        points = origins[..., None, :] + dirs[..., None, :] * (closest[..., None] + steps[:, None])  # [H, W, S, 3]
        flat = points.reshape(-1, 3)
        inside = torch.ones(flat.shape[0], dtype=torch.bool)
        for pts in (flat, flat @ reflect.T):
            hits = pixel_hits(camera, pts)
            inside &= hits.inside & (hits.z >= hits.gather(front))
        inside &= flat.norm(dim=-1) <= 1.0
        out.append(inside.reshape(points.shape[:-1]).any(-1).to(alpha.dtype))
    return torch.stack(out)


def mirrored_balloon_views(image: Float[Tensor, "H W 3"], alpha: Float[Tensor, "H W"], camera: Cameras,
                           targets: Cameras) -> Views:
    """The mirrored balloon as seen by ``targets`` (batch ``(F,)``), on white: its outline
    (:func:`mirrored_balloon_outlines`) as the alphas, coloured by the input carried onto it
    (:func:`mirrored_balloon_maps`), and where the outline has no carried colour (surfaces seen edge-on),
    the nearest carried one."""
    maps = mirrored_balloon_maps(image, alpha, camera, targets)
    cover = torch.maximum(mirrored_balloon_outlines(alpha, camera, targets), maps[..., 3])
    images = torch.ones_like(maps[..., :3])
    for i in range(len(targets)):
        landed = (maps[i, ..., 3] > 0).numpy()
        if not landed.any():
            continue
        _, (iy, ix) = ndimage.distance_transform_edt(~landed, return_indices=True)  # nearest carried pixel
        nearest = maps[i, torch.from_numpy(iy), torch.from_numpy(ix), :3]
        images[i] = torch.where(cover[i, ..., None] > 0, nearest, images[i])
    return Views(images, targets, alphas=cover, origin=("rendered",) * len(targets))


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
