"""``vdm3d complete --method v3d``: V3D's scene mode, a video along a path from the posed photos'
reprojected features, then 3DGS on the photos plus the generated frames.

Stages, top to bottom (the shared ones from :mod:`vdm3d.jobs.complete`)::

    load_scene -> initialize -> fit_baseline (plain 3DGS, frozen; gives near/far and the planner's holes)
      -> choose_paths (between the input cameras | the planner's | --trajectory FILE, in clips)
      -> generate (one pass per clip, conditioned on every input view's reprojected features)
      -> fit (from the baseline: input views at full weight, generated frames at `pseudo_weight`)
      -> evaluate -> export

The fit continues the baseline for ``--distill.steps`` steps (as many as the guidedvd method and the
plain-fit comparison), with the same learning rates and density control (``--distill.fit``).
Outputs are those of the guidedvd method: ``splats.ply``, ``baseline.ply``, ``renders/``,
``compare/``, ``metrics.json``, ``clips/NNN.mp4`` with ``clips/NNN.json``, ``trajectories/``,
``cameras/`` (the training views) and the manifest; ``--resume`` continues after the baseline, each finished clip and each fit checkpoint.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

import torch

from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.trajectory_file import load_trajectory, save_trajectory
from vdm3d.data.readers import Scene, recentred_line
from vdm3d.errors import ConfigError
from vdm3d.geometry.reproject import depth_range
from vdm3d.io.progress import StageClock
from vdm3d.io.runs import RunFolder, holds_state
from vdm3d.io.video import write_video
from vdm3d.jobs.complete import (CompleteConfig, CompleteResult, evaluate, export, fit_baseline, initialize,
                                 load_scene, run_folder, save_paths)
from vdm3d.jobs.complete_distill import _load_clip, _save_clip
from vdm3d.jobs import job_entry
from vdm3d.jobs.complete_v3d_generate import between_paths, generate_v3d_clip
from vdm3d.models.registry import model_files
from vdm3d.options import derived_seed
from vdm3d.recon.checkpoint import load_state, save_state
from vdm3d.recon.planning import plan_paths
from vdm3d.recon.render import render_views
from vdm3d.recon.trainer import FitProgress, LossWeights, ViewPool, fit_gaussians
from vdm3d.splat.gaussians import Gaussians
from vdm3d.views import Views


def load_model(name: str):
    """The embedded V3D scene model (only it has the reprojected-feature condition): a name, or the ``.json``
    model file a `vdm3d train v3d` run wrote."""
    from vdm3d.models.tiny import load_tiny, load_tiny_file

    model = load_tiny_file(name) if str(name).endswith(".json") else load_tiny(name)
    if not hasattr(model.denoiser, "scene_condition"):
        raise ConfigError(f"complete: --v3d.model {name!r} has no reprojected-feature condition; use v3d_scene "
                          "(or a model trained with `vdm3d train v3d`).")
    return model


def scene_depths(baseline: Gaussians, scene: Scene) -> tuple[tuple[float, float], float]:
    """Near/far planes and the median surface depth, from the baseline's depth at the input views."""
    r = render_views(baseline, scene.train.cameras)
    z = (r.depths / r.alphas.clamp_min(1e-6)).where(r.alphas >= 0.5, torch.zeros_like(r.depths))
    surface = z[z > 0]
    median = float(surface.median()) if surface.numel() else 1.0
    return depth_range(z), median


def chunk_path(path: Trajectory, frames: int) -> list[Trajectory]:
    """A long path as clips of at most ``frames`` cameras, consecutive clips sharing their end frame."""
    n = len(path)
    if n < 2:
        raise ConfigError("complete: the --trajectory file has one camera; give at least 2.")
    starts = list(range(0, n - 1, frames - 1))
    return [Trajectory(path.cameras[s:min(s + frames, n)], path.fps, {**path.provenance, "chunk": k})
            for k, s in enumerate(starts)]


def choose_paths(baseline: Gaussians, scene: Scene, config: CompleteConfig, frames: int,
                 path: Trajectory | None = None) -> list[Trajectory]:
    """The clips to generate: along ``path`` (``--trajectory``), between the input cameras, or the planner's;
    each with ``provenance["view"]``, the input nearest its first frame (the clip's reference)."""
    cams = scene.train.cameras
    if path is not None:
        clips = chunk_path(path.with_cameras(path.cameras.resize(cams.width, cams.height).to(cams.dtype)), frames)
        for k, clip in enumerate(clips):
            first = clip.cameras.centers[0]
            view = int((cams.centers - first).norm(dim=-1).argmin())
            clips[k] = dataclasses.replace(clip, provenance={**clip.provenance, "view": view})
    elif config.v3d.paths == "between":
        clips = between_paths(cams, frames)
    else:
        clips = plan_paths(baseline, cams, frames, config.plan)
    return clips[:config.v3d.max_clips]


def generate(model, scene: Scene, clips: list[Trajectory], ranges: tuple[float, float], median: float,
             config: CompleteConfig, run: RunFolder | None) -> Views:
    """Every clip in one pass each (checkpointed per clip); the generated frames as one Views."""
    out = []
    for k, clip in enumerate(clips):
        views = _load_clip(run, k) if run is not None else None
        if views is None:
            views, frames = generate_v3d_clip(model, scene.train, clip, int(clip.provenance["view"]), ranges, median,
                                              config.v3d, seed=derived_seed(config.seed, 1000, k))
            if run is not None:
                write_video(run.path / "clips" / f"{k:03d}.mp4", frames, fps=clip.fps)
                save_trajectory(run.path / "clips" / f"{k:03d}.json", clip)
                if views is not None:
                    _save_clip(run, k, views)
        if views is not None:
            out.append(views)
    if not out:
        raise ConfigError("complete: every frame of the chosen paths is an input view; give a --trajectory that "
                          "leaves the input cameras.")
    return Views.cat(out)


