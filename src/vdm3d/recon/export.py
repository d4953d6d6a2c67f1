"""The run folder of a fit to posed photos, shared by ``vdm3d fit`` and ``vdm3d complete``.

``splats.ply`` (3DGS PLY); ``cameras/transforms.json`` with ``cameras/images/`` (the training views as
the fit saw them: downscaled, undistorted, so their cameras match them exactly; the folder alone shows
where the photos were taken in ``vdm3d view`` and opens as a nerfstudio scene of the inputs);
``renders/`` and ``compare/`` (render | truth) for the held-out views; ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vdm3d.cameras.io import write_transforms_json
from vdm3d.data.readers import Scene
from vdm3d.io.images import write_image
from vdm3d.io.runs import atomic_write_json
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.ply import save_ply


def write_fit(folder: Path, gaussians: Gaussians, scene: Scene, metrics: dict, renders: torch.Tensor | None) -> None:
    """Write the fit's files (see the module docstring) into ``folder``."""
    save_ply(folder / "splats.ply", gaussians)
    images = [f"images/{Path(name).stem}.png" for name in scene.train_names]
    for name, image in zip(images, scene.train.images):
        write_image(folder / "cameras" / name, image)
    write_transforms_json(folder / "cameras" / "transforms.json", scene.train.cameras, images)
    if renders is not None:
        for name, pred, gt in zip(scene.test_names, renders, scene.test.images):
            stem = Path(name).stem
            write_image(folder / "renders" / f"{stem}.png", pred)
            write_image(folder / "compare" / f"{stem}.png", torch.cat([pred, gt], 1))  # render | truth
    atomic_write_json(folder / "metrics.json", metrics)
