"""`vdm3d train object-depth`: the object job's depth network, and its estimate of an object set's depth.

The object job carries its input into every orbit view by the input's depth
(:func:`vdm3d.geometry.inflate.depth_layers`). This network estimates that depth from the image alone,
as an object's relief about its centre in units of its silhouette's extent
(:func:`vdm3d.models.tiny.depth.relief_from_depth`), trained on the exact depth of the training objects'
views. ``vdm3d train orbit --depth-model`` uses :func:`estimated_object_depth` so that an orbit model
can be trained on the same estimate the job gives it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.models.tiny.checkpoint import save_model
from vdm3d.models.tiny.depth import DepthConfig, TinyDepth, depth_from_relief, object_depth, relief_from_depth
from vdm3d.options import Range
from vdm3d.train.datasets import ObjectSetConfig, load_object_depth, load_or_build, refuse_scored_split
from vdm3d.train.loop import LoopConfig, train
from vdm3d.train.run import card, training_folder


@torch.no_grad()
def estimated_object_depth(model: Path | str, objects: dict[str, np.ndarray], chunk: int = 256) -> np.ndarray:
    """An object-depth model's z-depth of every view of an object set, ``[N, V, H, W] float16`` (``inf`` off
    the silhouette found on white, as the orbit job finds its input's)."""
    from vdm3d.io.foreground import mask_from_background
    from vdm3d.models.tiny.checkpoint import load_model

    net, _ = load_model(model)
    net.float().eval()
    n, v, h = objects["rgb"].shape[:3]
    rgb = objects["rgb"].reshape(n * v, h, h, 3)
    c2w = torch.from_numpy(objects["c2w"].reshape(n * v, 4, 4)).float()
    K = torch.from_numpy(objects["K"]).float()
    out = np.empty((n * v, h, h), np.float16)
    for s in range(0, n * v, chunk):
        img = rgb[s:s + chunk].astype(np.float32) / 255
        alpha = torch.from_numpy(np.stack([mask_from_background(im, np.ones(3, np.float32)) for im in img]))
        cams = Cameras(K.expand(len(img), 3, 3), c2w[s:s + chunk], h, h)
        out[s:s + chunk] = object_depth(net, torch.from_numpy(img), alpha, cams).numpy()
    return out.reshape(n, v, h, h)


@dataclasses.dataclass(frozen=True)
class ObjectDepthTaskConfig:
    """Batches of the object-depth network."""

    batch: Annotated[int, Range(1)] = 16
    """images per step"""
    min_zoom: Annotated[float, Range(0.1, 1)] = 0.6
    """each image is shrunk about its centre by a factor in [min_zoom, 1] on white (the job recentres
    its input with a border, so its objects look smaller than the training renders)"""


