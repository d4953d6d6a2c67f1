"""vdm3d's world frame is z-up; files stored y-up are turned at the edge, with these named rotations.

glTF is y-up by specification and OBJ by custom (Blender, Maya and most exporters write OBJ y-up), and
vdm3d writes its own GLB/OBJ y-up (the object job). Everything inside vdm3d (cameras, splats, scenes,
procedural worlds) is z-up, so a y-up file is rotated once when it is read:

* :data:`Y_UP_TO_Z_UP` is +90 degrees about x: ``(x, y, z) -> (x, -z, y)``, so the file's up (+y)
  becomes +z and its forward (+z, towards a glTF viewer) becomes -y;
* :data:`Z_UP_TO_Y_UP` is its inverse, ``(x, y, z) -> (x, z, -y)``, for writing.

Which files are y-up is guessed from the suffix (:func:`file_up`); PLY, STL, OFF and point files are
taken as z-up (vdm3d writes its PLYs z-up). A user's ``up`` choice overrides the guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from jaxtyping import Float

# rows are the new axes: new x = x, new y = -z, new z = y
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
Z_UP_TO_Y_UP = Y_UP_TO_Z_UP.T.copy()  # a rotation: the inverse is the transpose
Y_UP_SUFFIXES = (".glb", ".gltf", ".obj")
Up = Literal["auto", "y", "z"]


def file_up(path: str | Path, up: Up = "auto") -> Literal["y", "z"]:
    """The up axis of a geometry file: ``up`` when given, else ``y`` for glTF/GLB/OBJ and ``z`` otherwise."""
    if up != "auto":
        return up
    return "y" if Path(path).suffix.lower() in Y_UP_SUFFIXES else "z"


def zup_from_yup(points: Float[np.ndarray, "*B 3"]) -> Float[np.ndarray, "*B 3"]:
    """``[..., 3]`` points of a y-up file in vdm3d's z-up world."""
    return np.asarray(points, np.float64) @ Y_UP_TO_Z_UP[:3, :3].T
