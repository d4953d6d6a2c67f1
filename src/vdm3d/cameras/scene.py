"""Scene geometry for checking and previewing trajectories: points (with colors) and an optional mesh.

:func:`load_scene` reads

* ``.ply`` - a mesh when it has faces (trimesh); otherwise points from the ``x, y, z`` vertex
  properties (plyfile), colors from ``red/green/blue`` or, for 3DGS splat PLYs, from the SH DC
  terms ``f_dc_0..2`` (``0.5 + 0.2820948 * dc``);
* ``.obj``, ``.glb``, ``.gltf``, ``.stl``, ``.off`` - meshes (trimesh, scenes merged into one mesh);
  glTF/GLB and OBJ are y-up and are turned to vdm3d's z-up world at this edge, as the mesh loaders
  and the viewer do (:mod:`vdm3d.cameras.world`; ``up`` overrides the guess), so a job's GLB sits
  upright under the job's own cameras;
* ``.npz`` - points under ``means3d``, ``points``, ``xyz`` or ``points_world`` (colors under
  ``colors``/``rgb``), as in gsplat's test data;
* ``.npy`` - an ``[N, 3]`` array;
* a COLMAP model folder or ``points3D.bin``/``.txt`` - its 3D points;
* a vdm3d run folder or ``vdm3d data make`` case - its ``mesh.glb``, else ``splats.ply``, else ``mesh.obj``.

Meshes also get ``points``: area-uniform surface samples (seeded), so every consumer can treat a
scene as points; code that needs exact answers (inside tests, ray casts) uses ``mesh``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vdm3d.cameras.world import Up, file_up, zup_from_yup
from vdm3d.errors import InputError

SH_C0 = 0.28209479177387814
_MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".stl", ".off")


@dataclasses.dataclass(frozen=True)
class Scene:
    points: np.ndarray  # [N, 3] float64, world
    colors: np.ndarray | None = None  # [N, 3] float in [0, 1]
    vertices: np.ndarray | None = None  # [V, 3] when the scene is a mesh
    faces: np.ndarray | None = None  # [T, 3] int
    source: str = ""

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None and len(self.faces) > 0

    def extent(self) -> float:
        """Diagonal of the 1st-99th percentile bounding box (robust to stray points)."""
        lo, hi = np.percentile(self.points, [1, 99], axis=0)
        return float(np.linalg.norm(hi - lo))


def _refuse_non_finite(rows: np.ndarray, source: str | Path, what: str, fix: str) -> None:
    """Refuse ``rows`` ``[N, 3]`` with a non-finite x, y or z, counting them (as fit's warning does,
    :func:`vdm3d.splat.ply.finite_points`; a checked scene is refused, not thinned: its geometry is what the
    cameras are judged against), so the sentence says whether a few stray points or the whole file is broken."""
    bad = int((~np.isfinite(rows).all(axis=1)).sum())
    if bad:
        raise InputError(path=source, problem=f"{bad:,} of {len(rows):,} {what} {'has' if bad == 1 else 'have'} a "
                         "non-finite x, y or z (NaN or inf)", fix=fix)


def _mesh_scene(vertices: np.ndarray, faces: np.ndarray, source: str, samples: int, seed: int) -> Scene:
    import trimesh

    _refuse_non_finite(vertices, source, "vertices", "repair those vertices or export the mesh again")
    try:
        mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
        if len(mesh.faces) == 0:
            raise InputError(path=source, problem="has no triangles", fix="pass a mesh with faces or a point cloud")
        pts, _ = trimesh.sample.sample_surface(mesh, samples, seed=seed)
    except (ValueError, IndexError, TypeError) as e:  # faces that name missing vertices, ragged arrays
        raise InputError(path=source, problem=f"has malformed vertices or faces ({type(e).__name__})",
                         fix="re-export the mesh") from None
    return Scene(np.asarray(pts, np.float64), None, np.asarray(vertices, np.float64), np.asarray(faces, np.int64), source)


def _subsample(points: np.ndarray, colors: np.ndarray | None, max_points: int, seed: int):
    if len(points) <= max_points:
        return points, colors
    idx = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
    return points[idx], None if colors is None else colors[idx]


def _ply(path: Path, samples: int, seed: int) -> Scene:
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
    except Exception as e:  # noqa: BLE001 - plyfile raises many types for broken files
        raise InputError(path=path, problem=f"is not a readable PLY ({type(e).__name__})", fix="re-export it") from None
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise InputError(path=path, field="vertex", problem="element is missing", fix="pass a point or mesh PLY")
    v = ply["vertex"]
    props = v.data.dtype.names
    if not {"x", "y", "z"} <= set(props):
        raise InputError(path=path, field="vertex x/y/z", problem="properties are missing", fix="pass a point or mesh PLY")
    xyz = np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float64)
    if "face" in names and len(ply["face"].data) > 0:
        faces = np.stack([np.asarray(f[:3]) for f in ply["face"].data[ply["face"].data.dtype.names[0]]]).astype(np.int64)
        return _mesh_scene(xyz, faces, str(path), samples, seed)
    colors = None
    if {"red", "green", "blue"} <= set(props):
        colors = np.stack([v["red"], v["green"], v["blue"]], -1).astype(np.float64) / 255.0
    elif {"f_dc_0", "f_dc_1", "f_dc_2"} <= set(props):
        colors = np.clip(0.5 + SH_C0 * np.stack([v["f_dc_0"], v["f_dc_1"], v["f_dc_2"]], -1), 0, 1).astype(np.float64)
    return Scene(xyz, colors, source=str(path))


RUN_SCENE_FILES = ("mesh.glb", "splats.ply", "mesh.obj")
"""The geometry of a folder that is not a COLMAP model, in this order: the mesh of an ``object`` run or a
``vdm3d data make`` case (glTF, y-up), the splats of an ``explore``, ``fit`` or ``complete`` run."""


def scene_file_in(folder: Path) -> Path:
    """``folder`` when it holds a COLMAP model, else its first :data:`RUN_SCENE_FILES`, so that a run folder
    can be given as the scene; refused, naming the files looked for, when it has none."""
    from vdm3d.cameras.io_colmap import holds_colmap_model

    if holds_colmap_model(folder):
        return folder
    found = next((folder / n for n in RUN_SCENE_FILES if (folder / n).is_file()), None)
    if found is None:
        raise InputError(path=folder, problem="holds no COLMAP model (cameras and points3D), mesh.glb, splats.ply or "
                         "mesh.obj", fix="pass a mesh, a point or splat .ply, a COLMAP sparse/0 folder or a vdm3d "
                         "run folder that has one of those (a stylize run's mesh is its --mesh input)")
    return found


def load_scene(path: str | Path, max_points: int = 200_000, mesh_samples: int = 100_000, seed: int = 0,
               up: Up = "auto") -> Scene:
    """Read scene geometry (see the module docstring for formats); points are capped at ``max_points``.

    ``up``: the up axis of a mesh file (``auto``: y for glTF/GLB/OBJ, z otherwise); y-up meshes are
    turned z-up."""
    path = Path(path)
    if not path.exists():
        from vdm3d.io.runs import missing_path_error

        raise missing_path_error(path, "check the scene path")
    if path.is_dir():
        path = scene_file_in(path)
    suffix = path.suffix.lower()
    if path.is_dir() or path.name.startswith("points3D"):
        from vdm3d.cameras.io_colmap import read_colmap

        model = read_colmap(path if path.is_dir() else path.parent)
        if len(model.points3D) == 0:
            raise InputError(path=path, problem="holds no COLMAP 3D points", fix="pass a model with points3D")
        scene = Scene(model.points3D.xyz.astype(np.float64), model.points3D.rgb / 255.0, source=str(path))
    elif suffix == ".ply":
        scene = _ply(path, mesh_samples, seed)
    elif suffix in _MESH_SUFFIXES:
        from vdm3d.io.meshes import load_trimesh

        try:
            mesh = load_trimesh(path, force="mesh", process=False)
        except InputError:  # a file it names outside its folder: already one sentence
            raise
        except Exception as e:  # noqa: BLE001
            raise InputError(path=path, problem=f"is not a readable mesh ({type(e).__name__})", fix="re-export it") from None
        vertices = np.asarray(mesh.vertices, np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise InputError(path=path, problem=f"has vertices of shape {tuple(vertices.shape)}, not [N, 3]",
                             fix="re-export it")
        vertices = zup_from_yup(vertices) if file_up(path, up) == "y" else vertices  # glTF/OBJ: y-up files
        scene = _mesh_scene(vertices, np.asarray(mesh.faces), str(path), mesh_samples, seed)
    elif suffix in (".npz", ".npy"):
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise InputError(path=path, problem=f"is not a readable numpy file ({type(e).__name__})",
                             fix="save with numpy.save/savez") from None
        colors = None
        if suffix == ".npz":
            key = next((k for k in ("means3d", "points", "xyz", "points_world") if k in data.files), None)
            if key is None:
                raise InputError(path=path, field="points", problem=f"not found (keys: {', '.join(data.files)})",
                                 fix="store them under 'points'")
            pts = data[key]
            ck = next((k for k in ("colors", "rgb") if k in data.files), None)
            if ck is not None:
                colors = np.asarray(data[ck], np.float64)
                colors = colors / 255.0 if colors.max(initial=0) > 1 else colors
        else:
            pts = data
        pts = np.asarray(pts, np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise InputError(path=path, field="points", problem=f"must be [N, 3], got {list(pts.shape)}", fix="reshape")
        scene = Scene(pts, colors, source=str(path))
    else:
        raise InputError(path=path, problem=f"has an unsupported scene suffix {suffix!r}",
                         fix="pass .ply, .obj, .glb, .npz, .npy or a COLMAP folder")
    if len(scene.points) == 0:
        raise InputError(path=path, problem="has no points", fix="pass a scene with geometry")
    _refuse_non_finite(scene.points, path, "points", "remove those points from the file or export the scene again")
    pts, cols = _subsample(scene.points, scene.colors, max_points, seed)
    return dataclasses.replace(scene, points=pts, colors=cols)
