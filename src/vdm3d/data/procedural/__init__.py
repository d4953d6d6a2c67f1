"""Procedural worlds with exact ground truth: objects and rooms, seeded and deterministic.

>>> from vdm3d.data.procedural import make_object, orbit_cameras
>>> from vdm3d.geometry.mesh_render import render_buffers
>>> buffers = render_buffers(make_object(0), orbit_cameras(21, width=64, height=64))  # doctest: +SKIP

* :func:`make_object` (:mod:`.objects`): 1-4 textured primitives in the unit sphere;
* :func:`make_room` and :func:`room_path` (:mod:`.rooms`): a furnished room and a camera path
  inside it, clear of geometry;
* :func:`load_mesh` (:mod:`.meshes`): real textured meshes (OBJ/MTL, GLB) as the same Scene type;
* :class:`Scene`, :class:`Part`, :class:`Light` (:mod:`.scene`): what the renderer draws.
"""

from vdm3d.data.procedural.cameras import orbit_cameras, orbit_distance, random_object_cameras
from vdm3d.data.procedural.meshes import load_mesh
from vdm3d.data.procedural.objects import make_object
from vdm3d.data.procedural.rooms import make_room, room_path
from vdm3d.data.procedural.scene import UP, Light, Part, Scene

__all__ = ["Light", "Part", "Scene", "UP", "load_mesh", "make_object", "make_room", "orbit_cameras", "orbit_distance",
           "random_object_cameras", "room_path"]
