"""`vdm3d object`: one image of an object -> orbit video, Gaussian splats, textured mesh, cameras.

The job follows SV3D and V3D (SEED_SYSTEMS.md §1, §2) on the shared core::

    image -> load_input -> generate_orbit -> carve -> fit -> [regenerate -> fit] -> [refine] -> extract_mesh
          -> [refine_texture] -> export

* ``load_input``: the object's mask (alpha, or a plain background), recentred with a border,
  composited on white at the backbone's resolution (:mod:`vdm3d.io.foreground`).
* ``generate_orbit``: a camera-conditioned backbone fills an SV3D (21 views, input last; static or
  seeded dynamic) or V3D (18 views, input first) orbit around the input camera; the input frame is
  the input image itself (as SV3D overwrites it). The tiny default doubles V3D's orbit to 36 views, sampled
  as two interleaved passes whose clips hold views 20 degrees apart, as the 18-view orbit's do: twice the
  views for the fit to average. :mod:`vdm3d.jobs.object_orbit`.
* ``carve``: V3D's space-carving initialization: the visual hull of the frames' masks, marching
  cubes, area-uniform surface samples coloured from the view that faces them
  (:mod:`vdm3d.geometry.carve`).
* ``fit``: Gaussians fitted with V3D's loss ``(1 - SSIM) + w_p * perceptual + w_o * mean(opacity)``
  (``ssim_weight = 1``: no L1), the input view fitted beside every step's generated view
  (``input_every_step``; the hub presets: one of the views, weighted ``input_weight``); the
  perceptual term is LPIPS when its weights are present, else 1 - MS-SSIM
  (:mod:`vdm3d.recon.perceptual`); the manifest records which ran. Options: SV3D's illumination model
  (:mod:`vdm3d.recon.illumination`), geometric priors (:mod:`vdm3d.recon.priors`) and the balloon prior, the
  input's mirrored balloon seen from the orbit's views and fitted beside them (:func:`balloon_pool`).
* ``regenerate`` (the tiny default; off in the hub presets): the fit's renders at the orbit cameras, noised
  and sampled again by the orbit model (SDEdit), mixed with the first orbit; the splats are fitted again from
  the same carved start on that mix.
* ``refine`` (optional; the SV3D preset turns it on): masked score distillation with the backbone as
  a prior on random cameras, only where the orbit views see the surface badly
  (:mod:`vdm3d.jobs.object_refine`).
* ``extract_mesh``: TSDF fusion of the splats' depth from ``mesh_views`` cameras along the orbit,
  marching cubes, small components removed, colours baked from the same renders (vertex colours, or
  a UV texture through xatlas) (:mod:`vdm3d.geometry.tsdf`, :mod:`vdm3d.geometry.texture`).
* ``refine_texture`` (optional, with a UV texture): V3D's texture refinement against the orbit frames
  (:mod:`vdm3d.geometry.texture_refine`).
* ``export``: the run folder (see :func:`export`).

World frame: z up, the object at the origin, the input camera at azimuth 0 on the orbit. The GLB and
OBJ are rotated to glTF's y-up (``(x, y, z) -> (x, z, -y)``); every other output stays in the world frame.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import numpy as np
import torch
import trimesh
import tyro

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.io import cameras_from_sv3d, write_transforms_json
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.trajectory_file import save_trajectory
from vdm3d.errors import ConfigError, InputError
from vdm3d.geometry.carve import CarveResult, carve as carve_hull, grid_points, inside_hull
from vdm3d.geometry import inflate
from vdm3d.geometry.pixels import pixel_hits
from vdm3d.geometry.texture import bake_uv_texture, bake_vertex_colors, export_mesh
from vdm3d.geometry.texture_refine import TextureRefineConfig, refine_texture
from vdm3d.geometry.tsdf import tsdf_mesh
from vdm3d.io.foreground import Foreground, load_object_image, mask_from_background
from vdm3d.io.images import write_image
from vdm3d.io.progress import StageClock
from vdm3d.io.runs import RunFolder
from vdm3d.io.video import write_video
from vdm3d.jobs.object_orbit import (BackboneOrbit, Carry, ClipLayout, Guidance, OrbitKind, OrbitPlan, OrbitSource,
                                     check_orbit_backbone, load_depth_model, orbit_plan)
from vdm3d.jobs.object_refine import RefineConfig, refine as refine_sds
from vdm3d.jobs.object_resume import gaussians_stage, orbit_stage
from vdm3d.models.registry import load_backbone, model_files
from vdm3d.models.tiny import DEFAULT_VIDEO
from vdm3d.jobs import job_entry
from vdm3d.options import SEED, Range
from vdm3d.recon.illumination import Illumination
from vdm3d.recon.perceptual import make_perceptual
from vdm3d.recon.priors import GeometryPriors
from vdm3d.recon.render import render_views
from vdm3d.recon.trainer import FitConfig, FitProgress, LearningRates, ViewPool, fit_gaussians, loss_weights
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.ply import save_ply
from vdm3d.splat.strategy import DensifyPolicy
from vdm3d.views import Views

#: the smallest orbit size: the fit's SSIM window (11 px, :mod:`vdm3d.recon.losses`) rounded up to the video
#: VAEs' factor of 8; an 8 px orbit was generated and then the fit crashed on it
MIN_RESOLUTION = 16

Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class ObjectConfig:
    """One image of an object to an orbit video, Gaussian splats and a textured mesh."""

    image: Annotated[Path, tyro.conf.arg(help_behavior_hint="(required)")] = Path("")
    """the input image: RGBA, RGB on a plain background, or a photo (masked by GrabCut unless --mask)"""
    mask: Path | None = None
    """a mask of the object (white on black) to use instead of the automatic one"""
    out: Path = Path("runs/object")
    """run folder to write (must not exist unless --overwrite)"""
    preset: str = "tiny"
    """tiny, sv3d, sv3d-dynamic, sv3d-u or v3d (described above): sets the defaults of every option - orbit,
    steps, guidance, backbone, camera, fitting - that the other flags then override; without it --backbone
    picks one (sv3d-p: sv3d, sv3d-u: sv3d-u, v3d: v3d, any other: tiny); recorded in the manifest"""
    backbone: str = "tiny"
    """video backbone with camera conditioning: tiny (the embedded default), sv3d-p, v3d, ... (`vdm3d models`),
    or the .json model file of a `vdm3d train orbit` run"""
    orbit: OrbitKind = "v3d"
    """orbit layout: sv3d-static (21 views, input last), sv3d-dynamic (seeded), v3d (18, input first)"""
    frames: Annotated[int | None, Range(4)] = 36
    """number of orbit views, at least 4 (None: the orbit's own, 21 or 18); the tiny default, 36 views 10 degrees
    apart sampled in interleaved clips, is two 18-view orbits half a step apart (docs/object.md)"""
    resolution: Annotated[int | None, Range(MIN_RESOLUTION)] = None
    """orbit image size in pixels, at least 16 (None: the backbone's native resolution, 64 for the embedded model;
    other sizes than the one a model was trained at give blurred or broken orbits, not more detail)"""
    elevation_deg: Annotated[float, Range(-90, 90, open_min=True, open_max=True)] = 10.0
    """elevation of the input camera (degrees above the object's equator)"""
    radius: Annotated[float, Range(0, open_min=True)] = 3.2163
    """camera distance from the object's centre (the object is assumed to fit in the unit sphere); the
    default is the tiny model's training framing: at 40 deg the unit sphere fills the view with a 10 %
    margin (:func:`vdm3d.data.procedural.cameras.orbit_distance`)"""
    fov_deg: Annotated[float, Range(0, 170, open_min=True, open_max=True)] = 40.0
    """horizontal field of view of the orbit cameras"""
    border_ratio: Annotated[float, Range(0, 0.5, open_max=True)] = 0.2
    """fraction of the image left as border around the recentred object"""
    recentre: bool = True
    """crop and recentre the object (off: use the square image as framed)"""
    steps: Annotated[int, Range(1)] = 4
    """sampler steps (Euler EDM); the tiny preset's 4 scored higher than 25 on validation objects
    (novel-view PSNR 12.99 vs 12.29 dB; its 25-step frames are sharper but less accurate)"""
    sigma_max: Annotated[float, Range(0, open_min=True)] = 80.0
    """largest noise level of the EDM schedule (SV3D/V3D: 700; the tiny model was trained up to ~80)"""
    guidance: Guidance = "constant"
    """classifier-free guidance over frames: triangular (SV3D) or constant (V3D)"""
    guidance_scale: Annotated[float, Range(0)] = 2.0
    """guidance weight (the peak of the triangular schedule)"""
    min_guidance_scale: Annotated[float, Range(0)] = 1.0
    """guidance at the ends of the triangular schedule"""
    proxy_maps: bool = True
    """give the backbone (if it has a maps slot, like tiny) the input carried into every orbit view (the
    maps slot, :mod:`vdm3d.geometry.inflate`), as ``--carry`` says; on: with the depth estimated by the
    object-depth model it raised the job on 20 validation objects from 13.84 dB / SSIM 0.492 to 13.94 / 0.513
    (docs/object.md)"""
    carry: Carry = "depth"
    """with --proxy-maps, what carries the input into the orbit views: its depth estimated by the
    object-depth model (the visible surface alone, ``depth``, the default; or with the back of the balloon
    inflated from its silhouette, ``depth+back``), or that balloon alone (``inflate``)"""
    object_depth_model: str = "object_depth"
    """the object-depth network for --carry depth / depth+back: a shipped model's name, or the .json of a
    `vdm3d train object-depth` run"""
    orbit_samples: Annotated[int, Range(1)] = 1
    """orbit videos sampled (one after the other from the run's seed); the 3D stage fits their per-pixel
    mean and the mean of their soft masks"""
    clip_layout: ClipLayout = "interleaved"
    """how a backbone with fewer frames than the orbit fills it: clips of consecutive views, or interleaved
    (every second view in one clip: on an 18-view orbit, views 40 degrees apart, as the tiny orbit model's
    training clips; on the default 36-view orbit, 20 degrees apart, as the 18-view orbit's consecutive clips)"""
    carve_resolution: Annotated[int, Range(16)] = 64
    """voxels per side of the space-carving grid"""
    num_points: Annotated[int, Range(16)] = 2000
    """initial Gaussians sampled on the carved surface"""
    fit_steps: Annotated[int, Range(1)] = 200
    """Gaussian fitting steps (one orbit view per step, and the input view beside it unless
    --input-every-step is 0)"""
    lr_scale: Annotated[float, Range(0, open_min=True)] = 10.0
    """multiplies 3DGS's learning rates, which are tuned for 30k steps (a few hundred need larger ones)"""
    ssim_weight: Annotated[float, Range(0)] = 1.0
    """lambda of (1 - lambda) L1 + lambda (1 - SSIM); V3D uses 1 (no L1)"""
    perceptual: Literal["auto", "lpips", "ms-ssim"] = "auto"
    """perceptual term: LPIPS if its weights are present (auto), required (lpips), or 1 - MS-SSIM"""
    perceptual_weight: Annotated[float, Range(0)] = 2.0
    """weight of the perceptual term (V3D: 2)"""
    opacity_weight: Annotated[float, Range(0)] = 0.1
    """weight of the mean-opacity regularizer (V3D: 0.1)"""
    alpha_weight: Annotated[float, Range(0)] = 0.5
    """weight of the L1 between rendered coverage and the frames' masks"""
    input_weight: Annotated[float, Range(0)] = 12.0
    """loss weight of the input view relative to a generated view when it is fitted as one of the orbit's
    views (--input-every-step 0, the hub presets: 4) and in --refine and texture refinement"""
    input_every_step: Annotated[float, Range(0)] = 0.33
    """weight of the input view fitted beside every step's orbit view, so that it keeps its share of the fit
    whatever the orbit's view count (0: it is one of the orbit's views, drawn in turn, weighted --input-weight)"""
    balloon_weight: Annotated[float, Range(0)] = 0.0
    """weight of the balloon prior: the balloon inflated from the input's silhouette, its back the mirror of its
    front, seen from every orbit view with the input's colours on it, fitted beside each step as one more view
    (:func:`vdm3d.geometry.inflate.mirrored_balloon_views`; 0: off, the default). For objects unlike the orbit
    model's training objects, whose far views come out as blobs: 1 gives the demo's turntable the cow's outline
    from every side and spot +2.1 dB, but costs 0.38 dB on 20 validation objects and 0.68 on 20 held-out ones (docs/object.md,
    "A balloon prior")"""
    regen_sigma: Annotated[float, Range(0)] = 4.0
    """guided regeneration: after the fit, its renders at the orbit cameras are noised to this sigma and
    sampled again by the orbit model (as the orbit was, SDEdit), mixed with the first orbit (--regen-mix), and
    the splats are fitted again on that mix (0: off, the hub presets' default)"""
    regen_mix: Annotated[float, Range(0, 1)] = 0.5
    """share of the regenerated frames in the views of the second fit (the rest: the first orbit's frames)"""
    max_gaussians: Annotated[int, Range(1)] = 4000
    """cap on the number of Gaussians after densification"""
    illumination: bool = False
    """fit SV3D's illumination model with the splats: albedo x Lambertian shading of 24 spherical Gaussians
    of white light (:mod:`vdm3d.recon.illumination`); the splats keep the shaded colours, the albedo is
    written as splats_albedo.ply"""
    illumination_weight: Annotated[float, Range(0)] = 0.1
    """weight of the loss tying the rendered shading to the input's HSV value"""
    depth_prior: Annotated[float, Range(0)] = 0.0
    """weight of the smooth-depth prior on a random orbit view per step (:mod:`vdm3d.recon.priors`)"""
    normal_prior: Annotated[float, Range(0)] = 0.0
    """weight of the bilateral normal-smoothness prior (normals of rendered depth, edges of the frame)"""
    estimator_prior: Annotated[float, Range(0)] = 0.0
    """weight of the normal loss against the normals of --depth-model's depth of the input image"""
    depth_model: str = "tiny-depth"
    """depth estimator for --estimator-prior (`vdm3d models`)"""
    refine: bool = False
    """run masked score distillation after fitting (SV3D's unseen-region refinement)"""
    refine_steps: Annotated[int, Range(0)] = 100
    """masked-SDS steps"""
    refine_weight: Annotated[float, Range(0)] = 1.0
    """weight of the masked SDS term against the photometric term"""
    refine_frames: Annotated[int, Range(1)] = 4
    """random cameras rendered per SDS step (capped by the backbone's frame count)"""
    mesh_resolution: Annotated[int, Range(16)] = 96
    """voxels per side of the TSDF grid"""
    mesh_views: Annotated[int, Range(1)] = 24
    """views rendered on the orbit's path for TSDF fusion and colour baking"""
    texture: Literal["vertex", "uv"] = "vertex"
    """mesh colours: per-vertex, or a UV texture (xatlas)"""
    texture_size: Annotated[int, Range(8)] = 512
    """UV texture side in pixels"""
    texture_refine_steps: Annotated[int, Range(0)] = 0
    """V3D's texture refinement: optimize the UV texture against the orbit frames for this many steps
    (0: off; needs --texture uv) (:mod:`vdm3d.geometry.texture_refine`)"""
    turntable_frames: Annotated[int, Range(1)] = 36
    """frames of the turntable video of the result"""
    seed: Annotated[int, SEED] = 0
    """random seed (sampling, dynamic orbit, fitting)"""
    overwrite: bool = False
    """replace an existing run folder"""
    resume: bool = False
    """continue the interrupted run in --out after its last finished stage (orbit, fit, regenerate, refit, refine)"""


#: what the hub presets keep where the tiny default changed: their trained orbit (its own view count, one clip),
#: the input view weighted 4 as one of the orbit's views, and one fit (no regeneration)
HUB_FIT: dict[str, Any] = {"frames": None, "clip_layout": "consecutive", "input_weight": 4.0, "input_every_step": 0.0,
                           "regen_sigma": 0.0}

PRESETS: dict[str, tuple[str, ObjectConfig]] = {
    "tiny": ("embedded 64x64 orbit model on CPU: V3D-style orbit of 36 views (two 18-view passes interleaved), "
             "4 steps, constant guidance 2",
             ObjectConfig()),
    "sv3d": ("SV3D_p: 21-view static orbit (input last), triangular CFG 1 -> 2.5, 50 steps, masked SDS",
             ObjectConfig(preset="sv3d", backbone="sv3d-p", orbit="sv3d-static", **HUB_FIT,
                          steps=50, sigma_max=700.0, guidance="triangular", guidance_scale=2.5, radius=2.0,
                          fov_deg=33.8, refine=True, fit_steps=2000, lr_scale=2.0,
                          carve_resolution=128, num_points=20000, max_gaussians=100_000, mesh_resolution=256,
                          texture="uv", elevation_deg=10.0)),
    "sv3d-dynamic": ("SV3D_p with a seeded dynamic orbit (wandering elevation), otherwise as sv3d",
                     ObjectConfig(preset="sv3d-dynamic", backbone="sv3d-p", orbit="sv3d-dynamic", **HUB_FIT,
                                  steps=50, sigma_max=700.0,
                                  guidance="triangular", guidance_scale=2.5, radius=2.0, fov_deg=33.8,
                                  refine=True, fit_steps=2000, lr_scale=2.0, carve_resolution=128,
                                  num_points=20000, max_gaussians=100_000, mesh_resolution=256, texture="uv")),
    "sv3d-u": ("SV3D_u: its trained 21-view static orbit (input last, no camera input), triangular CFG 1 -> 2.5, "
               "50 steps",
               ObjectConfig(preset="sv3d-u", backbone="sv3d-u", orbit="sv3d-static", **HUB_FIT,
                            steps=50, sigma_max=700.0,
                            guidance="triangular", guidance_scale=2.5, radius=2.0, fov_deg=33.8, fit_steps=2000,
                            lr_scale=2.0, carve_resolution=128, num_points=20000,
                            max_gaussians=100_000, mesh_resolution=256, texture="uv", elevation_deg=10.0)),
    "v3d": ("V3D: 18-view orbit at elevation 0 (input first), constant CFG 4.5, 25 steps, border 0.3",
            ObjectConfig(preset="v3d", backbone="v3d", orbit="v3d", **HUB_FIT, steps=25,
                         sigma_max=700.0, guidance="constant", guidance_scale=4.5, elevation_deg=0.0, radius=2.0,
                         fov_deg=60.0, border_ratio=0.3, fit_steps=4000, lr_scale=1.0,
                         carve_resolution=128, num_points=20000, max_gaussians=100_000, mesh_resolution=256,
                         texture="uv")),
}


@dataclasses.dataclass
class ObjectResult:
    """What a run produced (the files are in ``out``)."""

    out: Path
    orbit: Views
    gaussians: Gaussians
    mesh: trimesh.Trimesh
    perceptual: str
    timings: dict[str, float]


Progress = Callable[[str], None]


def load_orbit_source(config: ObjectConfig) -> OrbitSource:
    """The backbone named in the config, wrapped as an orbit source (errors before any output)."""
    size = (config.resolution, config.resolution) if config.resolution else None  # the memory plan's workload
    backbone = load_backbone(tiny_orbit_model() if config.backbone == "tiny" else config.backbone, plan_size=size)
    check_orbit_backbone(backbone, config.backbone, config.orbit, config.frames)
    return BackboneOrbit(backbone, steps=config.steps, sigma_max=config.sigma_max, guidance=config.guidance,
                         guidance_scale=config.guidance_scale, min_guidance_scale=config.min_guidance_scale,
                         proxy_maps=config.proxy_maps, layout=config.clip_layout, **depth_carry(config, backbone))


def depth_carry(config: ObjectConfig, backbone: Any) -> dict[str, Any]:
    """The orbit source's carry settings: with a depth carry into a backbone that takes maps, the
    object-depth network too (loaded only then)."""
    takes_maps = {"maps", "cameras"} <= set(getattr(backbone, "slots", ()))
    if not (config.proxy_maps and takes_maps) or config.carry == "inflate":
        return {"carry": config.carry}
    return {"carry": config.carry, "depth_model": load_depth_model(config.object_depth_model)}


def tiny_orbit_model() -> str:
    """The embedded model behind ``--backbone tiny``: the object job's own ``orbit`` model (`vdm3d train
    orbit`) when it is shipped, else the shared ``video`` model."""
    from vdm3d.models.tiny import available

    return "tiny-orbit" if "orbit" in available() else f"tiny-{DEFAULT_VIDEO}"


def check_config(config: ObjectConfig) -> None:
    if config.preset not in PRESETS:  # the CLI refuses it when parsing; a library call gets here
        raise ConfigError(f"--preset {config.preset!r} is unknown; choose one of: {', '.join(PRESETS)}.")
    if not 0.0 <= config.border_ratio < 0.9:
        raise ConfigError(f"--border-ratio is {config.border_ratio}; use a value in [0, 0.9).")
    if config.fit_steps < 1 or config.num_points < 16 or config.carve_resolution < 16 or config.mesh_resolution < 16:
        raise ConfigError("--fit-steps must be >= 1, --num-points >= 16 and the grid resolutions >= 16.")
    if config.texture_refine_steps > 0 and config.texture != "uv":
        raise ConfigError("--texture-refine-steps optimizes a UV texture; add --texture uv.")
    if not 0 < config.fov_deg < 170 or config.radius <= 0:
        raise ConfigError(f"--fov-deg {config.fov_deg} and --radius {config.radius} must be in (0, 170) and > 0.")
    if 0 < config.regen_sigma <= 0.002:
        raise ConfigError(f"--regen-sigma {config.regen_sigma} is not above the sampler's smallest noise level, "
                          "0.002; use 0 to turn the regeneration off, or a larger value such as the default 4.")


# -- stages ---------------------------------------------------------------------------------------
def load_input(config: ObjectConfig, size: int, say: Progress | None = None) -> Foreground:
    """Mask, recentre and composite the input image at ``size`` (raises InputError on bad input); ``say``
    hears that an animated file gives its first frame (None: a warning)."""
    if str(config.image) in ("", "."):
        raise InputError("no input image was given; pass --image PATH (an RGBA image or one on a plain background).")
    return load_object_image(config.image, size, config.border_ratio, config.recentre, mask=config.mask, say=say)


def generate_orbit(config: ObjectConfig, fg: Foreground, source: OrbitSource) -> tuple[Views, OrbitPlan]:
    """Orbit frames with masks; the input frame is the input image (origin ``input``)."""
    size = fg.image.shape[0]
    plan = orbit_plan(config.orbit, config.elevation_deg, config.radius, config.fov_deg, size, config.frames,
                      config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    samples = torch.stack([source.generate(fg.image, plan, generator).float()
                           for _ in range(config.orbit_samples)])  # [K, F, H, W, 3]
    images = samples.mean(0)
    images[plan.input_index] = fg.image
    alphas = masks_on_white(samples.flatten(0, 1)).reshape(samples.shape[:-1]).mean(0)  # [F, H, W]
    alphas[plan.input_index] = fg.alpha
    origin = tuple("input" if i == plan.input_index else "generated" for i in range(len(images)))
    return Views(images, plan.cameras, alphas=alphas, origin=origin, fps=6.0), plan


def masks_on_white(images: torch.Tensor) -> torch.Tensor:
    """The object's mask in each of ``images`` (``[N, H, W, 3]``, an object on white), ``[N, H, W]`` float32."""
    white = np.ones(3, np.float32)
    return torch.stack([torch.from_numpy(mask_from_background(im.numpy(), white)) for im in images]).float()


def carve(config: ObjectConfig, orbit: Views) -> CarveResult:
    """V3D's space-carving init over the orbit's masks (one pixel of dilation forgives thin frames)."""
    return carve_hull(orbit.alphas, orbit.cameras, num_points=config.num_points,
                      resolution=config.carve_resolution, dilate_px=1, seed=config.seed)


def init_gaussians(hull: CarveResult, orbit: Views) -> Gaussians:
    """Gaussians on the carved surface, coloured from the orbit frame that faces each point most."""
    cams = orbit.cameras
    to_cam = cams.centers[None] - hull.points_world[:, None]  # [N, F, 3]
    facing = (to_cam / to_cam.norm(dim=-1, keepdim=True) * hull.normals_world[:, None]).sum(-1)
    best = facing.argmax(1)  # [N]
    colors = pixel_hits(cams[best], hull.points_world[:, None]).gather(orbit.images[best])[:, 0]  # [N, 3]
    return Gaussians.from_points(hull.points_world, colors, opacity=0.5, sh_degree=0)


def fit(config: ObjectConfig, orbit: Views, init: Gaussians, perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
        progress: Progress | None = None, balloon: Views | None = None) -> Gaussians:
    """Fit Gaussians to the orbit with V3D's loss; the input view is fitted beside every step's orbit view
    (weight ``input_every_step``), or as one of them weighted ``input_weight`` (:func:`input_beside`).

    With ``illumination`` the fitted colours are albedo lit by a fitted light, and the result is the
    lit splats (:func:`fit_lit` returns the albedo too); the geometric priors are extra loss terms. ``balloon``:
    the balloon prior's views (:func:`balloon_views`) when the caller made them once for several fits (None:
    made here if ``balloon_weight`` asks for them)."""
    return fit_lit(config, orbit, init, perceptual, progress, balloon)[0]


def fit_lit(config: ObjectConfig, orbit: Views, init: Gaussians,
            perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
            progress: Progress | None = None, balloon: Views | None = None) -> tuple[Gaussians, Gaussians | None]:
    """:func:`fit`, returning ``(lit splats, albedo splats or None)``."""
    n = config.fit_steps
    densify = DensifyPolicy(refine_start=max(1, n // 5), refine_stop=max(2, int(0.8 * n)),
                            refine_every=max(1, n // 10), reset_every=0, max_gaussians=config.max_gaussians)
    base = LearningRates()
    lr = LearningRates(**{f.name: getattr(base, f.name) * config.lr_scale for f in dataclasses.fields(base)})
    fit_config = FitConfig(steps=n, lr=lr, ssim_weight=config.ssim_weight, perceptual_weight=config.perceptual_weight,
                           opacity_weight=config.opacity_weight, alpha_weight=config.alpha_weight, sh_degree=0,
                           sh_warmup_every=0, background="white", input_weight=config.input_weight,
                           generated_weight=1.0, densify=densify, seed=config.seed)
    report = None
    if progress is not None:
        since: list[tuple[float, float]] = []  # (loss, PSNR) of the steps since the last line

        def report(p: FitProgress) -> None:  # noqa: E306
            # one step fits one orbit view (and the input beside it): a line shows the mean of the
            # steps since the previous one, not the last step's view, which swings by several dB
            since.append((p.loss, p.psnr))
            if p.step % max(1, n // 5) == 0 or p.step == n:
                loss, psnr_db = (sum(v) / len(since) for v in zip(*since))
                progress(f"fit {p.step}/{p.steps}: loss {loss:.4f}, PSNR {psnr_db:.2f} dB (means over {len(since)} "
                         f"steps), {p.num_gaussians} Gaussians")
                since.clear()
    terms, light = fit_terms(config, orbit)
    between = None if light is None else (lambda _step, _g: light.step())
    views, pools = input_beside(orbit, config.input_every_step, fit_config)
    pools += balloon_pool(orbit, config.balloon_weight, fit_config, balloon)
    fitted = fit_gaussians(views, init, fit_config, perceptual=perceptual, progress=report, extra_losses=terms,
                           appearance=light, between_steps=between, pools=pools)
    if light is None:
        return fitted, None
    with torch.no_grad():
        return light(fitted), fitted


def regenerate(config: ObjectConfig, gaussians: Gaussians, orbit: Views, plan: OrbitPlan, fg: Foreground,
               source: OrbitSource) -> Views:
    """The orbit again, guided by the fit (docs/object.md, "Guided regeneration"): the splats rendered at the
    orbit cameras agree with each other but are blurred where the generated views disagreed; noised to
    ``regen_sigma`` and sampled again by the orbit model with the orbit's conditions (SDEdit,
    :meth:`~vdm3d.jobs.object_orbit.BackboneOrbit.regenerate`), they get the model's detail back on a shape
    the views share. The views of the second fit are those frames mixed with the first orbit's by
    ``regen_mix``, the masks found on white again; the input frame stays the input."""
    renders = render_views(gaussians, orbit.cameras, background=1.0).images.clamp(0, 1)
    generator = torch.Generator().manual_seed(config.seed + 1)
    again = source.regenerate(fg.image, plan, renders, config.regen_sigma, generator).float()
    images = config.regen_mix * again + (1 - config.regen_mix) * orbit.images
    images[plan.input_index] = fg.image
    alphas = masks_on_white(images)
    alphas[plan.input_index] = orbit.alphas[plan.input_index]
    return Views(images, orbit.cameras, alphas=alphas, origin=orbit.origin, fps=orbit.fps)


def input_beside(orbit: Views, weight: float, fit_config: FitConfig) -> tuple[Views, list[ViewPool]]:
    """The orbit's generated views, and a pool that fits its input view beside each of them (weight
    ``weight``, the fit's own loss terms); with ``weight`` 0, or an orbit of input views only, the orbit as it
    is and no pool.

    The fit draws one view per step in turn, so with 36 generated views the input comes up once in 37 steps
    however it is weighted (and a large weight on rare steps shakes Adam's moments); beside every step it
    keeps its share of the fit whatever the view count (docs/object.md, "The input view at every step")."""
    inputs = [i for i, o in enumerate(orbit.origin) if o == "input"]
    if weight == 0 or not inputs or len(inputs) == len(orbit):
        return orbit, []
    generated = [i for i in range(len(orbit)) if i not in inputs]
    return orbit[generated], [ViewPool(orbit[inputs], loss=loss_weights(fit_config), weight=weight)]


def balloon_pool(orbit: Views, weight: float, fit_config: FitConfig, views: Views | None = None) -> list[ViewPool]:
    """The balloon prior (``--balloon-weight``): the balloon's views (``views``, else :func:`balloon_views` of
    ``orbit``) as a pool fitted beside every step with the fit's own loss terms; none with ``weight`` 0 or an orbit
    without an input view and a generated one."""
    views = views if views is not None or weight == 0 else balloon_views(orbit)
    if weight == 0 or views is None:
        return []
    return [ViewPool(views, loss=loss_weights(fit_config), weight=weight)]


def balloon_views(orbit: Views) -> Views | None:
    """The balloon inflated from the input's silhouette and mirrored about the object's centre, seen from each
    generated view of the orbit with the input's colours carried onto it
    (:func:`vdm3d.geometry.inflate.mirrored_balloon_views`); None for an orbit without an input view and a
    generated one.

    Seen from behind, an object's outline is the mirror of its outline from the front (exactly so for a distant
    camera); the balloon has that outline and the input's colours mirrored on its back, a shape and a colour
    guess that need no model, where an orbit model that has not seen objects like the input draws a blob."""
    inputs = [i for i, o in enumerate(orbit.origin) if o == "input"]
    generated = [i for i, o in enumerate(orbit.origin) if o == "generated"]
    if not inputs or not generated:
        return None
    i = inputs[0]
    return inflate.mirrored_balloon_views(orbit.images[i], orbit.alphas[i], orbit.cameras[i], orbit.cameras[generated])


def fit_terms(config: ObjectConfig, orbit: Views) -> tuple[list, Illumination | None]:
    """The optional loss terms of the fit (priors, the illumination's value loss) and the light."""
    terms: list = []
    index = next(i for i, o in enumerate(orbit.origin) if o == "input")
    if config.depth_prior > 0 or config.normal_prior > 0 or config.estimator_prior > 0:
        estimated = None
        if config.estimator_prior > 0:
            estimated = estimate_depth(config.depth_model, orbit.images[index])
        terms.append(GeometryPriors(orbit, index, config.depth_prior, config.normal_prior, config.estimator_prior,
                                    estimated))
    if not config.illumination:
        return terms, None
    light = Illumination()
    cam, image, alpha = orbit.cameras[index], orbit.images[index], orbit.alphas[index]
    terms.append(lambda ctx: config.illumination_weight * light.value_loss(ctx.gaussians, cam, image, alpha, ctx.backend))
    return terms, light


def estimate_depth(name: str, image: torch.Tensor) -> torch.Tensor:
    """z-depth up to scale and shift of one ``[H, W, 3]`` image from a depth estimator (inverse depth inverted)."""
    from vdm3d.models.registry import load_depth

    model = load_depth(name)
    pred = model.predict(image[None].float())[0].float()
    return 1.0 / pred.clamp_min(1e-6) if getattr(model, "kind", "relative") == "inverse" else pred


def refine(config: ObjectConfig, gaussians: Gaussians, orbit: Views, plan: OrbitPlan, fg: Foreground,
           source: OrbitSource, progress: Progress | None = None) -> Gaussians:
    """SV3D's masked score distillation with the orbit's backbone as the prior, in the fitting loop."""
    backbone = getattr(source, "backbone", None)
    if backbone is None:
        raise ConfigError("--refine needs a video backbone as the prior; the orbit source has none.")
    settings = RefineConfig(steps=config.refine_steps, weight=config.refine_weight, frames=config.refine_frames,
                            input_weight=config.input_weight, lr_scale=config.lr_scale, radius=config.radius,
                            elevation_deg=config.elevation_deg, fov_deg=config.fov_deg, seed=config.seed)
    return refine_sds(settings, gaussians, orbit, plan.input_index, fg.image, backbone,
                      source.guider(config.refine_frames), progress)


def mesh_cameras(config: ObjectConfig, plan: OrbitPlan, size: int) -> Cameras:
    """``mesh_views`` cameras on the orbit's own path, half-way between its azimuths where possible.

    Splats are only trustworthy from where the orbit looked: views far above or below the orbit see
    the unconstrained caps of the visual hull (measured on a procedural object with exact orbit
    frames: Chamfer 0.029 from the orbit's ring, 0.066 from rings at -30..50 degrees).
    """
    az_orbit = plan.azimuth_deg.double().numpy() % 360
    order = np.argsort(az_orbit)
    az = (np.arange(config.mesh_views) + 0.5) * 360.0 / config.mesh_views
    el = np.interp(az, az_orbit[order], plan.elevation_deg.double().numpy()[order], period=360.0)
    return cameras_from_sv3d(torch.from_numpy(el), torch.from_numpy(az), config.radius, config.fov_deg, size, size)


def mesh_box(hull: CarveResult, pad_voxels: float = 4.0) -> tuple[torch.Tensor, float]:
    """The carved hull's grid cube grown by a few voxels: ``(lo corner, side)`` for TSDF fusion."""
    pad = pad_voxels * hull.voxel
    return hull.lo - pad, hull.occupancy.shape[0] * hull.voxel + 2 * pad


def extract_mesh(config: ObjectConfig, gaussians: Gaussians, plan: OrbitPlan, lo: torch.Tensor, side: float, size: int,
                 hull: CarveResult | None = None) -> trimesh.Trimesh:
    """TSDF of splat depth from many views inside the cube ``lo + [0, side]^3`` (and inside the
    visual ``hull`` when given) -> closed mesh -> colours baked from the same renders."""
    cams = mesh_cameras(config, plan, size)
    views = render_views(gaussians, cams, background=0.0)
    colors = views.images / views.alphas.clamp_min(1e-3)[..., None]  # un-premultiply: no background bleed
    depths = torch.where(views.alphas > 0.5, views.depths, torch.full_like(views.depths, float("inf")))
    r = config.mesh_resolution
    allowed = None if hull is None else inside_hull(hull, grid_points(lo, side / r, r)).reshape(r, r, r)
    mesh = tsdf_mesh(depths, cams, lo, side, r, alphas=views.alphas, allowed=allowed)
    tol = 3.0 * side / config.mesh_resolution
    if config.texture == "uv":
        return bake_uv_texture(mesh, colors.clamp(0, 1), depths, cams, tol, config.texture_size)
    return bake_vertex_colors(mesh, colors.clamp(0, 1), depths, cams, tol)


def turntable(config: ObjectConfig, gaussians: Gaussians, size: int) -> torch.Tensor:
    """Renders of the splats on a full turn at the input elevation, ``[T, H, W, 3]`` on white."""
    az = torch.arange(config.turntable_frames) * 360.0 / config.turntable_frames
    cams = cameras_from_sv3d(config.elevation_deg, az, config.radius, config.fov_deg, size, size)
    return render_views(gaussians, cams, background=1.0).images


def export(folder: Path, config: ObjectConfig, fg: Foreground, orbit: Views, plan: OrbitPlan, gaussians: Gaussians,
           mesh: trimesh.Trimesh, albedo: Gaussians | None = None) -> dict[str, str]:
    """Write the run's files into ``folder``; returns name -> relative path.

    ``input.png`` (the processed input), ``orbit/NNN.png`` + ``orbit.mp4`` (the orbit frames),
    ``cameras/transforms.json`` (nerfstudio, OpenGL) and ``cameras/orbit.json`` (vdm3d trajectory),
    ``splats.ply`` (3DGS PLY), ``mesh.glb`` + ``mesh.obj`` (y-up), ``turntable.mp4`` and ``turntable.png``
    (8 of its frames side by side, the input's side first); with illumination
    also ``splats_albedo.ply`` (the same splats, unlit).
    """
    (folder / "orbit").mkdir(parents=True, exist_ok=True)
    (folder / "cameras").mkdir(exist_ok=True)
    write_image(folder / "input.png", fg.image)
    write_image(folder / "mask.png", fg.alpha)  # the object's mask as used (alpha, plain colour, GrabCut, --mask)
    names = [f"orbit/{i:03d}.png" for i in range(len(orbit))]
    for name, image in zip(names, orbit.images):
        write_image(folder / name, image)
    write_video(folder / "orbit.mp4", orbit.images, fps=orbit.fps or 6.0)
    write_transforms_json(folder / "cameras" / "transforms.json", orbit.cameras, [f"../{n}" for n in names],
                          extras={"top": {"fps": orbit.fps or 6.0}})  # orbit.mp4's, as in orbit.json
    write_trajectory(folder / "cameras" / "orbit.json", orbit.cameras, orbit.fps or 6.0, config, plan,
                     [f"../{n}" for n in names])
    save_ply(folder / "splats.ply", gaussians)
    export_mesh(mesh.copy().apply_transform(Y_UP), folder, "mesh")
    spin = turntable(config, gaussians, orbit.width * 2)  # [T, H, W, 3]
    write_video(folder / "turntable.mp4", spin, fps=12)
    pick = torch.linspace(0, len(spin), 9)[:-1].long().clamp(max=len(spin) - 1)  # 8 frames, 0 deg first
    write_image(folder / "turntable.png", torch.cat(list(spin[pick]), 1))  # a strip: the back is in the middle
    files = ["input.png", "mask.png", "orbit.mp4", "orbit/", "cameras/transforms.json", "cameras/orbit.json", "splats.ply",
             "mesh.glb", "mesh.obj", "turntable.mp4", "turntable.png"]
    if albedo is not None:
        save_ply(folder / "splats_albedo.ply", albedo)
        files.append("splats_albedo.ply")
    return {f: f for f in files}


def write_trajectory(path: Path, cameras: Cameras, fps: float, config: ObjectConfig, plan: OrbitPlan,
                     names: list[str]) -> None:
    """The orbit as a vdm3d trajectory file (cameras in time order, fps, provenance, each frame's image
    relative to the file)."""
    provenance = {"generator": f"vdm3d object ({config.orbit})", "input_index": plan.input_index,
                  "elevations_deg": plan.elevation_deg.tolist(), "azimuths_deg": plan.azimuth_deg.tolist(),
                  "names": names}
    save_trajectory(path, Trajectory(cameras, fps=fps, provenance=provenance))


@job_entry(check_config)
def run_object(config: ObjectConfig, *, source: OrbitSource | None = None, progress: Progress | None = print,
               ) -> ObjectResult:
    """Run every stage and write the run folder. Bad input raises before anything is written.

    ``config`` is checked first (:func:`vdm3d.jobs.job_entry`; ``image`` is the one required field).
    ``progress`` hears one line per stage (None: silent). ``source`` replaces the backbone (e.g.
    :class:`~vdm3d.jobs.object_orbit.OracleOrbit` in evaluations and tests); otherwise ``config.backbone``
    is loaded.
    """
    say = progress or (lambda _msg: None)
    clock = StageClock()
    lap, timings = clock.lap, clock.timings

    fg = load_input(config, config.resolution or 64, say)  # bad images fail first, before any model loads
    if source is None:
        source = load_orbit_source(config)
    native = getattr(getattr(source, "backbone", None), "resolution", None)
    size = config.resolution or (native or (64, 64))[0]
    if native is not None and size != native[0]:
        say(f"warning: --resolution {size} is not the native {native[0]}x{native[1]} of the orbit model "
            f"{source.name}, which was trained at that size: expect blurred or scattered orbit frames, not more "
            "detail; leave --resolution out to use the native size")
    if size != fg.image.shape[0]:
        fg = load_input(config, size, lambda _said: None)  # the same file: its notes were said above
    perceptual, perceptual_name = make_perceptual(config.perceptual)
    lap("load")
    inputs = [config.image, *([config.mask] if config.mask else []),
              *model_files(tiny_orbit_model() if config.backbone == "tiny" else config.backbone,
                           config.object_depth_model, config.depth_model)]
    with RunFolder(config.out, config=config, seed=config.seed, inputs=inputs,
                   overwrite=config.overwrite, resume=config.resume) as run:
        say(f"orbit: {config.orbit} with {source.name} at {size}x{size}")
        # each expensive stage checkpoints its result; --resume picks up after the last one (object_resume)
        orbit, plan, orbit_log = orbit_stage(
            run, lambda: generate_orbit(config, fg, source),
            lambda: orbit_plan(config.orbit, config.elevation_deg, config.radius, config.fov_deg, size, config.frames,
                               config.seed),
            lambda: list(getattr(source, "log", None) or []), say)
        for clip in orbit_log if not run.resuming else ():  # a resumed run said it took the frames as they were
            say(f"orbit clip of frames {clip['frames']}: CFG weights {clip['cfg_weights']}")
        lap("generate_orbit")
        hull = carve(config, orbit)
        say(f"carve: visual hull with {len(hull.mesh.faces)} faces, {len(hull.points_world)} points")
        init = init_gaussians(hull, orbit)
        # made once for both fits: the regenerated views keep the orbit's input frame and cameras
        balloon = balloon_views(orbit) if config.balloon_weight > 0 else None
        lap("carve")
        albedo: list[Gaussians] = []

        def fit_stage(views: Views, stage: str) -> Gaussians:
            """The splats fitted to ``views`` from the carved ``init``, checkpointed as ``stage`` (with the
            illumination model, its albedo too)."""
            albedo_stage = "albedo" if stage == "fit" else f"{stage}-albedo"
            albedo.clear()

            def compute() -> Gaussians:
                if not config.illumination:
                    return fit(config, views, init, perceptual, say, balloon)
                lit, unlit = fit_lit(config, views, init, perceptual, say, balloon)
                albedo.append(gaussians_stage(run, albedo_stage, lambda: unlit))  # checkpointed before the fit's
                return lit

            fitted = gaussians_stage(run, stage, compute, say)
            if config.illumination and not albedo:
                albedo.append(gaussians_stage(run, albedo_stage, lambda: fitted))
            return fitted

        gaussians = fit_stage(orbit, "fit")
        lap("fit")
        fitted_to = orbit  # the views of the fit that makes the splats; `orbit` stays the model's frames
        if config.regen_sigma > 0 and not hasattr(source, "regenerate"):
            say(f"regenerate: skipped, the orbit source {source.name} is not a model that can sample again")
        elif config.regen_sigma > 0:
            first_fit = gaussians

            def regenerated() -> tuple[Views, OrbitPlan]:
                say(f"regenerate: the fit's renders sampled again from sigma {config.regen_sigma:g}, mixed "
                    f"{config.regen_mix:g} : {1 - config.regen_mix:g} with the first orbit, to fit again")
                return regenerate(config, first_fit, orbit, plan, fg, source), plan

            fitted_to = orbit_stage(run, regenerated, lambda: plan, lambda: [], say, name="regenerate")[0]
            lap("regenerate")
            gaussians = fit_stage(fitted_to, "refit")
            lap("refit")
        if config.refine:
            fitted = gaussians
            gaussians = gaussians_stage(run, "refine", lambda: refine(config, fitted, orbit, plan, fg, source, say), say)
            lap("refine")
        mesh = extract_mesh(config, gaussians, plan, *mesh_box(hull), size, hull)
        say(f"mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, watertight={mesh.is_watertight}")
        lap("extract_mesh")
        if config.texture_refine_steps > 0:
            mesh = refine_texture(mesh, fitted_to, TextureRefineConfig(steps=config.texture_refine_steps,
                                                                   input_weight=config.input_weight,
                                                                   perceptual_weight=config.perceptual_weight,
                                                                   seed=config.seed), perceptual, say)
            lap("refine_texture")
        files = export(run.path, config, fg, orbit, plan, gaussians, mesh, albedo[0] if albedo else None)
        shutil.rmtree(run.path / "checkpoints", ignore_errors=True)  # finished: nothing left to resume
        lap("export")
        run.record(perceptual=perceptual_name, backbone=source.name, mask_source=fg.mask_source,
                   input_index=plan.input_index, orbit_sampling=orbit_log or getattr(source, "log", None), num_gaussians=len(gaussians), mesh_faces=len(mesh.faces),
                   mesh_watertight=bool(mesh.is_watertight), mesh_frame="glTF y-up: (x, y, z) -> (x, z, -y)",
                   files=files, timings=timings)
    return ObjectResult(config.out, orbit, gaussians, mesh, perceptual_name, timings)
