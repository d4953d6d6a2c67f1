"""The mesh-scene type: textured triangle meshes with instance ids and one light, from any source.

A :class:`MeshScene` is a list of :class:`Part` (one textured triangle mesh each) plus a
:class:`Light` and a background colour. It is what the ground-truth renderer
(:mod:`vdm3d.geometry.mesh_render`) draws, and so what edges, depth, normals, flow and
correspondences are computed from. Procedural worlds (:mod:`vdm3d.data.procedural`) build it, and
:func:`load_mesh_scene` fills it from any file trimesh loads (GLB/glTF, OBJ with or without MTL, PLY,
OFF, STL). Parts are plain numpy arrays so that they pickle cheaply into worker processes and upload
to OpenGL without conversion; :meth:`Part.to_trimesh` and :meth:`MeshScene.from_trimesh` convert to
and from ``trimesh``.

Conventions:

* world units: objects fit the unit sphere; rooms are in metres;
* world up is ``+z`` (:data:`UP`); files stored y-up (glTF by specification, OBJ by custom) are turned
  z-up at the edge, in :func:`load_mesh_scene` (:data:`Y_UP_TO_Z_UP`);
* ``uv`` follows the OBJ/glTF-as-loaded-by-trimesh convention: ``(0, 0)`` is the bottom-left of the
  texture image, ``v`` grows upwards; texture images are stored top row first;
* ``normals`` are per-vertex shading normals; hard creases are expressed by duplicated vertices;
* ``instance_id`` is > 0 (0 means background in rendered instance maps).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pathlib import Path

import numpy as np
import trimesh

from vdm3d.cameras.world import Y_UP_SUFFIXES, Y_UP_TO_Z_UP  # the edge rotation is a camera-world convention
from vdm3d.errors import InputError
from vdm3d.geometry.precision import far_offset

UP = np.array([0.0, 0.0, 1.0], dtype=np.float32)
WHITE = (1.0, 1.0, 1.0)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class Light:
    """A directional light plus ambient: ``rgb = albedo * (ambient + diffuse * max(0, n . direction))``.

    ``direction`` points from the surface towards the light (unit, world frame). Keeping
    ``ambient + diffuse <= 1`` means no colour saturates.
    """

    direction: tuple[float | int, float | int, float | int] = (0.3, -0.4, 0.866)
    ambient: float | int = 0.4
    diffuse: float | int = 0.6

    def __post_init__(self) -> None:
        d = np.asarray(self.direction, np.float64)
        if d.shape != (3,) or not np.isfinite(d).all() or np.linalg.norm(d) == 0:
            raise ValueError(f"Light: direction must be a non-zero 3-vector, got {self.direction}")
        object.__setattr__(self, "direction", tuple(float(x) for x in d / np.linalg.norm(d)))
        object.__setattr__(self, "ambient", float(self.ambient))
        object.__setattr__(self, "diffuse", float(self.diffuse))

    @staticmethod
    def random(rng: np.random.Generator) -> "Light":
        """Light from the upper hemisphere (elevation 20-80 deg, any azimuth), ambient 0.25-0.5."""
        el = np.deg2rad(rng.uniform(20.0, 80.0))
        az = rng.uniform(0.0, 2 * np.pi)
        d = (float(np.cos(el) * np.cos(az)), float(np.cos(el) * np.sin(az)), float(np.sin(el)))
        ambient = float(rng.uniform(0.25, 0.5))
        return Light(direction=d, ambient=ambient, diffuse=1.0 - ambient)


@dataclasses.dataclass
class Part:
    """One textured triangle mesh.

    Shapes: ``vertices [V, 3]`` float32, ``faces [F, 3]`` int32, ``normals [V, 3]`` float32 unit,
    ``uv [V, 2]`` float32, ``texture [Ht, Wt, 3]`` uint8 (a 1x1 white image for untextured parts),
    ``colors [V, 3]`` float32 in [0, 1] multiplied with the texture (vertex colours).
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    colors: np.ndarray
    instance_id: int = 1
    name: str = "part"

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32)
        self.normals = np.ascontiguousarray(self.normals, dtype=np.float32)
        self.uv = np.ascontiguousarray(self.uv, dtype=np.float32)
        self.texture = np.ascontiguousarray(self.texture, dtype=np.uint8)
        self.colors = np.ascontiguousarray(self.colors, dtype=np.float32)
        v = len(self.vertices)
        for name, arr, cols in (("vertices", self.vertices, 3), ("normals", self.normals, 3),
                                ("uv", self.uv, 2), ("colors", self.colors, 3)):
            if arr.shape != (v, cols):
                raise ValueError(f"Part {self.name}: {name} must be [{v}, {cols}], got {arr.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"Part {self.name}: faces must be [F, 3], got {self.faces.shape}")
        if self.texture.ndim != 3 or self.texture.shape[2] != 3:
            raise ValueError(f"Part {self.name}: texture must be [H, W, 3] uint8, got {self.texture.shape}")
        if int(self.instance_id) <= 0:
            raise ValueError(f"Part {self.name}: instance_id must be > 0 (0 is background)")

    @staticmethod
    def make(vertices, faces, *, normals=None, uv=None, texture=None, colors=None, instance_id: int = 1,
             name: str = "part") -> "Part":
        """Fill in defaults: area-weighted smooth normals, zero uv, white texture, white colours."""
        vertices = np.asarray(vertices, dtype=np.float32)
        faces = np.asarray(faces, dtype=np.int32)
        if normals is None:
            normals = smooth_normals(vertices, faces)
        if uv is None:
            uv = np.zeros((len(vertices), 2), np.float32)
        if texture is None:
            texture = np.full((1, 1, 3), 255, np.uint8)
        if colors is None:
            colors = np.ones((len(vertices), 3), np.float32)
        return Part(vertices, faces, normals, uv, texture, colors, instance_id, name)

    def transformed(self, matrix: np.ndarray) -> "Part":
        """The part moved by a similarity transform ``[4, 4]`` (rotation * uniform scale + translation)."""
        m = np.asarray(matrix, dtype=np.float64)
        v = self.vertices @ m[:3, :3].T + m[:3, 3]
        n = self.normals @ np.linalg.inv(m[:3, :3])  # inverse transpose, applied to row vectors
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
        return dataclasses.replace(self, vertices=v, normals=n)

    def to_trimesh(self) -> trimesh.Trimesh:
        """A ``trimesh.Trimesh`` with the texture bound (``TextureVisuals``) and vertex normals kept."""
        from PIL import Image

        material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(self.texture))
        visual = trimesh.visual.TextureVisuals(uv=self.uv, material=material)
        return trimesh.Trimesh(self.vertices, self.faces, vertex_normals=self.normals, visual=visual,
                               process=False)


