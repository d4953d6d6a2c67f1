"""Optical flow and correspondences from z-depth and camera poses (pure torch, differentiable).

A pixel centre ``uv_a`` of camera A with z-depth ``d`` is the world point
``X = cam_a.unproject(uv_a, d)``; its position in camera B is ``uv_b = cam_b.project(X)``, and the
flow is ``uv_b - uv_a`` in pixels (pixel centres at +0.5 in both images). With B's own depth map the
correspondence is checked for occlusion: it is valid when X lands inside B, in front of B, and B sees
a surface at X's depth there (relative tolerance ``rel_tol``, tested against the 2x2 pixels around
``uv_b`` so that a sample near a depth edge is not rejected for the wrong neighbour).

Everything is written in torch so the flow is differentiable with respect to depth and cameras
(the validity mask is not); this is the flow that the stylize and explore jobs use for warping.

>>> flow, valid = flow_from_depth(depth_a, cam_a, cam_b, depth_b)        # doctest: +SKIP
>>> image_a_from_b = warp_backward(image_b, flow)                        # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras


def unproject_depth(depth: Float[Tensor, "*B H W"], cameras: Cameras) -> Float[Tensor, "*B H W 3"]:
    """World points of every pixel centre at its z-depth (pixels with depth 0 map to the camera
    centre; mask them with ``depth > 0``). ``cameras`` has batch shape ``*B`` (or is one camera)."""
    h, w = depth.shape[-2:]
    uv = cameras.pixel_grid().to(depth.dtype).reshape(-1, 2)  # [H*W, 2]
    batch = depth.shape[:-2]
    uv = uv.expand(*batch, h * w, 2)
    pts = cameras.to(dtype=depth.dtype).unproject(uv, depth.reshape(*batch, h * w))
    return pts.reshape(*batch, h, w, 3)


def point_map_normals(points: Float[Tensor, "*B H W 3"]) -> Float[Tensor, "*B H W 3"]:
    """Unit normals of a map of points by central differences (one-sided at the border), as
    ``d/dv x d/du``: for the points of a camera with x right and y down (OpenCV) they face the camera,
    in whichever frame the points are given."""
    pad_u = torch.cat([points[..., :, :1, :], points, points[..., :, -1:, :]], dim=-2)
    pad_v = torch.cat([points[..., :1, :, :], points, points[..., -1:, :, :]], dim=-3)
    du = pad_u[..., :, 2:, :] - pad_u[..., :, :-2, :]
    dv = pad_v[..., 2:, :, :] - pad_v[..., :-2, :, :]
    n = torch.cross(dv, du, dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def points_and_normals(depth: Float[Tensor, "*B H W"], cameras: Cameras
                       ) -> tuple[Float[Tensor, "*B H W 3"], Float[Tensor, "*B H W 3"]]:
    """World points of z-depth maps and their normals (:func:`point_map_normals`), turned to face the
    camera where a grazing difference flipped them."""
    pts = unproject_depth(depth, cameras)
    n = point_map_normals(pts)
    to_cam = cameras.centers.to(pts.dtype)[..., None, None, :] - pts
    return pts, torch.where((n * to_cam).sum(-1, keepdim=True) < 0, -n, n)


def reproject_depth(depth_a: Float[Tensor, "H W"], cam_a: Cameras, cam_b: Cameras
                    ) -> tuple[Float[Tensor, "H W 2"], Float[Tensor, "H W"]]:
    """For each pixel of A: its position ``uv_b`` in B (pixels) and its z-depth in B."""
    h, w = depth_a.shape
    pts = unproject_depth(depth_a, cam_a).reshape(h * w, 3)
    uv_b, z_b = cam_b.to(dtype=depth_a.dtype).project(pts)
    return uv_b.reshape(h, w, 2), z_b.reshape(h, w)


def sample_depth_2x2(depth: Float[Tensor, "H W"], uv: Float[Tensor, "N 2"]) -> Float[Tensor, "N 4"]:
    """Depth of the 4 pixels whose centres surround ``uv`` (0 outside the image)."""
    h, w = depth.shape
    x0 = torch.floor(uv[:, 0] - 0.5).long()
    y0 = torch.floor(uv[:, 1] - 0.5).long()
    out = []
    for dy in (0, 1):
        for dx in (0, 1):
            x, y = x0 + dx, y0 + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            val = depth[y.clamp(0, h - 1), x.clamp(0, w - 1)]
            out.append(torch.where(inside, val, torch.zeros_like(val)))
    return torch.stack(out, -1)


def flow_from_depth(depth_a: Float[Tensor, "H W"], cam_a: Cameras, cam_b: Cameras,
                    depth_b: Float[Tensor, "H2 W2"] | None = None, rel_tol: float = 0.02
                    ) -> tuple[Float[Tensor, "H W 2"], Bool[Tensor, "H W"]]:
    """Flow from A to B in pixels and its validity.

    ``cam_a`` and ``cam_b`` are single cameras (batch shape ``()`` or ``(1,)``). ``valid`` requires
    depth in A, a point in front of B and inside B's image; with ``depth_b`` also that B sees the
    point (no occlusion): ``|z_b - depth_b| <= rel_tol * z_b`` for one of the 2x2 neighbours.
    """
    cam_a = cam_a.reshape(()) if cam_a.shape != () else cam_a
    cam_b = cam_b.reshape(()) if cam_b.shape != () else cam_b
    uv_b, z_b = reproject_depth(depth_a, cam_a, cam_b)
    uv_a = cam_a.pixel_grid().to(depth_a.dtype)
    flow = uv_b - uv_a
    valid = (depth_a > 0) & (z_b > 0)
    valid &= (uv_b[..., 0] >= 0) & (uv_b[..., 0] <= cam_b.width) & (uv_b[..., 1] >= 0) & (uv_b[..., 1] <= cam_b.height)
    if depth_b is not None:
        with torch.no_grad():
            nb = sample_depth_2x2(depth_b, uv_b.reshape(-1, 2).detach()).reshape(*depth_a.shape, 4)
            z = z_b.detach()[..., None]
            seen = ((nb - z).abs() <= rel_tol * z) & (nb > 0)
            valid &= seen.any(-1)
    return flow, valid


def warp_backward(image_b: Float[Tensor, "H2 W2 C"], flow: Float[Tensor, "H W 2"]) -> Float[Tensor, "H W C"]:
    """Sample image B at ``uv_a + flow`` (bilinear, border clamped): B's content seen from A's grid."""
    h, w = flow.shape[:2]
    hb, wb = image_b.shape[:2]
    v, u = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device) + 0.5,
                          torch.arange(w, dtype=flow.dtype, device=flow.device) + 0.5, indexing="ij")
    x = u + flow[..., 0]
    y = v + flow[..., 1]
    # grid_sample with align_corners=False: -1 is the left edge of pixel 0, +1 the right edge of the last
    grid = torch.stack([2 * x / wb - 1, 2 * y / hb - 1], -1)[None]
    out = F.grid_sample(image_b.permute(2, 0, 1)[None].to(flow.dtype), grid, mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0)
