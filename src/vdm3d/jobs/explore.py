"""`vdm3d explore`: one image and a camera path -> a long, 3D-consistent video, its depth and the splats.

The job follows WorldWarp (SEED_SYSTEMS.md §4, §8.5, §8.6) on the shared core::

    image, path -> start_cache -> for each chunk: render_chunk -> generate_chunk -> absorb_chunk -> export

* ``plan_path``: the camera path from a trajectory file (vdm3d JSON, transforms.json, COLMAP,
  RealEstate10K text), movement presets, or another run's cameras; re-expressed relative to its first
  camera (which is the image's), retimed by ``--speed`` (:mod:`vdm3d.cameras.speed`), extended or cut
  to ``--frames`` (:mod:`vdm3d.cameras.extend`); intrinsics: the first frame sees the path file's own field
  of view (its first camera's centre square, as the image is cropped) unless ``--fov-deg`` says otherwise,
  a path that zooms (a file's focal lengths, or the ``zoom`` presets) keeps its zoom relative to it, and
  a file's principal point keeps its offset from the image centre, as an angle (so with ``--fov-deg`` too).
* ``start_cache`` (stage 1): depth of the image (scaled to median ``--depth-median``), unprojected
  into the Gaussian cache (:mod:`vdm3d.recon.cache`); the path is checked against that depth
  (:mod:`vdm3d.geometry.path_check`): a warning, or a refusal with ``--strict``.
* ``render_chunk`` (stage 2): the cache rendered at the chunk's cameras; validity = alpha x geometric
  validity against the source views, thresholded, eroded (:mod:`vdm3d.geometry.validity`).
* ``generate_chunk`` (stage 3): latents of the renders (context frames: the real frames), the
  fill-and-revise schedule (:func:`vdm3d.diffusion.schedules.fill_and_revise`: holes from full noise,
  valid tokens from ``--strength``, context frames clean), sampled with the backbone's per-token noise
  levels, decoded.
* ``absorb_chunk`` (stage 4): depth of the new frames aligned (scale and shift) to the cache's rendered
  depth on valid pixels; the cache grows into the holes and is fitted to the new frames.
* stitching (stage 5): each chunk's context frames are skipped; a checkpoint after every chunk, so
  ``--resume`` continues from the last finished chunk and gives the same video.
* ``export``: the cameras and the splats go back into the path file's world (``in_path_world``), so that
  they line up with the scene the path was made in; a preset's stay in its first camera's frame.

Variants used as baselines by ``vdm3d eval explore``: ``fill="inpaint"`` (the cache with warping and
OpenCV inpainting, no generation), ``use_cache=False`` (each chunk conditioned on the previous chunk's
last frame only), ``noise="uniform"`` (one noise level for every non-context token).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Callable, Literal

import torch
import torch.nn.functional as F
import tyro
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.extend import ExtendMode
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.errors import ConfigError, InputError
from vdm3d.jobs.explore_state import (STATE_FILE, ChunkPlan, ExploreState, chunk_plans, load_state, pose_distance,
                                     save_state)
from vdm3d.models.registry import model_files
from vdm3d.jobs import job_entry
from vdm3d.options import SEED, Range, derived_seed
from vdm3d.recon.cache import CacheConfig
from vdm3d.splat.gaussians import Gaussians
from vdm3d.views import Views

Progress = Callable[[str], None]
#: noise level of the clean context latents (the tiny model's clean reference frame uses the same)
CONTEXT_SIGMA = 0.002


MOVE_FPS = 12.0  # the video's frame rate for --move and for path files that record none


@dataclasses.dataclass(frozen=True)
class ExploreConfig:
    """One image and a camera path to a long video through an online Gaussian cache (WorldWarp)."""

    image: Annotated[Path, tyro.conf.arg(help_behavior_hint="(required)")] = Path("")
    """the start image (it is centre-cropped to a square and resized to --resolution; transparent pixels of an RGBA
    image are composited over white)"""
    out: Path = Path("runs/explore")
    """run folder to write (must not exist unless --overwrite or --resume)"""
    path: Path | None = None
    """camera path file: vdm3d trajectory JSON, transforms.json, COLMAP folder or RealEstate10K .txt"""
    move: tuple[str, ...] = ()
    """movement presets composed into a path instead of a file, e.g. dolly-in pan-left (the list of presets, with what
    each does: `vdm3d trajectory make move --help`)"""
    path_from_run: Path | None = None
    """use the cameras of another run folder (its cameras/trajectory.json)"""
    frames: Annotated[int | None, Range(1)] = None
    """number of frames (None: the path's own); a shorter path is extended with --extend"""
    extend: ExtendMode = "extrapolate"
    """how a path is extended to --frames: extrapolate, loop, pingpong or slowdown"""
    speed: Annotated[float, Range(0, open_min=True)] = 1.0
    """speed multiplier: the path is resampled at this many of its frames per output frame"""
    resolution: Annotated[int, Range(16)] = 64
    """output side in pixels: a multiple of 8, at least 16 (the tiny models work at 64)"""
    fov_deg: Annotated[float | None, Range(0, 170, open_min=True, open_max=True)] = None
    """horizontal field of view of the first frame (default: a path file's own, of its first camera's centre
    square, which is what the start image is cropped to; 60 with --move); a zooming path keeps its zoom"""
    depth_median: Annotated[float, Range(0, open_min=True)] = 2.0
    """median depth of the start image in the path's units (sets the scale of the scene)"""
    backbone: str = "tiny"
    """video backbone with per-token noise levels: tiny, worldwarp, wan2.1-t2v-1.3b (`vdm3d models`)"""
    model: str = "explore"
    """the tiny video model (with --backbone tiny): explore (fine-tuned on per-token noise), video, or the .json
    model file of a `vdm3d train explore` run"""
    depth: str = "tiny-depth"
    """depth estimator for the start image and the new frames: tiny-depth or a hub one (`vdm3d models list`);
    its output is used up to scale (aligned to --depth-median, then to the cache)"""
    prompt: str = ""
    """text prompt (backbones with a text slot)"""
    strength: Annotated[float, Range(0, 1)] = 0.1
    """noise on warped (valid) tokens: 0 keeps them, 1 = full noise like the holes (WorldWarp: 0.8; here
    0.1, nearly clean, since --keep-valid pastes the render back and the tiny model is trained for it)"""
    chunk: Annotated[int, Range(1)] = 8
    """frames per chunk, context included (Wan: 4k + 1)"""
    context: Annotated[int, Range(0)] = 1
    """frames of the previous chunk that start the next one, kept clean"""
    steps: Annotated[int, Range(1)] = 10
    """sampler steps (Euler EDM for the tiny model, flow Euler shift 5 for Wan)"""
    samples: Annotated[int, Range(1)] = 2
    """samples drawn per chunk and averaged after decoding: their mean approaches the posterior mean of
    the holes, which scores higher PSNR than one textured draw, and varies less between two visits of the
    same place (the cost grows with it)"""
    mean_steps: Annotated[int, Range(0)] = 1
    """>0: instead of sampling to the end, each draw is the mean of the denoiser's x0 predictions over
    the first N steps (one decode): the holes' posterior mean given the valid tokens, at the cost of N
    denoiser calls instead of --steps; 0: full sampling (a textured draw)"""
    hole_init: Literal["noise", "telea"] = "telea"
    """what the hole tokens start from: pure noise (WorldWarp), or the latents of the render with its holes
    inpainted by Telea, noised to --hole-strength (SDEdit: the model refines the cheap fill)"""
    hole_strength: Annotated[float, Range(0, 1, open_min=True)] = 0.5
    """with --hole-init telea: noise on the hole tokens (1: full noise, the same as --hole-init noise)"""
    residual: bool = True
    """with --hole-init telea: add the model's change to the Telea fill in pixel space"""
    shrink: Annotated[float, Range(0)] = 16.0
    """with --residual and --samples >= 2: the model's change to the fill is shrunk, per latent token, by
    |mean|^2 / (|mean|^2 + shrink x variance of the mean) over the draws: kept where the draws agree,
    pulled back to the Telea fill where they disagree (0: kept everywhere)"""
    max_correction: Annotated[float, Range(0, open_min=True)] = 0.03
    """with --residual: the largest change to the Telea fill per pixel (RMS over the channels, in [0, 1]
    pixel values); a larger one is scaled down to it (1: no cap)"""
    sigma_max: Annotated[float, Range(0, open_min=True)] = 80.0
    """largest noise level of the EDM schedule (tiny model)"""
    guidance_scale: Annotated[float, Range(0)] = 1.0
    """classifier-free guidance (1: none)"""
    noise: Literal["st", "uniform"] = "st"
    """spatio-temporal noise (fill-and-revise), or one level for every token (ablation)"""
    fill: Literal["model", "inpaint"] = "model"
    """fill holes with the video model, or with OpenCV inpainting of the render (baseline)"""
    use_cache: bool = True
    """condition on the cache's renders (off: only the previous frame, a baseline)"""
    keep_valid: bool = True
    """paste the cache's render back over the decoded frames where it is valid, so only the holes are
    generated (as inpainting pipelines keep the known region); off: the model's revision is kept"""
    rim_px: Annotated[int, Range(0)] = 2
    """with --keep-valid: hole pixels within this many pixels of a valid one are interpolated (Telea)
    rather than generated (the model's 4x4-pixel tokens cannot resolve a thin rim); 0: all generated"""
    points_per_frame: Annotated[int, Range(16)] = 4096
    """most new Gaussians from one frame"""
    max_points: Annotated[int, Range(16)] = 20_000
    """most Gaussians in the cache"""
    cache_update: Literal["all", "new"] = "all"
    """which Gaussians the fit to a new chunk moves: all of them, or only those added for the chunk's holes
    (what earlier frames put in the cache stays exactly as it was)"""
    fit_steps: Annotated[int, Range(0)] = 60
    """cache fitting steps per chunk (WorldWarp: 500 at 480x720)"""
    fit_start: bool = False
    """also fit the start cache to the start image (--fit-steps steps) before the first chunk: frame 1 no
    longer drops from the sharp start image to a blurrier render (start view 21 -> 28 dB) and the first 50
    frames gain 0.6 dB, but over 200 frames the revisits lose 1.1 dB (docs/explore.md), so off by default"""
    replay: Annotated[int, Range(0)] = 16
    """earlier frames also fitted in each chunk's cache update, with their stored cameras, frames and
    depths: the start frame, then frames drawn from the earlier chunks, so a Gaussian grown in front of a
    surface an earlier frame saw is pushed back or made transparent (0: only the chunk's own frames; the
    fit's step count stays the same, so a chunk costs the same at any N). 16, chosen on the 12 validation
    rooms: revisits 25.95 -> 29.02 dB at the same PSNR (docs/explore.md)"""
    replay_pick: Literal["random", "nearest"] = "random"
    """with --replay: which earlier frames join frame 0: drawn at random, or those whose cameras come
    closest to the chunk's (on a return, what the way out saw at the same place)"""
    valid_depth: Literal["estimate", "render"] = "estimate"
    """a new frame's depth where the chunk's render was valid: the depth estimate aligned to the render
    (scale and shift), or the render's own depth (the geometry the cache already holds; the estimate then
    only places the holes' new Gaussians), so later validity checks and cache fits see one geometry there"""
    source_depth: Literal["stored", "render"] = "stored"
    """the source views' depth in the validity check: the depth stored with each frame when it was made, or
    the current cache rendered at the source cameras (the cache persists and is refitted, so a stored depth
    can disagree with what the cache now holds there; WorldWarp rebuilds its cache from the sources' depths
    every chunk, where the two are the same)"""
    mask_threshold: Annotated[float, Range(0, 1)] = 0.5
    """validity threshold on alpha x geometric validity"""
    erode_px: Annotated[int, Range(0)] = 1
    """erosion of the validity mask, pixels (WorldWarp: 7 at 720 wide)"""
    depth_tolerance: Annotated[float, Range(0, open_min=True)] = 0.1
    """relative depth error for geometric validity"""
    sources: Annotated[int, Range(1)] = 4
    """source views for the validity check: the start frame and the most recent frames"""
    nearest_sources: Annotated[int, Range(0)] = 16
    """further source views for the validity check: the earlier frames whose cameras come closest to the
    chunk's, so that a path returning to a place keeps what was made there instead of generating it again.
    16, chosen on the 12 validation rooms among 8, 16 and 32: revisits 29.00 -> 29.76 dB at the same PSNR
    (docs/explore.md)"""
    strict: bool = False
    """refuse a path that fails the checks against the start depth (default: warn)"""
    fps: Annotated[float | None, Range(0, open_min=True)] = None
    """frame rate of the video (None: the --path file's own where it records one, as vdm3d trajectories do, else 12)"""
    seed: Annotated[int, SEED] = 0
    """random seed"""
    overwrite: bool = False
    """replace an existing run folder"""
    resume: bool = False
    """continue an interrupted run from its last finished chunk"""

    @property
    def cache(self) -> CacheConfig:
        return CacheConfig(per_frame=self.points_per_frame, max_total=self.max_points, fit_steps=self.fit_steps,
                           seed=self.seed)


@dataclasses.dataclass
class ExploreResult:
    out: Path
    video: Views
    gaussians: object
    timings: dict[str, float]
    path_problems: list[str]


def check_config(c: ExploreConfig) -> None:
    if str(c.image) in ("", "."):
        raise InputError("no input image was given; pass --image PATH.")
    if not 0.0 <= c.strength <= 1.0:
        raise ConfigError(f"--strength is {c.strength}; use a value in [0, 1] (0 keeps warped content, 1 = full noise).")
    if c.frames is not None and c.frames < 2:
        raise ConfigError(f"--frames is {c.frames}; ask for at least 2 frames (the first is the input image).")
    if not 1 <= c.context < c.chunk:
        raise ConfigError(f"--context {c.context} and --chunk {c.chunk}: need 1 <= context < chunk.")
    if sum(x is not None and x != () for x in (c.path, c.move or None, c.path_from_run)) != 1:
        raise ConfigError("give exactly one camera path: --path FILE, --move PRESET [...] or --path-from-run DIR.")
    if c.resolution % 8:  # >= 16, --fov-deg and --depth-median: their declared ranges, checked before this
        lower = max(16, c.resolution // 8 * 8)
        upper = max(16, -(-c.resolution // 8) * 8)
        use = f"{lower} or {upper}" if lower != upper else f"{lower}"
        raise ConfigError(f"--resolution {c.resolution} is not a multiple of 8; use {use}.")
    if c.samples < 1:
        raise ConfigError(f"--samples is {c.samples}; draw at least 1 sample per chunk.")
    if c.steps < 1 or c.fit_steps < 0 or c.sources < 1 or c.points_per_frame < 16 or c.max_points < 16:
        raise ConfigError("--steps >= 1, --fit-steps >= 0, --sources >= 1 and the point caps >= 16 are required.")
    if c.mean_steps > c.steps:  # after --steps >= 1: a negative --steps is the mistake to name, not this
        raise ConfigError(f"--mean-steps {c.mean_steps} exceeds --steps {c.steps}; average at most the {c.steps} steps.")
    if c.rim_px < 0:
        raise ConfigError(f"--rim-px is {c.rim_px}; use 0 (generate every hole pixel) or more.")


# -- the path --------------------------------------------------------------------------------------
def plan_path(c: ExploreConfig, say: Progress | None = None) -> Trajectory:
    """The path's cameras ``[F]``, relative to its first camera, at the output size (see the docstring), and the
    video's frame rate: ``--fps``, else the path file's where the file records one, else 12. ``say`` hears a
    warning when the file's pixels are not square (explore renders square ones: :func:`square_pixels_warning`)."""
    from vdm3d.cameras.camera import rigid_inverse
    from vdm3d.cameras.extend import extend_cameras
    from vdm3d.cameras.formats import camera_file_in, read_camera_file
    from vdm3d.cameras.presets import apply_movements, preset_movements
    from vdm3d.cameras.rotations import orthonormalize
    from vdm3d.cameras.speed import retime

    size, fps = c.resolution, MOVE_FPS
    if c.move:
        fov = 60.0 if c.fov_deg is None else c.fov_deg
        start = Cameras.from_fov(fov, size, size, torch.eye(4, dtype=torch.float64))
        cams = apply_movements(start, preset_movements(c.move), c.frames or 49)
    else:
        src = c.path if c.path is not None else camera_file_in(c.path_from_run)  # a run folder's camera file
        file = read_camera_file(src)
        cams = file.trajectory.cameras.to(torch.float64)
        cams.validate(str(src))
        file_cams = cams
        fov = float(cams.square_fov_deg[0]) if c.fov_deg is None else c.fov_deg
        fps = file.trajectory.fps if file.fps_recorded else fps
    given = len(cams)
    cams = retime(cams, c.speed)
    if c.speed != 1.0 and len(cams) < 2 and (c.frames or 0) < 2:
        most = max(given - 1, 1)  # --speed s keeps about (given - 1) / s + 1 frames
        raise ConfigError(f"--speed {c.speed:g} leaves {len(cams)} frame of the {given}-frame path; lower --speed "
                          f"(at most {most:g} here) or pass --frames N.")
    if c.speed != 1.0 and say is not None and c.frames is None and len(cams) > 4 * given:
        say(f"--speed {c.speed:g}: {len(cams)} frames from the path's {given}")
    if c.frames is not None and c.frames > len(cams):
        cams = extend_cameras(cams, c.frames - len(cams), c.extend)
    elif c.frames is not None:
        cams = cams[: c.frames]
    start = cams.c2w[0].clone()  # where the path's first camera stands in the file's world (the outputs go back
    # there); its rotation snapped to the nearest one: a file's few digits (validate allows |R R^T - I| up to
    # 1e-3) would otherwise make Gaussians.transformed refuse it at export, after the whole video was made
    start[:3, :3] = orthonormalize(start[:3, :3])
    c2w = rigid_inverse(start) @ cams.c2w  # frame 0 becomes the identity: the image's camera
    out = Cameras.from_fov(fov, size, size, c2w)  # square pixels: the image is cropped to a square
    zoom = cams.fx / cams.fx[0]  # a path's zoom relative to its first frame (1 where it has none)
    Ks = out.Ks.clone()
    Ks[..., 0, 0] *= zoom
    Ks[..., 1, 1] *= zoom
    # the principal point's offset from the centre, in focal lengths (the tangent of its angle); 0 for presets
    Ks[..., 0, 2] += (cams.cx - 0.5 * cams.width) / cams.fx * Ks[..., 0, 0]
    Ks[..., 1, 2] += (cams.cy - 0.5 * cams.height) / cams.fy * Ks[..., 1, 1]
    out = Cameras(Ks, c2w, size, size)
    if len(out) < 2:
        raise ConfigError("the camera path has a single frame; pass a longer path or --frames N.")
    warning = None if c.move else square_pixels_warning(src, file_cams, float(out.fx[0]), size)
    if warning and say is not None:
        say(warning)
    world = {} if c.move else {"start_c2w": start.tolist()}
    return Trajectory(out.to(torch.float32), c.fps or fps, world)


def square_pixels_warning(src: Path, file: Cameras, first_focal: float, size: int, tolerance: float = 1e-3
                          ) -> str | None:
    """The warning for a path file whose pixels are not square (``fy / fx`` off 1 by more than ``tolerance``; a
    calibrated camera, an anamorphic lens, a resized video): explore renders square pixels at the horizontal field
    of view (the start image is a square crop), so the frames see another vertical field of view than the file's
    cameras. Names the first such camera of ``file``, what the file has across its centre square and what explore
    uses (``first_focal``: its focal length for the first camera at ``size`` pixels; a zoom keeps its ratio).
    None when every camera has square pixels."""
    import math

    off = ((file.fy / file.fx - 1).abs() > tolerance).nonzero()
    if len(off) == 0:
        return None
    i = int(off[0, 0])
    side = min(file.width, file.height)
    fx, fy = float(file.fx[i]), float(file.fy[i])

    def deg(focal: float, pixels: int | float) -> float:
        return math.degrees(2 * math.atan(0.5 * pixels / focal))

    had = f"{deg(fx, side):.1f} x {deg(fy, side):.1f}"
    used = deg(first_focal * fx / float(file.fx[0]), size)
    uses = f"{used:.1f} x {used:.1f}"
    return (f"warning: {src}: its pixels are not square (camera {i}: fx {fx:.4g}, fy {fy:.4g}, {had} degrees "
            f"across its centre square); explore renders square pixels at the horizontal field of view: {uses} "
            "degrees")


def load_image(path: Path, size: int, say: Progress | None = None) -> Float[Tensor, "size size 3"]:
    """The start image as ``[size, size, 3]`` (:func:`load_start_image` without the crop)."""
    return load_start_image(path, size, say)[0]


def load_start_image(path: Path, size: int, say: Progress | None = None
                     ) -> tuple[Float[Tensor, "size size 3"], dict[str, list[int]]]:
    """The start image, upright, its centre square, transparent pixels over white, and its crop for the
    manifest (:func:`vdm3d.io.images.read_square_image`, which says what it did)."""
    from vdm3d.io.images import read_square_image

    return read_square_image(path, size, say, "explore")


# -- models ----------------------------------------------------------------------------------------
def load_models(c: ExploreConfig):
    """The video backbone and the depth estimator (errors before any output)."""
    from vdm3d.models.registry import load_backbone, load_depth

    depth = load_depth(c.depth)
    if c.fill == "inpaint":
        return None, depth
    if c.backbone != "tiny":
        name = c.backbone
    else:  # a shipped tiny model's name, or the model file of a training run
        name = c.model if c.model.endswith(".json") else f"tiny-{c.model}"
    # --memory plans for the run's workload: chunks of --chunk square frames at --resolution (not 81 of 720x480)
    bb = load_backbone(name, plan_size=(c.resolution, c.resolution), plan_frames=c.chunk)
    if not getattr(bb, "per_element_sigma", False):
        raise ConfigError(f"backbone {c.backbone!r} does not accept per-token noise levels, which explore needs; "
                          "use tiny, worldwarp or wan2.1-t2v-1.3b.")
    tf = bb.temporal_factor
    if (c.chunk - 1) % tf:
        raise ConfigError(f"--chunk {c.chunk} does not fit backbone {c.backbone!r}'s temporal compression {tf}; "
                          f"use a chunk of {tf}k + 1 frames, e.g. {tf * ((c.chunk - 1) // tf) + 1}.")
    return bb, depth


def estimate_depth(depth_model, images: torch.Tensor) -> torch.Tensor:
    """Relative depth ``[F, H, W]`` (median 1 per frame), whatever the estimator's kind."""
    from vdm3d.models.depth import relative_depth

    return relative_depth(depth_model, images.float())


# -- stages ----------------------------------------------------------------------------------------
def start_cache(c: ExploreConfig, image: torch.Tensor, cams: Cameras, depth_model) -> ExploreState:
    """Stage 1: the start image's depth and the initial cache; with ``--fit-start``, fitted to the start image.

    Unprojected pixels alone render the start view at 18-24 dB (neighbouring Gaussians overlap), so the first
    chunk's frames are blurrier than frame 0: a visible step even for a camera that does not move. The short
    fit every chunk gets brings the start view to 32-38 dB (four photos, 64 px, 60 steps), but it moves the
    Gaussians off the start depth that validity tests against, which costs the revisits later."""
    from vdm3d.recon.cache import fit_cache, grow_cache

    depth0 = estimate_depth(depth_model, image[None])[0] * c.depth_median  # [H, W]
    gen = torch.Generator().manual_seed(c.seed)
    cache = grow_cache(None, image[None], depth0[None], cams[:1], None, c.cache, gen)
    if c.fit_start and c.fit_steps > 0:
        start = Views(image[None], cams[:1], depths=depth0[None], origin=("input",))
        cache = fit_cache(cache, start, c.cache, seed=derived_seed(c.seed, 10_007, 10_006))
    return ExploreState(next_chunk=0, frames=image[None].clone(), depths=depth0[None].clone(), cache=cache,
                        generator=gen, valid=torch.ones(1, *image.shape[:2], dtype=torch.bool))


def render_chunk(c: ExploreConfig, state: ExploreState, path: Cameras, plan: ChunkPlan) -> Views:
    """Stage 2: the cache rendered at the chunk's cameras; ``confidence`` holds the validity mask (0/1)."""
    from vdm3d.geometry.validity import geometric_validity, validity_mask
    from vdm3d.recon.render import render_views

    cams = path[torch.tensor(plan.frame_ids)]
    out = render_views(state.cache, cams)
    src = torch.tensor(state.source_indices(c.sources, c.nearest_sources, path[: len(state.frames)], cams,
                                            c.depth_median))
    src_depths = render_views(state.cache, path[src]).depths if c.source_depth == "render" else state.depths[src]
    geo = geometric_validity(out.depths, cams, src_depths, path[src], c.depth_tolerance)
    valid = validity_mask(out.alphas, geo, c.mask_threshold, c.erode_px)
    return dataclasses.replace(out, confidence=valid.float())


def generate_chunk(c: ExploreConfig, backbone, warp: Views, context: torch.Tensor, generator: torch.Generator
                   ) -> torch.Tensor:
    """Stage 3: frames ``[F, H, W, 3]`` filled and revised by the backbone (context frames kept)."""
    from vdm3d.diffusion.guiders import CFG
    from vdm3d.geometry.holes import hole_rim, telea_fill
    from vdm3d.geometry.validity import latent_validity

    ctx = len(context)
    tf, f = backbone.temporal_factor, len(warp)
    valid = warp.confidence.bool().clone() if c.use_cache else torch.zeros(f, warp.height, warp.width, dtype=torch.bool)
    valid[:ctx] = True
    rgb = torch.where(valid[..., None], warp.images, torch.zeros_like(warp.images))  # holes are black
    rgb[:ctx] = context
    from_telea = c.hole_init == "telea" and c.use_cache  # without the cache there is nothing to inpaint from
    filled = telea_fill(rgb, valid) if from_telea or (c.keep_valid and c.rim_px > 0) else rgb
    start = filled if from_telea else rgb  # what the hole tokens are noised from
    with torch.no_grad():
        x_clean = backbone.encode(start[None])  # [1, Fl, C, h, w]
    valid_lat = latent_validity(valid, backbone.spatial_factor, tf)[None]  # [1, Fl, 1, h, w]
    sched = spatio_temporal_schedule(c, backbone, valid_lat, (ctx - 1) // tf + 1)
    cond = chunk_condition(c, backbone, warp, rgb, valid, ctx)
    guider = CFG(scale=c.guidance_scale) if c.guidance_scale != 1.0 else None
    with torch.no_grad():
        draws = torch.stack([backbone.decode(draw_latents(c, backbone, sched, cond, x_clean, generator, guider))[0][:f]
                             for _ in range(c.samples)])
        if from_telea and c.residual:
            # only the model's change to the fill is kept, in pixel space: the VAE's own round-trip error
            # on the fill (as large as the model's correction at 64 px) cancels
            changes = (start + draws - backbone.decode(x_clean)[0][:f]).clamp(0, 1) - start
            change = guard_correction(changes, c.shrink, c.max_correction, backbone.spatial_factor)
            frames = (start + change).clamp(0, 1)
        else:
            frames = draws.clamp(0, 1).mean(0)
    if c.keep_valid:
        frames = torch.where(valid[..., None], rgb, frames)
        if c.rim_px > 0:
            frames = torch.where(hole_rim(valid, c.rim_px)[..., None], filled, frames)
    return torch.cat([context, frames[ctx:]])


def guard_correction(changes: Float[Tensor, "S F H W 3"], shrink: float, max_correction: float, token: int
                     ) -> Float[Tensor, "F H W 3"]:
    """The mean of the draws' changes to the Telea fill, shrunk where it is unreliable.

    Per latent token (``token`` x ``token`` pixels), the mean change ``m`` is scaled by
    ``|m|^2 / (|m|^2 + shrink var)``, ``var`` the variance of the mean estimated from the draws' spread
    (a Wiener gain: a change the draws agree on is kept, one they disagree on goes back toward the
    fill); then its length per pixel (RMS over the channels) is capped at ``max_correction``."""
    mean = changes.mean(0)
    n, f, h, w = changes.shape[:4]
    if shrink > 0 and n > 1:
        power = mean.pow(2).mean(-1)  # [F, H, W]
        var = changes.var(0).mean(-1) / n  # the variance of the mean of n draws
        if h % token == 0 and w % token == 0:  # pooled per token, where the model's estimate lives
            power, var = (F.interpolate(F.avg_pool2d(x[:, None], token), scale_factor=token)[:, 0]
                          for x in (power, var))
        mean = mean * (power / (power + shrink * var).clamp_min(1e-12))[..., None]
    if max_correction < 1.0:
        length = mean.pow(2).mean(-1, keepdim=True).sqrt()
        mean = mean * (max_correction / length.clamp_min(1e-12)).clamp(max=1.0)
    return mean


class _RecordX0:
    """A step hook that keeps the denoiser's x0 prediction of every step."""

    def __init__(self):
        self.x0: list[torch.Tensor] = []

    def wants_grad(self, step: int, steps: int) -> bool:
        return False

    def before_denoise(self, state):
        return None

    def after_step(self, state):
        self.x0.append(state.x0.detach())
        return None


def draw_latents(c: ExploreConfig, backbone, sched: torch.Tensor, cond, x_clean: torch.Tensor,
                 generator: torch.Generator, guider) -> torch.Tensor:
    """One draw's clean latents: the sampler run to the end, or with ``--mean-steps N`` the mean of the
    x0 predictions of its first N steps (at the high noise levels of the first steps the prediction of a
    hole is the model's estimate of its posterior mean, which is what PSNR rewards)."""
    from vdm3d.diffusion.samplers import sample

    if c.mean_steps <= 0:
        return sample(backbone, sched, cond=cond, x_init=x_clean, generator=generator, guider=guider)
    # the first N steps in which some token moves (a schedule may start with every token frozen, e.g.
    # uniform noise at a low strength)
    moving = [m for m in range(sched.shape[0] - 1) if bool((sched[m + 1] != sched[m]).any())]
    stop = moving[min(c.mean_steps, len(moving)) - 1] + 1
    rec = _RecordX0()
    sample(backbone, sched[: stop + 1], cond=cond, x_init=x_clean, generator=generator, guider=guider, hooks=[rec])
    return torch.stack(rec.x0).mean(0)


def sampler_sigmas(c: ExploreConfig, backbone) -> torch.Tensor:
    from vdm3d.diffusion.schedules import EdmSchedule, FlowSchedule

    if backbone.process == "flow":
        return FlowSchedule(c.steps, shift=5.0).sigmas()
    return EdmSchedule(c.steps, 0.002, c.sigma_max, 7.0).sigmas()


def spatio_temporal_schedule(c: ExploreConfig, backbone, valid_lat: torch.Tensor, context_latents: int) -> torch.Tensor:
    """Per-token sigmas ``[S + 1, 1, Fl, 1, h, w]``: WorldWarp's fill-and-revise (§8.5), or uniform."""
    from vdm3d.diffusion.schedules import frozen_until, start_step_for_strength

    sigmas = sampler_sigmas(c, backbone)
    steps = len(sigmas) - 1
    # strength 0: the valid tokens sit at the last level above 0 (the denoiser's noise embedding has no
    # sigma 0), the same as the smallest positive strength
    k = steps - 1 if c.strength == 0 else start_step_for_strength(steps, c.strength)
    if c.noise == "uniform":
        start = torch.full(valid_lat.shape, k, dtype=torch.long)
    else:
        # holes: full noise (WorldWarp), or with --hole-init telea the inpainted render noised to --hole-strength
        from_telea = c.hole_init == "telea" and c.use_cache
        k_hole = start_step_for_strength(steps, c.hole_strength) if from_telea else 0
        start = torch.where(valid_lat, k, k_hole).long()
    start[:, :context_latents] = steps
    sched = frozen_until(sigmas, start)
    # context latents sit at a tiny constant level rather than 0: the denoiser still sees a noise level
    # from its training range (sigma 0 is ln 0 to its noise embedding), and a constant level is frozen
    sched[:, :, :context_latents] = CONTEXT_SIGMA
    return sched


def chunk_condition(c: ExploreConfig, backbone, warp: Views, rgb: torch.Tensor, valid: torch.Tensor, ctx: int):
    """What the backbone sees besides the noisy latents: for the tiny model the last context frame as
    the reference, the cameras relative to it and (with the cache) the renders with their validity."""
    from vdm3d.protocols import Conditioning

    slots = getattr(backbone, "slots", frozenset())
    kw = {}
    if "reference" in slots:
        kw["reference"] = rgb[ctx - 1][None]
    if "cameras" in slots:
        kw["cameras"] = warp.cameras.reshape(1, len(warp))
        kw["extras"] = {"reference_c2w": warp.cameras.c2w[ctx - 1][None]}
    if "maps" in slots and c.use_cache:
        v = valid.float()[..., None]
        kw["maps"] = torch.cat([rgb * v, v, torch.zeros_like(v)], -1)[None]
    if "text" in slots:
        kw["text"] = c.prompt
    return Conditioning(**kw)


def inpaint_chunk(warp: Views, context: torch.Tensor) -> torch.Tensor:
    """Baseline stage 3: the render with OpenCV Telea inpainting of the invalid pixels (no generation)."""
    from vdm3d.geometry.holes import telea_fill

    frames = telea_fill(warp.images, warp.confidence >= 0.5)
    frames[: len(context)] = context
    return frames


def replay_frames(c: ExploreConfig, plan: ChunkPlan, path: Cameras | None = None) -> list[int]:
    """Path indices of the earlier frames the chunk's cache update also fits (``--replay N``): frame 0,
    then ``N - 1`` of the frames before the chunk's context: drawn without replacement (``--replay-pick
    random``; the draw has its own generator seeded by the chunk, so a resumed run draws the same frames and
    the run's other random numbers do not move), or the ones whose cameras come closest to the chunk's
    (``nearest``, which needs ``path``)."""
    earlier = plan.frame_ids[0]  # frames 0 .. earlier - 1 are older than the chunk's context
    if c.replay <= 0 or earlier < 1:
        return []
    if c.replay_pick == "nearest":
        if path is None:
            raise ConfigError("--replay-pick nearest needs the path's cameras.")
        rest = torch.arange(1, earlier)
        d = pose_distance(path[rest], path[torch.tensor(plan.frame_ids)], c.depth_median).amin(1)
        drawn = rest[torch.argsort(d, stable=True)[: c.replay - 1]].sort().values.tolist()
        return [0, *drawn]
    gen = torch.Generator().manual_seed(derived_seed(c.seed, 10_007, 5_003 + plan.index))
    drawn = (torch.randperm(earlier - 1, generator=gen)[: c.replay - 1] + 1).sort().values.tolist()
    return [0, *drawn]


def absorb_chunk(c: ExploreConfig, state: ExploreState, plan: ChunkPlan, warp: Views, frames: torch.Tensor,
                 depth_model, path: Cameras | None = None) -> ExploreState:
    """Stage 4: aligned depth of the new frames; the cache grows into the holes and fits the chunk
    (and, with ``--replay``, a few earlier frames at ``path``'s cameras)."""
    from vdm3d.recon.cache import align_depth, cap_cache, fit_cache, grow_cache

    new = slice(plan.context, plan.context + plan.new)
    rel = estimate_depth(depth_model, frames[new])
    depths = []
    for i, d in enumerate(rel):
        j = plan.context + i
        mask = warp.confidence[j].bool() if c.use_cache else torch.zeros_like(d, dtype=torch.bool)
        prev = state.depths[-1]
        fallback = float(prev[prev > 0].median()) if bool((prev > 0).any()) else c.depth_median
        aligned = align_depth(d, warp.depths[j], mask, fallback_scale=fallback)[0]
        if c.valid_depth == "render":
            aligned = torch.where(mask & (warp.depths[j] > 0), warp.depths[j], aligned)
        depths.append(aligned)
    depths = torch.stack(depths)
    cams_new = warp.cameras[new]
    cache = state.cache
    if c.use_cache:
        holes = warp.confidence[new] < 0.5
        old = 0 if cache is None or c.cache_update == "all" else len(cache)
        # with --cache-update new the cap applies after the fit, so the new Gaussians' opacities count
        grow_cfg = c.cache if c.cache_update == "all" else dataclasses.replace(c.cache, max_total=2 ** 62)
        cache = grow_cache(cache, frames[new], depths, cams_new, holes, grow_cfg, state.generator)
        if c.fit_steps > 0:
            fit_views = Views(frames[: plan.context + plan.new], warp.cameras[: plan.context + plan.new],
                              depths=torch.cat([state.depths[-plan.context:], depths]),
                              origin=("input",) * plan.context + ("generated",) * plan.new)
            replayed = replay_frames(c, plan, path) if path is not None else []
            if replayed:
                ids = torch.tensor(replayed)
                origin = tuple("input" if i == 0 else "generated" for i in replayed)
                fit_views = Views.cat([fit_views, Views(state.frames[ids], path[ids], depths=state.depths[ids],
                                                        origin=origin)])
            cache = fit_cache(cache, fit_views, c.cache, seed=derived_seed(c.seed, 10_007, plan.index), frozen=old)
        if c.cache_update == "new" and cache is not None:
            cache = cap_cache(cache, c.cache.max_total)
    valid = warp.confidence[new].bool() if c.use_cache else torch.zeros_like(depths, dtype=torch.bool)
    if state.valid is not None:
        valid = torch.cat([state.valid, valid])
    return dataclasses.replace(state, next_chunk=plan.index + 1, frames=torch.cat([state.frames, frames[new]]),
                               depths=torch.cat([state.depths, depths]), cache=cache, valid=valid)


# -- the run -----------------------------------------------------------------------------------------
def warm_up_renderer() -> None:
    """Render (and backpropagate through) one Gaussian before any other number is computed.

    The first call of the compiled CPU renderer initializes numba, and from then on some torch kernels
    of the same process return results that differ in the last bits (measured: the tiny depth model's
    output moves by 2.5e-6). Doing it first makes a run's numbers independent of what the process did
    before, so a resumed run reproduces an uninterrupted one exactly, in the same process or not."""
    from vdm3d.splat.render import render

    params = {k: v.requires_grad_(True) for k, v in Gaussians.from_points(
        torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.0, 2.0]]), torch.full((2, 3), 0.5), opacity=0.5,
        sh_degree=0).parameters().items()}
    out = render(Gaussians.from_parameters(params), Cameras.from_fov(60.0, 16, 16, torch.eye(4)).reshape(1))
    out.rgb.sum().backward()


@job_entry(check_config)
def run_explore(c: ExploreConfig, *, progress: Progress | None = print,
                on_chunk: Callable[[int, ExploreState], None] | None = None) -> ExploreResult:
    """Run every stage and write the run folder. Bad input raises before anything is written.

    ``c`` is checked first (:func:`vdm3d.jobs.job_entry`; ``image`` and one camera path - ``path``, ``move``
    or ``path_from_run`` - are required). ``progress`` hears one line per chunk (None: silent).
    ``on_chunk(index, state)`` is called after each finished (and checkpointed) chunk: benchmarks
    time it, tests interrupt the run from it.
    """
    from vdm3d.geometry.path_check import check_path
    from vdm3d.io.images import check_image_file
    from vdm3d.io.runs import RunFolder
    from vdm3d.jobs.explore_export import export

    say = progress or (lambda _m: None)
    check_image_file(c.image, "an image")  # a missing image is refused before the renderer's warm-up
    warm_up_renderer()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    path_plan = plan_path(c, say)
    cams = path_plan.cameras
    image, crop = load_start_image(c.image, c.resolution, say)
    backbone, depth_model = load_models(c)
    state = start_cache(c, image, cams, depth_model)
    report = check_path(cams, state.depths[0])
    if report.problems and c.strict:
        raise ConfigError(f"the camera path fails the check against the image's depth: {report.problems[0]} "
                          "(drop --strict to run anyway).")
    for p in report.problems:
        say(f"warning: {p}")
    timings["start"] = round(time.perf_counter() - t0, 3)
    plans = chunk_plans(len(cams), c.chunk, c.context)
    models = model_files(c.model if c.backbone == "tiny" else c.backbone, c.depth)  # hashed: a retrain changes them
    with RunFolder(c.out, config=c, seed=c.seed, inputs=[c.image, *([c.path] if c.path else []), *models],
                   overwrite=c.overwrite, resume=c.resume) as run:
        ckpt = run.checkpoint_dir
        if run.resuming and (ckpt / STATE_FILE).is_file():
            state = load_state(ckpt)
            say(f"resuming at chunk {state.next_chunk + 1}/{len(plans)}" if state.next_chunk < len(plans) else
                f"all {len(plans)} chunks were done before the interruption; writing the outputs")
        per_chunk = []
        for plan in plans[state.next_chunk:]:
            tick = time.perf_counter()
            warp = render_chunk(c, state, cams, plan)
            context = state.frames[-plan.context:]
            if c.fill == "inpaint":
                frames = inpaint_chunk(warp, context)
            else:
                frames = generate_chunk(c, backbone, warp, context, state.generator)
            state = absorb_chunk(c, state, plan, warp, frames, depth_model, cams)
            save_state(ckpt, state)
            per_chunk.append(round(time.perf_counter() - tick, 3))
            say(f"chunk {plan.index + 1}/{len(plans)}: frames {len(state.frames)}/{len(cams)}, "
                f"{0 if state.cache is None else len(state.cache)} Gaussians, {per_chunk[-1]:.1f} s")
            if on_chunk is not None:
                on_chunk(plan.index, state)
        # confidence: 1 where the frame's pixel came from the cache's valid render, 0 where it was a hole
        video = Views(state.frames, cams, depths=state.depths, origin=("input",) + ("generated",) * (len(cams) - 1),
                      fps=path_plan.fps, confidence=None if state.valid is None else state.valid.float())
        video, cache = in_path_world(path_plan, video, state.cache)
        files = export(run.path, c, video, cache)
        timings["chunks_s"] = per_chunk
        timings["total"] = round(time.perf_counter() - t0, 3)
        run.record(files=files, timings=timings, path_problems=report.problems, chunks=len(plans),
                   start_image=crop, backbone=getattr(backbone, "name", c.fill),
                   num_gaussians=0 if state.cache is None else len(state.cache))
    return ExploreResult(c.out, video, cache, timings, report.problems)


def in_path_world(path: Trajectory, video: Views, cache: Gaussians | None) -> tuple[Views, Gaussians | None]:
    """The video's cameras and the cache moved from the job's frame (the first camera at the origin) back into
    the path file's world, where ``plan_path`` found the first camera: a walk along a room's path lines up
    with that room's mesh (up to the scale the start image's depth is given). Presets have no world of their
    own and stay in the first camera's frame."""
    start = path.provenance.get("start_c2w")
    if start is None:
        return video, cache
    moved = dataclasses.replace(video, cameras=video.cameras.transformed(start))
    return moved, None if cache is None else cache.transformed(torch.as_tensor(start, dtype=torch.float64))
