"""Read posed photo collections (LLFF, COLMAP, ``transforms.json``) into train/test Views.

:func:`read_scene` detects the format of a folder and returns a :class:`Scene`: training and
held-out Views (OpenCV cameras, images in [0, 1]), and the sparse points when the data has them
(used to initialize Gaussians). The camera conversions themselves live in
:mod:`vdm3d.cameras.io`; this module finds the files, pairs images with cameras, downsizes, and splits.

* **LLFF** (``poses_bounds.npy``): images from the lowest-resolution ``images_<k>`` folder present
  (``images`` otherwise); focal lengths are rescaled from the full-resolution ``hwf`` to the size of
  the images read. Points come from ``sparse/0/points3D.bin`` when present: LLFF poses are COLMAP's
  own poses with reordered axes, so both share one world frame (``tests/data/test_readers.py``
  checks that the near/far bounds of every view are the depth percentiles of the points it sees).
* **COLMAP** (``sparse/0`` with ``images.bin``/``.txt``): images from ``images/`` by name; the
  intrinsics are rescaled when the images are smaller than the model's cameras.
* **transforms.json** (nerfstudio / instant-ngp / Blender): ``file_path`` relative to the JSON, with
  ``.png`` tried when it has no extension; RGBA images give ``Views.alphas``. A folder with
  ``transforms_train.json`` and ``transforms_test.json`` (Blender) uses those files as the split.

Split (:class:`Split`): held-out views are every ``test_every``-th view starting at 0 (LLFF's
standard 1-in-8), or an explicit list; training views are the others, optionally thinned to an
explicit list or ``num_train_views`` evenly spaced ones (the sparse-view protocol of RegNeRF/FSGS:
``linspace`` over the remaining views, so 3 views of fern are 1, 10 and 19).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Callable, Literal

import cv2
import numpy as np
import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.distortion import (Distortion, distortion_from_colmap, distortion_from_transforms,
                                     undistort_image)
from vdm3d.cameras.io import (cameras_from_colmap, cameras_from_llff, colmap_intrinsics, llff_colmap_model,
                              llff_lens, load_npy, points_from_colmap, read_colmap, read_transforms_json)
from vdm3d.errors import ConfigError, InputError
from vdm3d.geometry.precision import far_offset
from vdm3d.io.images import read_image
from vdm3d.options import Range
from vdm3d.splat.ply import finite_points, load_points
from vdm3d.views import Views

SceneFormat = Literal["auto", "llff", "colmap", "transforms"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


@dataclasses.dataclass(frozen=True)
class Split:
    """Which views are held out for testing and which train."""

    test_every: Annotated[int, Range(0)] = 8
    """Hold out every k-th view, starting at view 0 (0: hold out none)."""
    test_views: Annotated[tuple[int, ...], Range(0)] = ()
    """Explicit held-out view indices (replace test_every when given)."""
    train_views: Annotated[tuple[int, ...], Range(0)] = ()
    """Explicit training view indices (default: every view not held out)."""
    num_train_views: Annotated[int | None, Range(1)] = None
    """Train on this many evenly spaced views of those not held out (sparse-view protocol)."""
    skip_missing: bool = False
    """Drop the frames whose image files are missing (default: refuse, naming them)."""


@dataclasses.dataclass(frozen=True)
class Scene:
    """A posed photo collection split into training and held-out views."""

    train: Views
    test: Views | None
    train_names: tuple[str, ...]
    test_names: tuple[str, ...]
    points_world: Tensor | None
    """Sparse points ``[P, 3]`` in the cameras' world frame, or None."""
    points_rgb: Tensor | None
    """Their colors ``[P, 3]`` in [0, 1]."""
    format: str
    train_indices: tuple[int, ...] = ()
    test_indices: tuple[int, ...] = ()
    undistorted: tuple[dict, ...] = ()
    """The lens distortions removed from the images (:mod:`vdm3d.cameras.distortion`), for the manifest."""
    offset: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    """What :func:`read_scene` subtracted from the file's world coordinates (float64; :func:`recentre_offset`):
    add it to a position of the cameras, points or a fit of them to get back to the file's coordinates. Zero
    when the scene was not moved."""


