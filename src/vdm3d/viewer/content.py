"""What ``vdm3d view`` shows: splats, a mesh, cameras with their frames, read from any vdm3d output.

:func:`load_content` takes one path and returns a :class:`ViewerContent` in vdm3d's world frame
(z up, OpenCV cameras):

* a **run folder** (any job): the splat PLY (``splats.ply``, else the only 3DGS ``*.ply``), the mesh
  (``mesh.glb``, else ``mesh.obj``), the cameras (``cameras/*.json``, ``trajectory.json``,
  ``transforms.json``; the first that reads) and, for each camera, its frame: a sibling folder with
  exactly one PNG per camera (``orbit/`` in the object job) or the ``file_path`` of a
  ``transforms.json``; a run whose manifest names an input mesh and wrote none (``vdm3d stylize``)
  shows that mesh, read with the run's ``--up``, from where the manifest says the command ran; the
  planned paths in ``trajectories/*.json`` (``vdm3d complete``) are a second camera group;
* a **3DGS PLY** (any SH degree; a plain point cloud PLY is shown as points);
* a **mesh** (``.glb``, ``.gltf``, ``.obj``, ``.ply``, ``.stl``, ``.off``);
* a **camera file** in any format :func:`vdm3d.cameras.formats.read_camera_file` reads (vdm3d
  trajectory, ``transforms.json``, COLMAP, RE10K, LLFF).

glTF is y-up by specification, OBJ by custom, and vdm3d writes its GLB/OBJ y-up (``jobs/object.py``),
so those meshes are turned back to z-up here, at the edge, with the mesh-scene loader's rotation
(:data:`vdm3d.geometry.mesh_scene.Y_UP_TO_Z_UP`, the inverse of the object job's export rotation);
PLY, STL and OFF meshes are taken as z-up. ``mesh_up`` overrides the guess: ``"y"`` or ``"z"``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import trimesh

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".stl", ".off", ".ply")
CAMERA_SUFFIXES = (".json", ".txt", ".npy")
MeshUp = Literal["auto", "y", "z"]
Say = Callable[[str], None]


@dataclasses.dataclass
class CameraGroup:
    """Camera paths shown beside the main cameras, in their own colour and toggled together (a complete
    run's planned paths): frusta without frames and a polyline per path."""

    name: str
    paths: list[Cameras]  # each [F], OpenCV camera-to-world in vdm3d's world
    path_names: list[str]


@dataclasses.dataclass
class ViewerContent:
    """Everything one page shows, in vdm3d's world frame (z up, OpenCV camera-to-world)."""

    name: str
    gaussians: object | None = None  # vdm3d.splat.Gaussians
    mesh: trimesh.Trimesh | None = None
    points: np.ndarray | None = None  # [N, 3] a plain point cloud
    point_colors: np.ndarray | None = None  # [N, 3] uint8
    cameras: Cameras | None = None
    frames: np.ndarray | None = None  # [F, H, W, 3] uint8, one per camera
    fps: float = 24.0
    groups: list[CameraGroup] = dataclasses.field(default_factory=list)  # further camera sets
    sources: dict[str, str] = dataclasses.field(default_factory=dict)  # what was read from where
    notes: list[str] = dataclasses.field(default_factory=list)  # what could not be shown, one line each

    def is_empty(self) -> bool:
        return (self.gaussians is None and self.mesh is None and self.points is None and self.cameras is None
                and not self.groups)

    def focus(self) -> tuple[np.ndarray, float]:
        """Centre and radius of what is shown (robust to stray splats), for framing the first view."""
        pts = []
        if self.gaussians is not None and len(self.gaussians):
            pts.append(self.gaussians.means.detach().double().numpy())
        if self.mesh is not None:
            pts.append(np.asarray(self.mesh.vertices, dtype=np.float64))
        if self.points is not None:
            pts.append(self.points.astype(np.float64))
        if not pts and self.cameras is not None:
            pts.append(self.cameras.centers.double().numpy().reshape(-1, 3))
        if not pts and self.groups:
            pts.extend(c.centers.double().numpy().reshape(-1, 3) for g in self.groups for c in g.paths)
        if not pts:
            return np.zeros(3), 1.0
        p = np.concatenate(pts)
        centre = np.median(p, axis=0)
        radius = float(np.percentile(np.linalg.norm(p - centre, axis=1), 95)) if len(p) > 1 else 1.0
        return centre, max(radius, 1e-3)


def load_mesh(path: Path, up: MeshUp = "auto") -> trimesh.Trimesh:
    """A mesh file as one Trimesh in vdm3d's z-up world (y-up files turned, see the module docstring)."""
    from vdm3d.geometry.mesh_scene import Y_UP_SUFFIXES, Y_UP_TO_Z_UP

    from vdm3d.io.meshes import load_trimesh

    try:
        loaded = load_trimesh(path, force="mesh", process=False)
    except InputError:  # a file it names outside its folder: already one sentence
        raise
    except Exception as e:  # trimesh raises many types for unreadable files
        raise InputError(path=path, problem=f"is not a mesh trimesh can read ({type(e).__name__})",
                         fix="pass a .glb, .gltf, .obj, .ply, .stl or .off mesh") from e
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise InputError(path=path, problem="holds no triangles", fix="pass a mesh with faces")
    y_up = up == "y" or (up == "auto" and path.suffix.lower() in Y_UP_SUFFIXES)
    return loaded.apply_transform(Y_UP_TO_Z_UP) if y_up else loaded


def _read_ply(path: Path, content: ViewerContent, mesh_up: MeshUp) -> None:
    """A 3DGS PLY becomes splats; any other PLY a mesh or a point cloud."""
    from plyfile import PlyData

    from vdm3d.splat.ply import load_ply

    try:
        header = PlyData.read(str(path))
    except Exception as e:
        raise InputError(path=path, problem=f"is not a readable PLY file ({type(e).__name__})",
                         fix="pass a 3DGS, mesh or point cloud .ply") from e
    names = {p.name for e in header.elements if e.name == "vertex" for p in e.properties}
    if {"f_dc_0", "opacity", "scale_0", "rot_0"} <= names:
        content.gaussians = load_ply(path)
        content.sources["splats"] = str(path)
        return
    if "face" in [e.name for e in header.elements]:
        content.mesh = load_mesh(path, mesh_up)
        content.sources["mesh"] = str(path)
        return
    try:
        cloud = trimesh.load(path, process=False)
    except Exception as e:  # noqa: BLE001 - trimesh raises many types for broken bodies
        raise InputError(path=path, problem=f"is not a readable PLY file ({type(e).__name__})",
                         fix="pass a 3DGS, mesh or point cloud .ply") from None
    vertices = np.asarray(getattr(cloud, "vertices", np.zeros((0, 3))))
    if len(vertices) == 0:
        raise InputError(path=path, problem="holds no vertices", fix="pass a PLY with splats, a mesh or points")
    colors = getattr(getattr(cloud, "visual", None), "vertex_colors", None)
    content.points = vertices.astype(np.float32)
    content.point_colors = (np.asarray(colors)[:, :3].astype(np.uint8) if colors is not None and len(colors)
                            else np.full((len(vertices), 3), 90, np.uint8))
    content.sources["points"] = str(path)


MAX_CAMERAS = 600  # a longer path shows this many of its cameras, evenly spaced


def _read_cameras(path: Path, content: ViewerContent) -> None:
    from vdm3d.cameras.formats import read_camera_file

    from vdm3d.cameras.preview import evenly_spaced

    cf = read_camera_file(path, distortion="keep")  # the viewer draws poses and frusta: a lens changes neither
    cams = cf.trajectory.cameras.reshape(-1)
    # bounded memory on long paths: at most MAX_CAMERAS frusta and thumbnails, evenly spaced
    keep = evenly_spaced(len(cams), MAX_CAMERAS)
    content.cameras = (cams[torch.from_numpy(keep)] if len(keep) < len(cams) else cams).to(torch.float32)
    content.fps = float(cf.trajectory.fps) * len(keep) / max(len(cams), 1)
    content.sources["cameras"] = str(path)
    # a transforms.json names each frame's image; use them when all of them exist
    images = [path.parent / cf.names[i] for i in keep] if cf.names else []
    if cf.names and all(p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp") and p.is_file() for p in images):
        content.frames = _read_frames(images)
        content.sources["frames"] = str(images[0].parent)


def _read_frames(files: list[Path], max_side: int = 256) -> np.ndarray:
    """Images as ``[F, H, W, 3]`` uint8, shrunk to ``max_side`` (frusta show thumbnails)."""
    from PIL import Image

    out = []
    from vdm3d.io.images import check_image_file

    for f in files:
        check_image_file(f)
        with Image.open(f) as im:
            im = im.convert("RGB")
            if max(im.size) > max_side:
                s = max_side / max(im.size)
                im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
            out.append(np.asarray(im))
    shapes = {a.shape for a in out}
    if len(shapes) != 1:
        first = out[0].shape
        out = [np.asarray(Image.fromarray(a).resize((first[1], first[0]))) for a in out]
    return np.stack(out)


def _camera_candidates(folder: Path) -> list[Path]:
    named = [folder / "cameras" / "orbit.json", folder / "trajectory.json", folder / "cameras" / "transforms.json",
             folder / "transforms.json"]
    rest = sorted(folder.glob("cameras/*.json")) + sorted(folder.glob("*.json"))
    seen, out = set(), []
    for p in named + rest:
        if p.is_file() and p.name not in ("manifest.json", "metrics.json") and p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _frames_folder(folder: Path, count: int) -> list[Path] | None:
    """A sub-folder holding exactly ``count`` PNG/JPEG frames (sorted by name), if there is one."""
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if len(files) == count:
            return files
    return None


def _manifest_mesh(folder: Path) -> tuple[Path, MeshUp] | None:
    """The input mesh a run was given (``config.mesh`` in its manifest, e.g. ``vdm3d stylize``), resolved
    from the folder the command ran in (``cwd``), with the ``--up`` the run read it with."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    config = manifest.get("config") if isinstance(manifest, dict) else None
    mesh = config.get("mesh") if isinstance(config, dict) else None
    if not isinstance(mesh, str) or mesh in ("", "."):
        return None
    up = config.get("up", "auto")
    path = Path(mesh).expanduser()
    if not path.is_absolute() and isinstance(manifest.get("cwd"), str):
        path = Path(manifest["cwd"]) / path
    return path, (up if up in ("auto", "y", "z") else "auto")


def _read_paths(folder: Path, content: ViewerContent) -> None:
    """Every trajectory file in ``folder`` (a complete run's planned paths) as one camera group."""
    from vdm3d.cameras.formats import read_camera_file
    from vdm3d.cameras.preview import evenly_spaced

    files = sorted(folder.glob("*.json"))
    paths, names = [], []
    for f in files:
        try:
            cams = read_camera_file(f, distortion="keep").trajectory.cameras.reshape(-1)
        except InputError as e:
            content.notes.append(f"{f}: left out of the {folder.name} group: {e}")
            continue
        keep = evenly_spaced(len(cams), max(2, MAX_CAMERAS // max(len(files), 1)))
        paths.append((cams[torch.from_numpy(keep)] if len(keep) < len(cams) else cams).to(torch.float32))
        names.append(f.stem)
    if paths:
        content.groups.append(CameraGroup(folder.name, paths, names))
        content.sources[folder.name] = str(folder)


def _read_run_folder(folder: Path, content: ViewerContent, mesh_up: MeshUp) -> None:
    plys = [folder / "splats.ply"] if (folder / "splats.ply").is_file() else sorted(folder.glob("*.ply"))
    for ply in plys:
        _read_ply(ply, content, mesh_up)
        if content.gaussians is not None:
            break
    for name in ("mesh.glb", "mesh.gltf", "mesh.obj"):
        if (folder / name).is_file():
            content.mesh = load_mesh(folder / name, mesh_up)
            content.sources["mesh"] = str(folder / name)
            break
    given = _manifest_mesh(folder) if content.mesh is None else None
    if given is not None:  # the job's input, not copied into the run: read it where the run read it
        path, up = given
        if not path.is_file():
            content.notes.append(f"mesh: {path} (the run's input, named in its manifest.json) was not found, so "
                                 "the mesh is not shown")
        else:
            try:
                content.mesh = load_mesh(path, up if mesh_up == "auto" else mesh_up)
                content.sources["mesh"] = str(path)
            except InputError as e:
                content.notes.append(f"mesh: {path} (the run's input, named in its manifest.json) "
                                     f"{e.problem or e}, so the mesh is not shown")
    for cams in _camera_candidates(folder):
        try:
            _read_cameras(cams, content)
            break
        except InputError:
            continue  # not a camera file (metrics, a config); try the next
    if content.cameras is not None and content.frames is None:
        files = _frames_folder(folder, len(content.cameras))
        if files:
            content.frames = _read_frames(files)
            content.sources["frames"] = str(files[0].parent)
    if (folder / "trajectories").is_dir():
        _read_paths(folder / "trajectories", content)


def load_content(path: str | Path, mesh_up: MeshUp = "auto", say: Say | None = print) -> ViewerContent:
    """Read a run folder, a splat PLY, a mesh or a camera file into :class:`ViewerContent`; what could
    not be shown (a run's input mesh that moved) is said in one line each through ``say``."""
    path = Path(path)
    if not path.exists():
        raise InputError(path=path, problem="does not exist",
                         fix="pass a run folder, a splat .ply, a mesh (.glb/.obj) or a camera file")
    content = ViewerContent(name=path.name or str(path))
    suffix = path.suffix.lower()
    if path.is_dir():
        colmap = (path / "cameras.bin").is_file() or (path / "cameras.txt").is_file() or (path / "sparse").is_dir()
        _read_cameras(path, content) if colmap else _read_run_folder(path, content, mesh_up)
    elif suffix == ".ply":
        _read_ply(path, content, mesh_up)
    elif suffix in MESH_SUFFIXES:
        content.mesh = load_mesh(path, mesh_up)
        content.sources["mesh"] = str(path)
    elif suffix in CAMERA_SUFFIXES:
        _read_cameras(path, content)
    else:
        raise InputError(path=path, problem=f"has a suffix {suffix!r} the viewer cannot show",
                         fix="pass a run folder, a splat .ply, a mesh (.glb/.obj) or a camera file (.json/.txt/.npy)")
    if say is not None:
        for line in content.notes:
            say(line)
    if content.is_empty():
        raise InputError(path=path, problem="holds no splats, mesh, points or cameras",
                         fix="pass a run folder with splats.ply, mesh.glb or cameras/*.json")
    if content.frames is not None and content.cameras is not None and len(content.frames) != len(content.cameras):
        content.frames = None
    return content
