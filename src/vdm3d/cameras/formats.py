"""Read and write a camera path in any supported format, keeping names, timestamps and extras.

Used by ``vdm3d trajectory convert`` and anything else that accepts "a camera file". Formats:

=============  =======================================  ===============================
name           file                                      read / write
=============  =======================================  ===============================
``vdm3d``      ``*.json`` with ``"format": "vdm3d.trajectory"``   both
``transforms`` nerfstudio/Blender ``transforms*.json``    both (fps, RE10K url/timestamps kept as extras)
``colmap``     a folder (``sparse/0``) or its parent       both (binary by default)
``re10k``      RealEstate10K ``*.txt``                      both
``llff``       ``poses_bounds.npy`` (lens: ``sparse/0``)    read
=============  =======================================  ===============================

Everything read becomes a :class:`CameraFile`: a :class:`Trajectory` (fps from the file when it
has one - RE10K timestamps, a ``fps`` key - else 24) plus per-frame names and optional timestamps.

Names are image paths relative to the file's own folder in a ``transforms.json`` and in a vdm3d
trajectory that lists them (``root``); COLMAP's are relative to an image folder the model does not
store, RE10K's are timestamps. Written elsewhere, names that resolve to images are rebased, so that
they still name the same files: relative to the new file's folder (``transforms``, ``vdm3d``), or, in a
COLMAP model, relative to the images' common folder (:func:`images_folder`, COLMAP's image path).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vdm3d.cameras.distortion import Distortion, has_lens, refuse_distortion
from vdm3d.cameras.io import (cameras_from_colmap, cameras_from_llff, colmap_from_cameras, colmap_intrinsics,
                              colmap_lenses, llff_colmap_model, llff_lens, read_colmap, read_re10k,
                              read_transforms_json, write_colmap, write_re10k, write_transforms_json)
from vdm3d.cameras.io_colmap import holds_colmap_model
from vdm3d.cameras.io_transforms import read_json
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.cameras.trajectory_file import save_trajectory, trajectory_from_dict
from vdm3d.errors import InputError

CameraFormat = Literal["auto", "vdm3d", "transforms", "colmap", "re10k", "llff"]
DEFAULT_FPS = 24.0


@dataclasses.dataclass(frozen=True)
class CameraFile:
    trajectory: Trajectory
    names: list[str]
    timestamps_us: list[int] | None = None
    url: str | None = None
    extras: dict[str, Any] | None = None
    fps_recorded: bool = False
    """whether the file records its frame rate (a vdm3d trajectory's ``fps``, a transforms.json's ``fps`` or
    frame timestamps, RealEstate10K's timestamps); where not, the trajectory's ``fps`` is ``DEFAULT_FPS``"""
    root: Path | None = None
    """the folder the names are paths relative to (the file's own folder for a transforms.json and for a
    vdm3d trajectory that lists names); ``None`` where names are not paths from a known folder"""

    def images(self) -> list[Path] | None:
        """The image file of every camera, when every name resolves to one from :attr:`root`; else ``None``."""
        if self.root is None or not self.names:
            return None
        paths = [Path(os.path.normpath(os.path.abspath(self.root / n))) for n in self.names]
        return paths if all(p.is_file() for p in paths) else None


def images_folder(cf: CameraFile) -> Path | None:
    """The folder that holds every camera's image (their deepest common folder), or ``None`` when the
    names do not resolve to images: what a COLMAP model's image names are relative to."""
    images = cf.images()
    return _common_folder(images) if images else None


def _common_folder(images: list[Path]) -> Path:
    return Path(os.path.commonpath([p.parent for p in images]))


def _names_at(cf: CameraFile, fmt: str, path: Path) -> list[str]:
    """``cf.names`` as they must be written at ``path`` to name the same images (see the module docstring)."""
    images = cf.images()  # checks every file once
    if images is None:
        return cf.names
    base = _common_folder(images) if fmt == "colmap" else Path(os.path.abspath(path)).parent
    return [Path(os.path.relpath(p, base)).as_posix() for p in images]


RUN_CAMERA_FILES = ("cameras/trajectory.json", "cameras/orbit.json", "trajectory.json", "cameras/transforms.json",
                    "transforms.json", "poses_bounds.npy")
"""The camera file of a folder that is not a COLMAP model, in this order: a vdm3d run's trajectory
(``explore``, ``stylize``; ``object``'s ``orbit.json``), a ``vdm3d data make`` case's, a run's
``transforms.json`` (``fit``), a scene's, LLFF poses. A run writes the same cameras to its trajectory JSON
and its ``transforms.json``; the JSON comes first because it also records the frame rate and provenance."""


def camera_file_in(folder: str | Path) -> Path:
    """The camera file to read for ``folder``: the folder itself when it holds a COLMAP model (``sparse/0``
    or its parent), else the first of :data:`RUN_CAMERA_FILES` in it, so that a run folder of any vdm3d job,
    a ``vdm3d data make`` case or a scene folder can be passed where a camera file is asked for. Refuses a
    folder with none, naming the files looked for (and a sub-folder that has one, e.g. a dataset's case)."""
    folder = Path(folder)
    found = next((folder / name for name in RUN_CAMERA_FILES if (folder / name).is_file()), None)
    # an LLFF scene often carries a COLMAP model without its images file (fern: cameras.bin, points3D.bin),
    # which holds no poses: its poses_bounds.npy is the camera file then, as the scene reader takes it
    whole = any((d / f"images.{e}").is_file() for d in (folder, folder / "0", folder / "sparse" / "0",
                                                         folder / "sparse") for e in ("bin", "txt"))
    if holds_colmap_model(folder) and (whole or found is None):
        return folder
    if found is not None:
        return found
    subs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    inside = next((sub for sub in subs if any((sub / n).is_file() for n in RUN_CAMERA_FILES)), None)
    hint = f" (the folder {inside} inside it has one: pass that)" if inside is not None else ""
    raise InputError(path=folder, problem="holds no camera file: no COLMAP model (cameras.bin or cameras.txt), no "
                     "cameras/trajectory.json, cameras/orbit.json or cameras/transforms.json of a vdm3d run, and no "
                     "trajectory.json, transforms.json or poses_bounds.npy" + hint,
                     fix="pass a camera file (vdm3d JSON, transforms.json, RE10K .txt, poses_bounds.npy), a COLMAP "
                         "sparse/0 folder or a vdm3d run folder")


def detect_format(path: Path, for_writing: bool = False) -> str:
    """Guess the format from the path (and, for reading JSON, from the content)."""
    s = path.suffix.lower()
    if s == ".txt":
        return "re10k"
    if s == ".npy":
        return "llff"
    if s == ".json":
        if for_writing:
            return "transforms" if "transforms" in path.name else "vdm3d"
        data = read_json(path)
        # a "format" tag means a vdm3d file (validated as such); nerfstudio/Blender files have none
        return "vdm3d" if isinstance(data, dict) and "format" in data else "transforms"
    if s == "" or path.is_dir() or s in (".bin",):
        return "colmap"
    raise InputError(path=path, problem=f"has a suffix {s!r} that names no camera format",
                     fix="give it the suffix of its format (.json: vdm3d or transforms, .txt: RE10K, "
                         ".npy: LLFF, a folder: COLMAP), or name the format with `vdm3d trajectory convert "
                         "FILE --from-format F --out path.json` (--to F when writing)")


def _lens_keys(lens: Distortion) -> dict[str, float]:
    """A lens as a transforms.json writes it (OPENCV's ``k1 k2 p1 p2``, and ``k3`` when it has one)."""
    keys = ("k1", "k2", "p1", "p2", "k3") if lens.k3 else ("k1", "k2", "p1", "p2")
    return {k: getattr(lens, k) for k in keys}


def _timed(stamps: list[int] | None) -> bool:
    """Whether frame timestamps give a frame rate (two or more, increasing on the median)."""
    return bool(stamps) and len(stamps) > 1 and float(np.median(np.diff(stamps))) > 0


def _fps_from_timestamps(stamps: list[int]) -> float:
    return 1e6 / float(np.median(np.diff(stamps))) if _timed(stamps) else DEFAULT_FPS


def read_camera_file(path: str | Path, fmt: CameraFormat = "auto", width: int | None = None,
                     height: int | None = None, distortion: Literal["refuse", "drop", "keep"] = "refuse",
                     dtype: torch.dtype = torch.float64) -> CameraFile:
    """Read cameras from ``path``; ``width``/``height`` set the image size where the format lacks one
    (RE10K: by default the size with square pixels, 360 high) or rescale it (LLFF).

    Lens distortion in any format (a COLMAP model's cameras, a transforms.json's ``k1..p2`` per frame or at
    the top level, the COLMAP lens in ``sparse/0`` beside LLFF poses) is, by ``distortion``: refused in one
    sentence (the default: every job's path would otherwise run as pinhole cameras without a word), dropped
    (the pinhole part kept, for images that are already undistorted) or, with ``keep``, kept in
    ``extras["distortion"]`` as a transforms.json holds it, for a writer to store or refuse (`trajectory
    convert`) or for a caller that only draws the poses. Coefficients that are all zero are no lens."""
    path = Path(path)
    if not path.exists():
        from vdm3d.io.runs import missing_path_error

        raise missing_path_error(path, "check the path")
    if fmt == "auto" and path.is_dir():
        path = camera_file_in(path)  # a run folder, a data case, a scene: its camera file
    fmt = detect_format(path) if fmt == "auto" else fmt
    src = {"source": str(path), "source_format": fmt}
    if fmt == "vdm3d":
        t = trajectory_from_dict(read_json(path), path)
        t = Trajectory(t.cameras.to(dtype), t.fps, t.provenance)
        listed = t.provenance.get("names")
        names = listed or [f"frame_{i:05d}" for i in range(len(t))]
        stamps = t.provenance.get("timestamps_us")
        return CameraFile(t, list(names), stamps, t.provenance.get("url"), None, fps_recorded=True,
                          root=path.parent if listed else None)
    if fmt == "transforms":
        cams, names, extras = read_transforms_json(path, dtype=dtype)
        extras = _lens_policy(path, extras, names, distortion, "e.g. colmap image_undistorter or cv2.undistort")
        top, frames = extras.get("top", {}), extras.get("frames", [])
        stamps = [int(f["timestamp_us"]) for f in frames] if frames and all("timestamp_us" in f for f in frames) else None
        own = isinstance(top.get("fps"), (int, float)) and top["fps"] > 0
        fps = float(top["fps"]) if own else (_fps_from_timestamps(stamps) if stamps else DEFAULT_FPS)
        return CameraFile(Trajectory(cams, fps, {**src}), names, stamps, top.get("re10k_url"), extras,
                          fps_recorded=own or _timed(stamps), root=path.parent)
    if fmt == "re10k":
        cams, stamps, url = read_re10k(path, width, height, dtype=dtype)
        return CameraFile(Trajectory(cams, _fps_from_timestamps(stamps), {**src, "url": url}),
                          [f"{s}" for s in stamps], stamps, url, fps_recorded=_timed(stamps))
    if fmt == "llff":
        cams, bounds = cameras_from_llff(path, width, height, dtype=dtype)
        # the lens of the COLMAP run the poses came from, as the scene readers find it; kept like a
        # transforms.json's, so that a writer stores it or `trajectory convert` refuses to drop it
        model = llff_colmap_model(path)
        lens = llff_lens(model) if model is not None else None
        extras = {"distortion": _lens_keys(lens)} if lens is not None else None
        if lens is not None and distortion != "keep":
            kind = next(iter(model.cameras.values())).model
            extras = _lens_policy(path, extras, [f"its COLMAP model sparse/0 ({kind})"], distortion,
                                  "colmap image_undistorter")
        return CameraFile(Trajectory(cams, DEFAULT_FPS, {**src, "bounds": bounds.tolist()}),
                          [f"frame_{i:05d}" for i in range(len(cams))], extras=extras)
    if fmt == "colmap":
        model = read_colmap(path)
        if distortion == "refuse":  # named as the user named the model (cameras_from_colmap names sparse/0)
            for im in sorted(model.images.values(), key=lambda im: im.name):
                cam = model.cameras.get(im.camera_id)
                dist = colmap_intrinsics(cam, str(path))[1] if cam is not None else {}
                if any(dist.values()):
                    raise refuse_distortion(path, f"camera {cam.id} ({cam.model})", dist)
        cams, names = cameras_from_colmap(model, distortion="drop" if distortion == "keep" else distortion,
                                          dtype=dtype)
        lenses = colmap_lenses(model) if distortion == "keep" else []
        keys = [_lens_keys(lens or Distortion()) for lens in lenses]
        kept = None if not any(lenses) else keys[0] if all(k == keys[0] for k in keys) else keys
        return CameraFile(Trajectory(cams, DEFAULT_FPS, src), names,
                          extras={"distortion": kept} if kept is not None else None)
    raise InputError(path=path, problem=f"format {fmt!r} is unknown", fix="use vdm3d, transforms, colmap, re10k or llff")


def _lens_policy(path: Path, extras: dict[str, Any] | None, names: list[str], distortion: str, undistort: str
                 ) -> dict[str, Any] | None:
    """``extras`` with a lens (``extras["distortion"]``) refused, dropped or kept, as :func:`read_camera_file`
    says; ``names`` name the cameras the lens belongs to (one name when one lens is shared by all)."""
    kept = (extras or {}).get("distortion")
    if distortion == "keep" or not has_lens(kept):
        return extras
    if distortion == "drop":
        extras = {**extras, "distortion": None}
        if extras.get("camera_model") == "OPENCV":
            extras["camera_model"] = "PINHOLE"  # written back, the file says what its cameras are
        return extras
    if isinstance(kept, list):
        i = next(i for i, d in enumerate(kept) if has_lens(d))
        raise refuse_distortion(path, f"frame {i} ({names[i]})", kept[i], undistort)
    raise refuse_distortion(path, "every frame" if len(names) > 1 else names[0], kept, undistort)


def write_camera_file(path: str | Path, cf: CameraFile, fmt: CameraFormat = "auto", colmap_binary: bool = True) -> Path:
    """Write ``cf`` to ``path`` in ``fmt`` (by suffix when ``auto``). Single files are written atomically;
    a COLMAP folder is written inside ``path``."""
    path = Path(path)
    fmt = detect_format(path, for_writing=True) if fmt == "auto" else fmt
    t = cf.trajectory
    names = _names_at(cf, fmt, path)
    if fmt == "vdm3d":
        prov = {**t.provenance, "names": names}
        if cf.timestamps_us is not None:
            prov["timestamps_us"] = cf.timestamps_us
        if cf.url:
            prov["url"] = cf.url
        return save_trajectory(path, Trajectory(t.cameras, t.fps, prov))
    if fmt == "transforms":
        extras = dict(cf.extras or {})
        top = dict(extras.get("top", {}))
        top["fps"] = t.fps
        if cf.url:
            top["re10k_url"] = cf.url
        frames = [dict(f) for f in (extras.get("frames") or [{} for _ in names])]
        if cf.timestamps_us is not None:
            for f, s in zip(frames, cf.timestamps_us):
                f["timestamp_us"] = int(s)
        extras.update(top=top, frames=frames)
        return write_transforms_json(path, t.cameras, names, extras)
    if fmt == "re10k":
        return write_re10k(path, t.cameras, cf.timestamps_us or [round(i * 1e6 / t.fps) for i in range(len(t))],
                           cf.url or "")
    if fmt == "colmap":
        return write_colmap(colmap_from_cameras(t.cameras, names), path, binary=colmap_binary)
    raise InputError(path=path, problem=f"cannot be written as {fmt!r}",
                     fix="write vdm3d, transforms, colmap or re10k (LLFF is read-only)")