def split_indices(n: int, split: Split = Split(), source: str = "scene") -> tuple[list[int], list[int]]:
    """Training and held-out indices of ``n`` views."""
    def check(name: str, idx: tuple[int, ...]) -> None:
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise ConfigError(f"{source}: {name} {bad} are outside the {n} views (0..{n - 1}); pick valid indices.")

    check("test views", split.test_views)
    check("train views", split.train_views)
    if split.test_views:
        test = sorted(set(split.test_views))
    else:
        test = [i for i in range(n) if split.test_every > 0 and i % split.test_every == 0]
    rest = [i for i in range(n) if i not in test]
    if split.train_views:
        clash = sorted(set(split.train_views) & set(test))
        if clash:
            raise ConfigError(f"{source}: train views {clash} are also held out; choose other train views or "
                              "change --test-every / --test-views.")
        train = sorted(set(split.train_views))
    elif split.num_train_views is not None:
        k = split.num_train_views
        if not 1 <= k <= len(rest):
            raise ConfigError(f"{source}: num_train_views must be between 1 and {len(rest)} "
                              f"(the views not held out), got {k}.")
        picks = np.round(np.linspace(0, len(rest) - 1, k)).astype(int)
        train = [rest[p] for p in picks]
    else:
        train = rest
    if not train:
        raise ConfigError(f"{source}: no training views are left after holding out {len(test)} of {n}; "
                          "lower --test-every or give --train-views.")
    return train, test


def detect_format(root: Path) -> SceneFormat:
    if (root / "poses_bounds.npy").is_file():
        return "llff"
    if root.is_file() and root.suffix == ".json":
        return "transforms"
    if (root / "transforms.json").is_file() or (root / "transforms_train.json").is_file():
        return "transforms"
    for d in (root / "sparse" / "0", root / "sparse", root):
        if any((d / f"images.{e}").is_file() for e in ("bin", "txt")):
            return "colmap"
    for d in (root / "sparse" / "0", root / "sparse", root):
        partial = sorted(f.name for f in d.glob("*") if f.name in ("cameras.bin", "cameras.txt", "points3D.bin",
                                                                     "points3D.txt"))
        if partial:
            raise InputError(path=d, problem=f"has {' and '.join(partial)} but no images.bin or images.txt, so it is "
                             "not a whole COLMAP sparse model", fix="copy the model's images file beside them "
                             "(COLMAP writes cameras, images and points3D together)")
    subs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    inside = next((sub for sub in subs if _scene_marker(sub)), None)
    hint = f" (the folder {inside} inside it is one: pass that)" if inside is not None else ""
    raise InputError(path=root, problem="holds no poses_bounds.npy, transforms.json, cameras/transforms.json (a vdm3d "
                     "run's) or COLMAP sparse model" + hint,
                     fix="pass an LLFF, COLMAP or nerfstudio/Blender scene folder or a vdm3d run folder")


def _own_scene(folder: Path) -> bool:
    """Whether ``folder`` holds a scene of its own (LLFF, transforms.json, COLMAP); file names only."""
    return any((folder / f).is_file() for f in ("poses_bounds.npy", "transforms.json", "transforms_train.json")) \
        or any((d / f"images.{e}").is_file() for d in (folder / "sparse" / "0", folder / "sparse", folder)
               for e in ("bin", "txt"))


def _scene_marker(folder: Path) -> bool:
    return _own_scene(folder) or (folder / "cameras" / "transforms.json").is_file()


def run_scene_file(root: Path) -> Path:
    """``root``, or the ``cameras/transforms.json`` of a vdm3d run folder (``object``, ``explore``, ``stylize``:
    its frames; ``fit``, ``complete``: the training photos as fitted) when ``root`` is such a folder and holds
    no scene of its own, so that one job's run folder can be another's scene."""
    if root.is_dir() and not _own_scene(root) and (root / "cameras" / "transforms.json").is_file():
        return root / "cameras" / "transforms.json"
    return root


