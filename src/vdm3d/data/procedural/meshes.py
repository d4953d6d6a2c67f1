"""Load real textured meshes (OBJ with or without MTL, glTF/GLB, PLY, ...) as a :class:`Scene`.

trimesh does the parsing. Two things are handled here:

* an OBJ with uv coordinates but no ``.mtl`` (for example ``spot_triangulated.obj``) has no texture
  bound; pass ``texture=`` or leave the folder with exactly one image beside the mesh and it is used;
* OBJ and glTF files are y-up by convention; vdm3d's world is z-up, so ``up="y"`` (the default) turns
  the mesh by +90 degrees about x (y becomes z, z becomes -y).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import trimesh

from vdm3d.data.procedural.scene import WHITE, Light, Scene, part_from_trimesh
from vdm3d.errors import InputError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def _texture_beside(path: Path) -> np.ndarray | None:
    images = sorted(p for p in path.parent.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(images) != 1:
        return None
    from PIL import Image

    return np.asarray(Image.open(images[0]).convert("RGB"))


def load_mesh(path: str | Path, *, texture: str | Path | np.ndarray | None = None, up: Literal["y", "z"] = "y",
              normalize: bool = True, light: Light | None = None, background=WHITE) -> Scene:
    """Load a mesh file as a Scene (one part per geometry, instance ids 1..n).

    Args:
        texture: an image file or ``uint8 [H, W, 3]`` array bound to parts whose file gives none.
        up: the file's up axis; ``"y"`` is turned to vdm3d's ``+z``.
        normalize: move and scale into the unit sphere.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist", fix="check the mesh path")
    try:
        loaded = trimesh.load(str(path), force="scene", process=False)
    except Exception as e:
        raise InputError(path=path, problem=f"could not be read as a mesh ({e})",
                         fix="pass an OBJ, GLB/glTF, PLY or OFF file") from e
    if isinstance(texture, (str, Path)):
        from PIL import Image

        texture = np.asarray(Image.open(texture).convert("RGB"))
    meshes = []
    for node in loaded.graph.nodes_geometry:
        transform, geom_name = loaded.graph[node]
        g = loaded.geometry[geom_name]
        if isinstance(g, trimesh.Trimesh) and len(g.faces):
            meshes.append(g.copy().apply_transform(transform))
    if not meshes:
        raise InputError(path=path, problem="contains no triangles", fix="pass a mesh with faces")
    parts = []
    for i, m in enumerate(meshes):
        has_uv = isinstance(m.visual, trimesh.visual.TextureVisuals) and m.visual.uv is not None
        part = part_from_trimesh(m, instance_id=i + 1, name=path.stem)
        if has_uv and part.texture.shape[:2] == (1, 1):  # uv but no image bound (OBJ without MTL)
            tex = texture if texture is not None else _texture_beside(path)
            if tex is not None:
                part = part_from_trimesh(m, instance_id=i + 1, name=path.stem, texture=np.asarray(tex, np.uint8))
        parts.append(part)
    scene = Scene(parts=parts, light=light or Light(), background=tuple(background), kind="mesh",
                  meta={"source": str(path)})
    if up == "y":
        scene = scene.transformed(Y_UP_TO_Z_UP)
    return scene.normalized(1.0) if normalize else scene
