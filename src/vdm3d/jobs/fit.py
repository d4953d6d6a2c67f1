"""``vdm3d fit``: plain 3D Gaussian splatting from posed photos, the baseline every job builds on.

Stages, top to bottom: :func:`load_scene` (LLFF / COLMAP / transforms.json, train/test split,
downscale) -> :func:`initialize` (COLMAP points, or random in the frusta) -> :func:`fit`
(checkpoints in the run folder) -> :func:`evaluate`
(renders of the held-out views, PSNR/SSIM) -> :func:`export` (``splats.ply``, the training views with their
cameras in ``cameras/``, ``renders/``, ``compare/`` with render | ground truth side by side, ``metrics.json``:
:func:`vdm3d.recon.export.write_fit`). The initialize and fit stages
are the shared baseline of :mod:`vdm3d.recon.baseline`, which other jobs use without importing this one.

Default (:data:`CPU_FIT`): 12000 steps on random 128-pixel patches, SH degree 1, at most 100k
Gaussians. On LLFF fern (17 training views of 504x378) the held-out PSNR passes NeRF's 25.17 dB
after 4000 steps / 220 CPU-seconds of fitting and ends at 26.72 dB / SSIM 0.873 after 752 CPU-seconds
(``benchmarks/fit_curve.py``; docs/speed.md has the curve); the previous default (3000 steps, 40k
Gaussians) ended at 24.28 dB.

Everything is written through :class:`vdm3d.io.runs.RunFolder`: a crash leaves nothing but the
partial folder with its checkpoints, which ``--resume`` continues.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from pathlib import Path
from typing import Annotated, Callable, Literal

import torch
import tyro

from vdm3d.data.readers import Scene, Split, read_scene, recentred_line
from vdm3d.io.progress import StepProgress
from vdm3d.io.runs import RunFolder, resume_target
from vdm3d.jobs import job_entry
from vdm3d.models.hub.memory import available_memory
from vdm3d.options import Range
from vdm3d.errors import ConfigError
from vdm3d.recon.baseline import fit_in_run, initialize as initialize_baseline, initialize_from_ply
from vdm3d.recon.evaluate import render_and_score, views_per_chunk
from vdm3d.recon.export import write_fit
from vdm3d.recon.trainer import FitConfig, FitProgress
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.strategy import DensifyPolicy

# CPU default: fern (17 views of 504x378) within 20 minutes on 2 cores. Random 128-pixel patches keep
# a step cheap; the Gaussian budget bounds the cost of the late steps. The schedule is the earlier
# 3000-step one stretched 4x (SH warm-up, densification stop) with a 100k budget instead of 40k: the
# measured curve (docs/speed.md) passes 25.2 dB on fern's held-out views where the old one ended at 24.3.
CPU_FIT = FitConfig(
    steps=12000, patch_size=128, sh_degree=1, sh_warmup_every=2000, checkpoint_every=250,
    densify=DensifyPolicy(refine_start=200, refine_stop=9600, refine_every=100, reset_every=0,
                          max_gaussians=100_000),
)


@dataclasses.dataclass(frozen=True)
class FitJobConfig:
    """Fit Gaussian splats to posed photos and score them on held-out views."""

    data: tyro.conf.Positional[Path]
    """Scene folder: LLFF (poses_bounds.npy), COLMAP (sparse/0) or transforms.json."""
    out: Path | None = None
    """Output run folder (default: runs/fit/<scene name>)."""
    resume: Path | None = None
    """Continue the interrupted run in this output folder from its last checkpoint."""
    overwrite: bool = False
    """Replace an existing output folder."""
    downscale: Annotated[int, Range(1)] = 1
    """Divide the image sides by this factor."""
    split: Annotated[Split, tyro.conf.OmitArgPrefixes] = Split()
    init: Literal["points", "random"] = "points"
    """Start from the scene's sparse points (random when it has none) or from random points."""
    init_ply: Path | None = None
    """Start from this PLY instead: another run's splats.ply (its Gaussians as they are, to continue them) or a
    point cloud (its points and colours, as sparse points). Held-out scores are then only as independent as
    that file: an object run's splats were fitted to every orbit frame."""
    init_points_from: Literal["all", "train"] = "all"
    """Use every sparse point, or only those seen by two or more training views (honest sparse-view init)."""
    max_init_points: Annotated[int, Range(1)] = 100_000
    """Subsample larger point clouds to this many Gaussians."""
    random_points: Annotated[int, Range(1)] = 20_000
    """Number of Gaussians of a random initialization."""
    fit: Annotated[FitConfig, tyro.conf.OmitArgPrefixes] = CPU_FIT
    eval_background: Literal["black", "white"] = "black"
    """Background of the held-out renders."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`run_fit` produced (the files are in ``out``)."""

    out: Path
    """the run folder: ``splats.ply``, ``metrics.json``, ``manifest.json``, ``cameras/``, ``renders/``,
    ``compare/``"""
    gaussians: Gaussians
    """the fitted splats (as ``splats.ply``)"""
    metrics: dict
    """as ``metrics.json``: ``train`` (mean PSNR/SSIM), ``test`` (``views`` and their ``mean``; absent without
    held-out views), sizes, step count and timings"""