def read_scene(path: str | Path, split: Split = Split(), downscale: int = 1, format: SceneFormat = "auto",
               images: str | None = None, points_from: Literal["all", "train"] = "all",
               before_images: Callable[[int, int, int], None] | None = None) -> Scene:
    """Read a scene folder (or a transforms JSON file) into train/test Views and optional points.

    ``downscale`` divides both image sides (area filter, intrinsics rescaled); ``images`` names the
    image folder when the default choice is not wanted. ``points_from="train"`` keeps only the sparse
    points that at least two training views observe (COLMAP tracks; LLFF image ids follow the sorted
    image names), so a sparse-view fit does not start from points triangulated with held-out views.
    ``before_images(views, width, height)`` is called before the images are read (the size after
    ``downscale``), so a caller can say what is coming (reading 12-megapixel photos takes a while).
    """
    root = Path(path)
    if not root.exists():
        from vdm3d.io.runs import missing_path_error

        raise missing_path_error(root, "pass a scene folder")
    if downscale < 1:
        raise ConfigError(f"{root}: downscale must be a positive integer, got {downscale}.")
    if format == "auto":
        root = run_scene_file(root)
    fmt = detect_format(root) if format == "auto" else format
    if fmt == "transforms" and root.is_dir() and not (root / "transforms.json").is_file() \
            and (root / "transforms_train.json").is_file():
        return _read_blender_split(root, split, downscale)
    reader = {"llff": _llff, "colmap": _colmap, "transforms": _transforms}[fmt]
    cams, files, alphas_wanted, points, rgb, dists, size = reader(root, images, skip_missing=split.skip_missing)
    train, test = split_indices(len(files), split, str(root))
    if points_from == "train" and points is not None:
        points, rgb = _points_seen_by(root, fmt, files, train, points, rgb)  # by index: before any is left out
    if points is not None and fmt != "transforms":  # a transforms.json's PLY was checked when read (load_points)
        points, rgb = finite_points(points, rgb, root / "sparse" / "0" if fmt == "llff" else root, "points3D",
                                    "triangulate the model again, or fit with --init random")
    offset = recentre_offset(cams, points)
    cams, points = _moved(cams, offset, size), _moved_points(points, offset)
    if before_images is not None:
        before_images(len(train) + len(test), max(1, round(cams.width / downscale)), max(1, round(cams.height / downscale)))
    load = lambda idx: _views(cams, files, idx, downscale, alphas_wanted, dists)  # noqa: E731
    return Scene(load(train), load(test) if test else None, tuple(files[i].name for i in train),
                 tuple(files[i].name for i in test), points, rgb, fmt, tuple(train), tuple(test),
                 _applied(dists), offset)


def recentre_offset(cameras: Cameras, points: Tensor | None = None) -> np.ndarray:
    """The cameras' mean centre (float64) when they lie so far from the origin, for their spread, that float32
    numbers cannot place them finely (:func:`~vdm3d.geometry.precision.far_offset`, as ``vdm3d stylize``
    recentres a mesh), else zero. Georeferenced scenes are the case: a drone survey in UTM or ECEF coordinates
    has its cameras 5e6 units from the origin, where float32 steps by 0.5 and a fit of it breaks."""
    c = cameras.centers.detach().cpu().double().reshape(-1, 3).numpy()
    lo, hi = c.min(0), c.max(0)
    if float((hi - lo).max()) <= 0:  # one position (a turn on the spot): the points' extent sizes it, else 1 unit
        p = points.detach().cpu().double().reshape(-1, 3).numpy() if points is not None else np.zeros((0, 3))
        size = float(np.ptp(p, axis=0).max()) if len(p) else 0.0
        lo, hi = lo - (size if size > 0 else 1.0) / 2, hi + (size if size > 0 else 1.0) / 2
    if far_offset(lo, hi) is None:
        return np.zeros(3)
    return c.mean(0)


def _moved(cams: Cameras, offset: np.ndarray, size: tuple[int, int]) -> Cameras:
    """The float64 cameras moved by ``-offset`` while still float64, then float32 and resized to the images'
    ``size``."""
    if offset.any():
        cams = cams.translated(-offset)
    cams = cams.to(torch.float32)
    return cams.resize(*size) if size != (cams.width, cams.height) else cams


def _moved_points(points: Tensor | None, offset: np.ndarray) -> Tensor | None:
    if points is None:
        return None
    if offset.any():
        points = points.double() - torch.from_numpy(offset)
    return points.float()


def recentred_line(data: Path, scene: Scene) -> str | None:
    """The line saying that a scene far from the origin, for its cameras' spread, was fitted about its
    cameras' centre (:func:`recentre_offset`); None when it was not moved."""
    offset = scene.offset
    if not offset.any():
        return None
    cams = [scene.train.cameras] + ([scene.test.cameras] if scene.test is not None else [])
    c = torch.cat([v.centers.double().reshape(-1, 3) for v in cams]).numpy()
    spread = float(np.ptp(c, axis=0).max())
    far = float(np.abs(c + offset).max())
    point = "(" + ", ".join(f"{v:.10g}" for v in offset) + ")"
    where = (f"{far / spread:.3g} times its cameras' spread of {spread:.3g}" if spread > 0 else
             "its cameras all at one point")
    return (f"scene: {data.name} lies {far:.3g} units from the origin, {where}; fitted about its cameras' centre {point} so that 32-bit "
            "numbers place it finely; splats.ply and cameras/ are in that moved frame (add the offset, recorded "
            "in the manifest and as cameras/transforms.json's applied_transform, to return to the file's "
            "coordinates)")


