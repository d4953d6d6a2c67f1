"""Converters between vdm3d's camera convention and the formats the outside world uses.

Inside vdm3d every camera is OpenCV (x right, y down, z forward), camera-to-world, intrinsics in
pixels with pixel centers at +0.5 (see :mod:`vdm3d.cameras.camera`). Each outside convention is
converted here, by a named function, with the axis flips written where they happen:

==========================  =====================================================================
format                      what differs, and the function
==========================  =====================================================================
OpenGL / Blender /          camera looks along -z with y up: flip the camera's y and z axes.
nerfstudio                  :func:`opencv_from_opengl`, :func:`read_transforms_json`,
``transforms.json``         :func:`write_transforms_json` (shared or per-frame intrinsics,
                            ``camera_angle_x`` Blender files, distortion kept in ``extras``)
COLMAP                      world-to-camera quaternion + translation, OpenCV axes, pixel centers at
                            +0.5 like ours: :func:`read_colmap`, :func:`write_colmap`,
                            :func:`cameras_from_colmap`, :func:`colmap_from_cameras`
LLFF ``poses_bounds.npy``   c2w columns ordered (down, right, back) plus ``[h, w, f]`` at full
                            resolution and near/far: :func:`cameras_from_llff`, :func:`llff_from_cameras`
RealEstate10K ``.txt``      world-to-camera 3x4 (OpenCV), intrinsics divided by the image size:
                            :func:`read_re10k`, :func:`write_re10k`
SV3D orbit parameters       elevation/azimuth/radius/fov around the origin, z up: :func:`cameras_from_sv3d`
==========================  =====================================================================

Readers take ``dtype`` (float32 by default); pass ``torch.float64`` for exact round trips.
Lens distortion is never applied to :class:`Cameras` (they are pinhole): readers either keep the
coefficients beside the cameras (``transforms.json`` extras) or refuse with a sentence that says how
to proceed (COLMAP models with distortion, fisheye models).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras, intrinsics, look_at, rigid_inverse
from vdm3d.cameras.distortion import Distortion, distortion_from_colmap, refuse_distortion
from vdm3d.cameras.io_colmap import (CAMERA_MODELS, ColmapCamera, ColmapImage, ColmapModel, ColmapPoints,
                                     read_colmap, write_colmap)
from vdm3d.cameras.io_transforms import (opencv_from_opengl, opengl_from_opencv, read_json, read_transforms_json,
                                         write_transforms_json)
from vdm3d.cameras.rotations import matrix_from_quat, quat_from_matrix
from vdm3d.errors import CameraError, InputError
from vdm3d.io.runs import atomic_write_bytes

__all__ = ["CAMERA_MODELS", "ColmapCamera", "ColmapImage", "ColmapModel", "ColmapPoints", "read_colmap", "write_colmap",
           "cameras_from_colmap", "colmap_from_cameras", "points_from_colmap", "cameras_from_llff",
           "llff_from_cameras", "llff_colmap_model", "llff_lens", "read_transforms_json", "write_transforms_json",
           "opencv_from_opengl", "opengl_from_opencv", "read_json", "read_re10k", "write_re10k", "cameras_from_sv3d"]

# -- COLMAP ------------------------------------------------------------------------------------
_PINHOLE_PARAMS = {  # model -> indices of (fx, fy, cx, cy) in params, and names of distortion terms
    "SIMPLE_PINHOLE": ((0, 0, 1, 2), ()), "PINHOLE": ((0, 1, 2, 3), ()),
    "SIMPLE_RADIAL": ((0, 0, 1, 2), ("k1",)), "RADIAL": ((0, 0, 1, 2), ("k1", "k2")),
    "OPENCV": ((0, 1, 2, 3), ("k1", "k2", "p1", "p2")),
    "FULL_OPENCV": ((0, 1, 2, 3), ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")),
}


def colmap_intrinsics(cam: ColmapCamera, where: str = "COLMAP model"
                      ) -> tuple[tuple[float, float, float, float], dict[str, float]]:
    """``(fx, fy, cx, cy)`` in pixels and the named distortion coefficients of a COLMAP camera."""
    if cam.model not in _PINHOLE_PARAMS:
        raise CameraError(f"{where}: camera {cam.id} model {cam.model} is a fisheye/non-pinhole model that vdm3d "
                          "cannot represent; undistort the images first (colmap image_undistorter).")
    idx, dist_names = _PINHOLE_PARAMS[cam.model]
    p = cam.params
    return tuple(float(p[i]) for i in idx), {k: float(p[len(p) - len(dist_names) + j]) for j, k in enumerate(dist_names)}


def cameras_from_colmap(model: ColmapModel, distortion: Literal["refuse", "drop"] = "refuse",
                        dtype: torch.dtype = torch.float32) -> tuple[Cameras, list[str]]:
    """Cameras of the registered images, sorted by image name, with per-image intrinsics.

    COLMAP stores world-to-camera in OpenCV axes, so only an inverse is needed (no axis flip).
    ``distortion="refuse"`` raises when a camera has non-zero distortion terms; ``"drop"`` keeps the
    pinhole part (only sensible for images that were already undistorted).
    """
    where = str(model.path) if model.path is not None else "COLMAP model"  # messages name the model folder
    if not model.images:
        raise InputError(f"{where}: no registered images (images.bin/images.txt missing or empty); "
                         "cameras need image poses, so pass a model with an images file.")
    images = sorted(model.images.values(), key=lambda im: im.name)
    for im in images:
        if im.camera_id not in model.cameras:
            raise InputError(f"{where}: image {im.name!r} refers to camera {im.camera_id}, which is not in "
                             "cameras; re-export the model.")
    sizes = {(model.cameras[im.camera_id].width, model.cameras[im.camera_id].height) for im in images}
    if len(sizes) != 1:
        raise CameraError(f"{where}: images have {len(sizes)} different sizes {sorted(sizes)}; vdm3d Cameras "
                          "share one size, so resize or split the images first.")
    Ks, w2c = [], []
    for im in images:
        (fx, fy, cx, cy), dist = colmap_intrinsics(model.cameras[im.camera_id], where)
        if distortion == "refuse" and any(abs(v) > 0 for v in dist.values()):
            raise refuse_distortion(where, f"camera {im.camera_id} ({model.cameras[im.camera_id].model})", dist)
        Ks.append([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = matrix_from_quat(torch.as_tensor(im.qvec, dtype=torch.float64))
        T[:3, 3] = torch.as_tensor(im.tvec, dtype=torch.float64)
        w2c.append(T)
    w, h = sizes.pop()
    c2w = rigid_inverse(torch.stack(w2c))
    return Cameras(torch.tensor(Ks, dtype=dtype), c2w.to(dtype), w, h), [im.name for im in images]


def colmap_lenses(model: ColmapModel) -> list[Distortion | None]:
    """The lens distortion of each registered image, in :func:`cameras_from_colmap`'s order (by name)."""
    where = str(model.path) if model.path is not None else "COLMAP model"
    images = sorted(model.images.values(), key=lambda im: im.name)
    return [distortion_from_colmap(model.cameras[im.camera_id].model,
                                   colmap_intrinsics(model.cameras[im.camera_id], where)[1], where) for im in images]


