"""SV3D's refinement: masked score distillation where the orbit views see the surface badly.

SV3D's 3D stage (paper only; SEED_SYSTEMS.md §1.6) refines its reconstruction with score
distillation sampling (SDS) from SV3D itself on random cameras, masked to the surfaces the orbit
frames do not see well. The mask is the soft visibility

    M = 1 - smoothstep(v_c . n, 0, 0.5)

where ``n`` is the surface normal and ``v_c`` the unit direction to the orbit camera that sees the
point most frontally (the maximum of ``v_c . n`` over the orbit cameras; occlusion is not tested).
Surfaces facing some orbit camera head-on (``v_c . n >= 0.5``) get no SDS; surfaces every orbit
camera sees edge-on or from behind get the full prior.

The refinement runs in the one fitting loop (:func:`vdm3d.recon.trainer.fit_gaussians`): each step
fits one orbit view (L1 + D-SSIM, the input view weighted ``input_weight``, no densification) and
adds the loss term :class:`MaskedSDS`: render ``refine_frames`` random cameras (azimuth
uniform, elevation within 30 degrees of the input's), encode the renders with the backbone's encoder
(differentiably), noise them to a random ``sigma``, denoise with guidance, and pull the latents
toward the denoised ones only where ``M`` (pooled to latent resolution) says so:
``L_sds = 0.5 * sum(M (z - sg(D(z + sigma eps))))^2) / sum(M)``, whose gradient is the SDS gradient
``M (z - D)`` with unit weighting. SV3D's exact weights and SG illumination are unpublished.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.diffusion.guiders import Guider
from vdm3d.errors import ConfigError
from vdm3d.geometry.flow import points_and_normals
from vdm3d.options import Range, derived_seed
from vdm3d.protocols import Backbone, Conditioning
from vdm3d.recon.trainer import FitConfig, FitProgress, LearningRates, StepContext, fit_gaussians
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.render import render
from vdm3d.splat.strategy import DensifyPolicy
from vdm3d.views import Views


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """The refinement's settings (the object job fills them from its own config)."""

    steps: Annotated[int, Range(0)] = 100
    """refinement steps (one orbit view and one SDS batch each)"""
    weight: Annotated[float, Range(0)] = 1.0
    """weight of the masked SDS term against the photometric term"""
    frames: Annotated[int, Range(1)] = 4
    """random cameras rendered per SDS step (capped by the backbone's frame count)"""
    input_weight: Annotated[float, Range(0)] = 4.0
    """loss weight of the input view relative to a generated one"""
    lr_scale: Annotated[float, Range(0, open_min=True)] = 10.0
    """multiplies 3DGS's learning rates"""
    radius: Annotated[float, Range(0, open_min=True)] = 3.2163
    """camera distance of the random cameras (and the scale of the centers' learning rate)"""
    elevation_deg: Annotated[float, Range(-90, 90, open_min=True, open_max=True)] = 10.0
    """elevation of the input view; random cameras stay within 30 degrees of it"""
    fov_deg: Annotated[float, Range(0, 180, open_min=True, open_max=True)] = 40.0
    """field of view of the random cameras"""
    seed: int = 0