# -- formats -------------------------------------------------------------------------------------
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES) if folder.is_dir() else []


def _llff(root: Path, images: str | None, skip_missing: bool = False):
    if images is None:
        candidates = sorted((p for p in root.glob("images_*") if p.name[7:].isdigit()), key=lambda p: -int(p.name[7:]))
        folder = next((p for p in [*candidates, root / "images"] if _image_files(p)), root / "images")
    else:
        folder = root / images
    files = _image_files(folder)
    if not files:
        raise InputError(path=folder, problem="holds no PNG or JPEG images", fix="pass the LLFF scene folder")
    poses = load_npy(root / "poses_bounds.npy")
    if poses.ndim != 2 or poses.shape[1] != 17:
        raise InputError(path=root / "poses_bounds.npy", problem=f"has shape {tuple(poses.shape)}, not [N, 17]",
                         fix="regenerate it with LLFF's imgs2poses.py")
    if len(poses) != len(files):
        raise InputError(path=root / "poses_bounds.npy", problem=f"has {len(poses)} poses but {folder} has "
                         f"{len(files)} images", fix="use the image folder that poses_bounds.npy was made from")
    h, w = read_image(files[0]).shape[:2]
    cams, _ = cameras_from_llff(root / "poses_bounds.npy", width=w, height=h, dtype=torch.float64)
    points = rgb = None
    dists: list[Distortion | None] = [None] * len(files)
    model = llff_colmap_model(root / "poses_bounds.npy")
    if model is not None:
        if len(model.points3D):
            points, rgb = points_from_colmap(model, torch.float64)  # 64-bit until recentred
        # LLFF's poses come from this COLMAP run: its lens model applies to the images
        dists = [llff_lens(model)] * len(files)
    return cams, files, False, points, rgb, dists, (w, h)


def _colmap(root: Path, images: str | None, skip_missing: bool = False):
    model = read_colmap(root)
    # 64-bit until recentred; the images are undistorted below
    cams, names = cameras_from_colmap(model, distortion="drop", dtype=torch.float64)
    folder = root / (images or "images")
    files = [folder / n for n in names]
    keep = _present(files, root / "sparse", skip_missing, f"the images the model names in {folder}")
    cams, files = cams[torch.tensor(keep)], [files[i] for i in keep]
    images_sorted = sorted(model.images.values(), key=lambda im: im.name)  # the order of cameras_from_colmap
    where = str(model.path)
    dists = [distortion_from_colmap(model.cameras[images_sorted[i].camera_id].model,
                                    colmap_intrinsics(model.cameras[images_sorted[i].camera_id], where)[1], where)
             for i in keep]
    h, w = read_image(files[0]).shape[:2]  # the cameras are resized to it once recentred and float32
    points, rgb = points_from_colmap(model, torch.float64)  # 64-bit until recentred
    if not len(points):
        points = rgb = None
    return cams, files, False, points, rgb, dists, (w, h)


def _frame_file(json_path: Path, name: str) -> Path:
    """The image a frame's ``file_path`` names (``.png`` etc. tried when it has no suffix); may not exist."""
    p = (json_path.parent / name)
    if p.suffix == "" or not p.is_file():
        for s in ("", *IMAGE_SUFFIXES):
            q = p.with_name(p.name + s)
            if q.is_file():
                return q
    return p


def _present(files: list[Path], source: Path, skip_missing: bool, fix: str) -> list[int]:
    """Indices of the frames whose image file exists; refuses (naming how many and which) unless
    ``skip_missing``, and refuses when none is left."""
    keep = [i for i, f in enumerate(files) if f.is_file()]
    missing = [files[i].name for i in range(len(files)) if i not in set(keep)]
    if missing and (not skip_missing or not keep):
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        what = f"{len(missing)} of {len(files)} frames have no image file ({shown})"
        raise InputError(path=source, problem=what, fix=(f"restore {fix}" if not keep else
                         f"restore {fix} or pass --skip-missing to drop those frames"))
    return keep