# -- memory --------------------------------------------------------------------------------------
# Bytes a fit holds per pixel of its views (float RGB, train and held-out: 12 B) and per pixel of one
# render-and-score chunk (colour, depth, alpha, the rasterizer's buffers, SSIM's filtered copies), plus the
# process itself (torch, the Gaussians): the estimate behind the warning, calibrated on fern at 12 MP.
_BYTES_PER_VIEW_PIXEL = 12
_BYTES_PER_CHUNK_PIXEL = 250
_BASE_BYTES = 1.5e9


def memory_estimate(views: int, width: int, height: int) -> float:
    """Bytes a fit of ``views`` photos of ``width x height`` needs, roughly (an estimate, not a bound)."""
    chunk = views_per_chunk(width, height) * width * height
    return views * width * height * _BYTES_PER_VIEW_PIXEL + chunk * _BYTES_PER_CHUNK_PIXEL + _BASE_BYTES


def memory_warning(views: int, width: int, height: int, downscale: int, available: int | None) -> str | None:
    """One line when the views would need more memory than is available, with the ``--downscale`` that fits."""
    need = memory_estimate(views, width, height)
    if available is None or need <= available:
        return None
    full_w, full_h = width * downscale, height * downscale
    suggest = downscale * 2
    while suggest < 64 and memory_estimate(views, round(full_w / suggest), round(full_h / suggest)) > 0.8 * available:
        suggest *= 2
    fits = memory_estimate(views, round(full_w / suggest), round(full_h / suggest))
    return (f"warning: {views} views at {width}x{height} need about {need / 1e9:.1f} GB of memory (an estimate), more "
            f"than the {available / 1e9:.1f} GB available; --downscale {suggest} needs about {fits / 1e9:.1f} GB.")


def print_line(message: str) -> None:
    """What ``vdm3d fit`` passes as ``say``: a line on stdout with the jobs' other lines (stderr carries the
    one-sentence errors)."""
    print(message, flush=True)


Say = Callable[[str], None]


def _announce(views: int, width: int, height: int, downscale: int, say: Say | None) -> None:
    """Say what is loaded; the memory warning reaches a caller without ``say`` as a Python warning, since a
    script that runs out of memory otherwise learns nothing of the ``--downscale`` that fits."""
    warning = memory_warning(views, width, height, downscale, available_memory("cpu"))
    if say is None:
        if warning:
            warnings.warn(warning.removeprefix("warning: "), stacklevel=4)
        return
    say(f"loading {views} views at {width}x{height}")
    if warning:
        say(warning)


def _progress(desc: str, views: int, width: int, height: int, shown: bool = True) -> StepProgress | None:
    """Progress lines (on stderr) for a stage over ``views`` images of ``width x height``, when it takes a
    while (over :data:`PROGRESS_PIXELS` pixels in all) and is ``shown``; None for a small scene, which is done
    in seconds."""
    large = views * width * height > PROGRESS_PIXELS
    return StepProgress(views, desc, unit="view") if shown and large else None


PROGRESS_PIXELS = 20_000_000  # fern at --downscale 8 (17 views of 504x378): 3.2 M; at 12 MP / 2: 60 M


# -- stages --------------------------------------------------------------------------------------
def load_scene(config: FitJobConfig, say: Say | None = None) -> Scene:
    """The scene's views and points; ``say`` hears what is loaded (and a memory warning) before the images."""
    return read_scene(config.data, config.split, downscale=config.downscale, points_from=config.init_points_from,
                      before_images=lambda n, w, h: _announce(n, w, h, config.downscale, say))


def initialize(scene: Scene, config: FitJobConfig) -> Gaussians:
    if config.init_ply is not None:
        return initialize_from_ply(config.init_ply, max_points=config.max_init_points, sh_degree=config.fit.sh_degree,
                                   seed=config.fit.seed, offset=scene.offset)
    return initialize_baseline(scene.train.cameras, scene.points_world, scene.points_rgb, mode=config.init,
                               max_points=config.max_init_points, random_points=config.random_points,
                               sh_degree=config.fit.sh_degree, seed=config.fit.seed)


def fit(scene: Scene, init: Gaussians, config: FitJobConfig, run: RunFolder,
        progress: Callable[[FitProgress], None] | None = None) -> Gaussians:
    return fit_in_run(scene.train, init, config.fit, run, progress=progress)