@dataclasses.dataclass
class MeshScene:
    """Parts + light + background; ``kind`` says which generator made it; ``meta`` holds generator
    facts (room size, opening, furniture footprints) that camera-path planners need.

    ``closed`` promises that no back face (a face wound away from the camera, normals by the
    right-hand rule) is ever visible: true for procedural objects (closed surfaces, outward) and rooms
    (closed furniture; walls, floor and ceiling wound towards the inside, seen only from inside).
    The renderer then culls back faces, which halves its rasterisation work."""

    parts: list[Part]
    light: Light = dataclasses.field(default_factory=Light)
    background: tuple[float, float, float] = WHITE
    kind: Literal["object", "room", "mesh"] = "mesh"
    seed: int | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    closed: bool = False

    @property
    def bounds(self) -> np.ndarray:
        """Axis-aligned bounds ``[2, 3]`` (min, max)."""
        v = np.concatenate([p.vertices for p in self.parts])
        return np.stack([v.min(0), v.max(0)])

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """Centre of the bounds and the largest vertex distance from it."""
        v = np.concatenate([p.vertices for p in self.parts])
        c = 0.5 * (v.min(0) + v.max(0))
        return c.astype(np.float32), float(np.linalg.norm(v - c, axis=1).max())

    @property
    def offset(self) -> np.ndarray:
        """What :func:`load_mesh_scene` subtracted (``recentre``) from the file's coordinates, in the z-up world,
        float64: add it to a position to get back to the file's coordinates. Zero when nothing was moved."""
        return np.asarray(self.meta.get("offset", (0.0, 0.0, 0.0)), dtype=np.float64)

    @property
    def num_faces(self) -> int:
        return int(sum(len(p.faces) for p in self.parts))

    def triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """Every part's geometry as one mesh: vertices ``[V, 3]`` float64 and faces ``[F, 3]`` int64 into them
        (for geometric queries such as winding numbers, which want one array of each, converted once)."""
        offsets = np.cumsum([0] + [len(p.vertices) for p in self.parts[:-1]])
        vertices = np.concatenate([p.vertices for p in self.parts]).astype(np.float64)
        faces = np.concatenate([p.faces.astype(np.int64) + o for p, o in zip(self.parts, offsets)])
        return vertices, faces

    def transformed(self, matrix: np.ndarray) -> "MeshScene":
        return dataclasses.replace(self, parts=[p.transformed(matrix) for p in self.parts])

    def normalized(self, radius: float = 1.0) -> "MeshScene":
        """Moved and scaled uniformly so that the bounding sphere is centred at 0 with ``radius``."""
        c, r = self.bounding_sphere()
        m = np.eye(4)
        m[:3, :3] *= radius / r
        m[:3, 3] = -c * radius / r
        return self.transformed(m)

    def to_trimesh(self) -> trimesh.Scene:
        """A ``trimesh.Scene`` with one textured geometry per part (exports to GLB with textures)."""
        scene = trimesh.Scene()
        for i, p in enumerate(self.parts):
            scene.add_geometry(p.to_trimesh(), geom_name=f"{i:03d}_{p.name}_id{p.instance_id}")
        return scene

    def export(self, path) -> None:
        """Write the scene as a mesh file (format from the suffix; ``.glb`` keeps textures), whole or not at
        all (:func:`~vdm3d.geometry.texture.write_mesh`)."""
        from vdm3d.geometry.texture import write_mesh

        write_mesh(self.to_trimesh(), path)

    @staticmethod
    def from_trimesh(mesh: trimesh.Trimesh | trimesh.Scene, *, light: Light | None = None,
                     background=WHITE) -> "MeshScene":
        """Wrap a trimesh mesh or scene; each geometry instance becomes a part with its own id."""
        if isinstance(mesh, trimesh.Trimesh):
            meshes = [mesh]
        else:
            meshes = []
            for node in mesh.graph.nodes_geometry:
                transform, geom_name = mesh.graph[node]
                g = mesh.geometry[geom_name]
                if isinstance(g, trimesh.Trimesh):
                    meshes.append(g.copy().apply_transform(transform) if not np.allclose(transform, np.eye(4))
                                  else g)
        parts = [part_from_trimesh(m, instance_id=i + 1) for i, m in enumerate(meshes)]
        return MeshScene(parts=parts, light=light or Light(), background=tuple(background), kind="mesh")


