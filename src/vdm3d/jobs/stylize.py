"""`vdm3d stylize`: a coarse mesh, a camera path and a style image -> a styled video that follows the
geometry (VideoFrom3D, SEED_SYSTEMS.md §5-6), with no Blender::

    mesh + path + style -> load_inputs -> geometry_buffers -> align_style -> anchor_views (SAG)
                        -> inbetween (GGI) -> fuse -> export

* ``load_inputs``: any mesh trimesh reads, turned z-up at the edge
  (:func:`~vdm3d.geometry.mesh_scene.load_mesh_scene`); only its geometry is used. The trajectory is a
  vdm3d trajectory file in that z-up world, its cameras centre-cropped to square and resized to
  ``resolution``; the style image is read as explore reads its ``--image`` (transparent pixels over white,
  said) and centre-cropped and resized the same way (a crop that drops more than half of it is said).
* ``geometry_buffers``: depth, normals, line-art and soft edges, the exact flow between consecutive
  frames and correspondences between any two frames with an occlusion test
  (:mod:`vdm3d.geometry.path_buffers`). A path that never sees the mesh stops here.
* ``align_style`` (hub only): a LoRA on FLUX trained on the style image with peft, cached per style
  image and base model (:func:`~vdm3d.models.hub.flux.apply_style_lora`); the embedded prior takes
  the style image as its reference instead.
* ``anchor_views`` (SAG): the first frame and the last frame of every arc (arcs of ``arc_frames``
  frames sharing their ends) from the image prior, conditioned on the frame's edges and the style
  image. For anchor ``i > 0`` the previous anchor is warped into its view through the correspondence
  and given to the model (maps), and its latent replaces the sample where it is observed during the
  first ``blend_fraction`` of the steps, with the unobserved mask dilated and blurred
  (:class:`~vdm3d.diffusion.hooks.LatentBlend`).
* ``inbetween`` (GGI), arc by arc: keyframes are the previous arc's last generated frame (anchor 0 for
  the first arc) and the next anchor; the maps carry the edge video and the start keyframe warped
  into every frame; the starting noise is Go-with-the-Flow noise warped along the mesh flow and mixed
  with fresh noise (``noise_alpha = 0.5``). The paper pads 46 edge maps to 49 frames and drops the 3
  padded frames: a causal video VAE (GGI's, 4x in time) takes ``4k + 1`` frames, so an arc of another
  length is generated at the next such count with its end frame held (cameras, edges, warps repeated,
  zero flow) and the held frames dropped (:func:`generated_frames`); the tiny model takes any frame
  count, so nothing is padded there. Each arc's first frame (the previous arc's last) is dropped when
  arcs are stitched. Each arc is checkpointed, so an
  interrupted run continues with ``--resume``. Inside the arc, SAG's latent replacement also applies:
  each frame's latent is replaced, where observed, by the nearer keyframe warped into it
  (``keyframe_blend`` of the steps).
* ``fuse``: temporal fusion along the exact correspondence
  (:func:`~vdm3d.geometry.path_buffers.fuse_along_path`): each frame becomes the weighted mean of the
  frames within ``fusion_radius`` warped into it where they see the point, so a surface keeps its
  colour from frame to frame (the tiny video model alone flickers; see docs/stylize.md).
* ``export``: ``video.mp4``, ``frames/``, ``anchors/``, ``edges/`` (line art, and ``edges/soft/``),
  ``style.png``, ``cameras/`` (vdm3d trajectory + transforms.json) and ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from jaxtyping import Bool, Float
from safetensors.torch import load_file
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.io import write_transforms_json
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.formats import read_camera_file
from vdm3d.cameras.trajectory_file import save_trajectory
from vdm3d.cameras.world import file_up
from vdm3d.diffusion.guiders import CFG
from vdm3d.diffusion.hooks import LatentBlend
from vdm3d.diffusion.noise_warp import mix_new_noise, subsample_frames, warped_noise
from vdm3d.diffusion.samplers import sample
from vdm3d.diffusion.schedules import DdimSchedule, EdmSchedule, FlowSchedule
from vdm3d.errors import ConfigError, InputError
from vdm3d.geometry.mesh_scene import MeshScene, load_mesh_scene
from vdm3d.geometry.path_buffers import PathBuffers, fuse_along_path, render_path
from vdm3d.io.images import read_square_image, write_image
from vdm3d.io.progress import StageClock, StageSteps, read_announced
from vdm3d.io.runs import RunFolder
from vdm3d.io.video import write_video
from vdm3d.models.registry import load_backbone, model_files
from vdm3d.models.weights import save_state_dict
from vdm3d.jobs import job_entry
from vdm3d.options import SEED, Range, derived_seed
from vdm3d.protocols import Conditioning

Progress = Callable[[str], None]
NOISE_GRID = 2  # Go-with-the-Flow grid: twice the frame resolution (the latent is 4x coarser)
SAG_REFERENCE_HEIGHT = 480  # the mask constants below are VideoFrom3D's at 480 px; scaled to ours


@dataclasses.dataclass(frozen=True)
class StylizeConfig:
    """A coarse mesh, a camera path and a style image to a styled video that follows the geometry."""

    mesh: Annotated[Path, tyro.conf.arg(help_behavior_hint="(required)")] = Path("")
    """the coarse mesh: any file trimesh reads (GLB/glTF, OBJ, PLY, OFF, STL); its colours are ignored"""
    trajectory: Annotated[Path, tyro.conf.arg(help_behavior_hint="(required)")] = Path("")
    """the camera path, in the mesh's world after its up-axis conversion (z-up): any camera file explore's
    --path reads (vdm3d trajectory JSON, nerfstudio transforms.json, COLMAP sparse/0, RealEstate10K .txt,
    LLFF poses_bounds.npy)"""
    style: Annotated[Path, tyro.conf.arg(help_behavior_hint="(required)")] = Path("")
    """the style image (PNG/JPEG): centre-cropped to a square, transparent pixels composited over white"""
    out: Path = Path("runs/stylize")
    """run folder to write (must not exist unless --overwrite)"""
    backbone: Literal["tiny", "hub"] = "tiny"
    """tiny: the embedded stylize_anchor + stylize_inbetween; hub: FLUX + HED ControlNet anchors and the
    videofrom3d-ggi inbetweening model (weights from `vdm3d models`), with a per-style LoRA on FLUX"""
    anchor_model: str | None = None
    """image prior for the anchor views, a name in `vdm3d models` or the .json model file of a `vdm3d train
    stylize` run (None: the backbone's default)"""
    inbetween_model: str | None = None
    """inbetweening model, a name in `vdm3d models` or the .json model file of a `vdm3d train stylize` run
    (None: the backbone's default)"""
    anchor_path: Path | None = None
    """hub: local folder of the anchor model (None: its default folder)"""
    inbetween_path: Path | None = None
    """hub: local folder of the inbetweening model"""
    prompt: str = ""
    """hub: text prompt of both models"""
    style_lora_steps: Annotated[int, Range(0)] = 400
    """hub: steps of the per-style LoRA on FLUX (SAG's distribution alignment; VideoFrom3D uses 400),
    trained once per style image and base model and cached; 0: no LoRA"""
    style_lora_cache: Path | None = None
    """hub: folder of the cached style LoRAs (default: style_lora/ in vdm3d's cache folder, $VDM3D_CACHE,
    $XDG_CACHE_HOME/vdm3d or ~/.cache/vdm3d)"""
    style_lora_blocks: tuple[int, ...] = (1, 2, 3, 4)
    """hub: the FLUX transformer's single-stream blocks the style LoRA adapts, by index (VideoFrom3D: 1-4;
    FLUX.1-dev has 0-37)"""
    up: Literal["auto", "y", "z"] = "auto"
    """the mesh file's up axis: auto (glTF/OBJ y-up, other formats z-up), y or z"""
    resolution: Annotated[int, Range(8)] = 64
    """output frames are resolution x resolution pixels (the tiny models' native size is 64)"""
    arc_frames: Annotated[int, Range(1)] = 8
    """frames per arc, both anchors included (anchors every arc_frames - 1 frames): 2 to 16 with tiny, 2 to 49
    with hub (each arc is generated at GGI's next 4k + 1 frames and the extra ones dropped)"""
    steps: Annotated[int, Range(1)] = 8
    """sampler steps for anchors and inbetweens (VideoFrom3D: 25 and 30; the tiny models' 8 scored higher
    than 25 on validation cases in PSNR and temporal consistency, see docs/stylize.md)"""
    sigma_max: Annotated[float, Range(0, open_min=True)] = 80.0
    """largest noise level of the EDM schedule"""
    guidance_scale: Annotated[float | None, Range(0)] = None
    """classifier-free guidance weight (None: 1 for tiny; 3.5 for FLUX and 6 for GGI, VideoFrom3D's)"""
    blend_fraction: Annotated[float, Range(0, 1)] = 0.5
    """SAG: latent replacement during this fraction of the anchor steps (VideoFrom3D: 12 of 25)"""
    noise: Literal["warped", "fresh"] = "warped"
    """inbetween starting noise: Go-with-the-Flow noise along the mesh flow, or fresh noise"""
    noise_alpha: Annotated[float, Range(0, 1)] = 0.5
    """degradation of the warped noise: (a fresh + (1 - a) warped) / sqrt(a^2 + (1 - a)^2)"""
    inbetween_eta: Annotated[float, Range(0, 1)] = 0.0
    """stochasticity of the inbetween sampler (DDIM eta: 0 deterministic, 1 ancestral); with warped noise
    each step adds a new field warped along the flow and degraded like the starting noise"""
    warp_condition: bool = True
    """give the inbetween model the start keyframe warped into every frame (maps)"""
    keyframe_blend: Annotated[float, Range(0, 1)] = 1.0
    """inbetween: SAG's latent replacement with the nearer keyframe warped into each frame, during this
    fraction of the steps (0: off, as in VideoFrom3D's GGI; 1 scored highest on validation cases)"""
    fusion_radius: Annotated[int, Range(0)] = 12
    """temporal fusion: average each frame with the frames up to this far away, warped into it through
    the exact correspondence (0: off, the video model's frames as they are; 12 with tau 6 scored higher
    than 6/3 and 3/1.5 on validation cases in PSNR, SSIM, edge F and warp error)"""
    fusion_tau: Annotated[float, Range(0, open_min=True)] = 6.0
    """temporal fusion: Gaussian weight width in frames"""
    seed: Annotated[int, SEED] = 0
    """random seed of every sampling run"""
    overwrite: bool = False
    """replace an existing run folder"""
    resume: bool = False
    """continue an interrupted run from its last finished arc"""


#: backbone -> (anchor model, inbetween model, their guidance weights)
DEFAULT_MODELS = {"tiny": ("stylize_anchor", "stylize_inbetween", 1.0, 1.0),
                  "hub": ("flux-dev-controlnet-hed", "videofrom3d-ggi", 3.5, 6.0)}


def model_names(config: StylizeConfig) -> tuple[str, str]:
    anchor, between, _, _ = DEFAULT_MODELS[config.backbone]
    return config.anchor_model or anchor, config.inbetween_model or between


def weights_files(config: StylizeConfig) -> list[Path]:
    """The models' files for the manifest to hash (:func:`~vdm3d.models.registry.model_files`), hub weights
    fingerprinted where ``--anchor-path`` / ``--inbetween-path`` point when given."""
    names = model_names(config)
    return model_files(*names, folders=dict(zip(names, (config.anchor_path, config.inbetween_path))))


def guidance(config: StylizeConfig, stage: Literal["anchor", "inbetween"]) -> CFG | None:
    scale = config.guidance_scale
    if scale is None:
        scale = DEFAULT_MODELS[config.backbone][2 if stage == "anchor" else 3]
    return CFG(scale) if scale != 1.0 else None


@dataclasses.dataclass(frozen=True)
class StylizeInputs:
    scene: MeshScene
    trajectory: Trajectory
    """cameras ``[F]`` at ``resolution x resolution``"""
    style: Float[Tensor, "H W 3"]
    style_crop: dict[str, list[int]] | None = None
    """the style image's size and the centre square kept (:func:`~vdm3d.io.images.read_square_image`), for the
    manifest"""


@dataclasses.dataclass(frozen=True)
class StylizeResult:
    out: Path
    frames: Float[Tensor, "F H W 3"]
    anchors: dict[int, Tensor]
    buffers: PathBuffers
    timings: dict[str, float]


# -- stage 1: inputs ---------------------------------------------------------------------------------
#: backbone -> the most frames an arc may have: the tiny models' training limit, GGI's 49-frame window
MAX_ARC_FRAMES = {"tiny": (16, "the tiny models' frame limit"), "hub": (49, "GGI's 49-frame window")}


def check_config(config: StylizeConfig) -> None:
    most, why = MAX_ARC_FRAMES[config.backbone]
    if not 2 <= config.arc_frames <= most:
        raise ConfigError(f"--arc-frames is {config.arc_frames}; use 2 to {most} ({why}).")
    if config.resolution % 4 or config.resolution < 16:
        raise ConfigError(f"--resolution is {config.resolution}; use a multiple of 4 of at least 16.")
    if config.steps < 1:
        raise ConfigError(f"--steps is {config.steps}; use at least 1.")
    if config.style_lora_steps < 0:
        raise ConfigError(f"--style-lora-steps is {config.style_lora_steps}; use 0 (no LoRA) or more steps.")
    if not config.style_lora_blocks or min(config.style_lora_blocks) < 0:
        raise ConfigError(f"--style-lora-blocks is {' '.join(map(str, config.style_lora_blocks)) or 'empty'}; give "
                          "one or more block indices from 0 (VideoFrom3D: 1 2 3 4).")
    if not 0.0 <= config.blend_fraction <= 1.0 or not 0.0 <= config.noise_alpha <= 1.0:
        raise ConfigError("--blend-fraction and --noise-alpha must lie in [0, 1].")
    if config.fusion_radius < 0 or not config.fusion_tau > 0:
        raise ConfigError(f"--fusion-radius is {config.fusion_radius} and --fusion-tau {config.fusion_tau}; "
                          "use a radius of 0 (off) or more and a positive tau.")


def square(cameras: Cameras, size: int) -> Cameras:
    """Centre-crop to a square and resize to ``size`` (pixel centres kept)."""
    s = min(cameras.width, cameras.height)
    return cameras.crop((cameras.width - s) // 2, (cameras.height - s) // 2, s, s).resize(size, size)


def mesh_up_line(mesh: Path, up: Literal["auto", "y", "z"]) -> str:
    """One line saying which up axis the mesh was read with and how to change it: a wrong guess only
    shows as empty or sideways edges, so the run says it before anything is generated."""
    axis = file_up(mesh, up)
    why = "given by --up" if up != "auto" else (
        "the glTF/OBJ convention" if axis == "y" else f"the {Path(mesh).suffix.lower() or 'file'} convention")
    other = "z" if axis == "y" else "y"
    frame = "turned to vdm3d's z-up world" if axis == "y" else "vdm3d's own world frame"
    return f"mesh: {Path(mesh).name} read as {axis}-up ({why}), {frame}; if it lies on its side in edges/, pass --up {other}"


def load_inputs(config: StylizeConfig, say: Progress | None = None) -> StylizeInputs:
    """Read the three files; each failure is one sentence naming the file. A large mesh file is announced
    before and timed after (:func:`~vdm3d.io.progress.read_announced`)."""
    scene = read_announced(config.mesh, lambda: load_mesh_scene(config.mesh, up=config.up, normalize=False,
                                                                recentre=True), say,
                           "mesh", lambda scene: f"{scene.num_faces:,} faces read")
    traj = read_camera_file(config.trajectory).trajectory  # the formats explore's --path takes, in float64
    # moved with the mesh (a georeferenced mesh is rendered about its own centre) before becoming float32
    traj = traj.with_cameras(traj.cameras.translated(-scene.offset).to(torch.float32))
    # read as explore reads its start image: transparent pixels over white, a large crop said, both recorded
    style, crop = read_square_image(config.style, config.resolution, say, "stylize")
    return StylizeInputs(scene, traj.with_cameras(square(traj.cameras, config.resolution)), style, crop)


# -- stage 2: geometry ---------------------------------------------------------------------------------
def _num(x: float, scale: float = 0.0) -> str:
    """``x`` to 3 significant digits (1840, 4.7, 0.000184), 0 where it is rounding noise next to ``scale``."""
    return f"{float(f'{0.0 if abs(x) <= 1e-6 * scale else x:.3g}'):.6g}"


def _point(p, scale: float) -> str:
    return "(" + ", ".join(_num(float(v), scale) for v in p) + ")"


def mesh_span(scene: MeshScene) -> float:
    """The longest side of the mesh's bounding box (vdm3d's z-up world)."""
    return float(np.ptp(scene.bounds, axis=0).max())


def path_span(cameras: Cameras) -> float:
    """The longest side of the bounding box of the camera centres."""
    return float(np.ptp(cameras.centers.double().reshape(-1, 3).numpy(), axis=0).max())


def mesh_line(scene: MeshScene) -> str:
    """Where the mesh is and how big: its bounding box's centre and longest side, in the file's coordinates."""
    lo, hi = scene.bounds.astype(np.float64) + scene.offset
    size = float((hi - lo).max())
    return f"the mesh is centred at {_point((lo + hi) / 2, max(size, float(np.abs(hi).max())))} and {_num(size)} across"


def cameras_line(cameras: Cameras, offset: np.ndarray | None = None) -> str:
    """Where the cameras stand and look: the point nearest to every optical axis when the axes meet in
    front of the cameras (an orbit, a turn around something), else their mean centre and direction (a
    dolly, a pan, one camera). ``offset`` moves them back to the file's coordinates (a recentred mesh)."""
    c = cameras.centers.double().reshape(-1, 3).numpy() + (0.0 if offset is None else offset)
    d = cameras.forward.double().reshape(-1, 3).numpy()
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    scale = max(path_span(cameras), float(np.abs(c).max()), 1e-12)
    if len(c) > 1:
        proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # [F, 3, 3]: removes the part along each axis
        a, b = proj.sum(0), (proj @ c[:, :, None]).sum(0)[:, 0]
        if np.linalg.eigvalsh(a / len(c))[0] > 0.01:  # the axes are not (nearly) parallel
            target = np.linalg.solve(a, b)
            ahead = ((target - c) * d).sum(1)
            if (ahead > 0).all():
                far = float(np.linalg.norm(target - c, axis=1).mean())
                return f"the cameras look at {_point(target, max(scale, far))} from {_num(far)} away"
    where = "the camera stands at" if len(c) == 1 else "the cameras stand around"
    look = d.mean(0)
    look = look / max(float(np.linalg.norm(look)), 1e-12)
    return f"{where} {_point(c.mean(0), scale)} and look{'s' if len(c) == 1 else ''} along {_point(look, 1.0)}"


def frames_text(frames: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def cameras_inside(scene: MeshScene, cameras: Cameras, progress: Callable[[int, int], None] | None = None
                   ) -> list[int]:
    """The frames whose camera sits inside the mesh as in a solid: the generalized winding number of the
    mesh around the camera centre is above 0.5 (the inside test of
    :func:`~vdm3d.cameras.check.check_trajectory`, signed). A room whose walls face inwards (vdm3d's rooms,
    scans) winds -1 around its cameras, so walking through it is not "inside"; a mesh in millimetres
    around a path in metres winds +1. Only cameras within the mesh's bounding box are tested: outside it a
    closed mesh winds 0, so an orbit around an object costs nothing; a walk through a dense scan costs
    about 0.04 s per camera and million faces (the numba kernel, one thread), so ``progress(done, total)``
    hears each camera."""
    from vdm3d.cameras.check import winding_numbers

    centres = cameras.centers.double().reshape(-1, 3).numpy()
    lo, hi = scene.bounds.astype(np.float64)
    near = np.nonzero(((centres >= lo) & (centres <= hi)).all(1))[0]
    if len(near) == 0:
        return []
    vertices, faces = scene.triangles()  # float64 and int64 once: the kernel then takes them without a copy
    inside = []
    for k, i in enumerate(near):
        if winding_numbers(centres[i:i + 1], vertices, faces)[0] > 0.5:
            inside.append(int(i))
        if progress is not None:
            progress(k + 1, len(near))
    return inside


def recentred_line(mesh_file: Path, scene: MeshScene) -> str | None:
    """The line saying that a mesh far from the origin, for its size, was rendered about its own centre
    (:func:`~vdm3d.geometry.precision.far_offset`: georeferenced coordinates, UTM 5e6 away, would put a
    2-unit mesh on float32's 0.5-unit grid and its edges and frames would come out blocky); None when it
    was not moved."""
    offset = scene.offset
    if not offset.any():
        return None
    far, size = float(np.abs(scene.bounds.astype(np.float64) + offset).max()), mesh_span(scene)
    return (f"mesh: {mesh_file.name} lies {_num(far)} units from the origin, {_num(far / size)} times its size of "
            f"{_num(size)}; rendered about its centre {_point(offset, far)}, with the path moved alike, so that "
            "32-bit numbers place it finely; cameras/ and the manifest keep the file's coordinates")


def check_cameras_inside(config: StylizeConfig, inputs: StylizeInputs, say: Progress | None = None) -> list[int]:
    """Refuse a path whose every camera is inside the mesh (a mesh in other units than the path: the job
    would style a few huge interior triangles without a word); warn, naming the frames, when only some
    are. Returns the frames inside, for the manifest."""
    cams = inputs.trajectory.cameras
    steps = StageSteps(say, "mesh check", "cameras tested for being inside the mesh") if say is not None else None
    inside = cameras_inside(inputs.scene, cams, steps)
    if not inside:
        return inside
    mesh, path = mesh_span(inputs.scene), path_span(cams)
    spans = f"it spans {_num(mesh)} units, the path {_num(path)}"
    if len(inside) == len(cams):
        if mesh > 10 * path:
            fix = ("is the mesh in millimetres or centimetres? scale it (or the path) so that both are in the same "
                   "units")
        else:
            fix = ("move the path out of the mesh, or for a room whose faces point outwards, flip its faces to "
                   "face the cameras")
        n = len(cams)
        raise InputError(path=config.mesh, problem=f"{'all ' if n > 1 else ''}{n} camera{'s' if n > 1 else ''} of "
                         f"{config.trajectory} {'are' if n > 1 else 'is'} inside the mesh ({spans})", fix=fix)
    if say is not None:
        say(f"warning: {config.trajectory}: frame{'s' if len(inside) > 1 else ''} {frames_text(inside)} of "
            f"{len(cams)} {'have their cameras' if len(inside) > 1 else 'has its camera'} inside the mesh "
            f"{config.mesh.name} ({spans}); {'they see' if len(inside) > 1 else 'it sees'} it from within")
    return inside


def geometry_buffers(config: StylizeConfig, inputs: StylizeInputs, say: Progress | None = None) -> PathBuffers:
    """Render the mesh's buffers along the path; stop when no frame sees the mesh, saying where the mesh
    is and where the cameras look (a unit or origin mistake shows at once)."""
    steps = StageSteps(say, "geometry", "depth, normals and edges rendered") if say is not None else None
    buffers = render_path(inputs.scene, inputs.trajectory.cameras, progress=steps)
    if float(buffers.alpha.sum()) == 0.0:
        raise InputError(path=config.trajectory, problem=f"never sees the mesh (none of its {len(buffers)} "
                         f"cameras has a mesh pixel: {mesh_line(inputs.scene)}, "
                         f"{cameras_line(inputs.trajectory.cameras, inputs.scene.offset)})",
                         fix="give a path in the mesh's z-up world that looks at it "
                         "(y-up glTF/OBJ files are turned z-up on load; see --up)")
    return buffers


def arcs(frames: int, arc_frames: int) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` frame indices of the arcs; consecutive arcs share an end frame and
    the last arc may be shorter."""
    if frames == 1:
        return [(0, 0)]
    step = arc_frames - 1
    return [(s, min(s + step, frames - 1)) for s in range(0, frames - 1, step)]


# -- stage 3: anchors (SAG) --------------------------------------------------------------------------------
@dataclasses.dataclass
class StylizeModels:
    anchor: object
    inbetween: object


def load_models(config: StylizeConfig) -> StylizeModels:

    anchor, between = model_names(config)
    size = (config.resolution, config.resolution)  # the memory plan (--memory) is for the run's workload
    arc = generated_frames(config.arc_frames + 1, 4 if config.backbone == "hub" else 1)  # GGI: 4k + 1 frames
    return StylizeModels(load_backbone(anchor, config.anchor_path, plan_size=size, plan_frames=1),
                         load_backbone(between, config.inbetween_path, plan_size=size, plan_frames=arc))


def warn_non_native(config: StylizeConfig, models: StylizeModels, say: Progress) -> None:
    """One line when the embedded models run at another size than they were trained at (64 px): they do not
    add detail there, they blur or scatter it (as object warns for its orbit model)."""
    if config.backbone != "tiny":
        return  # the hub models are planned and run at any size their VAE takes
    native = getattr(models.anchor, "resolution", None)
    if native is not None and config.resolution != native[0]:
        say(f"warning: --resolution {config.resolution} is not the native {native[0]}x{native[1]} of the embedded "
            "stylize models, which were trained at that size: expect softer or speckled frames, not more detail; "
            "leave --resolution out to use the native size")


def check_style_lora(config: StylizeConfig, models: StylizeModels) -> None:
    """Refuse, before the run folder exists, style-LoRA blocks that the loaded FLUX transformer lacks."""
    if config.backbone != "hub" or config.style_lora_steps == 0:
        return
    blocks = getattr(getattr(models.anchor, "transformer", None), "single_transformer_blocks", None)
    if blocks is None:  # not a FLUX anchor model: align_style trains no LoRA
        return
    absent = [b for b in config.style_lora_blocks if b >= len(blocks)]
    if absent:
        anchor, _ = model_names(config)
        raise ConfigError(f"--style-lora-blocks names block {absent[0]}, but the transformer of {anchor} has "
                          f"single-stream blocks 0 to {len(blocks) - 1}; give blocks in that range, or "
                          "--style-lora-steps 0 for no style LoRA.")


def align_style(config: StylizeConfig, models: StylizeModels, style: Float[Tensor, "H W 3"], say: Progress
                ) -> str | None:
    """SAG's distribution alignment on the hub: the per-style LoRA on the FLUX anchor model (trained on
    the style image, cached per style and base model; :func:`~vdm3d.models.hub.flux.apply_style_lora`).
    The embedded prior needs none: it takes the style image in its reference slot. Returns the LoRA file
    (what the manifest records), or where it could not be cached."""
    if config.backbone != "hub" or config.style_lora_steps == 0:
        return None
    from vdm3d.models.hub.flux import FluxBackbone, StyleLoraSettings, apply_style_lora

    if not isinstance(models.anchor, FluxBackbone):
        return None
    anchor, _ = model_names(config)
    base = json.dumps({"model": anchor, "path": str(config.anchor_path or ""),
                       "transformer": dict(models.anchor.transformer.config)}, sort_keys=True, default=str)
    settings = StyleLoraSettings(steps=config.style_lora_steps, single_blocks=tuple(config.style_lora_blocks))
    path, _ = apply_style_lora(models.anchor, style, base_id=base, settings=settings, prompt=config.prompt,
                               size=(config.resolution, config.resolution), cache_dir=config.style_lora_cache,
                               say=say)
    # a cache that could not be written keeps nothing: the manifest must not name a file that is not there
    return str(path) if path.is_file() else f"trained for this run, not cached ({path.parent} could not be written)"


def model_maps(model, warped: Tensor | None, valid: Tensor | None, edges: Tensor, soft: Tensor) -> Tensor:
    """The pixel maps a model takes: the tiny models' five channels (warped RGB with 0 in holes,
    validity, line art) ``[F, H, W, 5]``, or for a ControlNet / GGI hub model the soft edges (the HED
    substitute) as images ``[F, H, W, 3]``."""
    f, h, w = edges.shape
    if getattr(model, "map_channels", None) is None:
        return soft[..., None].expand(f, h, w, 3)
    if warped is None:
        return torch.cat([edges.new_zeros(f, h, w, 4), edges[..., None]], -1)
    return torch.cat([warped * valid[..., None], valid[..., None].float(), edges[..., None]], -1)


def latent_hw(model, h: int, w: int) -> tuple[int, int]:
    return h // model.spatial_factor, w // model.spatial_factor


def unobserved_mask(valid: Bool[Tensor, "H W"], latent_hw: tuple[int, int]) -> Float[Tensor, "h w"]:
    """SAG's mask M = [no correspondence], dilated (5x5 kernel, 12 iterations at 480 px) and blurred
    (Gaussian sigma 3 at 480 px), both scaled to this resolution, then area-pooled to the latent."""
    h = valid.shape[0]
    scale = h / SAG_REFERENCE_HEIGHT
    m = (~valid.bool()).float()[None, None]
    for _ in range(max(1, round(12 * scale))):
        m = F.max_pool2d(m, 5, stride=1, padding=2)
    sigma = max(3.0 * scale, 0.5)
    t = torch.arange(-4, 5, dtype=m.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = (g / g.sum())
    m = F.conv2d(F.pad(m, (4, 4, 4, 4), mode="replicate"), g.view(1, 1, 1, -1))
    m = F.conv2d(m, g.view(1, 1, -1, 1))
    return F.adaptive_avg_pool2d(m, latent_hw)[0, 0].clamp(0, 1)


def schedule(config: StylizeConfig, model) -> Tensor:
    """The noise levels for a model's process: EDM (tiny), shifted flow (FLUX), trailing DDIM (VP)."""
    if model.process == "flow":
        return FlowSchedule(config.steps, shift=3.0).sigmas()
    if model.process == "vp":
        return DdimSchedule(config.steps, "trailing").sigmas()
    return EdmSchedule(config.steps, 0.002, config.sigma_max, 7.0).sigmas()


def generate_anchor(config: StylizeConfig, model, style: Tensor, edges: Tensor, soft: Tensor,
                    generator: torch.Generator, warped: Tensor | None = None, valid: Tensor | None = None
                    ) -> Float[Tensor, "H W 3"]:
    """One view from the image prior: edges [H, W] + style image, optionally guided by a warped
    previous anchor (maps + latent replacement where it is observed)."""
    h, w = edges.shape
    lh, lw = latent_hw(model, h, w)
    maps = model_maps(model, None if warped is None else warped[None], None if valid is None else valid[None],
                      edges[None], soft[None])
    cond = Conditioning(reference=style[None] if "reference" in model.slots else None, maps=maps[None],
                        text=config.prompt if "text" in model.slots else None)
    hooks = []
    if warped is not None and config.blend_fraction > 0:
        target = model.encode((warped * valid[..., None])[None, None])
        mask = unobserved_mask(valid, (lh, lw))[None, None, None]
        hooks.append(LatentBlend(target, mask, round(config.steps * config.blend_fraction)))
    with torch.no_grad():
        z = sample(model, schedule(config, model), cond=cond, shape=(1, 1, model.latent_channels, lh, lw),
                   generator=generator, hooks=hooks, guider=guidance(config, "anchor"))
        # contiguous, as an anchor read back from a checkpoint is: the decoder's output is a channels-first
        # view, and an arc computed from the other layout differs in the last bits (a resumed run would not
        # be the uninterrupted one)
        return model.decode(z)[0, 0].clamp(0, 1).contiguous()


def anchor_views(config: StylizeConfig, model, buffers: PathBuffers, style: Tensor, indices: list[int],
                 guided: bool = True, say: Progress | None = None) -> dict[int, Float[Tensor, "H W 3"]]:
    """Anchors at ``indices`` in order; with ``guided`` each one after the first is steered by the
    previous anchor warped into its view (SAG), otherwise every view is generated independently."""
    out: dict[int, Tensor] = {}
    prev = None
    steps = StageSteps(say, "anchor", "views generated") if say is not None else None
    for k, i in enumerate(indices):
        gen = torch.Generator().manual_seed(derived_seed(config.seed, 1000, i))
        if guided and prev is not None:
            warped, valid = buffers.warp(out[prev], prev, i)
            out[i] = generate_anchor(config, model, style, buffers.edges[i], buffers.soft[i], gen, warped, valid)
        else:
            out[i] = generate_anchor(config, model, style, buffers.edges[i], buffers.soft[i], gen)
        prev = i
        if steps is not None:
            steps(k + 1, len(indices))
    return out


# -- stage 4: inbetweening (GGI) -----------------------------------------------------------------------------
def generated_frames(frames: int, temporal_factor: int) -> int:
    """Frames an arc of ``frames`` is generated at: a causal video VAE that is ``temporal_factor`` times
    coarser in time encodes ``1 + temporal_factor * k`` frames (GGI: 49 -> 13 latents), so an arc of
    another length is generated at the next such count and its held end frames are dropped."""
    if temporal_factor <= 1:
        return frames
    return -(-(frames - 1) // temporal_factor) * temporal_factor + 1


def hold_end(x: Tensor, n: int) -> Tensor:
    """``x`` along its first axis, its last element repeated up to length ``n``."""
    return torch.cat([x, x[-1:].expand(n - len(x), *x.shape[1:])]) if n > len(x) else x


def arc_noise(config: StylizeConfig, buffers: PathBuffers, a: int, b: int, latent_shape, generator,
              frames: int | None = None) -> Tensor | None:
    """Starting noise of an arc: Go-with-the-Flow noise along the mesh flow, degraded with fresh noise;
    ``frames`` beyond the arc's own hold still (zero flow)."""
    if config.noise == "fresh":
        return None
    n_lat, c, lh = latent_shape[1], latent_shape[2], latent_shape[3]
    flows = buffers.flow[a:b]
    if frames is not None and frames > b - a + 1:
        flows = torch.cat([flows, flows.new_zeros(frames - (b - a + 1), *flows.shape[1:])])
    noise = warped_noise(flows, c, grid_scale=NOISE_GRID, downscale=buffers.depth.shape[1] // lh,
                         generator=generator)
    noise = subsample_frames(noise, n_lat)  # causal video VAEs: nearest frames (49 -> 13 in GGI)
    return mix_new_noise(noise, config.noise_alpha, generator)[None]


def inbetween(config: StylizeConfig, model, buffers: PathBuffers, a: int, b: int, start: Tensor, end: Tensor
              ) -> Float[Tensor, "Fa H W 3"]:
    """Frames ``a..b`` of one arc between keyframes ``start`` (frame a) and ``end`` (frame b). A causal
    video model generates :func:`generated_frames` frames, the end frame held, and the extra ones are
    dropped."""
    f = b - a + 1
    n = generated_frames(f, model.temporal_factor)
    h, w = start.shape[:2]
    lh, lw = latent_hw(model, h, w)
    shape = (1, (n - 1) // model.temporal_factor + 1, model.latent_channels, lh, lw)
    gen = torch.Generator().manual_seed(derived_seed(config.seed, 1000, 500 + a))
    warped = valid = None
    if config.warp_condition:
        pairs = [buffers.warp(start, a, a + j) for j in range(f)]
        warped = hold_end(torch.stack([p[0] for p in pairs]), n)
        valid = hold_end(torch.stack([p[1] for p in pairs]), n)
    held = torch.arange(a, a + n).clamp(max=b)  # frame index of each generated frame
    cams = buffers.cameras[held].reshape(1, n)
    maps = model_maps(model, warped, valid, buffers.edges[held], buffers.soft[held])
    cond = Conditioning(cameras=cams if "cameras" in model.slots else None, maps=maps[None],
                        keyframes={0: start[None], n - 1: end[None]}, text=config.prompt if "text" in model.slots else None,
                        extras={"reference_c2w": cams.c2w[:, 0], "frames": n})
    noise = arc_noise(config, buffers, a, b, shape, gen, frames=n)
    hooks = []
    if config.keyframe_blend > 0 and model.temporal_factor == 1:  # one latent per frame: n == f
        near = [buffers.warp(start, a, a + j) if j <= (f - 1) / 2 else buffers.warp(end, b, a + j) for j in range(f)]
        target = model.encode(torch.stack([w * v[..., None] for w, v in near])[None])
        mask = torch.stack([unobserved_mask(v, (lh, lw)) for _, v in near])[None, :, None]
        hooks.append(LatentBlend(target, mask, round(config.steps * config.keyframe_blend)))
    with torch.no_grad():
        step_noise = None
        if config.inbetween_eta > 0 and noise is not None:
            def step_noise(_m: int) -> Tensor:
                return arc_noise(config, buffers, a, b, shape, gen, frames=n)
        z = sample(model, schedule(config, model), cond=cond, shape=shape, noise=noise, generator=gen,
                   guider=guidance(config, "inbetween"), hooks=hooks, eta=config.inbetween_eta,
                   step_noise=step_noise)
        frames = model.decode(z)[0, :f].clamp(0, 1)
    return torch.cat([start[None], frames[1:]])  # the start keyframe is known exactly


def read_checkpoint(path: Path | None, say: Progress) -> dict[str, Tensor] | None:
    """The tensors of a stage checkpoint, or None when there is none. A file that does not read (cut short
    by a kill while an older vdm3d wrote it in place) is said and generated again: every arc and the
    anchors are a function of the run's seed and the earlier checkpoints, so redoing it changes nothing."""
    if path is None or not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any decoding failure means a torn file
        say(f"{path.name}: unreadable checkpoint ({type(e).__name__}), generated again")
        return None


def stylize_frames(config: StylizeConfig, models: StylizeModels, buffers: PathBuffers, style: Tensor,
                   checkpoints: Path | None = None, say: Progress = print, anchors: dict[int, Tensor] | None = None
                   ) -> tuple[Float[Tensor, "F H W 3"], dict[int, Tensor]]:
    """Anchors (unless given), then every arc in order (loaded from ``checkpoints`` when already done),
    stitched."""

    spans = arcs(len(buffers), config.arc_frames)
    indices = [0] + [b for _, b in spans if b != 0]
    anchor_file = checkpoints / "anchors.safetensors" if checkpoints else None
    if anchors is None and (saved := read_checkpoint(anchor_file, say)) is not None:
        anchors = {int(k): v for k, v in saved.items()}
        say(f"anchors: {len(anchors)} loaded from the checkpoint")
    elif anchors is None:
        anchors = anchor_views(config, models.anchor, buffers, style, indices, say=say)
        if anchor_file is not None:
            save_state_dict({str(k): v for k, v in anchors.items()}, anchor_file)  # atomic: never half a file
        say(f"anchors: {len(anchors)} views at frames {indices}")
    pieces = [anchors[0][None]]
    start = anchors[0]
    for k, (a, b) in enumerate(spans):
        if a == b:
            break
        arc_file = checkpoints / f"arc_{k:03d}.safetensors" if checkpoints else None
        if (saved := read_checkpoint(arc_file, say)) is not None:
            frames = saved["frames"]
        else:
            frames = inbetween(config, models.inbetween, buffers, a, b, start, anchors[b])
            if arc_file is not None:
                save_state_dict({"frames": frames}, arc_file)
            say(f"arc {k + 1}/{len(spans)}: frames {a}-{b}")
        pieces.append(frames[1:])
        start = frames[-1]  # the next arc starts from the last generated frame
    return torch.cat(pieces), anchors


# -- stage 5: temporal fusion ----------------------------------------------------------------------------
def fuse(config: StylizeConfig, buffers: PathBuffers, frames: Float[Tensor, "F H W 3"]
         ) -> Float[Tensor, "F H W 3"]:
    """Average every frame with its neighbours along the exact correspondence (``--fusion-radius``)."""
    return fuse_along_path(buffers, frames, config.fusion_radius, config.fusion_tau)


# -- stage 6: export ---------------------------------------------------------------------------------------
def file_coordinates(cameras: Cameras, scene: MeshScene) -> Cameras:
    """The rendered cameras back in the mesh file's coordinates (float64 when the mesh was recentred, so that
    the written path lines up with the file again), unchanged otherwise."""
    if not scene.offset.any():
        return cameras
    return cameras.to(torch.float64).translated(scene.offset)


def mesh_record(config: StylizeConfig, scene: MeshScene, inside: list[int]) -> dict:
    """The manifest's ``mesh``: the up axis it was read with, its z-up bounds in the file's coordinates, the
    frames whose cameras are inside it and, for a recentred mesh, by how much it was moved to render it."""
    record = {"up": file_up(config.mesh, config.up), "bounds": scene.bounds.tolist(), "cameras_inside": inside}
    if scene.offset.any():
        record.update(bounds=(scene.bounds.astype(np.float64) + scene.offset).tolist(),
                      rendered_about=scene.offset.tolist())
    return record


def export(folder: Path, frames: Tensor, anchors: dict[int, Tensor], buffers: PathBuffers, inputs: StylizeInputs
           ) -> list[str]:

    for sub in ("frames", "anchors", "edges/soft", "cameras"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    names = [f"frames/{i:03d}.png" for i in range(len(frames))]
    for name, image in zip(names, frames):
        write_image(folder / name, image)
    for i, image in anchors.items():
        write_image(folder / f"anchors/{i:03d}.png", image)
    for i in range(len(buffers)):
        write_image(folder / f"edges/{i:03d}.png", buffers.edges[i][..., None].expand(-1, -1, 3))
        write_image(folder / f"edges/soft/{i:03d}.png", buffers.soft[i][..., None].expand(-1, -1, 3))
    write_image(folder / "style.png", inputs.style)
    write_video(folder / "video.mp4", frames, fps=inputs.trajectory.fps)
    cameras = file_coordinates(buffers.cameras, inputs.scene)
    save_trajectory(folder / "cameras/trajectory.json", inputs.trajectory.with_cameras(  # its frames, not the input's
        cameras, generator="vdm3d stylize (square crop, resized)", names=[f"../{n}" for n in names]))
    write_transforms_json(folder / "cameras/transforms.json", cameras, [f"../{n}" for n in names],
                          extras={"top": {"fps": inputs.trajectory.fps}})  # the video's, as in trajectory.json
    return ["video.mp4", "frames/", "anchors/", "edges/", "edges/soft/", "style.png", "cameras/trajectory.json",
            "cameras/transforms.json"]


@job_entry(check_config)
def run_stylize(config: StylizeConfig, progress: Progress | None = print) -> StylizeResult:
    """Run every stage and write the run folder. Bad input raises before anything is written.

    ``config`` is checked first (:func:`vdm3d.jobs.job_entry`; ``mesh``, ``trajectory`` and ``style`` are
    required). ``progress`` hears one line per stage and arc (None: silent)."""

    say = progress or (lambda _msg: None)
    clock = StageClock()
    lap, timings = clock.lap, clock.timings

    inputs = load_inputs(config, say)
    say(mesh_up_line(config.mesh, config.up))
    if (line := recentred_line(config.mesh, inputs.scene)) is not None:
        say(line)
    inside = check_cameras_inside(config, inputs, say)
    buffers = geometry_buffers(config, inputs, say)
    models = load_models(config)
    check_style_lora(config, models)
    warn_non_native(config, models, say)
    lap("load_and_geometry")
    with RunFolder(config.out, config=config, seed=config.seed, overwrite=config.overwrite, resume=config.resume,
                   inputs=[config.mesh, config.trajectory, config.style, *weights_files(config)]) as run:
        ckpt = run.checkpoint_dir  # a resume with other options or changed files was refused on entering
        say(f"stylize: {len(buffers)} frames at {config.resolution} px, arcs of {config.arc_frames}")
        lora = align_style(config, models, inputs.style, say)
        frames, anchors = stylize_frames(config, models, buffers, inputs.style, ckpt, say)
        lap("generate")
        frames = fuse(config, buffers, frames)
        lap("fuse")
        files = export(run.path, frames, anchors, buffers, inputs)
        shutil.rmtree(ckpt)  # finished: the per-arc checkpoints are no longer needed
        lap("export")
        run.record(files=files, timings=timings, anchors=sorted(anchors), arcs=arcs(len(buffers), config.arc_frames),
                   models=dict(zip(("anchor", "inbetween"), model_names(config))), style_lora=lora,
                   soft_edges="depth/normal/coverage discontinuities (HED substitute; geometry.edges.soft_edges)",
                   mesh=mesh_record(config, inputs.scene, inside),
                   style=inputs.style_crop)
    return StylizeResult(config.out, frames, anchors, buffers, timings)