def object_depth_batch(objects: dict[str, np.ndarray], cfg: ObjectDepthTaskConfig, rng: np.random.Generator
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Images ``[B, H, W, 3]`` on white, their masks and their relief targets (zoomed and flipped alike)."""
    n, v, h = objects["rgb"].shape[:3]
    i, j = rng.integers(n, size=cfg.batch), rng.integers(v, size=cfg.batch)
    rgb = torch.from_numpy(objects["rgb"][i, j]).float() / 255
    depth = torch.from_numpy(objects["depth"][i, j].astype(np.float32))
    alpha = torch.isfinite(depth).float()
    cams = Cameras(torch.from_numpy(objects["K"]).float().expand(cfg.batch, 3, 3),
                   torch.from_numpy(objects["c2w"][i, j]).float(), h, h)
    relief = relief_from_depth(depth, alpha, cams)
    zoom = torch.from_numpy(rng.uniform(cfg.min_zoom, 1.0, cfg.batch)).float()
    theta = torch.zeros(cfg.batch, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom  # output pixel -> input pixel: shrink about the centre
    flip = torch.from_numpy(rng.random(cfg.batch) < 0.5)
    theta[flip, 0, 0] *= -1
    grid = F.affine_grid(theta, [cfg.batch, 1, h, h], align_corners=False)
    stack = torch.cat([rgb - 1, alpha[..., None], relief[..., None]], -1).permute(0, 3, 1, 2)  # white -> 0
    out = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False).permute(0, 2, 3, 1)
    inside = (out[..., 3] > 0.5).float()
    # relief is measured in object extents: it does not change with the zoom (the extent shrinks with it)
    return out[..., :3] + 1, inside, out[..., 4] / out[..., 3].clamp_min(1e-3) * inside


def object_depth_loss(net: TinyDepth, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Mean absolute relief error inside the silhouette."""
    images, inside, relief = batch
    pred = net.log_depth(images)  # the raw output map, read as relief
    return ((pred - relief).abs() * inside).sum() / inside.sum().clamp_min(1)


@torch.no_grad()
def object_depth_metrics(net: TinyDepth, objects: dict[str, np.ndarray], view: int = 0) -> dict[str, float]:
    """Depth error of ``view`` of every object (AbsRel of the z-depth inside the true silhouette, metric: no
    scaling) beside two guesses without a network: the plane through the object's centre and the front of
    the balloon inflated from the silhouette (:func:`vdm3d.geometry.inflate.inflated_depth`)."""
    from vdm3d.geometry.inflate import inflated_depth

    n, _, h = objects["rgb"].shape[:3]
    rgb = torch.from_numpy(objects["rgb"][:, view]).float() / 255
    depth = torch.from_numpy(objects["depth"][:, view].astype(np.float32))
    alpha = torch.isfinite(depth).float()
    cams = Cameras(torch.from_numpy(objects["K"]).float().expand(n, 3, 3), torch.from_numpy(objects["c2w"][:, view]).float(), h, h)
    pred = depth_from_relief(net.log_depth(rgb), alpha, cams)
    plane = depth_from_relief(torch.zeros_like(depth), alpha, cams)
    balloon = torch.stack([inflated_depth(a, cams[k])[0] for k, a in enumerate(alpha)])
    inside = alpha > 0.5

    def abs_rel(z: Tensor) -> float:
        return round(float(((z - depth).abs() / depth)[inside].mean()), 4)
    return {"abs_rel": abs_rel(pred), "abs_rel_plane": abs_rel(plane), "abs_rel_balloon": abs_rel(balloon),
            "images": n}


def train_object_depth(out: Path, objects: ObjectSetConfig = ObjectSetConfig(count=1000),
                       model: DepthConfig = DepthConfig(), task: ObjectDepthTaskConfig = ObjectDepthTaskConfig(),
                       loop: LoopConfig = LoopConfig(steps=3000, lr=1e-3, warmup=50),
                       validation: Annotated[int, Range(0)] = 100, name: str = "object_depth",
                       resume: bool = False, overwrite: bool = False) -> dict:
    """Train the object job's depth network: an object image's relief (z-depth about the object's centre,
    in units of its silhouette's extent, :func:`vdm3d.models.tiny.depth.relief_from_depth`) from the exact
    depth of the training objects' views. The job carries its input into the orbit views with it
    (:func:`vdm3d.geometry.inflate.depth_layers`).

    Args:
        out: run folder (model files, checkpoints, manifest.json).
        objects: the object-orbit training set (training seeds only).
        model: network shape (the tiny depth network's).
        task: batch and augmentation settings.
        loop: optimization settings (steps, lr, EMA, checkpoints, time limit).
        validation: validation objects (seeds from 2,000,000) scored at the end, on their first view.
        name: file name of the model.
        resume: continue a stopped run from its checkpoint.
        overwrite: replace an existing ``out``.
    """
    settings = locals().copy()  # the command's options only: no clock, no imported functions
    refuse_scored_split("--objects.split", objects.split,  # its validation score is on the val seeds
                        scored=("heldout", "val") if validation else ("heldout",))
    start = time.time()
    with training_folder(out, settings, loop, resume, overwrite) as run:
        data = {**load_or_build(objects), "depth": load_object_depth(objects)}
        torch.manual_seed(loop.seed)
        net = TinyDepth(model)
        summary = train(net, lambda m, rng, gen, dev: (object_depth_loss(m, tuple(t.to(dev) for t in
                                                                                   object_depth_batch(data, task, rng))), {}),
                        loop, run.checkpoint_dir, resume=run.resuming)
        val = dataclasses.replace(objects, count=validation, split="val")
        metrics = object_depth_metrics(net.eval(), {**load_or_build(val), "depth": load_object_depth(val)}) if validation else {}
        model_card = card(summary, {"objects": dataclasses.asdict(objects), "task": dataclasses.asdict(task),
                                    "stored": "float16"}, loop.seed, {}, start, resume)
        model_card["validation"] = metrics  # seeds from 2,000,000; held-out numbers come from `vdm3d eval object`
        save_model(run.path, name, "depth", net.half(), model_card, extra={"output": "relief"})
        run.record(metrics=metrics, steps=summary["steps"])
    print(f"validation depth AbsRel {metrics.get('abs_rel')} (plane {metrics.get('abs_rel_plane')}, balloon "
          f"{metrics.get('abs_rel_balloon')}); model in {out}/{name}.json (use it with `vdm3d object "
          f"--object-depth-model {out}/{name}.json`; measure it with `vdm3d eval object --object-depth-model ...`)")
    return metrics