def colmap_from_cameras(cameras: Cameras, names: Sequence[str], points_world: Tensor | np.ndarray | None = None,
                        colors: np.ndarray | None = None) -> ColmapModel:
    """A COLMAP model with one PINHOLE camera per distinct intrinsics, the images, and optional points
    (no keypoints or tracks: a model for initialization, like the ones nerfstudio writes)."""
    cams = cameras.flatten().to(torch.float64)
    if len(names) != len(cams):
        raise InputError(f"colmap_from_cameras: {len(cams)} cameras but {len(names)} names; pass one name per camera.")
    w2c = cams.w2c
    colmap_cams: dict[tuple, int] = {}
    out_cams, out_images = {}, {}
    for i, name in enumerate(names):
        key = tuple(round(float(v), 12) for v in (cams.fx[i], cams.fy[i], cams.cx[i], cams.cy[i]))
        if key not in colmap_cams:
            cid = len(colmap_cams) + 1
            colmap_cams[key] = cid
            out_cams[cid] = ColmapCamera(cid, "PINHOLE", cams.width, cams.height,
                                         np.array([float(cams.fx[i]), float(cams.fy[i]), float(cams.cx[i]),
                                                   float(cams.cy[i])]))
        q = quat_from_matrix(w2c[i, :3, :3]).numpy()
        out_images[i + 1] = ColmapImage(i + 1, q, w2c[i, :3, 3].numpy().copy(), colmap_cams[key], str(name))
    pts = ColmapPoints.empty()
    if points_world is not None:
        xyz = np.asarray(points_world.detach().cpu() if torch.is_tensor(points_world) else points_world, np.float64)
        n = len(xyz)
        rgb = np.full((n, 3), 128, np.uint8) if colors is None else np.asarray(colors, np.uint8).reshape(n, 3)
        pts = ColmapPoints(np.arange(1, n + 1, dtype=np.int64), xyz.reshape(n, 3), rgb, np.zeros(n),
                           [np.zeros((0, 2), np.int32) for _ in range(n)])
    return ColmapModel(out_cams, out_images, pts)


