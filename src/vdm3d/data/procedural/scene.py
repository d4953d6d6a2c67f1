"""The scene type procedural worlds build: :class:`vdm3d.geometry.mesh_scene.MeshScene`.

It lives in :mod:`vdm3d.geometry` (the renderer, edges and flow read it, and any mesh file fills it);
procedural generators import it from there. ``Scene`` is the name the procedural API has always used.
"""

from vdm3d.geometry.mesh_scene import (UP, WHITE, Light, MeshScene, Part, crease_normals, part_from_trimesh,
                                       smooth_normals)

Scene = MeshScene

__all__ = ["Light", "MeshScene", "Part", "Scene", "UP", "WHITE", "crease_normals", "part_from_trimesh",
           "smooth_normals"]
