"""COLMAP sparse models (``cameras``, ``images``, ``points3D``) in text and binary form.

The on-disk layout follows COLMAP's documented formats:

* ``cameras``: id, model, width, height, model parameters (``f, cx, cy`` for SIMPLE_PINHOLE, ...);
* ``images``: id, quaternion ``(qw, qx, qy, qz)`` and translation of the **world-to-camera**
  transform (OpenCV axes: COLMAP cameras look along +z with y down, the same as vdm3d), camera id,
  name, and the 2D keypoints with the id of the 3D point each observes (-1 for none);
* ``points3D``: id, xyz, rgb, reprojection error, track of ``(image_id, point2D_idx)``.

:func:`read_colmap` accepts ``.../sparse/0``, ``.../sparse`` (it descends into ``0``) or the scene
folder holding ``sparse/0``, and detects text vs binary per file. Missing ``images`` or
``points3D`` files give empty tables (the LLFF fern release ships no ``images.bin``); a folder with
no ``cameras`` file at all is an error.

Reading and writing are hand-written with :mod:`struct` and numpy (no pycolmap dependency for a
format this small); points use struct-of-arrays so 100k points stay cheap.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np

from vdm3d.errors import InputError
from vdm3d.io.runs import atomic_write_bytes

# model name -> (COLMAP model id, number of parameters)
CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3), "PINHOLE": (1, 4), "SIMPLE_RADIAL": (2, 4), "RADIAL": (3, 5),
    "OPENCV": (4, 8), "OPENCV_FISHEYE": (5, 8), "FULL_OPENCV": (6, 12), "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4), "RADIAL_FISHEYE": (9, 5), "THIN_PRISM_FISHEYE": (10, 12),
}
_MODEL_BY_ID = {mid: (name, n) for name, (mid, n) in CAMERA_MODELS.items()}


@dataclasses.dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [P] float64, COLMAP's parameter order for ``model``


@dataclasses.dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # [4] (w, x, y, z) of the world-to-camera rotation
    tvec: np.ndarray  # [3] world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))  # [M, 2] pixels
    point3D_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))  # [M]


@dataclasses.dataclass
class ColmapPoints:
    """Struct-of-arrays table of 3D points."""

    ids: np.ndarray  # [N] int64
    xyz: np.ndarray  # [N, 3] float64, world
    rgb: np.ndarray  # [N, 3] uint8
    error: np.ndarray  # [N] float64, mean reprojection error in pixels
    tracks: list[np.ndarray]  # N arrays [K, 2] int32 of (image_id, point2D_idx)

    @staticmethod
    def empty() -> "ColmapPoints":
        return ColmapPoints(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), [])

    def __len__(self) -> int:
        return len(self.ids)


@dataclasses.dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points3D: ColmapPoints
    path: Path | None = None
    """the model folder it was read from (named in error messages)"""


# -- locating files ---------------------------------------------------------------------------
def _model_dir(path: Path) -> Path:
    for cand in (path, path / "0", path / "sparse" / "0", path / "sparse"):
        if any((cand / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return cand
    return path


def holds_colmap_model(path: str | Path) -> bool:
    """Whether the folder ``path`` is a COLMAP sparse model or holds one (``0``, ``sparse/0``, ``sparse``),
    as :func:`read_colmap` looks for it."""
    path = Path(path)
    return any((cand / f"cameras.{ext}").is_file() for cand in (path, path / "0", path / "sparse" / "0", path / "sparse")
               for ext in ("bin", "txt"))


def read_colmap(path: str | Path) -> ColmapModel:
    """Read a COLMAP sparse model (text or binary, detected per file)."""
    root = Path(path)
    if not root.exists():
        raise InputError(path=root, problem="does not exist", fix="pass a COLMAP sparse/0 folder")
    d = _model_dir(root)
    readers = {"cameras": (_read_cameras_bin, _read_cameras_txt), "images": (_read_images_bin, _read_images_txt),
               "points3D": (_read_points_bin, _read_points_txt)}
    out = {}
    for name, (rb, rt) in readers.items():
        fb, ft = d / f"{name}.bin", d / f"{name}.txt"
        if fb.is_file():
            out[name] = _guard(fb, rb)
        elif ft.is_file():
            out[name] = _guard(ft, rt)
        elif name == "cameras":
            raise InputError(path=root, problem="holds no cameras.bin or cameras.txt",
                             fix="pass the COLMAP sparse/0 folder")
        else:
            out[name] = {} if name == "images" else ColmapPoints.empty()
    return ColmapModel(out["cameras"], out["images"], out["points3D"], d)


def _guard(path: Path, reader):
    try:
        return reader(path)
    except InputError:
        raise
    except (struct.error, ValueError, IndexError, UnicodeDecodeError, KeyError, OverflowError, MemoryError) as e:
        raise InputError(path=path, problem=f"is malformed or truncated ({type(e).__name__}: {e})",
                         fix="re-export the COLMAP model") from None


# -- binary ------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, path: Path):
        self.buf, self.pos = path.read_bytes(), 0

    def read(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals

    def records(self, count: int, min_bytes: int) -> int:
        """``count`` read from the file, refused when the rest of the file cannot hold that many records
        (a corrupt count would otherwise allocate petabytes)."""
        if count * min_bytes > len(self.buf) - self.pos:
            raise ValueError(f"it claims {count} records but only {len(self.buf) - self.pos} bytes follow")
        return count

    def array(self, dtype, count: int) -> np.ndarray:
        a = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += a.nbytes
        return a

    def cstring(self) -> str:
        end = self.buf.index(b"\x00", self.pos)
        s = self.buf[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return s


def _model_info(path: Path, model_id_or_name) -> tuple[str, int]:
    if isinstance(model_id_or_name, str):
        if model_id_or_name not in CAMERA_MODELS:
            raise InputError(path=path, field="camera model", problem=f"{model_id_or_name!r} is unknown",
                             fix=f"use one of {', '.join(CAMERA_MODELS)}")
        return model_id_or_name, CAMERA_MODELS[model_id_or_name][1]
    if model_id_or_name not in _MODEL_BY_ID:
        raise InputError(path=path, field="camera model id", problem=f"{model_id_or_name} is unknown",
                         fix="check that the file is a COLMAP cameras.bin")
    return _MODEL_BY_ID[model_id_or_name]


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    r, cams = _Reader(path), {}
    n = r.records(*r.read("Q"), 24)
    for _ in range(n):
        cid, mid, w, h = r.read("iiQQ")
        name, npar = _model_info(path, mid)
        cams[cid] = ColmapCamera(cid, name, int(w), int(h), np.array(r.read("d" * npar), np.float64))
    return cams


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    r, images = _Reader(path), {}
    n = r.records(*r.read("Q"), 73)  # id, quaternion, translation, camera id, name's NUL, point count
    rec = np.dtype([("xy", "<f8", 2), ("id", "<i8")])
    for _ in range(n):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = r.read("idddddddi")
        name = r.cstring()
        (m,) = r.read("Q")
        pts = r.array(rec, m)
        images[iid] = ColmapImage(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid, name,
                                  pts["xy"].astype(np.float64), pts["id"].astype(np.int64))
    return images


def _read_points_bin(path: Path) -> ColmapPoints:
    r = _Reader(path)
    n = r.records(*r.read("Q"), 43)  # id, xyz, rgb, error, track length
    ids, xyz, rgb, err, tracks = np.zeros(n, np.int64), np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.zeros(n), []
    for i in range(n):
        pid, x, y, z, cr, cg, cb, e, k = r.read("QdddBBBdQ")
        ids[i], xyz[i], rgb[i], err[i] = pid, (x, y, z), (cr, cg, cb), e
        tracks.append(r.array("<i4", 2 * k).reshape(k, 2).astype(np.int32))
    return ColmapPoints(ids, xyz, rgb, err, tracks)


def _cameras_bin(cams: dict[int, ColmapCamera]) -> bytes:
    parts = [struct.pack("<Q", len(cams))]
    for c in cams.values():
        mid, npar = CAMERA_MODELS[c.model]
        parts.append(struct.pack("<iiQQ", c.id, mid, c.width, c.height))
        parts.append(np.asarray(c.params, "<f8").reshape(npar).tobytes())
    return b"".join(parts)


def _images_bin(images: dict[int, ColmapImage]) -> bytes:
    parts = [struct.pack("<Q", len(images))]
    rec = np.dtype([("xy", "<f8", 2), ("id", "<i8")])
    for im in images.values():
        parts.append(struct.pack("<idddddddi", im.id, *map(float, im.qvec), *map(float, im.tvec), im.camera_id))
        parts.append(im.name.encode("utf-8") + b"\x00")
        pts = np.zeros(len(im.point3D_ids), rec)
        pts["xy"], pts["id"] = im.xys, im.point3D_ids
        parts.append(struct.pack("<Q", len(pts)) + pts.tobytes())
    return b"".join(parts)


def _points_bin(p: ColmapPoints) -> bytes:
    parts = [struct.pack("<Q", len(p))]
    for i in range(len(p)):
        t = np.asarray(p.tracks[i], "<i4").reshape(-1, 2)
        parts.append(struct.pack("<QdddBBBdQ", int(p.ids[i]), *map(float, p.xyz[i]), *map(int, p.rgb[i]),
                                 float(p.error[i]), len(t)))
        parts.append(t.tobytes())
    return b"".join(parts)


# -- text --------------------------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for ln in _lines(path):
        tok = ln.split()
        name, npar = _model_info(path, tok[1])
        params = np.array([float(v) for v in tok[4:]], np.float64)
        if len(params) != npar:
            raise InputError(path=path, field=f"camera {tok[0]} params",
                             problem=f"has {len(params)} values but {name} needs {npar}", fix="fix the line")
        cams[int(tok[0])] = ColmapCamera(int(tok[0]), name, int(tok[2]), int(tok[3]), params)
    return cams


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    # Two lines per image; the second (keypoints) may be empty, so blank lines matter here.
    raw = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")]
    while raw and not raw[-1].strip():
        raw.pop()
    images, i = {}, 0
    while i < len(raw):
        if not raw[i].strip():
            i += 1
            continue
        tok = raw[i].split()
        iid = int(tok[0])
        pts = raw[i + 1].split() if i + 1 < len(raw) else []
        arr = np.array([float(v) for v in pts], np.float64).reshape(-1, 3)
        images[iid] = ColmapImage(iid, np.array([float(v) for v in tok[1:5]]), np.array([float(v) for v in tok[5:8]]),
                                  int(tok[8]), " ".join(tok[9:]), arr[:, :2].copy(), arr[:, 2].astype(np.int64))
        i += 2
    return images


def _read_points_txt(path: Path) -> ColmapPoints:
    rows = [ln.split() for ln in _lines(path)]
    n = len(rows)
    ids, xyz, rgb, err, tracks = np.zeros(n, np.int64), np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.zeros(n), []
    for i, tok in enumerate(rows):
        ids[i], xyz[i] = int(tok[0]), [float(v) for v in tok[1:4]]
        rgb[i], err[i] = [int(v) for v in tok[4:7]], float(tok[7])
        tracks.append(np.array([int(v) for v in tok[8:]], np.int32).reshape(-1, 2))
    return ColmapPoints(ids, xyz, rgb, err, tracks)


def _f(x: float) -> str:
    return repr(float(x))  # shortest text that reads back to the same double


def _cameras_txt(cams: dict[int, ColmapCamera]) -> bytes:
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(cams)}"]
    lines += [" ".join([str(c.id), c.model, str(c.width), str(c.height), *map(_f, c.params)]) for c in cams.values()]
    return ("\n".join(lines) + "\n").encode()


def _images_txt(images: dict[int, ColmapImage]) -> bytes:
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)",
             f"# Number of images: {len(images)}"]
    for im in images.values():
        lines.append(" ".join([str(im.id), *map(_f, im.qvec), *map(_f, im.tvec), str(im.camera_id), im.name]))
        lines.append(" ".join(f"{_f(x)} {_f(y)} {int(p)}" for (x, y), p in zip(im.xys, im.point3D_ids)))
    return ("\n".join(lines) + "\n").encode()


def _points_txt(p: ColmapPoints) -> bytes:
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
             f"# Number of points: {len(p)}"]
    for i in range(len(p)):
        track = " ".join(str(int(v)) for v in np.asarray(p.tracks[i]).reshape(-1))
        lines.append(" ".join([str(int(p.ids[i])), *map(_f, p.xyz[i]), *(str(int(c)) for c in p.rgb[i]),
                               _f(p.error[i]), track]).rstrip())
    return ("\n".join(lines) + "\n").encode()


def write_colmap(model: ColmapModel, path: str | Path, binary: bool = True) -> Path:
    """Write ``cameras``, ``images`` and ``points3D`` (``.bin`` or ``.txt``) into the folder ``path``."""
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    ext = "bin" if binary else "txt"
    writers = ((_cameras_bin, _images_bin, _points_bin) if binary else (_cameras_txt, _images_txt, _points_txt))
    for name, fn, table in zip(("cameras", "images", "points3D"), writers,
                               (model.cameras, model.images, model.points3D)):
        atomic_write_bytes(d / f"{name}.{ext}", fn(table))
    return d
