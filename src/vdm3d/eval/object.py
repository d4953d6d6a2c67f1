"""`vdm3d eval object`: the object job against ground truth, beside two non-generative baselines.

Cases (a manifest, or the defaults): held-out procedural objects (``make_object(seed)`` with seeds
from 1,500,000 on, outside the tiny models' training range) and the textured meshes of
``../shared/data/meshes``, each normalized into the unit sphere and rendered from one input camera
(elevation ``elevation_deg``, azimuth 0, the job's radius and field of view) as an RGBA image.

For every case the job runs on that image (``recentre`` off, so the input camera is exact), and:

* **novel views**: ``novel_views`` cameras, one at a random azimuth in each of as many equal sectors,
  at random elevations from -10 to 40 degrees (the orbit is at the input's 10 degrees); PSNR and SSIM of the splat renders against exact renders (white background);
* **geometry**: Chamfer distance and F-score at ``tau`` between the job's mesh and the true mesh
  (20,000 area-uniform samples each; the object spans 2 units);
* **orbit accuracy**: PSNR of the generated orbit frames against exact renders at the same cameras;
* **input fidelity**: PSNR of the splat render at the input camera against the input image (the one
  view a user can check by eye: the turntable's first frame).

Baselines, with the same fitting and meshing code:

* ``input-only``: Gaussians fitted to the input view alone, initialized as a billboard (points on the
  plane through the object's centre facing the input camera, inside its silhouette), meshed like
  the job inside the unit ball within the input silhouette's cone: the single-view non-generative
  baseline. It is fitted with ``INPUT_ONLY_FIT`` (its one view's weight, which sets the photometric terms
  against the opacity term, and its steps) whatever the job's, so a job setting does not move the baseline;
* ``orbit-frames``: the orbit frames without reconstruction: their own PSNR at the orbit cameras,
  and the visual hull carved from their masks as geometry (no novel views: frames exist only at
  orbit cameras).

Results go to a run folder: ``results.json`` (per case and means) and ``table.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import trimesh
import tyro

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.data.procedural import Scene, load_mesh, make_object
from vdm3d.data.procedural.objects import light_palette, mirror_symmetric
from vdm3d.errors import InputError
from vdm3d.eval.checkpoints import FROM_CHECKPOINT, CaseCheckpoints
from vdm3d.eval.meshes import mesh_files
from vdm3d.geometry.carve import CarveResult, foreground_votes, grid_points, occupancy_mesh
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.io.images import write_image
from vdm3d.io.progress import StageLog
from vdm3d.io.runs import RunFolder, atomic_write_bytes, atomic_write_json
from vdm3d.jobs import object as job
from vdm3d.jobs.object import PRESETS, ObjectConfig
from vdm3d.jobs.object_orbit import ClipLayout, OracleOrbit, orbit_plan
from vdm3d.metrics.geometry import SurfaceDistance, mesh_distance
from vdm3d.metrics.image import psnr, ssim
from vdm3d.options import SEED, Range
from vdm3d.recon.perceptual import PerceptualLoss, make_perceptual
from vdm3d.recon.render import render_views
from vdm3d.splat.gaussians import Gaussians
from vdm3d.train.datasets import Split
from vdm3d.views import Views

HELDOUT_SEED = 1_500_000
DEFAULT_MESHES = ("spot/spot_triangulated.obj:spot/spot_texture.png", "bob/bob_tri.obj", "duck/Duck.glb")


#: ``--options``: name -> object-job settings changed for that row
OPTIONS: dict[str, dict] = {
    "illumination": {"illumination": True},
    "depth-prior": {"depth_prior": 0.1},
    "normal-prior": {"normal_prior": 0.05},
    "estimator-prior": {"estimator_prior": 0.05},
    "priors": {"depth_prior": 0.1, "normal_prior": 0.05, "estimator_prior": 0.05},
    "uv": {"texture": "uv", "texture_size": 256},
    "texture-refine": {"texture": "uv", "texture_size": 256, "texture_refine_steps": 100},
    "video": {"backbone": "tiny-video"},
    "proxy": {"proxy_maps": True, "carry": "inflate"},
    "depth-maps": {"proxy_maps": True, "carry": "depth"},
    "depth-back-maps": {"proxy_maps": True, "carry": "depth+back"},
    "inflate-maps": {"proxy_maps": True, "carry": "inflate"},
    "exact-depth-maps": {"proxy_maps": True, "carry": "depth"},
    "exact-depth-back-maps": {"proxy_maps": True, "carry": "depth+back"},
    "no-proxy": {"proxy_maps": False},
    "interleaved": {"clip_layout": "interleaved"},
    "consecutive": {"clip_layout": "consecutive"},
    "input-weight-12": {"input_weight": 12.0},
    "alpha-weight-2": {"alpha_weight": 2.0},
    "l1": {"ssim_weight": 0.2},
    "steps-1-l1": {"steps": 1, "ssim_weight": 0.2},
    "steps-1": {"steps": 1},
    "steps-2": {"steps": 2},
    "frames-9": {"frames": 9},
    "orbit-18": {"frames": 18, "clip_layout": "consecutive", "input_weight": 4.0, "input_every_step": 0.0,
                 "fit_steps": 200, "regen_sigma": 0.0},
    "orbit-36": {"frames": 36, "clip_layout": "interleaved", "input_weight": 12.0, "input_every_step": 0.0,
                 "fit_steps": 200, "regen_sigma": 0.0},
    "orbit-36-fit-400": {"frames": 36, "clip_layout": "interleaved", "input_weight": 12.0, "input_every_step": 0.0,
                         "fit_steps": 400, "regen_sigma": 0.0},
    "no-regen": {"regen_sigma": 0.0},
    "regen-2": {"regen_sigma": 2.0},
    "regen-7": {"regen_sigma": 7.0},
    "balloon-0.33": {"balloon_weight": 0.33},
    "balloon-1": {"balloon_weight": 1.0},
    "samples-2": {"orbit_samples": 2},
    "samples-4": {"orbit_samples": 4},
    "samples-8": {"orbit_samples": 8},
    "samples-4-input-weight-12": {"orbit_samples": 4, "input_weight": 12.0},
}

#: what an option's settings alone do not say
_OPTION_NOTES = {"exact-depth-maps": "carried by the input view's true depth: an oracle, what better depth "
                                     "would be worth",
                 "exact-depth-back-maps": "the same, front and back", "l1": "3DGS's 0.8 L1 + 0.2 D-SSIM",
                 "steps-1-l1": "3DGS's 0.8 L1 + 0.2 D-SSIM",
                 "orbit-18": "V3D's 18-view orbit: the tiny default before the 36-view one",
                 "orbit-36": "two 18-view passes half a step apart, each in clips of views 20 degrees apart",
                 "orbit-36-fit-400": "the same, fitted twice as long, the input one of the views: the tiny "
                                     "default before the input was fitted at every step",
                 "no-regen": "one fit, no guided regeneration: the tiny default before it"}


def _flags(settings: dict) -> str:
    """An option's object-job settings as the `vdm3d object` flags that give them."""
    def flag(key: str, value) -> str:
        name = key.replace("_", "-")
        if isinstance(value, bool):
            return f"--{name}" if value else f"--no-{name}"
        return f"--{name} {value:g}" if isinstance(value, float) else f"--{name} {value}"
    return " ".join(flag(k, v) for k, v in settings.items())