def smooth_normals(vertices: np.ndarray, faces: np.ndarray, weld: bool = True) -> np.ndarray:
    """Area-weighted vertex normals ``[V, 3]``; with ``weld`` vertices at the same position (uv seams)
    share one normal, so seams do not show in the shading."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 * area
    if weld:
        key = np.round(v / 1e-6).astype(np.int64)
        _, inverse = np.unique(key, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        inverse = np.arange(len(v))
    acc = np.zeros((int(inverse.max()) + 1, 3))
    for k in range(3):
        np.add.at(acc, inverse[f[:, k]], fn)
    n = acc[inverse]
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(norm > 1e-20, n / np.maximum(norm, 1e-20), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


def crease_normals(vertices: np.ndarray, faces: np.ndarray, angle_deg: float = 40.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth normals that stay sharp across creases, for meshes that come without normals.

    Each face corner averages (area-weighted) the normals of the faces around its vertex (welded by
    position) that are within ``angle_deg`` of its own face. Vertices whose corners disagree are
    split. Returns ``(source_index [V'], faces [F, 3], normals [V', 3])``: new vertex ``i`` copies the
    attributes of old vertex ``source_index[i]``.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    unit = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)
    _, weld = np.unique(np.round(v / 1e-6).astype(np.int64), axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    corner_w = weld[f].reshape(-1)              # [3F] welded vertex of each corner
    corner_f = np.repeat(np.arange(len(f)), 3)  # [3F] its face
    order = np.argsort(corner_w, kind="stable")
    w_sorted, f_sorted = corner_w[order], corner_f[order]
    starts = np.searchsorted(w_sorted, np.arange(weld.max() + 1))
    ends = np.searchsorted(w_sorted, np.arange(weld.max() + 1), side="right")
    deg = (ends - starts)[corner_w]             # faces around each corner's vertex
    rows = np.repeat(np.arange(len(corner_w)), deg)
    offs = np.arange(len(rows)) - np.repeat(np.cumsum(deg) - deg, deg)
    other = f_sorted[np.repeat(starts[corner_w], deg) + offs]  # [pairs] neighbour face of each corner
    agree = (unit[corner_f[rows]] * unit[other]).sum(1) >= np.cos(np.deg2rad(angle_deg))
    acc = np.zeros((len(corner_w), 3))
    np.add.at(acc, rows[agree], fn[other[agree]])
    n = acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-30)
    key = np.concatenate([f.reshape(-1, 1), np.round(n * 1e4).astype(np.int64)], 1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return f.reshape(-1)[first], inverse.reshape(-1, 3).astype(np.int32), n[first].astype(np.float32)


def part_from_trimesh(mesh: trimesh.Trimesh, instance_id: int = 1, name: str = "mesh",
                      texture: np.ndarray | None = None) -> Part:
    """Convert a trimesh mesh: texture (``TextureVisuals``: image times base colour), vertex colours
    (``ColorVisuals``) or plain light grey."""
    verts = np.asarray(mesh.vertices, np.float32)
    faces = np.asarray(mesh.faces, np.int32)
    visual = mesh.visual
    uv, colors = None, None
    if isinstance(visual, trimesh.visual.TextureVisuals) and visual.uv is not None and len(visual.uv) == len(verts):
        uv = np.asarray(visual.uv, np.float32)
        mat = visual.material
        image, factor = None, None
        if isinstance(mat, trimesh.visual.material.PBRMaterial):
            image, factor = mat.baseColorTexture, mat.baseColorFactor
        elif mat is not None:
            image = getattr(mat, "image", None)
            factor = getattr(mat, "diffuse", None)
        if texture is None and image is not None and min(image.size) > 2:
            texture = np.asarray(image.convert("RGB"))
        if factor is not None:
            f = np.asarray(factor, np.float32).reshape(-1)[:3]
            f = f / 255.0 if f.max() > 1.0 else f
            if texture is None:  # no image: the base colour is the albedo
                colors = np.tile(f[None], (len(verts), 1))
            elif isinstance(mat, trimesh.visual.material.PBRMaterial):
                colors = np.tile(f[None], (len(verts), 1))
    elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors[:, :3], np.float32) / 255.0
    if texture is None and colors is None:
        colors = np.full((len(verts), 3), 0.7, np.float32)
    if "vertex_normals" in mesh._cache.cache:  # the file's own normals
        return Part.make(verts, faces, normals=np.asarray(mesh.vertex_normals, np.float32), uv=uv,
                         texture=texture, colors=colors, instance_id=instance_id, name=name)
    # no normals in the file: smooth across uv seams, sharp across creases (vertices split there)
    src, faces, normals = crease_normals(verts, faces)
    return Part.make(verts[src], faces, normals=normals, uv=None if uv is None else uv[src], texture=texture,
                     colors=None if colors is None else colors[src], instance_id=instance_id, name=name)


def _texture_beside(path: Path) -> np.ndarray | None:
    images = sorted(p for p in path.parent.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(images) != 1:
        return None
    return read_texture(images[0])


def read_texture(path: str | Path) -> np.ndarray:
    """A texture image as ``uint8 [H, W, 3]``, through vdm3d's image reader, so a damaged or cut-short file is one
    sentence naming it (PIL's ``convert`` let its SyntaxError or OSError through as a traceback)."""
    from vdm3d.io.images import read_image

    return (read_image(path).numpy() * 255.0).round().astype(np.uint8)


def up_axis_for(path: str | Path) -> Literal["y", "z"]:
    """The up axis a mesh file uses by its format's convention: ``y`` for glTF/GLB and OBJ, else ``z``."""
    return "y" if Path(path).suffix.lower() in Y_UP_SUFFIXES else "z"


def load_mesh_scene(path: str | Path, *, texture: str | Path | np.ndarray | None = None,
                    up: Literal["y", "z", "auto"] = "auto", normalize: bool = True, light: Light | None = None,
                    background=WHITE, recentre: bool = False) -> MeshScene:
    """Load any mesh file trimesh reads (GLB/glTF, OBJ, PLY, OFF, STL) as a scene, one part per geometry
    instance (ids 1..n), turned z-up.

    An OBJ with uv coordinates but no ``.mtl`` (for example ``spot_triangulated.obj``) has no texture
    bound; pass ``texture=`` or leave the folder with exactly one image beside the mesh and it is used.

    Args:
        texture: an image file or ``uint8 [H, W, 3]`` array bound to parts whose file gives none.
        up: the file's up axis; ``"y"`` is turned to vdm3d's ``+z``; ``"auto"`` follows the format
            (:func:`up_axis_for`).
        normalize: move and scale into the unit sphere.
        recentre: when the mesh lies so far from the origin, for its size, that float32 cannot place its
            vertices finely (:func:`far_offset`), move its centre to the origin while its numbers are still
            float64 (trimesh's), before its parts become float32; :attr:`MeshScene.offset` says by how much,
            so that cameras can be moved with it and results moved back.

    Raises:
        InputError: the file is missing, is not a mesh, or holds no triangles.
    """
    path = Path(path)
    if path.is_dir():  # a run folder or data case: name its mesh (its up axis follows the file's suffix)
        inside = next((path / n for n in ("mesh.glb", "mesh.obj") if (path / n).is_file()), None)
        raise InputError(path=path, problem="is a folder, not a mesh file",
                         fix=f"pass the mesh inside it, {inside}" if inside is not None else
                         "pass a mesh file (GLB/glTF, OBJ, PLY, OFF or STL)")
    if not path.is_file():
        from vdm3d.io.runs import missing_path_error

        raise missing_path_error(path, "check the mesh path")
    from vdm3d.io.meshes import load_trimesh

    try:
        loaded = load_trimesh(path, force="scene", process=False)
    except InputError:  # a file it names outside its folder: already one sentence
        raise
    except Exception as e:
        reason = str(e).split("\n")[0].rstrip(".") or type(e).__name__
        raise InputError(path=path, problem=f"could not be read as a mesh ({reason})",
                         fix="pass a mesh file trimesh reads: GLB/glTF, OBJ, PLY, OFF or STL") from e
    if isinstance(texture, (str, Path)):
        texture = read_texture(texture)
    meshes = []
    for node in loaded.graph.nodes_geometry:
        transform, geom_name = loaded.graph[node]
        g = loaded.geometry[geom_name]
        if isinstance(g, trimesh.Trimesh) and len(g.faces):
            meshes.append(g.copy().apply_transform(transform))
    if not meshes:
        raise InputError(path=path, problem="contains no triangles",
                         fix="pass a mesh with faces (a point cloud or an empty file cannot be rendered)")
    offset = far_offset(*_bounds(meshes)) if recentre else None
    if offset is not None:
        for m in meshes:
            m.apply_translation(-offset)
    parts = []
    for i, m in enumerate(meshes):
        has_uv = isinstance(m.visual, trimesh.visual.TextureVisuals) and m.visual.uv is not None
        part = part_from_trimesh(m, instance_id=i + 1, name=path.stem)
        if has_uv and part.texture.shape[:2] == (1, 1):  # uv but no image bound (OBJ without MTL)
            tex = texture if texture is not None else _texture_beside(path)
            if tex is not None:
                part = part_from_trimesh(m, instance_id=i + 1, name=path.stem, texture=np.asarray(tex, np.uint8))
        parts.append(part)
    y_up = (up_axis_for(path) if up == "auto" else up) == "y"
    meta: dict[str, Any] = {"source": str(path)}
    if offset is not None:  # said in the z-up world, as the scene's vertices are
        meta["offset"] = ((Y_UP_TO_Z_UP[:3, :3] @ offset) if y_up else offset).tolist()
    scene = MeshScene(parts=parts, light=light or Light(), background=tuple(background), kind="mesh", meta=meta)
    if y_up:
        scene = scene.transformed(Y_UP_TO_Z_UP)
    return scene.normalized(1.0) if normalize else scene


def _bounds(meshes: list[trimesh.Trimesh]) -> tuple[np.ndarray, np.ndarray]:
    """The float64 bounds of several trimesh meshes together."""
    b = np.stack([m.bounds for m in meshes])
    return b[:, 0].min(0), b[:, 1].max(0)
