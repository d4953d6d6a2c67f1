"""Per-view depth maps that come with a scene (``depth_file_path`` in ``transforms.json``).

The procedural worlds (:mod:`vdm3d.data.procedural.dataset`) and nerfstudio captures with a depth
sensor name a depth file per frame: ``.npy`` float32 z-depth, or a 16-bit PNG in millimetres (read by
:func:`vdm3d.io.images.read_depth`). :func:`read_train_depths` returns those of a scene's training
views at the size of its images (nearest-neighbour, so no depth is blended across an edge), for
jobs that start from the training views' own geometry.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.io_transforms import read_transforms_json
from vdm3d.data.readers import Scene
from vdm3d.errors import InputError
from vdm3d.io.images import read_depth


def read_train_depths(root: str | Path, scene: Scene) -> Float[Tensor, "N H W"] | None:
    """Depths ``[N, H, W]`` of the training views (0 = unknown), or None when the scene has none."""
    root = Path(root)
    if scene.format != "transforms" or not scene.train_indices:
        return None
    path = root if root.is_file() else root / "transforms.json"
    if not path.is_file():
        return None
    _, _, extras = read_transforms_json(path)
    frames = extras.get("frames", [])
    names = [frames[i].get("depth_file_path") if i < len(frames) else None for i in scene.train_indices]
    if not all(names):
        return None
    h, w = scene.train.height, scene.train.width
    out = []
    for name in names:
        file = path.parent / str(name)
        if not file.is_file():
            raise InputError(path=path, field=f"depth_file_path {name!r}", problem="names no file",
                             fix="fix the path (relative to the JSON file) or remove the field")
        d = read_depth(file).numpy().astype(np.float32)
        d = np.where(np.isfinite(d), d, 0.0).astype(np.float32)
        if d.shape != (h, w):
            d = cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)
        out.append(torch.from_numpy(d))
    return torch.stack(out)
