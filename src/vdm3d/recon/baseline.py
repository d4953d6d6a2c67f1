"""The baseline stages every scene job starts from: initialize Gaussians for posed photos, then fit
them inside a run folder that checkpoints and resumes.

``vdm3d fit`` is these two stages plus scoring; ``complete`` fits the same baseline before it plans
its pseudo views, and ``explore`` seeds its cache the same way, so the stages live here rather than
in a job (no job imports another).

* :func:`initialize`: the scene's sparse points (subsampled to a budget), or, when there are none or
  ``mode="random"``, random Gaussians in the cameras' frusta between a near and a far depth taken
  from the points the cameras see (the 1 % and 99 % depth quantiles), or from the rig's spread when
  there are no points at all.
* :func:`fit_in_run`: :func:`~vdm3d.recon.trainer.fit_gaussians` whose checkpoints go to the run
  folder, continuing from the last one when the run folder is resuming.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.io.runs import RunFolder, holds_state
from vdm3d.recon.checkpoint import load_state, save_state
from vdm3d.recon.init import init_from_points, init_random
from vdm3d.recon.trainer import FitConfig, FitProgress, LossTerm, ViewPool, fit_gaussians
from vdm3d.splat.gaussians import Gaussians
from vdm3d.views import Views


def depth_range(cameras: Cameras, points_world: Float[Tensor, "P 3"] | None) -> tuple[float, float]:
    """``(near, far)``: the 1 % and 99 % quantiles of the depths of the points in front of the
    cameras, or ``(0.1, 10)`` times the rig's radius (at least 1) when there are no points."""
    cams = cameras.flatten()
    if points_world is not None and len(points_world) > 0:
        _, z = cams.project(points_world.to(cams.dtype).expand(len(cams), -1, -1))
        z = z[z > 0]
        if len(z) > 1:
            return float(z.quantile(0.01)), float(z.quantile(0.99))
    spread = float((cams.centers - cams.centers.mean(0)).norm(dim=-1).max())
    return 0.1 * max(spread, 1.0), 10 * max(spread, 1.0)


def initialize(cameras: Cameras, points_world: Float[Tensor, "P 3"] | None = None,
               points_rgb: Float[Tensor, "P 3"] | None = None, *, mode: Literal["points", "random"] = "points",
               max_points: int = 100_000, random_points: int = 20_000, sh_degree: int = 3,
               seed: int = 0) -> Gaussians:
    """Starting Gaussians for ``cameras`` (the training views): from the points, or random in the frusta."""
    generator = torch.Generator().manual_seed(seed)
    if mode == "points" and points_world is not None and points_rgb is not None:
        return init_from_points(points_world, points_rgb, max_points=max_points, sh_degree=sh_degree,
                                generator=generator)
    near, far = depth_range(cameras, points_world)
    return init_random(cameras, random_points, near, far, sh_degree=sh_degree, generator=generator)


def init_ply_points(path: Path) -> tuple[Tensor, Tensor]:
    """The points (float64) and colours of the PLY ``--init-ply`` names (:func:`~vdm3d.splat.ply.load_points`),
    refusing a file with no point to start from (no vertex, or none with finite x, y, z). This is the check
    before the run, so the points it leaves out are not said here: :func:`initialize_from_ply` says so once."""
    from vdm3d.splat.ply import load_points

    points, rgb = load_points(path, say=lambda line: None)
    _refuse_empty(points, path)
    return points, rgb


def _refuse_empty(points: Tensor, path: Path) -> None:
    from vdm3d.errors import InputError

    if len(points) == 0:
        raise InputError(path=path, field="element 'vertex'", problem="has no point with finite x, y and z",
                         fix="pass a PLY with points, or leave out --init-ply to start from the scene's points")


def initialize_from_ply(path: Path, *, max_points: int = 100_000, sh_degree: int = 3, seed: int = 0,
                        offset: np.ndarray | None = None) -> Gaussians:
    """Starting Gaussians from a PLY file: a 3DGS file's Gaussians as they are (shape, opacity and colour; SH
    truncated or zero-padded to ``sh_degree``), so a fit continues another run's splats, or a point cloud's
    points (at most ``max_points``, with their colours) as :func:`init_from_points` starts sparse points.

    ``offset`` is what the scene reader subtracted from a georeferenced scene (``Scene.offset``): a file whose
    points lie nearer that point than the origin is in the scene file's world and is moved by it too (in
    float64, before float32); one near the origin (a run's splats.ply of that scene, written in the moved
    frame) is taken as it is."""
    from vdm3d.splat.ply import load_start

    points, rgb, splats = load_start(path)
    _refuse_empty(points, path)
    shift = np.zeros(3)
    if offset is not None and np.any(offset):
        centre = points.mean(0).numpy()
        if np.linalg.norm(centre - offset) < np.linalg.norm(centre):
            shift = np.asarray(offset, np.float64)
    if splats is not None:
        g = splats.with_sh_degree(sh_degree)
        # the float64 points (load_ply's are float32: 0.5 apart 5e6 out); load_ply refuses non-finite ones
        return dataclasses.replace(g, means=(points - torch.from_numpy(shift)).float())
    return init_from_points(points - torch.from_numpy(shift), rgb, max_points=max_points, sh_degree=sh_degree,
                            generator=torch.Generator().manual_seed(seed))


def fit_in_run(views: Views | Sequence[Views], init: Gaussians, config: FitConfig, run: RunFolder, *,
               progress: Callable[[FitProgress], None] | None = None, pools: Sequence[ViewPool] = (),
               extra_losses: Sequence[LossTerm] = (),
               between_steps: Callable[[int, Gaussians], Sequence[ViewPool] | None] | None = None,
               perceptual: Callable[[Tensor, Tensor], Tensor] | None = None) -> Gaussians:
    """Fit with checkpoints in ``run`` (every ``config.checkpoint_every`` steps); a resuming run
    continues from its last checkpoint."""
    # a run whose first checkpoint did not get written (a full disk) resumes from the start, as every other
    # job's does: refusing it left no way on but --overwrite, since the same command without --resume is
    # refused while its partial folder is there
    ckpt = run.path / "checkpoints"
    state = load_state(ckpt) if run.resuming and holds_state(ckpt) else None
    return fit_gaussians(views, init, config, perceptual=perceptual, pools=pools, extra_losses=extra_losses,
                         between_steps=between_steps, progress=progress, state=state,
                         on_checkpoint=lambda s: save_state(run.checkpoint_dir, s))
