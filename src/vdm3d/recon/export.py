"""The run folder of a fit to posed photos, shared by ``vdm3d fit`` and ``vdm3d complete``.

``splats.ply`` (3DGS PLY); ``cameras/transforms.json`` with ``cameras/images/`` (the training views as
the fit saw them: downscaled, undistorted, so their cameras match them exactly; the folder alone shows
where the photos were taken in ``vdm3d view`` and opens as a nerfstudio scene of the inputs; views
larger than :data:`CAMERA_IMAGE_MAX_SIDE` are written smaller, with the intrinsics scaled to match);
``renders/`` and ``compare/`` (render | truth) for the held-out views; ``metrics.json``.

A georeferenced scene that :func:`~vdm3d.data.readers.read_scene` recentred (``Scene.offset``) is written in
the moved frame, where float32 (``splats.ply``'s numbers) places it finely; ``cameras/transforms.json`` then
records the move as nerfstudio's ``applied_transform`` (:func:`applied_transform`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from vdm3d.cameras.io import write_transforms_json
from vdm3d.data.readers import Scene
from vdm3d.io.images import write_image
from vdm3d.io.runs import atomic_write_json
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.ply import save_ply


CAMERA_IMAGE_MAX_SIDE = 800
"""Longest side of the copies in ``cameras/images/``: they show where the photos were taken, and a
12-megapixel copy of every training view would cost minutes and gigabytes for that."""


def camera_image_size(width: int, height: int, max_side: int = CAMERA_IMAGE_MAX_SIDE) -> tuple[int, int]:
    """``(width, height)`` of a view's copy in ``cameras/images/``: as is, or shrunk to ``max_side``."""
    if max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def applied_transform(scene: Scene) -> dict | None:
    """``cameras/transforms.json``'s record of a recentred scene (:attr:`~vdm3d.data.readers.Scene.offset`):
    nerfstudio's ``applied_transform``, the 3x4 matrix that took the file's world to the one written (here a
    translation by ``-offset``), as ``ns-process-data`` records its own change of axes. None when not
    moved."""
    if not scene.offset.any():
        return None
    matrix = np.eye(4)[:3]
    matrix[:, 3] = -np.asarray(scene.offset, np.float64)
    return {"top": {"applied_transform": matrix.tolist()}}


def write_fit(folder: Path, gaussians: Gaussians, scene: Scene, metrics: dict, renders: torch.Tensor | None,
              progress: Callable[[int], None] | None = None, max_side: int = CAMERA_IMAGE_MAX_SIDE) -> None:
    """Write the fit's files (see the module docstring) into ``folder``; ``progress(1)`` after each image."""
    save_ply(folder / "splats.ply", gaussians)
    images = [f"images/{Path(name).stem}.png" for name in scene.train_names]
    cameras = scene.train.cameras
    size = camera_image_size(cameras.width, cameras.height, max_side)
    for name, image in zip(images, scene.train.images):
        if size != (cameras.width, cameras.height):  # area filter, as the reader's --downscale
            image = torch.from_numpy(cv2.resize(np.ascontiguousarray(image.numpy()), size, interpolation=cv2.INTER_AREA))
        write_image(folder / "cameras" / name, image)
        if progress is not None:
            progress(1)
    if size != (cameras.width, cameras.height):
        cameras = cameras.resize(*size)
    write_transforms_json(folder / "cameras" / "transforms.json", cameras, images,
                          extras=applied_transform(scene))
    if renders is not None:
        for name, pred, gt in zip(scene.test_names, renders, scene.test.images):
            stem = Path(name).stem
            write_image(folder / "renders" / f"{stem}.png", pred)
            write_image(folder / "compare" / f"{stem}.png", torch.cat([pred, gt], 1))  # render | truth
            if progress is not None:
                progress(1)
    atomic_write_json(folder / "metrics.json", metrics)
