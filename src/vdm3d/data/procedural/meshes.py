"""Real textured meshes (OBJ with or without MTL, glTF/GLB, PLY, ...) as procedural-style scenes.

The loader is :func:`vdm3d.geometry.mesh_scene.load_mesh_scene`; :func:`load_mesh` keeps the data
API's default of a y-up file (the real meshes in ``../shared/data/meshes`` are OBJ and GLB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from vdm3d.geometry.mesh_scene import WHITE, Light, MeshScene, load_mesh_scene


def load_mesh(path: str | Path, *, texture: str | Path | np.ndarray | None = None,
              up: Literal["y", "z", "auto"] = "y", normalize: bool = True, light: Light | None = None,
              background=WHITE) -> MeshScene:
    """Load a mesh file as a scene (one part per geometry, instance ids 1..n); see :func:`load_mesh_scene`."""
    return load_mesh_scene(path, texture=texture, up=up, normalize=normalize, light=light, background=background)
