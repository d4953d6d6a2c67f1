"""SV3D's refinement: masked score distillation where the orbit views see the surface badly.

SV3D's 3D stage (paper only; SEED_SYSTEMS.md §1.6) refines its reconstruction with score
distillation sampling (SDS) from SV3D itself on random cameras, masked to the surfaces the orbit
frames do not see well. The mask is the soft visibility

    M = 1 - smoothstep(v_c . n, 0, 0.5)

where ``n`` is the surface normal and ``v_c`` the unit direction to the orbit camera that sees the
point most frontally (the maximum of ``v_c . n`` over the orbit cameras; occlusion is not tested).
Surfaces facing some orbit camera head-on (``v_c . n >= 0.5``) get no SDS; surfaces every orbit
camera sees edge-on or from behind get the full prior.

Each refinement step takes one photometric step on an orbit view (L1 + D-SSIM, the input view
weighted ``input_weight``) and one masked SDS step: render ``refine_frames`` random cameras (azimuth
uniform, elevation within 30 degrees of the input's), encode the renders with the backbone's encoder
(differentiably), noise them to a random ``sigma``, denoise with guidance, and pull the latents
toward the denoised ones only where ``M`` (pooled to latent resolution) says so:
``L_sds = 0.5 * sum(M (z - sg(D(z + sigma eps))))^2) / sum(M)``, whose gradient is the SDS gradient
``M (z - D)`` with unit weighting. SV3D's exact weights and SG illumination are unpublished.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError


def smoothstep(x: Tensor, edge0: float, edge1: float) -> Tensor:
    """Hermite step: 0 below ``edge0``, 1 above ``edge1``, ``3t^2 - 2t^3`` between."""
    t = ((x - edge0) / (edge1 - edge0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def points_and_normals(depth: Float[Tensor, "B H W"], cameras: Cameras
                       ) -> tuple[Float[Tensor, "B H W 3"], Float[Tensor, "B H W 3"]]:
    """World points of z-depth maps and normals from their finite differences, facing the camera."""
    b, h, w = depth.shape
    uv = cameras.pixel_grid().reshape(1, h * w, 2).expand(b, h * w, 2)
    pts = cameras.unproject(uv, depth.reshape(b, h * w)).reshape(b, h, w, 3)
    dx = torch.zeros_like(pts)
    dy = torch.zeros_like(pts)
    dx[:, :, 1:-1] = pts[:, :, 2:] - pts[:, :, :-2]
    dy[:, 1:-1] = pts[:, 2:] - pts[:, :-2]
    n = torch.cross(dx, dy, dim=-1)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    to_cam = cameras.centers[:, None, None] - pts
    return pts, torch.where(((n * to_cam).sum(-1, keepdim=True) < 0), -n, n)


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
    from vdm3d.cameras.io import cameras_from_sv3d

    az = torch.rand(n, generator=generator, dtype=torch.float64) * 360
    el = (elevation_deg + (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * 30).clamp(-80, 80)
    return cameras_from_sv3d(el, az, radius, fov_deg, size, size)


def sds_loss(backbone, guider, rgb: Float[Tensor, "F H W 3"], mask: Float[Tensor, "F H W"], cond, cond_null,
             generator: torch.Generator, sigma_range: tuple[float, float] = (0.1, 2.0)) -> Tensor:
    """Masked SDS on renders ``rgb`` (differentiable through the encoder), see the module docstring."""
    z = backbone.encode(rgb[None])  # [1, F, C, h, w]
    lo, hi = torch.log(torch.tensor(sigma_range[0])), torch.log(torch.tensor(sigma_range[1]))
    sigma = torch.exp(lo + (hi - lo) * torch.rand((), generator=generator)).reshape(1)
    eps = torch.randn(z.shape, generator=generator, dtype=z.dtype)
    with torch.no_grad():
        noisy = z.detach() + sigma * eps
        x0 = guider.combine(backbone.denoise(noisy, sigma, cond), backbone.denoise(noisy, sigma, cond_null))
    m = F.adaptive_avg_pool2d(mask[:, None], z.shape[-2:])[:, 0][None, :, None]  # [1, F, 1, h, w]
    return 0.5 * (m * (z - x0) ** 2).sum() / (m.sum() * z.shape[2]).clamp_min(1e-6)


def refine(config, gaussians, orbit, plan, fg, source, say=None):
    """Photometric + masked-SDS steps (see the module docstring); returns new Gaussians."""
    from vdm3d.protocols import Conditioning
    from vdm3d.recon import losses
    from vdm3d.splat.gaussians import Gaussians
    from vdm3d.splat.render import render

    backbone = getattr(source, "backbone", None)
    if backbone is None:
        raise ConfigError("--refine needs a video backbone as the prior; the orbit source has none.")
    generator = torch.Generator().manual_seed(config.seed + 1)
    params = {k: torch.nn.Parameter(v.clone()) for k, v in gaussians.parameters().items()}
    rates = {"means": 1.6e-4 * config.radius, "quats": 1e-3, "log_scales": 5e-3, "opacity_logits": 5e-2,
             "sh_dc": 2.5e-3, "sh_rest": 1.25e-4}
    opt = torch.optim.Adam([{"params": [p], "lr": rates[k] * config.lr_scale} for k, p in params.items()])
    white = torch.ones(3)
    size = orbit.width
    ref_c2w = plan.cameras.c2w[plan.input_index][None]
    frames = min(config.refine_frames, backbone.frames or config.refine_frames)
    for step in range(config.refine_steps):
        g = Gaussians.from_parameters(params)
        i = step % len(orbit)
        view = orbit[i]
        target = view.images * view.alphas[..., None] + (1 - view.alphas[..., None])
        pred = render(g, view.cameras, background=white).rgb
        w = config.input_weight if view.origin[0] == "input" else 1.0
        loss = w * (0.8 * losses.l1_loss(pred, target) + 0.2 * losses.dssim_loss(pred, target))
        cams = random_cameras(frames, config.elevation_deg, config.radius, config.fov_deg, size, generator)
        out = render(g, cams, background=white)
        with torch.no_grad():
            pts, nrm = points_and_normals(out.depth, cams)
            mask = soft_visibility_mask(pts, nrm, plan.cameras) * (out.alpha > 0.5)
        cond_in = Conditioning(reference=fg.image[None], cameras=cams.reshape(1, frames),
                               extras={"reference_c2w": ref_c2w})
        guider = source.guider(frames)
        loss = loss + config.refine_weight * sds_loss(backbone, guider, out.rgb.clamp(0, 1), mask,
                                                      backbone.condition(cond_in),
                                                      backbone.condition(cond_in, null=True), generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if say and ((step + 1) % max(1, config.refine_steps // 4) == 0):
            say(f"refine {step + 1}/{config.refine_steps}: loss {float(loss):.4f}, "
                f"SDS on {float(mask.mean()) * 100:.0f}% of pixels")
    return Gaussians.from_parameters({k: v.detach() for k, v in params.items()})
