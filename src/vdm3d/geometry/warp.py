"""Forward warping of one RGB-D view into other cameras (training pairs for warp-and-refine).

Each source pixel is split into ``supersample x supersample`` sub-points that share its color and
depth, unprojected with the source camera, projected into the target camera and z-buffered (the
nearest point wins a pixel). Sub-pixel splatting closes the one-pixel cracks that plain point
splatting leaves when the camera moves forward, so the remaining holes are real disocclusions and
out-of-view regions, the content a video model has to invent (ViewCrafter/WorldWarp).
Projection goes through :class:`~vdm3d.cameras.Cameras` (in float64); the z-buffer is hand-written
in numpy because no library splats points with a nearest-wins depth test on the CPU, and a
lexicographic sort keeps it deterministic (no scatter races).
"""

from __future__ import annotations

import numpy as np
import torch

from vdm3d.cameras.camera import Cameras


def forward_warp(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, c2w_src: np.ndarray,
                 c2w_dst: np.ndarray, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``rgb [H, W, 3]`` with z-depth ``depth [H, W]`` (0 or inf = no surface) from ``c2w_src``
    into each of ``c2w_dst [N, 4, 4]`` (OpenCV, same intrinsics ``K [3, 3]``).

    Returns ``warped [N, H, W, 3]`` (zeros in holes, rgb's dtype) and ``valid [N, H, W]`` bool.
    """
    h, w = depth.shape
    s = supersample
    offs = (np.arange(s) + 0.5) / s
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    uu = np.broadcast_to(u[:, :, None, None] + offs[None, None, None, :], (h, w, s, s)).reshape(-1)  # [H*W*s*s]
    vv = np.broadcast_to(v[:, :, None, None] + offs[None, None, :, None], (h, w, s, s)).reshape(-1)
    src = np.repeat(np.arange(h * w), s * s)
    z = depth.reshape(-1)[src].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    uu, vv, z, src = uu[ok], vv[ok], z[ok], src[ok]
    c2w_dst = np.asarray(c2w_dst).reshape(-1, 4, 4)
    K64 = torch.as_tensor(np.asarray(K), dtype=torch.float64)
    src_cam = Cameras(K64, torch.as_tensor(np.asarray(c2w_src), dtype=torch.float64), w, h)
    pts = src_cam.unproject(torch.from_numpy(np.stack([uu, vv], -1)), torch.from_numpy(z))  # [M, 3]
    dst_cams = Cameras(K64.expand(len(c2w_dst), 3, 3), torch.as_tensor(c2w_dst, dtype=torch.float64), w, h)
    uv_all, z_all = dst_cams.project(pts.expand(len(c2w_dst), -1, 3))  # [N, M, 2], [N, M]
    colors = rgb.reshape(h * w, -1)
    warped = np.zeros((len(c2w_dst), h, w, rgb.shape[-1]), rgb.dtype)
    valid = np.zeros((len(c2w_dst), h, w), bool)
    for i in range(len(c2w_dst)):
        zc, uv = z_all[i].numpy(), uv_all[i].numpy()
        front = zc > 1e-6
        pu = np.floor(uv[front, 0]).astype(np.int64)
        pv = np.floor(uv[front, 1]).astype(np.int64)
        inside = (pu >= 0) & (pu < w) & (pv >= 0) & (pv < h)
        pix = (pv * w + pu)[inside]
        depth_i = zc[front][inside]
        col = src[front][inside]
        order = np.lexsort((depth_i, pix))  # by pixel, then nearest first
        pix_sorted = pix[order]
        first = np.ones(len(order), bool)
        first[1:] = pix_sorted[1:] != pix_sorted[:-1]
        win = order[first]
        flat = warped[i].reshape(h * w, -1)
        flat[pix[win]] = colors[col[win]]
        valid[i].reshape(-1)[pix[win]] = True
    return warped, valid