def smoothstep(x: Tensor, edge0: float, edge1: float) -> Tensor:
    """Hermite step: 0 below ``edge0``, 1 above ``edge1``, ``3t^2 - 2t^3`` between."""
    t = ((x - edge0) / (edge1 - edge0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def soft_visibility_mask(points_world: Float[Tensor, "B H W 3"], normals_world: Float[Tensor, "B H W 3"],
                         orbit_cameras: Cameras) -> Float[Tensor, "B H W"]:
    """``1 - smoothstep(max_c v_c . n, 0, 0.5)``: 1 where no orbit camera sees the surface well."""
    best = torch.full(points_world.shape[:-1], -1.0, dtype=points_world.dtype)
    for c in orbit_cameras.centers:
        v = c - points_world
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        best = torch.maximum(best, (v * normals_world).sum(-1))
    return 1 - smoothstep(best, 0.0, 0.5)


def random_cameras(n: int, elevation_deg: float, radius: float, fov_deg: float, size: int,
                   generator: torch.Generator) -> Cameras:
    """``n`` cameras looking at the origin: azimuth uniform, elevation within 30 degrees of the input's."""
    az = torch.rand(n, generator=generator, dtype=torch.float64) * 360
    el = (elevation_deg + (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * 30).clamp(-80, 80)
    return cameras_from_sv3d(el, az, radius, fov_deg, size, size)


def sds_loss(backbone: Backbone, guider: Guider, rgb: Float[Tensor, "F H W 3"], mask: Float[Tensor, "F H W"],
             cond: object, cond_null: object, generator: torch.Generator,
             sigma_range: tuple[float, float] = (0.1, 2.0)) -> Float[Tensor, ""]:
    """Masked SDS on renders ``rgb`` (differentiable through the encoder), see the module docstring.

    ``cond``/``cond_null`` are the backbone's encoded conditions (:meth:`Backbone.condition`)."""
    z = backbone.encode(rgb[None])  # [1, F, C, h, w]
    lo, hi = torch.log(torch.tensor(sigma_range[0])), torch.log(torch.tensor(sigma_range[1]))
    sigma = torch.exp(lo + (hi - lo) * torch.rand((), generator=generator)).reshape(1)
    eps = torch.randn(z.shape, generator=generator, dtype=z.dtype)
    with torch.no_grad():
        noisy = z.detach() + sigma * eps
        x0 = guider.combine(backbone.denoise(noisy, sigma, cond), backbone.denoise(noisy, sigma, cond_null))
    m = F.adaptive_avg_pool2d(mask[:, None], z.shape[-2:])[:, 0][None, :, None]  # [1, F, 1, h, w]
    return 0.5 * (m * (z - x0) ** 2).sum() / (m.sum() * z.shape[2]).clamp_min(1e-6)


class MaskedSDS:
    """The masked-SDS loss term of one fitting step (a :data:`vdm3d.recon.trainer.LossTerm`).

    Renders ``frames`` random cameras of the step's Gaussians, masks them to the covered pixels
    (alpha > 0.5) that the ``orbit_cameras`` see badly (all covered pixels when ``orbit_cameras`` is
    None), and returns ``weight * sds_loss``. ``coverage`` holds the last step's masked fraction."""

    def __init__(self, backbone: Backbone, guider: Guider, reference: Float[Tensor, "H W 3"],
                 reference_c2w: Float[Tensor, "1 4 4"], orbit_cameras: Cameras | None, config: RefineConfig,
                 size: int):
        self.backbone, self.guider, self.config, self.size = backbone, guider, config, size
        self.reference, self.reference_c2w, self.orbit_cameras = reference, reference_c2w, orbit_cameras
        self.frames = min(config.frames, backbone.frames or config.frames)
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.coverage = 0.0

    def __call__(self, ctx: StepContext) -> Float[Tensor, ""]:
        c = self.config
        cams = random_cameras(self.frames, c.elevation_deg, c.radius, c.fov_deg, self.size, self.generator)
        out = render(ctx.gaussians, cams, backend=ctx.backend, sh_degree=ctx.sh_degree, background=ctx.background)
        with torch.no_grad():
            mask = (out.alpha > 0.5).to(out.rgb.dtype)
            if self.orbit_cameras is not None:
                pts, nrm = points_and_normals(out.depth, cams)
                mask = mask * soft_visibility_mask(pts, nrm, self.orbit_cameras)
        self.coverage = float(mask.mean())
        cond = Conditioning(reference=self.reference[None], cameras=cams.reshape(1, self.frames),
                            extras={"reference_c2w": self.reference_c2w})
        bb = self.backbone
        return c.weight * sds_loss(bb, self.guider, out.rgb.clamp(0, 1), mask, bb.condition(cond),
                                   bb.condition(cond, null=True), self.generator)


def refine_fit_config(config: RefineConfig, sh_degree: int) -> FitConfig:
    """The fitting loop's settings for the refinement: 3DGS rates times ``lr_scale`` (no decay of
    the centers' rate), L1 + 0.2 D-SSIM on white, no densification."""
    s = config.lr_scale
    base = LearningRates()
    lr = LearningRates(lr_means=base.lr_means * s, lr_means_final=base.lr_means * s, lr_quats=base.lr_quats * s,
                       lr_scales=base.lr_scales * s, lr_opacity=base.lr_opacity * s, lr_sh_dc=base.lr_sh_dc * s,
                       lr_sh_rest=base.lr_sh_dc / 20 * s)
    return FitConfig(steps=config.steps, lr=lr, ssim_weight=0.2, sh_degree=sh_degree, sh_warmup_every=0,
                     background="white", input_weight=config.input_weight, generated_weight=1.0,
                     densify=DensifyPolicy(refine_start=config.steps + 1, refine_stop=0, reset_every=0),
                     scene_scale=config.radius, seed=derived_seed(config.seed, 1, 1))


def refine(config: RefineConfig, gaussians: Gaussians, orbit: Views, input_index: int,
           reference: Float[Tensor, "H W 3"], backbone: Backbone | None, guider: Guider,
           say: Callable[[str], None] | None = None) -> Gaussians:
    """Photometric steps on the orbit plus masked SDS (see the module docstring); new Gaussians."""
    if backbone is None:
        raise ConfigError("--refine needs a video backbone as the prior; the orbit source has none.")
    sds = MaskedSDS(backbone, guider, reference, orbit.cameras.c2w[input_index][None], orbit.cameras, config,
                    orbit.width)
    report = None
    if say is not None:
        def report(p: FitProgress) -> None:
            if p.step % max(1, config.steps // 4) == 0:
                say(f"refine {p.step}/{p.steps}: loss {p.loss:.4f}, SDS on {sds.coverage * 100:.0f}% of pixels")
    return fit_gaussians(orbit, gaussians, refine_fit_config(config, gaussians.sh_degree), extra_losses=[sds],
                         progress=report)
