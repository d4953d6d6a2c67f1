"""``vdm3d complete``: a few posed photos to a complete 3DGS scene, with video-generated views guided
by the scene itself (GuidedVD-3DGS, §3 of ``SEED_SYSTEMS.md``).

Stages, top to bottom (each a function below)::

    load_scene -> initialize -> fit_baseline (then frozen) -> plan (hole-driven paths)
      -> distill: [ every `generate_every` steps: generate_clip (guided video along a path) -> pool ]
                  fit with one pseudo view beside the training view at each step
      -> evaluate (held-out PSNR / SSIM / empty area) -> export

* **Initial points** come from the training views only: their own depth maps when the scene has
  them (``depth_file_path`` in ``transforms.json``, e.g. the procedural rooms), else the sparse
  points that two or more training views observe (COLMAP tracks), else random points in their frusta.
* **Distillation** starts from the baseline Gaussians (a choice for the CPU budget; GuidedVD refits
  from the initial points for 10k steps) and runs ``distill.steps`` more steps. Each step fits the
  training view with ``0.8 L1 + 0.2 D-SSIM`` and one pseudo view with ``0.05 (L1 + 0.1 perceptual)``
  (the released weights), drawn with probability 0.5 from the persistent pool (20 % of every
  earlier clip) and otherwise from the latest clip; pseudo views feed densification too. Each clip
  also adds a Gaussian for every pixel where the baseline is empty, at the depth estimator's depth
  aligned to the baseline's (:mod:`vdm3d.recon.hole_points`).
* **Planning** keeps candidate paths with up to 35 % holes (GuidedVD: 10 %): held-out views' worst
  errors lie outside every training frustum, where a stricter limit never lets a path look. For a
  forward-facing capture (every optical axis within 15 deg of their mean, as LLFF's sweeps) GuidedVD's
  hybrid trajectory comes first: paths from each training camera halfway toward its neighbours and
  outward at the ends of the sweep, where such a capture's other views lie (``--plan.hybrid``).
* **Resume**: the baseline and every generation are checkpointed (``checkpoints/``); ``--resume``
  continues after the last finished generation.

Outputs: ``splats.ply``, ``baseline.ply``, ``renders/`` and ``compare/`` for held-out views,
``metrics.json``, ``clips/NNN.mp4`` with ``clips/NNN.json`` (the clip's trajectory), ``trajectories/``
(every planned path, for ``vdm3d trajectory preview``), ``cameras/transforms.json`` with ``cameras/images/``
(the training views as fitted) and ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Annotated, Callable, Literal

import torch
import tyro

from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.trajectory_file import save_trajectory
from vdm3d.data.depths import read_train_depths
from vdm3d.data.readers import Scene, Split, read_scene, recentred_line
from vdm3d.errors import ConfigError
from vdm3d.io.progress import StageClock
from vdm3d.io.runs import RunFolder, holds_state, resume_target
from vdm3d.io.video import write_video
from vdm3d.jobs.complete_distill import DISTILL_FIT, DistillConfig, StageFitConfig, distill
from vdm3d.jobs.complete_generate import GenerationConfig, generate_clip
from vdm3d.jobs.complete_v3d_generate import V3dConfig
from vdm3d.models.registry import load_depth, model_files
from vdm3d.jobs import job_entry
from vdm3d.options import SEED, Range, derived_seed
from vdm3d.recon.checkpoint import load_state, save_state
from vdm3d.recon.depth_points import points_from_depths
from vdm3d.recon.evaluate import render_and_score
from vdm3d.recon.export import write_fit
from vdm3d.recon.hole_points import hole_points
from vdm3d.recon.render import render_views
from vdm3d.recon.init import init_from_points, init_random
from vdm3d.recon.planning import PlanConfig, between_views, fixed_orbit, forward_facing, plan_paths
from vdm3d.recon.trainer import FitConfig, FitProgress, fit_gaussians
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.ply import load_ply, save_ply
from vdm3d.splat.strategy import DensifyPolicy
from vdm3d.views import Views

#: the baseline for small images on 2 CPU cores (procedural rooms at 64 px, fern at 1/4 or 1/8)
CPU_BASELINE = StageFitConfig(
    steps=1500, sh_degree=1, sh_warmup_every=500, checkpoint_every=500,
    densify=DensifyPolicy(refine_start=200, refine_stop=1200, refine_every=100, reset_every=0,
                          max_gaussians=30_000),
)


@dataclasses.dataclass(frozen=True)
class CompleteConfig:
    """Complete a sparse-view 3DGS scene with guided video generation (GuidedVD-3DGS)."""

    data: tyro.conf.Positional[Path]
    """Scene folder: LLFF (poses_bounds.npy), COLMAP (sparse/0) or transforms.json."""
    method: Literal["guidedvd", "v3d"] = "guidedvd"
    """guidedvd: guided clips distilled during the fit (GuidedVD-3DGS); v3d: clips from the photos' reprojected
    features, then a fit on photos + frames (V3D's scene mode, jobs/complete_v3d.py)."""
    trajectory: Path | None = None
    """--method v3d: generate along this trajectory file (vdm3d JSON) instead of between the input cameras."""
    out: Path | None = None
    """Output run folder (default: runs/complete/<scene name>)."""
    resume: Path | None = None
    """Continue the interrupted run in this output folder from its last checkpoint."""
    overwrite: bool = False
    """Replace an existing output folder."""
    downscale: Annotated[int, Range(1)] = 1
    """Divide the image sides by this factor."""
    split: Annotated[Split, tyro.conf.OmitArgPrefixes] = Split(num_train_views=3)
    backbone: str = "tiny-video"
    """Video backbone (vdm3d models list): the embedded render-conditioned model, or a hub adapter."""
    depth: str = "tiny-depth"
    """Depth estimator for the points that clips add to the baseline's holes (`--distill.no-hole-points`
    turns them off): tiny-depth or a hub one (`vdm3d models list`); used up to scale, aligned to the baseline's depth."""
    paths: Literal["planned", "orbit"] = "planned"
    """Hole-driven planned paths, or a fixed left/right orbit per view (ablation)."""
    baseline: Annotated[StageFitConfig, tyro.conf.arg(prefix_name=False, name="baseline")] = CPU_BASELINE
    plan: PlanConfig = PlanConfig(max_hole_fraction=0.35, hybrid="auto")
    generation: GenerationConfig = GenerationConfig()
    distill: DistillConfig = DistillConfig()
    v3d: V3dConfig = V3dConfig()
    max_init_points: Annotated[int, Range(1)] = 50_000
    """Subsample larger initial point clouds to this many Gaussians."""
    random_points: Annotated[int, Range(1)] = 10_000
    """Gaussians of a random initialization (scenes without depth or points)."""
    seed: Annotated[int, SEED] = 0
    """Seed of every random draw of the run: the initial points, the baseline and distillation fits, each clip."""

    def check(self) -> None:
        n = self.split.num_train_views
        given = self.split.train_views
        count = len(given) if given else n
        if count is not None and count < 2:
            raise ConfigError(f"complete: --num-train-views is {count}; use at least 2 training views "
                              "(a single view has no second viewpoint to plan from).")
        if self.trajectory is not None and self.method != "v3d":
            raise ConfigError("complete: --trajectory is read by --method v3d only; add --method v3d or drop it.")
        fit, d = self.distill.fit, self.distill
        if fit.steps not in (DISTILL_FIT.steps, d.steps):  # DISTILL_FIT's own 1500: the field left as it was
            raise ConfigError(f"complete: distill.fit.steps is {fit.steps}, but the distillation runs distill.steps "
                              f"({d.steps}) steps; set distill.steps={fit.steps} (--distill.steps {fit.steps}) instead.")
        if fit.checkpoint_every not in (0, d.generate_every):
            raise ConfigError(f"complete: distill.fit.checkpoint_every is {fit.checkpoint_every}, but the distillation "
                              f"checkpoints at every new clip; set distill.generate_every={fit.checkpoint_every} "
                              f"(--distill.generate-every {fit.checkpoint_every}) instead.")
        for name, fit in self.fits().items():
            if fit.seed not in (None, 0, self.seed):  # 0: a plain FitConfig's default, never meant as a seed
                raise ConfigError(f"complete: {name}.seed is {fit.seed}, but every fit of complete draws from the "
                                  f"job's seed; set seed={fit.seed} (--seed {fit.seed}) instead and leave "
                                  f"{name}.seed unset.")

    def fits(self) -> dict[str, FitConfig]:
        """The nested fit settings, by their field path (``baseline``, ``distill.fit``)."""
        return {"baseline": self.baseline, "distill.fit": self.distill.fit}

    def recorded(self) -> CompleteConfig:
        """This config as the run's manifest records it: the fits' seeds unset (None), since every fit drew from
        ``seed``. A manifest then names no seed the run did not use, and a rerun with another ``--seed`` (the
        recorded config as ``--config``) has no stale fit seed to conflict with."""
        unset = {name: StageFitConfig.unseeded(fit) for name, fit in self.fits().items()}
        return dataclasses.replace(self, baseline=unset["baseline"],
                                   distill=dataclasses.replace(self.distill, fit=unset["distill.fit"]))


@dataclasses.dataclass(frozen=True)
class CompleteResult:
    out: Path
    gaussians: Gaussians
    baseline: Gaussians
    metrics: dict


# -- stages --------------------------------------------------------------------------------------
def load_scene(config: CompleteConfig) -> tuple[Scene, torch.Tensor | None]:
    """Training / held-out views, sparse points seen by two training views, training depths if any."""
    config.check()
    scene = read_scene(config.data, config.split, downscale=config.downscale, points_from="train")
    if len(scene.train) < 2:
        raise ConfigError(f"{config.data}: only {len(scene.train)} training view is left; use at least 2.")
    depths = read_train_depths(config.data, scene)
    return scene, depths


def initialize(scene: Scene, depths: torch.Tensor | None, config: CompleteConfig) -> Gaussians:
    """Initial Gaussians from the training views only (depth, their own points, or random)."""
    g = torch.Generator().manual_seed(config.seed)
    sh = config.baseline.sh_degree
    if depths is not None:
        pts, rgb = points_from_depths(scene.train.images, depths, scene.train.cameras)
        return init_from_points(pts, rgb, max_points=config.max_init_points, sh_degree=sh, generator=g)
    if scene.points_world is not None:
        return init_from_points(scene.points_world, scene.points_rgb, max_points=config.max_init_points,
                                sh_degree=sh, generator=g)
    cams = scene.train.cameras
    spread = float((cams.centers - cams.centers.mean(0)).norm(dim=-1).max())
    return init_random(cams, config.random_points, 0.1 * max(spread, 1.0), 10 * max(spread, 1.0),
                       sh_degree=sh, generator=g)


def fit_baseline(scene: Scene, init: Gaussians, config: CompleteConfig, run: RunFolder,
                 progress: Callable[[FitProgress], None] | None = None) -> Gaussians:
    """Plain 3DGS on the training views, saved as ``baseline.ply`` and frozen from then on."""
    done = run.path / "baseline.ply"
    if run.resuming and done.is_file():
        return load_ply(done)
    ckpt = run.path / "checkpoints" / "baseline"
    state = load_state(ckpt) if run.resuming and holds_state(ckpt) else None
    baseline = fit_gaussians(scene.train, init, dataclasses.replace(config.baseline, seed=config.seed),
                             progress=progress, state=state,
                             on_checkpoint=lambda s: save_state(run.checkpoint_dir / "baseline", s))
    save_ply(done, baseline)
    return baseline


def plan(baseline: Gaussians, scene: Scene, config: CompleteConfig, frames: int) -> list[Trajectory]:
    """Paths toward the baseline's holes from every training view (or the fixed-orbit ablation); with the
    hybrid trajectory, paths between the training cameras come first (marked ``first`` for the schedule)."""
    cams = scene.train.cameras
    if config.paths == "orbit":
        return fixed_orbit(baseline, cams, frames)
    paths = plan_paths(baseline, cams, frames, config.plan)
    missing = sorted(set(range(len(cams))) - {p.provenance["view"] for p in paths})
    if missing:  # every candidate of these views had too large holes: fall back to the fixed orbit
        paths += [p for p in fixed_orbit(baseline, cams, frames) if p.provenance["view"] in missing]
    hybrid = config.plan.hybrid == "on" or (config.plan.hybrid == "auto"
                                           and forward_facing(cams, config.plan.forward_deg))
    if hybrid:
        first = [p.with_cameras(p.cameras, first=True)
                 for p in between_views(cams, frames, config.plan.between_reach)]
        paths = first + paths
    return paths


def hole_filler(baseline: Gaussians, config: CompleteConfig, estimator=None
                ) -> Callable[[int, Views], Gaussians | None] | None:
    """``(k, clip) -> Gaussians``: points for the baseline's holes from clip ``k``'s frames, placed with the
    depth ``estimator`` (default: ``--depth``'s; None when ``distill.hole_points`` is off)."""
    if not config.distill.hole_points:
        return None
    from vdm3d.models.depth import relative_depth

    estimator = estimator if estimator is not None else load_depth(config.depth)

    def fill(k: int, clip: Views) -> Gaussians | None:
        rendered = render_views(baseline, clip.cameras)
        return hole_points(clip, rendered, relative_depth(estimator, clip.images.float()),
                           hole_alpha=config.plan.hole_alpha, opaque_alpha=config.generation.opaque_alpha,
                           share=config.distill.hole_point_share,
                           generator=torch.Generator().manual_seed(derived_seed(config.seed, 1000, k)))
    return fill


def check_backbone(backbone, name: str) -> None:
    """Every clip starts from a training photo (frame 0), so the backbone needs the reference-image slot;
    text-to-video backbones are refused before any work, in one sentence."""
    if "reference" not in set(getattr(backbone, "slots", ())):
        raise ConfigError(f"complete: --backbone {name} takes no reference image, and every clip starts from a "
                          "training photo; use an image-to-video backbone: tiny-video, svd, svd-xt, sv3d-p or "
                          "cogvideox-5b-i2v.")


def clip_frames(backbone, config: CompleteConfig) -> int:
    """The backbone's clip length (the embedded model: 8 frames)."""
    frames = backbone.frames or 8
    if frames < 2:
        raise ConfigError(f"complete: backbone {backbone.name!r} makes {frames}-frame clips; it needs at least 2.")
    return frames


def evaluate(gaussians: Gaussians, scene: Scene, backend: str = "auto") -> tuple[dict, torch.Tensor | None]:
    """Held-out PSNR, SSIM and the fraction of held-out pixels left empty (alpha < 0.5); rendered and
    scored a chunk of views at a time (:func:`vdm3d.recon.evaluate.render_and_score`)."""
    train, _, _ = render_and_score(gaussians, scene.train, scene.train_names, backend=backend)
    metrics = {"train": train["mean"]}
    if scene.test is None:
        return metrics, None
    test, renders, empty = render_and_score(gaussians, scene.test, scene.test_names, backend=backend, keep=True)
    for v, e in zip(test["views"], empty):
        v["empty"] = round(e, 5)
    test["mean"]["empty"] = round(float(torch.tensor(empty).mean()), 5)
    metrics["test"] = test
    return metrics, renders


def export(run: RunFolder, gaussians: Gaussians, scene: Scene, metrics: dict, renders: torch.Tensor | None) -> None:
    write_fit(run.path, gaussians, scene, metrics, renders)


def save_paths(folder: Path, paths: list[Trajectory]) -> None:
    for k, p in enumerate(paths):
        save_trajectory(folder / f"view{p.provenance['view']:02d}_{k:02d}.json", p)


def load_backbone(name: str, max_side: int | None = None):
    from vdm3d.models.registry import load_backbone as load

    return load(name, plan_size=max_side)  # the memory plan's workload: --generation.max-side, else native


# -- the job -------------------------------------------------------------------------------------
def run_folder(config: CompleteConfig) -> Path:
    """Where the run goes: ``--resume RUN`` (which continues that run; an ``--out`` naming another folder is
    refused), else ``--out``, else ``runs/complete/<scene>``."""
    return resume_target(config.out, config.resume, Path("runs") / "complete" / config.data.resolve().name)


@job_entry(CompleteConfig.check)
def run_complete(config: CompleteConfig, progress: Callable[[str, FitProgress], None] | None = None,
                 backbone=None) -> CompleteResult:
    """Run every stage inside a run folder; returns where the results are and the scores.

    ``config`` is checked first (:func:`vdm3d.jobs.job_entry`). ``progress(stage, p)`` is called after every
    fitting step of the ``baseline`` and ``distill`` stages; nothing is printed. ``method="v3d"`` is
    :func:`vdm3d.jobs.complete_v3d.run_complete_v3d`'s (``vdm3d complete`` picks the function)."""
    if config.method == "v3d":  # it used to run the guided method under the other's name
        raise ConfigError("complete: run_complete runs --method guidedvd; call "
                          "vdm3d.jobs.complete_v3d.run_complete_v3d for --method v3d.")
    out = run_folder(config)
    with RunFolder(out, config=config.recorded(), seed=config.seed,
                   inputs=[config.data, *model_files(config.backbone, config.depth)],
                   overwrite=config.overwrite, resume=config.resume is not None,
                   resume_flag=f"--resume {out}") as run:
        clock = StageClock()
        # the models first: missing or wrong weights are refused before a large scene is read (26 s at 12 MP)
        backbone = backbone if backbone is not None else load_backbone(config.backbone, config.generation.max_side)
        check_backbone(backbone, config.backbone)  # before the baseline is fitted
        estimator = load_depth(config.depth) if config.distill.hole_points else None  # a bad --depth fails here
        scene, depths = load_scene(config)
        init = initialize(scene, depths, config)
        clock.lap("load")

        baseline = fit_baseline(scene, init, config, run, None if progress is None else
                                (lambda p: progress("baseline", p)))
        clock.lap("baseline")

        frames = clip_frames(backbone, config)
        paths = plan(baseline, scene, config, frames)
        save_paths(run.path / "trajectories", paths)
        clock.lap("plan")

        def generate(k: int, view: int, path: Trajectory):
            photo = scene.train.images[view]
            pseudo, _, _ = generate_clip(backbone, baseline, photo, path, config.generation, seed=derived_seed(config.seed, 1000, k))
            # the clip as its saved cameras see it: the photo, then the pseudo views (not the generation size)
            write_video(run.path / "clips" / f"{k:03d}.mp4", torch.cat([photo[None], pseudo.images]), fps=path.fps)
            save_trajectory(run.path / "clips" / f"{k:03d}.json", path)
            return pseudo

        gaussians, timing = distill(scene.train, baseline, paths, generate, config.distill,
                                    add_points=hole_filler(baseline, config, estimator), checkpoints=run, seed=config.seed,
                                    progress=None if progress is None else (lambda p: progress("distill", p)))
        clock.lap("distill")
        clock.timings["distill"] -= timing.get("generate", 0.0)  # the clips it generated are timed on their own
        clock.timings.update(timing)

        metrics, renders = evaluate(gaussians, scene)
        base_metrics, _ = evaluate(baseline, scene)
        clock.lap("evaluate")
        metrics.update({"baseline": base_metrics.get("test", {}).get("mean"), "num_gaussians": len(gaussians),
                        "train_views": list(scene.train_indices), "test_views": list(scene.test_indices),
                        "image_size": [scene.train.width, scene.train.height], "paths": len(paths),
                        "backbone": getattr(backbone, "name", config.backbone),
                        "seconds": {k: round(v, 1) for k, v in clock.timings.items()}})
        export(run, gaussians, scene, metrics, renders)
        shutil.rmtree(run.path / "checkpoints", ignore_errors=True)  # finished: nothing left to resume
        run.record(metrics={"test": metrics.get("test", {}).get("mean"), "baseline": metrics["baseline"]})
        if scene.offset.any():  # a georeferenced scene, fitted about its cameras' centre: add this to go back
            run.record(fitted_about=scene.offset.tolist(), recentred=recentred_line(config.data, scene))
    return CompleteResult(Path(out), gaussians, baseline, metrics)


__all__ = ["CPU_BASELINE", "CompleteConfig", "StageFitConfig", "CompleteResult", "run_complete"]