def evaluate(gaussians: Gaussians, scene: Scene, config: FitJobConfig, shown: bool = True
             ) -> tuple[dict, torch.Tensor | None]:
    """Scores of the training views (means only) and the held-out views (per view), rendered and scored
    a chunk at a time; returns them and the held-out renders. ``shown``: progress lines for a large scene."""
    bg = torch.full((3,), 1.0 if config.eval_background == "white" else 0.0)
    n_test = 0 if scene.test is None else len(scene.test.cameras)
    bar = _progress("evaluate", len(scene.train.cameras) + n_test, scene.train.width, scene.train.height,
                    shown)
    step = bar.update if bar is not None else None
    try:
        train, _, _ = render_and_score(gaussians, scene.train, scene.train_names, background=bg,
                                       backend=config.fit.backend, progress=step)
        metrics, renders = {"train": train["mean"]}, None
        if scene.test is not None:
            metrics["test"], renders, _ = render_and_score(gaussians, scene.test, scene.test_names, background=bg,
                                                           backend=config.fit.backend, keep=True, progress=step)
    finally:
        if bar is not None:
            bar.close()
    return metrics, renders


def export(run: RunFolder, gaussians: Gaussians, scene: Scene, metrics: dict, renders: torch.Tensor | None,
           shown: bool = True) -> None:
    n_test = 0 if renders is None else len(renders)
    bar = _progress("export", len(scene.train.cameras) + n_test, scene.train.width, scene.train.height, shown)
    try:
        write_fit(run.path, gaussians, scene, metrics, renders, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def check_config(config: FitJobConfig) -> None:
    if not config.data.exists():  # named here: a run folder still being written is said to be
        from vdm3d.io.runs import missing_path_error

        raise missing_path_error(config.data, "pass a scene folder")
    if config.init_ply is None:
        return
    if config.init == "random":
        raise ConfigError("--init-ply starts from a file's points or splats and --init random from random points; "
                          "give one of them.")
    from vdm3d.recon.baseline import init_ply_points

    init_ply_points(config.init_ply)  # a missing, unreadable or empty file is refused before the run folder is made


@job_entry(check_config)
def run_fit(config: FitJobConfig, progress: Callable[[FitProgress], None] | None = None, *,
            say: Say | None = None) -> FitResult:
    """Run every stage inside a run folder; returns where the results are and the scores.

    ``config`` is checked first (:func:`vdm3d.jobs.job_entry`): a bad value raises
    :class:`~vdm3d.errors.ConfigError` before anything is written. ``progress`` is called after every
    fitting step with a :class:`~vdm3d.recon.trainer.FitProgress`; ``say`` hears the job's lines (what
    it loads, a memory warning) and turns on the progress lines (stderr) of a large scene's evaluation
    and export; ``vdm3d fit`` passes :func:`print_line`. Without ``say`` nothing is printed.
    """
    out = resume_target(config.out, config.resume, Path("runs") / "fit" / config.data.resolve().name)
    inputs = [config.data, *([config.init_ply] if config.init_ply is not None else [])]
    with RunFolder(out, config=config, seed=config.fit.seed, inputs=inputs, overwrite=config.overwrite,
                   resume=config.resume is not None,
                   resume_flag=f"--resume {out}") as run:
        start, cpu_start = time.time(), time.process_time()
        scene = load_scene(config, say)
        if say is not None and (line := recentred_line(config.data, scene)) is not None:
            say(line)
        init = initialize(scene, config)
        gaussians = fit(scene, init, config, run, progress)
        fit_seconds, fit_cpu = time.time() - start, time.process_time() - cpu_start
        metrics, renders = evaluate(gaussians, scene, config, shown=say is not None)
        metrics.update({"num_gaussians": len(gaussians), "num_init_gaussians": len(init),
                        "steps": config.fit.steps, "train_views": list(scene.train_indices),
                        "test_views": list(scene.test_indices), "image_size": [scene.train.width, scene.train.height],
                        "fit_seconds": round(fit_seconds, 1), "fit_cpu_seconds": round(fit_cpu, 1),
                        "seconds": round(time.time() - start, 1),
                        "cpu_seconds": round(time.process_time() - cpu_start, 1)})
        export(run, gaussians, scene, metrics, renders, shown=say is not None)
        shutil.rmtree(run.path / "checkpoints", ignore_errors=True)  # finished: nothing left to resume
        run.record(metrics={"test": metrics.get("test", {}).get("mean"), "train": metrics["train"]},
                   undistorted=list(scene.undistorted))  # lens distortion removed from the photos, if any
        if scene.offset.any():  # a georeferenced scene, fitted about its cameras' centre: add this to go back
            run.record(fitted_about=scene.offset.tolist())
    return FitResult(Path(out), gaussians, metrics)