def fit_with_generated(scene: Scene, baseline: Gaussians, generated: Views, config: CompleteConfig,
                       run: RunFolder | None = None, progress: Callable[[FitProgress], None] | None = None) -> Gaussians:
    """Continue the baseline on the input views plus the generated frames (one per step, weighted lower)."""
    d = config.distill
    fit = dataclasses.replace(d.fit, steps=d.steps, seed=config.seed, checkpoint_every=d.generate_every)
    if config.v3d.hole_boost != 1.0:  # weigh the frames up where the baseline is empty
        alpha = render_views(baseline, generated.cameras).alphas.clamp(0, 1)
        generated = dataclasses.replace(generated, confidence=1 + (config.v3d.hole_boost - 1) * (1 - alpha))
    pool = ViewPool(generated.to(scene.train.images.dtype), loss=LossWeights(l1=1.0, perceptual=config.v3d.pseudo_perceptual),
                    weight=config.v3d.pseudo_weight)
    state = None
    if run is not None and run.resuming and holds_state(run.path / "checkpoints" / "v3d_fit"):
        state = load_state(run.path / "checkpoints" / "v3d_fit")
    on_checkpoint = None if run is None else (lambda s: save_state(run.checkpoint_dir / "v3d_fit", s))
    return fit_gaussians(scene.train, baseline, fit, pools=[pool], progress=progress, state=state,
                         on_checkpoint=on_checkpoint)


@job_entry(CompleteConfig.check)
def run_complete_v3d(config: CompleteConfig, progress: Callable[[str, FitProgress], None] | None = None,
                     model=None) -> CompleteResult:
    """Run every stage inside a run folder; returns where the results are and the scores.

    ``config`` is checked first (:func:`vdm3d.jobs.job_entry`). ``progress(stage, p)`` is called after every
    fitting step of the ``baseline`` and ``fit`` stages; nothing is printed."""
    if config.method != "v3d":  # the manifest would record the guided method for a V3D run
        raise ConfigError("complete: run_complete_v3d runs --method v3d; set method=\"v3d\" in the config, "
                          "or call vdm3d.jobs.complete.run_complete for --method guidedvd.")
    path = None
    if config.trajectory is not None:  # read before the run folder exists: a bad file leaves nothing behind
        if not config.trajectory.is_file():
            raise ConfigError(f"{config.trajectory}: --trajectory file not found; give a vdm3d trajectory JSON "
                              "(`vdm3d trajectory make` writes one).")
        path = load_trajectory(config.trajectory)
    out = run_folder(config)
    with RunFolder(out, config=config.recorded(), seed=config.seed,
                   inputs=[config.data, *model_files(config.depth, config.v3d.model)],
                   overwrite=config.overwrite,
                   resume=config.resume is not None,
                   resume_flag=f"--resume {out}") as run:
        clock = StageClock()
        scene, depths = load_scene(config)
        init = initialize(scene, depths, config)
        model = model if model is not None else load_model(config.v3d.model)
        clock.lap("load")

        baseline = fit_baseline(scene, init, config, run, None if progress is None else
                                (lambda p: progress("baseline", p)))
        clock.lap("baseline")

        ranges, median = scene_depths(baseline, scene)
        clips = choose_paths(baseline, scene, config, model.frames or 8, path)
        save_paths(run.path / "trajectories", clips)
        generated = generate(model, scene, clips, ranges, median, config, run)
        clock.lap("generate")

        gaussians = fit_with_generated(scene, baseline, generated, config, run,
                                       None if progress is None else (lambda p: progress("fit", p)))
        clock.lap("fit")

        metrics, renders = evaluate(gaussians, scene)
        base_metrics, _ = evaluate(baseline, scene)
        clock.lap("evaluate")
        metrics.update({"method": "v3d", "baseline": base_metrics.get("test", {}).get("mean"),
                        "num_gaussians": len(gaussians), "train_views": list(scene.train_indices),
                        "test_views": list(scene.test_indices), "image_size": [scene.train.width, scene.train.height],
                        "paths": len(clips), "generated_frames": len(generated), "depth_range": list(ranges),
                        "backbone": getattr(model, "name", config.v3d.model),
                        "seconds": {k: round(v, 1) for k, v in clock.timings.items()}})
        export(run, gaussians, scene, metrics, renders)
        shutil.rmtree(run.path / "checkpoints", ignore_errors=True)  # finished: nothing left to resume
        run.record(metrics={"test": metrics.get("test", {}).get("mean"), "baseline": metrics["baseline"]})
        if scene.offset.any():  # a georeferenced scene, fitted about its cameras' centre: add this to go back
            run.record(fitted_about=scene.offset.tolist(), recentred=recentred_line(config.data, scene))
    return CompleteResult(Path(out), gaussians, baseline, metrics)


__all__ = ["choose_paths", "chunk_path", "fit_with_generated", "generate", "load_model", "run_complete_v3d",
           "scene_depths"]
