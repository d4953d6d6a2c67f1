"""EWA projection of 3D Gaussians into cameras: the per-Gaussian half of rendering.

Shared by the pure-torch backends (``torch_ref`` and the tiled ``torch``), written with plain torch
ops so autograd differentiates it; only the per-pixel half (rasterization) differs between them.
Conventions follow 3DGS / gsplat 1.5 (``fully_fused_projection``):

* camera frame ``p_cam = R_w2c p + t_w2c`` (OpenCV: x right, y down, z forward);
* a Gaussian is dropped when its center has ``z < near`` (default 0.01);
* mean in pixels ``u = fx x / z + cx`` (pixel centers at +0.5, as in :class:`~vdm3d.cameras.Cameras`);
* 2D covariance ``J W Sigma W^T J^T + 0.3 I`` (the +0.3 px low-pass dilation), with the Jacobian
  ``J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]`` evaluated at ``tx/z, ty/z`` clamped to
  the view frustum widened by 30 % (as both 3DGS and gsplat do, to tame Gaussians far off-screen);
* colors from SH along the world direction camera center -> Gaussian center (see :mod:`.sh`);
* a Gaussian can reach alpha >= 1/255 only inside the ellipse ``d^T Sigma2d^-1 d <= r^2`` with
  ``r = sqrt(2 ln(255 opacity))`` (at most 3.33 sigma); its axis-aligned half-extents
  ``r sqrt(Sigma2d_xx), r sqrt(Sigma2d_yy)`` bound every pixel it can touch. ``radii`` are those
  extents rounded up (gsplat 1.5's opacity-aware radii), reported as their maximum, 0 when culled.
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.sh import eval_sh

NEAR_PLANE = 0.01
EPS_2D = 0.3
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
MAX_EXTENT_SIGMA = 3.33


@dataclasses.dataclass
class Projected:
    """Per-camera, per-Gaussian screen-space quantities (``B`` cameras, ``N`` Gaussians)."""

    means2d: Float[Tensor, "B N 2"]  # pixels
    conics: Float[Tensor, "B N 3"]  # inverse 2D covariance (a, b, c) = [[a, b], [b, c]]
    depths: Float[Tensor, "B N"]  # camera z
    opacities: Float[Tensor, "B N"]  # sigmoid(logit), 0 where culled
    colors: Float[Tensor, "B N 3"]
    extents: Float[Tensor, "B N 2"]  # exact half-widths (pixels) of the alpha >= 1/255 box; 0 if culled
    visible: Bool[Tensor, "B N"]  # in front of the near plane, opaque enough, box overlaps the image
    radii: Int[Tensor, "B N"]


def project_gaussians(gaussians: Gaussians, cameras: Cameras, sh_degree: int,
                      near: float = NEAR_PLANE, eps2d: float = EPS_2D) -> Projected:
    """Project ``gaussians`` into each of the ``B`` cameras (``cameras.shape == (B,)``)."""
    w2c = cameras.w2c  # [B, 4, 4]
    R, t = w2c[:, None, :3, :3], w2c[:, None, :3, 3]  # [B, 1, 3, 3], [B, 1, 3]
    means_cam = (R @ gaussians.means[None, :, :, None]).squeeze(-1) + t  # [B, N, 3]
    x, y, z = means_cam.unbind(-1)
    in_front = z >= near
    z_safe = torch.where(in_front, z, torch.ones_like(z))  # keeps gradients finite for culled ones

    fx, fy = cameras.fx[:, None], cameras.fy[:, None]  # [B, 1]
    cx, cy = cameras.cx[:, None], cameras.cy[:, None]
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], -1)  # [B, N, 2]

    # Jacobian of the perspective map at the (frustum-clamped) center.
    W, H = cameras.width, cameras.height
    tan_x, tan_y = 0.5 * W / fx, 0.5 * H / fy
    lim_x_pos, lim_x_neg = (W - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_y_pos, lim_y_neg = (H - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(z_safe)
    J = torch.stack([torch.stack([fx / z_safe, zero, -fx * tx / z_safe ** 2], -1),
                     torch.stack([zero, fy / z_safe, -fy * ty / z_safe ** 2], -1)], -2)  # [B, N, 2, 3]

    cov_cam = R @ gaussians.covariances[None] @ R.transpose(-1, -2)  # [B, N, 3, 3]
    cov2d = J @ cov_cam @ J.transpose(-1, -2)  # [B, N, 2, 2]
    a = cov2d[..., 0, 0] + eps2d
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + eps2d
    det = (a * c - b * b).clamp_min(1e-12)
    conics = torch.stack([c / det, -b / det, a / det], -1)  # [B, N, 3]

    # View-dependent color: direction from the camera center to the Gaussian, in world coordinates.
    dirs = gaussians.means[None] - cameras.centers[:, None, :]  # [B, N, 3]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    colors = eval_sh(sh_degree, gaussians.sh[None].expand(len(w2c), -1, -1, -1), dirs)  # [B, N, 3]

    opac = gaussians.opacities[None].expand_as(z)
    with torch.no_grad():
        o = opac.detach()
        r = torch.sqrt(2.0 * torch.log((o / ALPHA_MIN).clamp_min(1.0))).clamp_max(MAX_EXTENT_SIGMA)
        extents = r[..., None] * torch.stack([a.detach(), c.detach()], -1).sqrt()  # [B, N, 2]
        mx, my = means2d.detach().unbind(-1)
        ex, ey = extents.unbind(-1)
        on_image = (mx + ex > 0) & (mx - ex < W) & (my + ey > 0) & (my - ey < H)
        visible = in_front & (o >= ALPHA_MIN) & on_image & torch.isfinite(mx) & torch.isfinite(my)
        extents = torch.where(visible[..., None], extents, torch.zeros_like(extents))
        radii = torch.ceil(extents).amax(-1).to(torch.int32)
    opacities = torch.where(visible, opac, torch.zeros_like(opac))
    return Projected(means2d, conics, z, opacities, colors, extents, visible, radii)


def pixel_centers(width: int, height: int, dtype: torch.dtype, device: torch.device) -> Float[Tensor, "P 2"]:
    """``(u, v)`` of every pixel center, row-major, ``[H*W, 2]``."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device) + 0.5,
                          torch.arange(width, dtype=dtype, device=device) + 0.5, indexing="ij")
    return torch.stack([u, v], -1).reshape(-1, 2)


