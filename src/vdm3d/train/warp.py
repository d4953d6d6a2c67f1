"""Forward warping of one RGB-D view into other cameras (training pairs for warp-and-refine).

Each source pixel is split into ``supersample x supersample`` sub-points that share its color and
depth, unprojected with the source camera, projected into the target camera and z-buffered (the
nearest point wins a pixel). Sub-pixel splatting closes the one-pixel cracks that plain point
splatting leaves when the camera moves forward, so the remaining holes are real disocclusions and
out-of-view regions, the content a video model has to invent (ViewCrafter/WorldWarp).
Written in numpy because it runs once per training sequence on small images; the z-buffer is a
lexicographic sort, which is deterministic (no scatter races).
"""

from __future__ import annotations

import numpy as np


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
    x_cam = np.stack([(uu - K[0, 2]) / K[0, 0] * z, (vv - K[1, 2]) / K[1, 1] * z, z], -1)
    pts = x_cam @ c2w_src[:3, :3].T + c2w_src[:3, 3]
    colors = rgb.reshape(h * w, -1)
    c2w_dst = np.asarray(c2w_dst).reshape(-1, 4, 4)
    warped = np.zeros((len(c2w_dst), h, w, rgb.shape[-1]), rgb.dtype)
    valid = np.zeros((len(c2w_dst), h, w), bool)
    for i, c2w in enumerate(c2w_dst):
        p = (pts - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera: R^T (p - t)
        zc = p[:, 2]
        front = zc > 1e-6
        pu = np.floor(K[0, 0] * p[front, 0] / zc[front] + K[0, 2]).astype(np.int64)
        pv = np.floor(K[1, 1] * p[front, 1] / zc[front] + K[1, 2]).astype(np.int64)
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