def _transforms(root: Path, images: str | None, json_path: Path | None = None, skip_missing: bool = False):
    json_path = json_path or (root if root.is_file() else root / "transforms.json")
    cams, names, extras = read_transforms_json(json_path, dtype=torch.float64)
    files = [_frame_file(json_path, n) for n in names]
    keep = _present(files, json_path, skip_missing, "the images its file_path entries name")
    cams, files = cams[torch.tensor(keep)], [files[i] for i in keep]
    lens = extras.get("distortion")
    per_frame = lens if isinstance(lens, list) else [lens or {}] * len(names)
    dists = [distortion_from_transforms(per_frame[i], str(json_path)) for i in keep]
    h, w = read_image(files[0]).shape[:2]  # the cameras are resized to it once recentred and float32
    points = rgb = None
    ply = extras.get("top", {}).get("ply_file_path")
    if ply and (json_path.parent / ply).is_file():
        points, rgb = load_points(json_path.parent / ply)
    return cams, files, True, points, rgb, dists, (w, h)


def _read_blender_split(root: Path, split: Split, downscale: int) -> Scene:
    cams, files, _, points, rgb, dists, size = _transforms(root, None, root / "transforms_train.json",
                                                           split.skip_missing)
    train, _ = split_indices(len(files), dataclasses.replace(split, test_every=0, test_views=()), str(root))
    offset = recentre_offset(cams, points)  # the training cameras' centre moves the held-out ones too
    cams, points = _moved(cams, offset, size), _moved_points(points, offset)
    test_file = root / "transforms_test.json"
    test = None
    test_names: tuple[str, ...] = ()
    if test_file.is_file():
        tcams, tfiles, _, _, _, tdists, tsize = _transforms(root, None, test_file, split.skip_missing)
        test = _views(_moved(tcams, offset, tsize), tfiles, list(range(len(tfiles))), downscale, True, tdists)
        test_names = tuple(f.name for f in tfiles)
    return Scene(_views(cams, files, train, downscale, True, dists), test, tuple(files[i].name for i in train),
                 test_names, points, rgb, "transforms", tuple(train), (), _applied(dists), offset)


def _points_seen_by(root: Path, fmt: str, files: list[Path], views: list[int], points: Tensor, rgb: Tensor
                    ) -> tuple[Tensor | None, Tensor | None]:
    """The points whose COLMAP track holds at least two of ``views`` (indices into ``files``)."""
    model = read_colmap(root / "sparse" / "0" if fmt == "llff" else root)
    if len(model.points3D) != len(points):
        raise InputError(path=root, problem="has points whose COLMAP tracks could not be matched",
                         fix="use points_from='all'")
    if fmt == "llff":  # image ids 1..N in sorted-name order, as LLFF's imgs2poses writes them
        view_of_id = {i + 1: i for i in range(len(files))}
    else:
        index = {f.name: i for i, f in enumerate(files)}
        view_of_id = {im.id: index.get(im.name) for im in model.images.values()}
    wanted = set(views)
    keep = torch.tensor([len({view_of_id.get(int(i)) for i in t[:, 0]} & wanted) >= 2
                         for t in model.points3D.tracks], dtype=torch.bool)
    if not keep.any():
        return None, None
    return points[keep], rgb[keep]


# -- images -> Views -----------------------------------------------------------------------------
def _applied(dists: list[Distortion | None]) -> tuple[dict, ...]:
    """The distinct distortions that were removed, described for the manifest."""
    seen: list[Distortion] = []
    for d in dists:
        if d is not None and d not in seen:
            seen.append(d)
    return tuple(d.describe() for d in seen)


def _views(cams: Cameras, files: list[Path], idx: list[int], downscale: int, alphas_wanted: bool,
           dists: list[Distortion | None] | None = None) -> Views:
    w, h = cams.width, cams.height
    size = (max(1, round(w / downscale)), max(1, round(h / downscale)))
    imgs, alphas = [], []
    for i in idx:
        img = read_image(files[i], alpha=alphas_wanted)
        if img.shape[:2] != (h, w):
            raise InputError(path=files[i], problem=f"is {img.shape[1]}x{img.shape[0]} but the other images are "
                             f"{w}x{h}", fix="give every image of the scene the same size")
        if dists is not None and dists[i] is not None:  # to pinhole, at full size, before any resizing
            img = undistort_image(img, cams.Ks[i], dists[i])
        img = img.numpy()
        if size != (w, h):
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        imgs.append(torch.from_numpy(np.ascontiguousarray(img[..., :3])))
        if alphas_wanted:
            alphas.append(torch.from_numpy(np.ascontiguousarray(img[..., 3])))
    sel = cams[torch.tensor(idx)]
    sel = sel.resize(*size) if size != (w, h) else sel
    has_alpha = alphas_wanted and any(bool((a < 1).any()) for a in alphas)
    return Views(torch.stack(imgs).float(), sel.to(torch.float32), torch.stack(alphas).float() if has_alpha else None)