#: the help of ``--options``, made from OPTIONS so that it lists every one
OPTIONS_HELP = ("also run the job with each of these options on the same cases, one row each (mesh PSNR renders "
                "the job's mesh, unlit, at the novel cameras); each is a `vdm3d object` setting: "
                + "; ".join(f"{name} = {_flags(settings)}" + (f" ({_OPTION_NOTES[name]})" if name in _OPTION_NOTES
                                                                 else "")
                            for name, settings in OPTIONS.items()))


@dataclasses.dataclass(frozen=True)
class EvalObjectConfig:
    """Score `vdm3d object` on held-out objects with ground truth."""

    out: Path = Path("runs/eval_object")
    """run folder for results.json and table.md"""
    procedural: Annotated[int, Range(0)] = 20
    """number of held-out procedural objects"""
    meshes: tuple[str, ...] = DEFAULT_MESHES
    """shared meshes (path[:texture] relative to --mesh-root); empty to skip"""
    mesh_root: Path = Path("../shared/data/meshes")
    """folder of the shared meshes"""
    manifest: Path | None = None
    """JSON list of cases ({"seed": N}, {"seed": N, "palette": "light"}: the object repainted in light colours,
    {"seed": N, "shape": "symmetric"}: the object joined with its mirror image, or {"mesh": path, "texture":
    path}) instead of the defaults"""
    source: Literal["backbone", "oracle"] = "backbone"
    """orbit frames from the backbone, or exact renders (an upper bound for the reconstruction)"""
    preset: str = "tiny"
    """object-job preset"""
    backbone: str | None = None
    """override the preset's backbone"""
    checkpoint: Path | None = None
    """score the last checkpoint of a `vdm3d train orbit` run folder (running or finished) as the backbone"""
    object_depth_model: str | None = None
    """override the job's object-depth network (a shipped model's name, or the .json of a `vdm3d train
    object-depth` run) in every row"""
    steps: Annotated[int | None, Range(1)] = None
    """override the preset's sampler steps"""
    guidance_scale: Annotated[float | None, Range(0)] = None
    """override the preset's guidance scale"""
    radius: Annotated[float | None, Range(0, open_min=True)] = None
    """override the preset's camera distance (the input is rendered from there too)"""
    elevation_deg: Annotated[float, Range(-90, 90, open_min=True, open_max=True)] = 10.0
    """elevation of the input camera"""
    novel_views: Annotated[int, Range(1)] = 8
    """held-out cameras per case"""
    tau: Annotated[float, Range(0, open_min=True)] = 0.05
    """F-score threshold (world units; objects fit in the unit sphere)"""
    input_only: bool = True
    """run the input-only baseline (it does not depend on the backbone: its numbers are the same for
    every --source and --backbone on the same cases)"""
    orbit_frames: bool = True
    """score the orbit frames themselves and their visual hull (cheap)"""
    options: Annotated[tuple[str, ...], tyro.conf.arg(help=OPTIONS_HELP)] = ()
    """also run the job with each of these options on the same cases, one row each (the help lists them, from
    ``OPTIONS``)"""
    keep_runs: bool = False
    """keep each case's job run folder under out/cases"""
    overwrite: bool = False
    resume: bool = False
    """continue the interrupted evaluation in --out: its finished cases are loaded, not run again"""