def points_from_colmap(model: ColmapModel, dtype: torch.dtype = torch.float32
                       ) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3"]]:
    """World points (``dtype``: float64 keeps a georeferenced model's digits) and their colors in [0, 1] (float32:
    8-bit values need no more) from a COLMAP model."""
    p = model.points3D
    return torch.as_tensor(p.xyz, dtype=dtype), torch.as_tensor(p.rgb, dtype=torch.float32) / 255.0


# -- LLFF --------------------------------------------------------------------------------------
def load_npy(path: str | Path, fix: str = "regenerate it with LLFF's imgs2poses.py") -> np.ndarray:
    """The guarded entry for camera ``.npy`` files: a numeric array, never a pickle.

    A missing, empty, truncated or garbage file, or one that holds Python objects (which only a
    pickle load could read, and a pickle can run code), raises :class:`InputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist" if not path.exists() else "is not a file",
                         fix="pass the scene's poses_bounds.npy")
    if path.stat().st_size == 0:
        raise InputError(path=path, problem="is empty (0 bytes)", fix=fix)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(path=path, problem="holds Python objects (a pickle), which vdm3d never loads because "
                             "a pickle can run code", fix="save a plain float array with numpy.save") from None
        raise InputError(path=path, problem="is not a readable .npy array", fix=fix) from None
    except Exception:  # noqa: BLE001 - any numpy failure (EOF, bad header, zip) means a broken file
        raise InputError(path=path, problem="is not a readable .npy array", fix=fix) from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise InputError(path=path, problem=f"holds {getattr(arr, 'dtype', type(arr).__name__)} values, not numbers",
                         fix=fix)
    return arr



def cameras_from_llff(poses_bounds: np.ndarray | str | Path, width: int | None = None, height: int | None = None,
                      dtype: torch.dtype = torch.float32) -> tuple[Cameras, Float[Tensor, "N 2"]]:
    """Cameras and near/far bounds ``[N, 2]`` from LLFF's ``poses_bounds.npy`` (``[N, 17]``).

    Each row is a 3x5 matrix (rotation columns down, right, back; translation; ``[h, w, f]`` at the
    resolution COLMAP ran at) followed by near and far. When ``width``/``height`` differ from that
    resolution (LLFF's ``images_8`` are 1/8 size), focal lengths are scaled by ``width / w`` and
    ``height / h``. The principal point is the image center, as LLFF assumes.
    """
    src = "poses_bounds"
    if isinstance(poses_bounds, (str, Path)):
        src = str(poses_bounds)
        poses_bounds = load_npy(poses_bounds)
    arr = np.asarray(poses_bounds, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 17:
        raise InputError(f"{src}: expected an [N, 17] LLFF array, got shape {tuple(arr.shape)}; pass poses_bounds.npy.")
    if not np.isfinite(arr).all():
        i = int(np.nonzero(~np.isfinite(arr).all(1))[0][0])
        raise CameraError(f"{src}: frame {i} has a non-finite number (NaN or inf); fix or drop that frame.")
    if len(arr) == 0:
        raise InputError(f"{src}: holds no cameras (0 rows); pass the scene's poses_bounds.npy.")
    rows = arr[:, :15].reshape(-1, 3, 5)
    # name the stored field that is wrong, not a value derived from it (a zero focal becomes a NaN K)
    for i, row in enumerate(rows):
        if not np.any(row[:, :3]):
            raise CameraError(f"{src}: frame {i} rotation (the first 3 columns of its 3x5 pose) is all zeros; "
                              "regenerate poses_bounds.npy with LLFF's imgs2poses.py.")
        if np.any(row[:, 4] <= 0):
            raise CameraError(f"{src}: frame {i} height, width and focal (the 5th column of its 3x5 pose) must be "
                              f"positive, got {row[:, 4].tolist()}; regenerate poses_bounds.npy.")
    poses = torch.as_tensor(rows, dtype=torch.float64)
    h0, w0, f0 = poses[:, 0, 4], poses[:, 1, 4], poses[:, 2, 4]
    W, H = int(width or round(float(w0[0]))), int(height or round(float(h0[0])))
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(arr), 1, 1)
    # LLFF column order (down, right, back) -> OpenCV (right, down, forward): swap the first two
    # columns and negate "back" to get "forward".
    c2w[:, :3, 0] = poses[:, :, 1]
    c2w[:, :3, 1] = poses[:, :, 0]
    c2w[:, :3, 2] = -poses[:, :, 2]
    c2w[:, :3, 3] = poses[:, :, 3]
    Ks = intrinsics(f0 * W / w0, f0 * H / h0, torch.full_like(f0, W / 2), torch.full_like(f0, H / 2))
    cams = Cameras(Ks.to(dtype), c2w.to(dtype), W, H).validate(src)
    return cams, torch.as_tensor(arr[:, 15:17], dtype=dtype)


def llff_colmap_model(poses_bounds: str | Path) -> ColmapModel | None:
    """The COLMAP model LLFF's poses were made from (``sparse/0`` beside ``poses_bounds.npy``, as LLFF's
    imgs2poses leaves it), or None when there is none (a model needs at least its cameras file)."""
    sparse = Path(poses_bounds).parent / "sparse" / "0"
    if any((sparse / f"cameras.{e}").is_file() for e in ("bin", "txt")):
        return read_colmap(sparse)
    return None


def llff_lens(model: ColmapModel) -> Distortion | None:
    """The lens distortion of the photos that LLFF poses describe: that of the one camera of the COLMAP
    model they came from (:func:`llff_colmap_model`), or None when it has none or its cameras differ."""
    where = str(model.path) if model.path is not None else "COLMAP model"
    lenses = {distortion_from_colmap(c.model, colmap_intrinsics(c, where)[1], where)
              for c in model.cameras.values()}
    return lenses.pop() if len(lenses) == 1 else None


def llff_from_cameras(cameras: Cameras, bounds: Float[Tensor, "N 2"]) -> np.ndarray:
    """The inverse of :func:`cameras_from_llff`: an ``[N, 17]`` array (needs fx == fy, centered principal point)."""
    cams = cameras.flatten().to(torch.float64)
    if not (torch.allclose(cams.fx, cams.fy, rtol=1e-6) and torch.allclose(cams.cx, torch.full_like(cams.cx, cams.width / 2))
            and torch.allclose(cams.cy, torch.full_like(cams.cy, cams.height / 2))):
        raise CameraError("llff_from_cameras: LLFF stores one focal length and a centered principal point; "
                          "these cameras have fx != fy or an off-center principal point.")
    c2w = cams.c2w
    poses = torch.zeros(len(cams), 3, 5, dtype=torch.float64)
    poses[:, :, 0], poses[:, :, 1], poses[:, :, 2] = c2w[:, :3, 1], c2w[:, :3, 0], -c2w[:, :3, 2]
    poses[:, :, 3] = c2w[:, :3, 3]
    poses[:, 0, 4], poses[:, 1, 4], poses[:, 2, 4] = float(cams.height), float(cams.width), cams.fx
    b = torch.as_tensor(bounds, dtype=torch.float64).reshape(-1, 2)
    return torch.cat([poses.reshape(-1, 15), b], 1).numpy()


# -- RealEstate10K -----------------------------------------------------------------------------
RE10K_HEIGHT = 360
"""The image height a RealEstate10K file is read at when none is given (the common download size, 640x360)."""


def re10k_square_width(fx: float, fy: float, height: int = RE10K_HEIGHT) -> int:
    """The image width at which a RealEstate10K file's normalized focal lengths ``fx`` (of the width) and ``fy``
    (of the height) give square pixels at ``height``: 640 at 360 for the dataset's 16:9 videos, 360 for a
    square path (vdm3d's own jobs write square frames)."""
    return max(1, round(height * fy / fx))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_re10k(path: str | Path, width: int | None = None, height: int | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[Cameras, list[int], str]:
    """Cameras, timestamps (microseconds) and the video URL of a RealEstate10K camera file.

    Format: first line the URL; then per frame ``timestamp fx fy cx cy 0 0`` (intrinsics divided by
    the image width/height) and a row-major 3x4 world-to-camera matrix in OpenCV axes. The files do
    not store the image size, so ``width``/``height`` choose it; a side left out is the one that gives the
    first frame square pixels, the height 360 when both are (640x360 for the dataset's 16:9 videos, 360x360
    for a path written from square frames, as explore's ``cameras/re10k.txt``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist", fix="pass a RealEstate10K .txt camera file")
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if lines and len(first := lines[0].split()) == 19 and all(_is_number(v) for v in first):
        # the URL line left out: its first frame would be taken for the URL and dropped without a word
        raise InputError(path=path, field="line 1", problem="is a frame (19 numbers), not the video's URL",
                         fix="add the URL line (any text) above the first frame, as RealEstate10K files start")
    if len(lines) < 2:
        raise InputError(path=path, problem="has no frames", fix="pass a RealEstate10K camera file (URL line + frames)")
    stamps, Ks, w2c = [], [], []
    for i, ln in enumerate(lines[1:]):
        tok = ln.split()
        if len(tok) != 19:
            raise InputError(path=path, field=f"frame {i}", problem=f"has {len(tok)} numbers instead of 19",
                             fix="each frame line is: timestamp fx fy cx cy 0 0 and 12 matrix entries")
        try:
            vals = [float(v) for v in tok[1:]]
            stamps.append(int(tok[0]))
        except ValueError:
            raise InputError(path=path, field=f"frame {i}", problem="has a value that is not a number",
                             fix="fix that line") from None
        fx, fy, cx, cy = vals[:4]
        if i == 0 and (width is None or height is None) and fx > 0 and fy > 0:  # else validate() names it below
            height = height or (RE10K_HEIGHT if width is None else max(1, round(width * fx / fy)))
            width = width or re10k_square_width(fx, fy, height)
        width, height = width or 640, height or RE10K_HEIGHT
        Ks.append([[fx * width, 0, cx * width], [0, fy * height, cy * height], [0, 0, 1]])
        T = np.eye(4)
        T[:3, :] = np.asarray(vals[6:18]).reshape(3, 4)
        w2c.append(T)
    w2c_t = torch.as_tensor(np.stack(w2c), dtype=torch.float64)
    Ks_t = torch.as_tensor(Ks, dtype=torch.float64)
    # validate the world-to-camera rotation before inverting (the inverse of a non-rotation is meaningless)
    Cameras(Ks_t, w2c_t, width, height).validate(str(path))
    # a full inverse, not the rigid shortcut: the files' 9-digit rotations are orthonormal only to
    # ~1e-7, and the exact inverse makes RE10K -> other format -> RE10K reproduce the numbers
    cams = Cameras(Ks_t.to(dtype), torch.linalg.inv(w2c_t).to(dtype), width, height)
    return cams, stamps, lines[0].strip()


def write_re10k(path: str | Path, cameras: Cameras, timestamps: Sequence[int] | None = None, url: str = "") -> Path:
    """Write cameras as a RealEstate10K text file (inverse of :func:`read_re10k`), atomically."""
    cams = cameras.flatten().to(torch.float64)
    stamps = list(range(len(cams))) if timestamps is None else [int(t) for t in timestamps]
    if len(stamps) != len(cams):
        raise InputError(f"write_re10k: {len(cams)} cameras but {len(stamps)} timestamps; pass one per camera.")
    w2c = torch.linalg.inv(cams.c2w)  # exact inverse of what read_re10k inverted (see there)
    out = io.StringIO()
    out.write((url or "unknown") + "\n")
    for i in range(len(cams)):
        intr = [float(cams.fx[i]) / cams.width, float(cams.fy[i]) / cams.height,
                float(cams.cx[i]) / cams.width, float(cams.cy[i]) / cams.height, 0.0, 0.0]
        mat = w2c[i, :3, :].reshape(-1).tolist()
        out.write(" ".join([str(stamps[i]), *(f"{v:.12g}" for v in intr + mat)]) + "\n")
    atomic_write_bytes(path, out.getvalue().encode())
    return Path(path)


# -- SV3D ---------------------------------------------------------------------------------------
Angles = float | int | Sequence[float | int] | Tensor


def cameras_from_sv3d(elevation_deg: Angles, azimuth_deg: Angles, radius: Angles, fov_deg: float | int,
                      width: int, height: int,
                      dtype: torch.dtype = torch.float32) -> Cameras:
    """Cameras on a sphere around the origin, looking at it, from SV3D-style orbit parameters.

    World frame: z up. A camera at elevation ``e`` and azimuth ``a`` sits at
    ``radius * (cos e cos a, cos e sin a, sin e)``: azimuth 0 is on the +x axis and grows
    counter-clockwise seen from above (+x toward +y); elevation is measured from the xy-plane, so
    SV3D's polar angle is ``90 - e``. Image up is world +z. ``fov_deg`` is the horizontal field of
    view. Arguments broadcast against each other; ``|e|`` must stay below 90 degrees.
    """
    e, a, r = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.float64) for v in
                                        (elevation_deg, azimuth_deg, radius)))
    if (e.abs() >= 90).any() or (r <= 0).any() or not math.isfinite(fov_deg) or not 0 < fov_deg < 180:
        raise CameraError("cameras_from_sv3d: need |elevation_deg| < 90, radius > 0 and 0 < fov_deg < 180; "
                          "adjust the orbit parameters.")
    er, ar = torch.deg2rad(e), torch.deg2rad(a)
    eye = torch.stack([r * torch.cos(er) * torch.cos(ar), r * torch.cos(er) * torch.sin(ar), r * torch.sin(er)], -1)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(eye)
    c2w = look_at(eye, torch.zeros_like(eye), up)
    return Cameras.from_fov(fov_deg, width, height, c2w.to(dtype))
