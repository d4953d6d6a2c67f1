"""Geometric priors on a Gaussian fit: smooth depth, bilateral normal smoothness, normals of a depth estimator.

V3D's mesh stage (SEED_SYSTEMS.md §2.5) regularizes its surface with a normal loss against a monocular
normal network and a normal-smoothness term; on Gaussians the same ideas act on rendered depth:

* ``depth``: **smooth depth**, ``mean |dD/dx| + |dD/dy|`` over pixel pairs both covered (alpha > 0.5),
  in world units relative to the mean depth of the view (scale-free);
* ``normal``: **bilateral normal smoothness**, ``mean |N(p) - N(q)| exp(-|I(p) - I(q)|_1 / sigma)`` over
  neighbouring pixels, ``N`` the normals of the rendered depth and ``I`` the target view, so normals
  stay smooth except across image edges;
* ``estimator``: a **normal loss** at the input view, ``mean (1 - N_render . N_est)`` inside the mask,
  where ``N_est`` are the normals of a depth estimator's prediction for the input image (any
  :mod:`vdm3d.models.depth` model), aligned in scale and shift to the current rendered depth by least
  squares (:func:`vdm3d.recon.cache.align_depth`; relative depth has no scale) before its normals are taken.

Each is a :data:`vdm3d.recon.trainer.LossTerm`: it renders one view of its own per step (a random
orbit view for the first two, the input view for the third) and returns the weighted scalar.
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.flow import point_map_normals
from vdm3d.recon.cache import align_depth
from vdm3d.recon.trainer import StepContext
from vdm3d.splat.render import render
from vdm3d.views import Views


def depth_normals(depth: Float[Tensor, "H W"], camera: Cameras) -> Float[Tensor, "H W 3"]:
    """Camera-frame unit normals of a z-depth map by central differences of the unprojected points
    (OpenCV camera: x right, y down, z forward; normals face the camera, ``n_z < 0``)."""
    h, w = depth.shape
    k = camera.Ks.reshape(3, 3).to(depth)
    v, u = torch.meshgrid(torch.arange(h, dtype=depth.dtype), torch.arange(w, dtype=depth.dtype), indexing="ij")
    x = (u + 0.5 - k[0, 2]) / k[0, 0] * depth
    y = (v + 0.5 - k[1, 2]) / k[1, 1] * depth
    return point_map_normals(torch.stack([x, y, depth], -1))  # (down x right) faces the camera (-z)


def smooth_depth_loss(depth: Float[Tensor, "H W"], alpha: Float[Tensor, "H W"]) -> Float[Tensor, ""]:
    """Mean absolute depth difference between covered neighbours, relative to the mean covered depth."""
    cov = (alpha > 0.5).to(depth)
    scale = ((depth * cov).sum() / cov.sum().clamp_min(1)).detach().clamp_min(1e-6)
    dx = (depth[:, 1:] - depth[:, :-1]).abs() * cov[:, 1:] * cov[:, :-1]
    dy = (depth[1:] - depth[:-1]).abs() * cov[1:] * cov[:-1]
    return (dx.sum() + dy.sum()) / (scale * cov.sum().clamp_min(1))


def bilateral_normal_loss(normals: Float[Tensor, "H W 3"], image: Float[Tensor, "H W 3"],
                          alpha: Float[Tensor, "H W"], sigma: float = 0.1) -> Float[Tensor, ""]:
    """Edge-aware smoothness of normals: neighbour differences weighted by the image's similarity."""
    cov = (alpha > 0.5).to(normals)
    img = image.to(normals)
    total, count = normals.new_zeros(()), normals.new_zeros(())
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        wgt = torch.exp(-(img[a] - img[b]).abs().sum(-1) / sigma) * cov[a] * cov[b]
        total = total + (wgt * (normals[a] - normals[b]).abs().sum(-1)).sum()
        count = count + (cov[a] * cov[b]).sum()
    return total / count.clamp_min(1)


@dataclasses.dataclass
class GeometryPriors:
    """The three priors as one loss term of the fit (weights 0 switch a prior off)."""

    views: Views
    """the orbit views (input and generated) whose cameras and images the priors render and use"""
    input_index: int
    depth_weight: float = 0.0
    normal_weight: float = 0.0
    estimator_weight: float = 0.0
    estimated_depth: Float[Tensor, "H W"] | None = None
    """the depth estimator's prediction for the input image (needed when ``estimator_weight > 0``)"""
    sigma: float = 0.1

    def _render(self, ctx: StepContext, i: int):
        cam = self.views.cameras[i].reshape(1).to(dtype=ctx.gaussians.dtype)
        out = render(ctx.gaussians, cam, backend=ctx.backend, sh_degree=ctx.sh_degree, background=ctx.background)
        return out.depth[0], out.alpha[0]

    def __call__(self, ctx: StepContext) -> Float[Tensor, ""]:
        loss = ctx.gaussians.means.new_zeros(())
        if self.depth_weight > 0 or self.normal_weight > 0:
            i = int(torch.randint(len(self.views), (1,), generator=ctx.generator))
            depth, alpha = self._render(ctx, i)
            if self.depth_weight > 0:
                loss = loss + self.depth_weight * smooth_depth_loss(depth, alpha)
            if self.normal_weight > 0:
                normals = depth_normals(depth, self.views.cameras[i])
                loss = loss + self.normal_weight * bilateral_normal_loss(normals, self.views.images[i], alpha,
                                                                         self.sigma)
        if self.estimator_weight > 0 and self.estimated_depth is not None:
            depth, alpha = self._render(ctx, self.input_index)
            mask = (self.views.alphas[self.input_index].to(depth) > 0.5).to(depth) * (alpha.detach() > 0.5)
            cam = self.views.cameras[self.input_index]
            aligned = align_depth(self.estimated_depth.to(depth), depth.detach(), mask > 0.5)[0]
            target = depth_normals(aligned, cam).detach()
            cos = (depth_normals(depth, cam) * target).sum(-1)
            loss = loss + self.estimator_weight * ((1 - cos) * mask).sum() / mask.sum().clamp_min(1)
        return loss