def load_cases(config: EvalObjectConfig) -> list[dict]:
    """The case list: from the manifest, or ``procedural`` seeds plus the shared meshes found."""
    if config.manifest is not None:
        try:
            cases = json.loads(Path(config.manifest).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(path=config.manifest, problem=f"is not a readable JSON case list ({type(e).__name__})",
                             fix='write a list like [{"seed": 1500000}, {"mesh": "spot.obj"}]') from e
        if not isinstance(cases, list) or not all(isinstance(c, dict) and ("seed" in c or "mesh" in c) for c in cases):
            raise InputError(path=config.manifest, field="cases", problem="must be a list of {seed} or {mesh} objects",
                             fix='write a list like [{"seed": 1500000}, {"mesh": "spot.obj"}]')
        for case in cases:
            if case.get("palette", "light") != "light" or ("palette" in case and "seed" not in case):
                raise InputError(path=config.manifest, field="palette",
                                 problem=f"is {case['palette']!r} in {case}; only a seed case can be repainted",
                                 fix='write {"seed": N, "palette": "light"} or leave the palette out')
            if case.get("shape", "symmetric") != "symmetric" or ("shape" in case and "seed" not in case):
                raise InputError(path=config.manifest, field="shape",
                                 problem=f"is {case['shape']!r} in {case}; only a seed case can be made symmetric",
                                 fix='write {"seed": N, "shape": "symmetric"} or leave the shape out')
        return cases
    cases = [{"seed": HELDOUT_SEED + i} for i in range(config.procedural)]
    for full, texture in mesh_files(config.meshes, config.mesh_root):
        cases.append({"mesh": str(full), **({"texture": str(texture)} if texture else {})})
    return cases


def case_scene(case: dict) -> tuple[Scene, str]:
    """The ground-truth Scene of a case and its name."""
    if "seed" in case:
        scene = make_object(int(case["seed"]))
        if "shape" in case:
            scene = mirror_symmetric(scene, int(case["seed"]))
        return (light_palette(scene, int(case["seed"])) if "palette" in case else scene), case_name(case)
    return load_mesh(case["mesh"], texture=case.get("texture"), up=case.get("up", "y")), case_name(case)


def case_name(case: dict) -> str:
    """A case's name, without building its scene."""
    if "seed" in case:
        return (f"object-{case['seed']}" + ("-symmetric" if "shape" in case else "")
                + ("-light" if "palette" in case else ""))
    return Path(case["mesh"]).stem


def scene_mesh(scene: Scene) -> trimesh.Trimesh:
    """The geometry of a Scene as one trimesh (for Chamfer distances)."""
    return trimesh.util.concatenate([trimesh.Trimesh(p.vertices, p.faces, process=False) for p in scene.parts])


def novel_cameras(n: int, radius: float, fov_deg: float, size: int, seed: int) -> Cameras:
    """Held-out cameras: a random azimuth per sector of ``360 / n`` degrees, elevations in [-10, 40]."""
    rng = np.random.default_rng([seed, 11])
    az = (np.arange(n) * 360.0 / n + 10.0 + rng.uniform(0, 360.0 / n - 20.0, n)) % 360
    el = rng.uniform(-10.0, 40.0, n)
    return cameras_from_sv3d(torch.tensor(el), torch.tensor(az), radius, fov_deg, size, size)


def image_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    return {"psnr": float(psnr(pred.clamp(0, 1), target).mean()), "ssim": float(ssim(pred.clamp(0, 1), target).mean())}


def back_views(cameras: Cameras, input_camera: Cameras) -> torch.Tensor:
    """Indices of the ``cameras`` that look at the object's back half: more than 90 degrees of azimuth (about
    the world's z axis) from ``input_camera``."""
    az = torch.atan2(cameras.centers[:, 1], cameras.centers[:, 0])
    az0 = torch.atan2(input_camera.centers[..., 1], input_camera.centers[..., 0]).reshape(())
    return torch.nonzero(torch.cos(az - az0) < 0).flatten()


def silhouette_iou(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over views of the intersection over union of two coverages ``[N, H, W]``, each cut at 0.5: how
    well a reconstruction shows the object's outline where the input does not see it."""
    a, b = pred > 0.5, truth > 0.5
    return float(((a & b).sum((-1, -2)) / (a | b).sum((-1, -2)).clamp_min(1)).mean())


def silhouette_ball(orbit: Views, resolution: int) -> CarveResult:
    """The region the input view alone allows: the unit ball inside the input silhouette's cone."""
    inp = orbit[[i for i, o in enumerate(orbit.origin) if o == "input"]]
    lo, voxel = torch.full((3,), -1.0), 2.0 / resolution
    pts = grid_points(lo, voxel, resolution)
    occ = foreground_votes(pts, inp.alphas > 0.5, inp.cameras) & (pts.norm(dim=-1) <= 1.0)
    occ = occ.reshape(resolution, resolution, resolution)
    empty = torch.zeros(0, 3)
    return CarveResult(occ, lo, voxel, occupancy_mesh(occ, lo, voxel), empty, empty)


#: the input-only baseline's fitting settings: the job's defaults when every recorded baseline was fitted
INPUT_ONLY_FIT = {"input_weight": 4.0, "input_every_step": 0.0, "fit_steps": 200}


def input_only_baseline(job_config: ObjectConfig, orbit: Views, perceptual: PerceptualLoss) -> Gaussians:
    """Gaussians fitted to the input view alone, initialized as a billboard: points on the plane
    through the object's centre facing the input camera, inside the input silhouette, in the
    image's colours (a 2.5D cut-out; from the input view it is exact, from the side it is thin)."""
    inp = orbit[[i for i, o in enumerate(orbit.origin) if o == "input"]]
    cam = inp.cameras[0]
    rng = torch.Generator().manual_seed(job_config.seed)
    ys, xs = torch.nonzero(inp.alphas[0] > 0.5, as_tuple=True)
    pick = torch.randint(0, len(ys), (job_config.num_points,), generator=rng)
    jitter = torch.rand(job_config.num_points, 2, generator=rng)
    uv = torch.stack([xs[pick], ys[pick]], -1).float() + jitter
    depth = (cam.centers.norm()).expand(job_config.num_points)  # the plane z = |centre| through the origin
    pts = cam.unproject(uv, depth)
    init = Gaussians.from_points(pts, inp.images[0, ys[pick], xs[pick]], opacity=0.5, sh_degree=0)
    return job.fit(dataclasses.replace(job_config, **INPUT_ONLY_FIT), inp, init, perceptual)


def run_case(case: dict, config: EvalObjectConfig, job_config: ObjectConfig, folder: Path) -> dict:
    """Run the job (and the baselines) on one case; returns its scores."""
    scene, name = case_scene(case)
    truth = scene_mesh(scene)
    size = job_config.resolution or 64
    cam = cameras_from_sv3d(config.elevation_deg, 0.0, job_config.radius, job_config.fov_deg, size, size)
    buf = render_buffers(scene, cam.reshape(1), background=(1.0, 1.0, 1.0))
    folder.mkdir(parents=True, exist_ok=True)
    image = write_image(folder / f"{name}.png", torch.cat([buf.rgb[0], buf.alpha[0, ..., None]], -1))
    cfg = dataclasses.replace(job_config, image=image, out=folder / name, recentre=False, overwrite=True,
                              elevation_deg=config.elevation_deg, resolution=size)
    source = orbit_source(config, cfg, scene)
    result = job.run_object(cfg, source=source, progress=None)
    novel = novel_cameras(config.novel_views, cfg.radius, cfg.fov_deg, size, int(case.get("seed", 0)))
    gt_buffers = render_buffers(scene, novel, background=(1.0, 1.0, 1.0))
    gt_novel = gt_buffers.rgb
    back = back_views(novel, cam)

    def back_iou(g: Gaussians) -> dict[str, float]:  # nothing when no held-out camera looks at the back
        if not len(back):
            return {}
        return {"back_iou": silhouette_iou(render_views(g, novel[back], background=1.0).alphas, gt_buffers.alpha[back])}
    gt_orbit = render_buffers(scene, result.orbit.cameras, background=(1.0, 1.0, 1.0)).rgb
    generated = [i for i, o in enumerate(result.orbit.origin) if o == "generated"]

    def job_scores(r: job.ObjectResult) -> dict[str, float]:
        mine = [i for i, o in enumerate(r.orbit.origin) if o == "generated"]  # an option may change the orbit
        cams = r.orbit.cameras[torch.tensor(mine)]
        truth_orbit = gt_orbit[mine] if r.orbit is result.orbit else render_buffers(scene, cams, background=(1.0, 1.0, 1.0)).rgb
        return {**{f"novel_{k}": v for k, v in image_scores(render_views(r.gaussians, novel, background=1.0).images, gt_novel).items()},
                "orbit_psnr": image_scores(render_views(r.gaussians, cams, background=1.0).images, truth_orbit)["psnr"],
                "mesh_psnr": image_scores(mesh_renders(r.mesh, novel), gt_novel)["psnr"],
                "input_psnr": input_psnr(r.gaussians, r.orbit), **back_iou(r.gaussians),
                **_geometry(mesh_distance(r.mesh, truth, config.tau))}

    scores = {"case": name, "job": job_scores(result)}
    for option in config.options:
        option_cfg = dataclasses.replace(cfg, **OPTIONS[option])
        source = orbit_source(config, option_cfg, scene, buf.depth[0] if option.startswith("exact-") else None)
        run = job.run_object(option_cfg, source=source, progress=None)
        scores[f"job+{option}"] = job_scores(run)
    if config.input_only:
        perceptual, _ = make_perceptual(cfg.perceptual)
        g = input_only_baseline(cfg, result.orbit, perceptual)
        plan = orbit_plan(cfg.orbit, cfg.elevation_deg, cfg.radius, cfg.fov_deg, size, cfg.frames, cfg.seed)
        box = silhouette_ball(result.orbit, 64)
        mesh = job.extract_mesh(cfg, g, plan, *job.mesh_box(box), size, box)
        scores["input-only"] = {
            **{f"novel_{k}": v for k, v in image_scores(render_views(g, novel, background=1.0).images, gt_novel).items()},
            "orbit_psnr": image_scores(render_views(g, result.orbit.cameras[torch.tensor(generated)], background=1.0).images,
                                       gt_orbit[generated])["psnr"],
            "input_psnr": input_psnr(g, result.orbit), **back_iou(g),
            **_geometry(mesh_distance(mesh, truth, config.tau))}
    if config.orbit_frames:
        hull = job.carve(cfg, result.orbit)
        scores["orbit-frames"] = {"orbit_psnr": image_scores(result.orbit.images[generated], gt_orbit[generated])["psnr"],
                                  **_geometry(mesh_distance(hull.mesh, truth, config.tau))}
    if not config.keep_runs:
        shutil.rmtree(folder / name, ignore_errors=True)
    return scores


def input_psnr(gaussians: Gaussians, orbit: Views) -> float:
    """PSNR of the splats rendered at the input camera against the input image (composited on white)."""
    index = orbit.origin.index("input")
    render = render_views(gaussians, orbit.cameras[[index]], background=1.0).images
    return float(psnr(render.clamp(0, 1), orbit.images[[index]].float()).mean())  # as image_scores, without its SSIM


def orbit_source(config: EvalObjectConfig, job_config: ObjectConfig, scene: Scene,
                 input_depth: torch.Tensor | None = None):
    """What fills the orbit: exact renders (oracle), a training run's checkpoint, or (None) the job's backbone.

    ``input_depth`` (the renderer's z-depth of the input view, 0 off the object) makes the maps carry the
    input by the true depth instead of the object-depth model's estimate: the ``exact-`` options' oracle."""
    if config.source == "oracle":
        return OracleOrbit(scene)
    if input_depth is not None:
        source = orbit_source(config, job_config, scene) or job.load_orbit_source(job_config)
        source.input_depth = torch.where(input_depth > 0, input_depth, torch.full_like(input_depth, float("inf")))
        return source
    if config.checkpoint is None:
        return None
    from vdm3d.jobs.object_orbit import BackboneOrbit
    from vdm3d.train.orbit import checkpoint_backbone

    c = job_config
    backbone = checkpoint_backbone(config.checkpoint)
    return BackboneOrbit(backbone, steps=c.steps, sigma_max=c.sigma_max,
                         guidance=c.guidance, guidance_scale=c.guidance_scale, min_guidance_scale=c.min_guidance_scale,
                         proxy_maps=c.proxy_maps, layout=c.clip_layout, **job.depth_carry(c, backbone))


def mesh_renders(mesh: trimesh.Trimesh, cameras: Cameras) -> torch.Tensor:
    """The job's mesh with its own colours (vertex colours or UV texture), unlit, on white."""
    from vdm3d.geometry.mesh_scene import MeshScene
    from vdm3d.geometry.texture_refine import UNLIT

    return render_buffers(MeshScene.from_trimesh(mesh, light=UNLIT), cameras, background=(1.0, 1.0, 1.0)).rgb


def _geometry(d: SurfaceDistance) -> dict[str, float]:
    return {"chamfer": d.chamfer, "fscore": d.fscore}


METHODS = ("job", "input-only", "orbit-frames")
COLUMNS = ("novel_psnr", "novel_ssim", "orbit_psnr", "mesh_psnr", "chamfer", "fscore", "input_psnr", "back_iou")


def methods_of(rows: list[dict]) -> list[str]:
    """The methods scored in ``rows``: the job, its option rows, then the baselines."""
    seen = [m for r in rows for m in r if m != "case"]
    options = sorted({m for m in seen if m.startswith("job+")}, key=seen.index)
    return [m for m in ("job", *options, "input-only", "orbit-frames") if m in seen]


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean of every score per method over the cases that have it."""
    out: dict[str, dict[str, float]] = {}
    for m in methods_of(rows):
        for c in COLUMNS:
            vals = [r[m][c] for r in rows if m in r and c in r[m]]
            if vals:
                out.setdefault(m, {})[c] = float(np.mean(vals))
    return out


def case_line(row: dict) -> str:
    """One case's novel-view PSNR and Chamfer distance per method, ``-`` where a method has no novel views
    (the orbit frames), as in :func:`table`."""
    def psnr(scores: dict) -> str:
        return f"{scores['novel_psnr']:.2f} dB" if "novel_psnr" in scores else "-"

    return f"{row['case']}: " + ", ".join(f"{m} {psnr(row[m])} / CD {row[m]['chamfer']:.4f}" for m in methods_of([row]))


def table(means: dict[str, dict[str, float]], cases: int, label: str) -> str:
    """A markdown table of the means (higher is better except Chamfer)."""
    head = ("| method | novel PSNR (dB) | novel SSIM | orbit-camera PSNR (dB) | mesh PSNR (dB) | Chamfer | F-score "
            "| input-view PSNR (dB) | back silhouette IoU |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    names = {"job": f"vdm3d object ({label})", "input-only": "Gaussians fitted to the input view only",
             "orbit-frames": "orbit frames, no reconstruction (visual hull)",
             **{f"job+{o}": f"vdm3d object ({label}) + {o}" for o in OPTIONS}}
    for m, vals in means.items():
        cells = [f"{vals[c]:.4f}" if c in ("chamfer", "fscore", "novel_ssim", "back_iou") and c in vals else
                 (f"{vals[c]:.2f}" if c in vals else "-") for c in COLUMNS]
        lines.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    lines.append(f"\nMeans over {cases} cases.")
    return "\n".join(lines)


def eval_object(config: EvalObjectConfig) -> dict:
    """Run every case and write ``results.json`` and ``table.md`` into ``config.out``."""
    if config.preset not in PRESETS:
        raise InputError(f"--preset {config.preset!r} is unknown; choose one of: {', '.join(PRESETS)}.")
    job_config = PRESETS[config.preset][1]
    overrides = {"backbone": config.backbone, "steps": config.steps, "guidance_scale": config.guidance_scale,
                 "radius": config.radius, "object_depth_model": config.object_depth_model}
    job_config = dataclasses.replace(job_config, **{k: v for k, v in overrides.items() if v is not None})
    unknown = [o for o in config.options if o not in OPTIONS]
    if unknown:
        raise InputError(f"--options {' '.join(unknown)}: unknown; choose from {', '.join(OPTIONS)}.")
    if config.object_depth_model is not None:  # a wrong name fails here, before any case runs
        from vdm3d.jobs.object_orbit import load_depth_model

        load_depth_model(config.object_depth_model)
    cases = load_cases(config)
    if not cases:
        raise InputError("no evaluation cases: pass --procedural N or --manifest FILE.")
    rows, say = [], StageLog()  # "[i/n] case" lines with the elapsed time and an ETA
    with RunFolder(config.out, config=config, overwrite=config.overwrite, resume=config.resume) as run:
        finished = CaseCheckpoints(run)  # each case's scores as it finishes, for --resume
        for i, case in enumerate(cases):
            saved = finished.load(i, case_name(case))
            rows.append(saved.result if saved else
                        finished.save(i, case_name(case), run_case(case, config, job_config, run.path / "cases")))
            say(f"[{i + 1}/{len(cases)}] {case_line(rows[-1])}" + (f" {FROM_CHECKPOINT}" if saved else ""))
        means = summarize(rows)
        label = ("oracle orbit" if config.source == "oracle" else "checkpoint" if config.checkpoint is not None
                 else config.backbone or job_config.backbone)
        text = table(means, len(rows), label)
        atomic_write_json(run.path / "results.json", {"cases": rows, "means": means})
        atomic_write_bytes(run.path / "table.md", (text + "\n").encode())
        run.record(means=means)
    print(text)
    print(f"results: {config.out}")
    return means


def object_command(config: Annotated[EvalObjectConfig, tyro.conf.arg(name="")]) -> None:
    """score `vdm3d object` on held-out procedural objects and shared meshes against two baselines"""
    eval_object(config)


def orbit_frames(model: str = "tiny", checkpoint: Path | None = None, objects: Annotated[int, Range(1)] = 20,
                 split: Split = "val", proxy_maps: bool = False,
                 carry: Literal["inflate", "depth", "depth+back", "exact-depth", "exact-depth+back"] = "inflate",
                 depth_model: str = "object_depth", layout: ClipLayout = "consecutive",
                 steps: Annotated[int | None, Range(1)] = None, guidance_scale: Annotated[float | None, Range(0)] = None,
                 seed: Annotated[int, SEED] = 0, out: Path | None = None, overwrite: bool = False) -> dict:
    """The object job's orbit frames against exact renders, per azimuth offset from the input view.

    Objects of the training-set layout (:func:`vdm3d.train.datasets.build_object_set`: 18 views 20 deg
    apart, elevation 0-30 deg) from ``split`` (validation seeds by default, 2,000,000 on; never the
    held-out test seeds unless asked); view 0 is the input. The views are filled by the job's orbit sampler
    (:class:`~vdm3d.jobs.object_orbit.BackboneOrbit` with the tiny preset's sampler), beside copying the
    input view, but by default without the proxy maps the job gives: to score the job's own frames add
    ``--proxy-maps --carry depth`` (the job's defaults). This command's defaults stay the ones the
    documented validation tables were measured with.

    Args:
        model: the backbone (``tiny``: the job's default), unless ``checkpoint`` is given.
        checkpoint: a ``vdm3d train orbit`` run folder (running or finished): its last checkpoint's EMA
            weights, so a run can be scored while it trains.
        objects: number of objects.
        split: ``val`` (for choosing settings) or ``heldout``.
        proxy_maps: give the backbone the input carried into each view (the maps slot), and score those
            maps alone too, composited on white (``warp_psnr``, ``warp_ssim``); off here, on in the job.
        carry: what carries the input with ``proxy_maps``: the balloon inflated from its silhouette, the
            depth estimated by the shipped object-depth model (visible surface alone, or with the balloon's
            back), or the input view's exact z-depth (``exact-``: an oracle, the procedural renderer's), to
            measure what better depth in the maps is worth; ``inflate`` here, ``depth`` in the job.
        depth_model: the object-depth network for ``depth`` / ``depth+back``: a shipped model's name or
            the ``.json`` of a `vdm3d train object-depth` run.
        layout: clips of consecutive or interleaved views (:class:`~vdm3d.jobs.object_orbit.BackboneOrbit`).
        steps: override the preset's sampler steps.
        guidance_scale: override the preset's guidance.
        seed: sampler seed.
        out: optional run folder for the numbers.
        overwrite: replace ``out``.
    """
    from vdm3d.jobs.object_orbit import BackboneOrbit, OrbitPlan, load_depth_model, reference_alpha
    from vdm3d.models.registry import load_backbone
    from vdm3d.train.datasets import ObjectSetConfig, load_object_depth, load_or_build
    from vdm3d.train.orbit import checkpoint_backbone

    config = dict(model=model, checkpoint=checkpoint, objects=objects, split=split, carry=carry)
    # the run folder opens before the sampling, as the jobs' do: an --out that cannot be written is refused
    # in one sentence before minutes of work, not after them
    with (RunFolder(out, config=config, seed=seed, overwrite=overwrite) if out is not None
          else contextlib.nullcontext()) as run:
        preset = PRESETS["tiny"][1]
        bb = checkpoint_backbone(checkpoint) if checkpoint is not None else load_backbone(
            job.tiny_orbit_model() if model == "tiny" else model)
        source = BackboneOrbit(bb, steps=steps or preset.steps, sigma_max=preset.sigma_max, guidance=preset.guidance,
                               guidance_scale=preset.guidance_scale if guidance_scale is None else guidance_scale,
                               proxy_maps=proxy_maps, carry=carry.removeprefix("exact-"), layout=layout,
                               depth_model=load_depth_model(depth_model) if carry in ("depth", "depth+back") else None)
        data = load_or_build(ObjectSetConfig(count=objects, split=split), None)
        exact = carry.startswith("exact-")
        depth = load_object_depth(ObjectSetConfig(count=objects, split=split), None) if exact else None
        rgb = torch.from_numpy(data["rgb"]).float() / 255  # [N, V, H, W, 3]
        n, v, res = rgb.shape[0], rgb.shape[1], rgb.shape[2]
        K = torch.from_numpy(data["K"]).float()
        zeros = torch.zeros(v)
        scores: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": [], "copy_psnr": [], "copy_ssim": []}
        if proxy_maps:
            scores.update(warp_psnr=[], warp_ssim=[])
        for i in range(n):
            cams = Cameras(K.expand(v, 3, 3), torch.from_numpy(data["c2w"][i]).float(), res, res)
            plan = OrbitPlan(cams, 0, zeros, torch.arange(v) * 360.0 / v)
            if depth is not None:
                source.input_depth = torch.from_numpy(depth[i, 0].astype(np.float32))
            frames = source.generate(rgb[i, 0], plan, torch.Generator().manual_seed(seed + i))[1:]
            target, copy = rgb[i, 1:], rgb[i, :1].expand(v - 1, -1, -1, -1)
            scores["psnr"].append(psnr(frames, target))
            scores["ssim"].append(ssim(frames, target))
            scores["copy_psnr"].append(psnr(copy, target))
            scores["copy_ssim"].append(ssim(copy, target))
            if proxy_maps:  # the maps alone: the carried pixels on white
                alpha = reference_alpha(rgb[i, 0])
                maps = source.carried(rgb[i, 0], alpha, cams[[0]], cams[1:].reshape(1, v - 1))[0]
                warp = maps[..., :3] + (1 - maps[..., 3:4])
                scores["warp_psnr"].append(psnr(warp, target))
                scores["warp_ssim"].append(ssim(warp, target))
        per = {k: torch.stack(x).mean(0) for k, x in scores.items()}  # per offset, over objects
        offsets = [round(360 * k / v) for k in range(1, v)]
        result = {"model": bb.name if checkpoint is None else str(checkpoint), "objects": n, "split": split,
                  "proxy_maps": proxy_maps, "carry": carry, "layout": layout, "steps": source.steps, "guidance_scale": source.guidance_scale,
                  **{k: round(float(t.mean()), 4) for k, t in per.items()},
                  "per_offset": {str(o): {k: round(float(t[j]), 3) for k, t in per.items()} for j, o in enumerate(offsets)}}
        head = "| offset (deg) | " + " | ".join(map(str, offsets)) + " | mean |"
        lines = [head, "|" + "---|" * (len(offsets) + 2)]
        for k in scores:
            lines.append(f"| {k} | " + " | ".join(f"{float(x):.2f}" for x in per[k]) + f" | {float(per[k].mean()):.3f} |")
        print(f"orbit frames of {result['model']}, {n} {split} objects "
              f"(proxy maps {proxy_maps}, carry {carry}, {layout}):")
        print("\n".join(lines))
        if run is not None:
            run.record(result=result)
        return result


COMMANDS = {"object": object_command, "object-orbit": orbit_frames}
