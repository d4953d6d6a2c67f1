"""A small monocular depth network for the ``explore`` job (relative depth, up to scale).

A three-level convolutional UNet on the RGB image predicts log-depth per pixel. Training uses the
scale-invariant log loss (Eigen et al., 2014, with ``lambda = 0.85``), so the output is defined up to
a global scale: callers align it (median scaling, or a known depth). :meth:`TinyDepth.predict`
returns ``exp(log_depth)`` normalized to median 1.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.cameras.camera import Cameras
from vdm3d.models.tiny.blocks import ResBlock, SpatialAttention, groups
from vdm3d.options import Range


@dataclasses.dataclass(frozen=True)
class DepthConfig:
    """Shape of the tiny depth network."""

    channels: Annotated[tuple[int, ...], Range(1)] = (16, 32, 64, 96)
    """feature channels per level (each level halves the resolution)"""
    resolution: Annotated[tuple[int, int], Range(8)] = (64, 64)
    """native input size (H, W); other sizes are resized to it and back"""


class TinyDepth(nn.Module):
    """RGB ``[B, H, W, 3]`` in [0, 1] -> relative depth ``[B, H, W]`` (median 1)."""

    name = "tiny-depth"
    #: :class:`vdm3d.models.depth.DepthEstimator` kind: z-depth up to scale (median 1 per image)
    kind = "relative"

    def __init__(self, config: DepthConfig = DepthConfig()):
        super().__init__()
        self.config = config
        ch = config.channels
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.enc = nn.ModuleList(ResBlock(ch[max(i - 1, 0)], c) for i, c in enumerate(ch))
        self.downs = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in ch[:-1])
        self.mid_attn = SpatialAttention(ch[-1])
        self.mid = ResBlock(ch[-1], ch[-1])
        self.dec = nn.ModuleList(ResBlock(ch[i + 1] + ch[i], ch[i]) for i in range(len(ch) - 1))
        self.norm_out = nn.GroupNorm(groups(ch[0]), ch[0])
        self.conv_out = nn.Conv2d(ch[0], 1, 3, padding=1)

    def log_depth(self, images: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W"]:
        """Raw log-depth (arbitrary offset) at the input resolution."""
        b, h, w, _ = images.shape
        x = images.permute(0, 3, 1, 2) * 2 - 1
        native = self.config.resolution
        if (h, w) != native:
            x = F.interpolate(x, size=native, mode="bilinear", align_corners=False, antialias=True)
        x = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < len(self.downs):
                skips.append(x)
                x = self.downs[i](x)
        x = self.mid(self.mid_attn(x))
        for i in reversed(range(len(self.dec))):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="nearest")
            x = self.dec[i](torch.cat([x, skips[i]], 1))
        out = self.conv_out(F.silu(self.norm_out(x)))
        if (h, w) != native:
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out[:, 0]

    @torch.no_grad()
    def predict(self, images: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W"]:
        """Relative depth with median 1 per image."""
        d = self.log_depth(images).exp()
        return d / d.flatten(1).median(dim=1).values[:, None, None]

    def forward(self, images: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W"]:
        return self.predict(images)


def silog_loss(log_pred: Tensor, depth: Tensor, valid: Tensor | None = None, lam: float = 0.85) -> Tensor:
    """Scale-invariant log loss ``mean(d^2) - lam * mean(d)^2`` with ``d = log_pred - log depth``."""
    if valid is None:
        valid = depth > 0
    d = (log_pred - depth.clamp_min(1e-6).log()) * valid
    n = valid.flatten(1).sum(1).clamp_min(1)
    mean = d.flatten(1).sum(1) / n
    mean_sq = d.pow(2).flatten(1).sum(1) / n
    return (mean_sq - lam * mean * mean).clamp_min(0).sqrt().mean()


def abs_rel_median_scaled(pred: Tensor, depth: Tensor, valid: Tensor | None = None) -> Tensor:
    """AbsRel ``mean(|s*pred - gt| / gt)`` per image after median scaling ``s = med(gt)/med(pred)``."""
    if valid is None:
        valid = depth > 0
    out = []
    for p, g, m in zip(pred, depth, valid):
        p, g = p[m], g[m]
        s = g.median() / p.median().clamp_min(1e-8)
        out.append(((s * p - g).abs() / g).mean())
    return torch.stack(out)


def object_extent(alpha: Float[Tensor, "B H W"], cameras: Cameras) -> Float[Tensor, "B"]:
    """Half the larger side of each silhouette's bounding box, in world units at the depth of the object's
    centre (the world origin): the length unit of an object's relief (:func:`relief_from_depth`)."""
    out = []
    for a, cam in zip(alpha > 0.5, cameras.reshape(-1)):
        ys, xs = torch.nonzero(a, as_tuple=True)
        half_px = 0.5 * max(float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)) if len(ys) else 1.0
        out.append(half_px * float(torch.linalg.vector_norm(cam.centers.double())) / float(cam.Ks[0, 0]))
    return torch.tensor(out, dtype=alpha.dtype)


def relief_from_depth(depth: Float[Tensor, "B H W"], alpha: Float[Tensor, "B H W"], cameras: Cameras
                      ) -> Float[Tensor, "B H W"]:
    """An object's z-depth as relief: ``(z - z0) / extent``, ``z0`` the depth of the object's centre (the
    world origin) and ``extent`` :func:`object_extent`; what the object-depth model predicts, so that its
    target does not change when the object is framed larger or smaller (0 off the silhouette)."""
    z0 = torch.linalg.vector_norm(cameras.reshape(-1).centers, dim=-1).to(depth.dtype)[:, None, None]
    ext = object_extent(alpha, cameras)[:, None, None]
    inside = (alpha > 0.5) & torch.isfinite(depth)
    return torch.where(inside, (depth - z0) / ext, torch.zeros_like(depth))


def depth_from_relief(relief: Float[Tensor, "B H W"], alpha: Float[Tensor, "B H W"], cameras: Cameras
                      ) -> Float[Tensor, "B H W"]:
    """Inverse of :func:`relief_from_depth`: z-depth inside the silhouette, ``inf`` outside."""
    z0 = torch.linalg.vector_norm(cameras.reshape(-1).centers, dim=-1).to(relief.dtype)[:, None, None]
    ext = object_extent(alpha, cameras)[:, None, None]
    return torch.where(alpha > 0.5, z0 + relief * ext, torch.full_like(relief, float("inf")))


@torch.no_grad()
def object_depth(net: TinyDepth, images: Float[Tensor, "B H W 3"], alphas: Float[Tensor, "B H W"], cameras: Cameras
                 ) -> Float[Tensor, "B H W"]:
    """z-depth of object images (on white, the object centred on the world origin) from the object-depth
    network (`vdm3d train object-depth`), whose raw output map is the relief (:func:`relief_from_depth`);
    ``inf`` off the silhouette ``alphas``."""
    param = next(net.parameters())
    relief = net.log_depth(images.to(param)).float()
    return depth_from_relief(relief, alphas.float(), cameras)
