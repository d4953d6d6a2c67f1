"""The versioned trajectory file: ``{"format": "vdm3d.trajectory", "version": 1, ...}``.

Layout (OpenCV camera-to-world, intrinsics in pixels, pixel centers at +0.5)::

    {
      "format": "vdm3d.trajectory", "version": 1,
      "convention": "opencv_c2w",
      "fps": 24.0, "width": 512, "height": 512,
      "provenance": {"generator": "orbit", ...},          # free-form: how the path was made
      "frames": [{"c2w": [[r00, r01, r02, tx], ..., [0, 0, 0, 1]],
                  "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}, ...]
    }

Loading validates everything and names the frame index and field of the first problem: JSON
syntax, the format tag, a newer version, ``fps``/``width``/``height``, matrix shapes, non-finite
numbers, rotations that are not orthonormal with det +1 (tolerance ``ORTHONORMAL_TOL``), a last row
other than ``[0, 0, 0, 1]``, and non-positive focal lengths. Saving is atomic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from vdm3d.cameras.camera import ORTHONORMAL_TOL, Cameras
from vdm3d.cameras.io_transforms import read_json
from vdm3d.cameras.trajectory import Trajectory
from vdm3d.errors import CameraError, InputError
from vdm3d.io.runs import atomic_write_bytes, to_jsonable

FORMAT = "vdm3d.trajectory"
VERSION = 1


def trajectory_to_dict(traj: Trajectory) -> dict[str, Any]:
    cams = traj.cameras.to(torch.float64)
    return {
        "format": FORMAT, "version": VERSION, "convention": "opencv_c2w",
        "fps": traj.fps, "width": cams.width, "height": cams.height,
        "provenance": to_jsonable(traj.provenance),
        "frames": [{"c2w": cams.c2w[i].tolist(), "K": cams.Ks[i].tolist()} for i in range(len(traj))],
    }


def save_trajectory(path: str | Path, traj: Trajectory) -> Path:
    """Write the trajectory file atomically (full float64 precision)."""
    traj.cameras.validate(str(path))
    text = json.dumps(trajectory_to_dict(traj), indent=1, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())
    return Path(path)


def _field(path: Path, data: dict, key: str, kind: type, where: str = "") -> Any:
    if key not in data:
        raise InputError(path=path, field=f"{where}{key}", problem="is missing", fix=f"add \"{key}\"")
    v = data[key]
    ok = isinstance(v, kind) and not isinstance(v, bool)
    if kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if not ok:
        raise InputError(path=path, field=f"{where}{key}", problem=f"must be a {kind.__name__}, got {v!r}",
                         fix="fix its value")
    return v


def _matrix(path: Path, fr: dict, i: int, key: str, rows: int) -> list:
    where = f"frame {i} field {key}"
    if key not in fr:
        raise InputError(path=path, field=where, problem="is missing", fix=f"add a {rows}x{rows} matrix")
    m = fr[key]
    if not (isinstance(m, list) and len(m) == rows and all(isinstance(r, list) and len(r) == rows for r in m)):
        shape = [len(m)] + ([len(m[0])] if m and isinstance(m[0], list) else []) if isinstance(m, list) else "not a list"
        raise InputError(path=path, field=where, problem=f"must be a {rows}x{rows} list of lists (got {shape})",
                         fix="write the full matrix")
    for r in m:
        for v in r:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(path=path, field=where, problem=f"holds a non-number {v!r}", fix="write plain numbers")
    return m


def trajectory_from_dict(data: Any, path: str | Path = "trajectory") -> Trajectory:
    path = Path(path)
    if not isinstance(data, dict):
        raise InputError(path=path, problem="is not a JSON object", fix="pass a vdm3d trajectory file")
    if data.get("format") != FORMAT:
        raise InputError(path=path, field="format", problem=f"is {data.get('format')!r}, not {FORMAT!r}",
                         fix=f"a vdm3d trajectory file says {FORMAT!r}; convert another camera file with "
                         "`vdm3d trajectory convert FILE --from-format transforms|colmap|re10k|llff --out path.json`")
    version = _field(path, data, "version", int)
    if version > VERSION:
        raise InputError(path=path, field="version", problem=f"is {version}, newer than this vdm3d reads ({VERSION})",
                         fix="upgrade vdm3d")
    fps = float(_field(path, data, "fps", float))
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(path=path, field="fps", problem=f"must be a positive number, got {fps}", fix="set e.g. 24")
    w, h = _field(path, data, "width", int), _field(path, data, "height", int)
    if w <= 0 or h <= 0:
        raise InputError(path=path, field="width/height", problem=f"must be positive, got {w}x{h}",
                         fix="set the image size in pixels")
    frames = _field(path, data, "frames", list)
    if not frames:
        raise InputError(path=path, field="frames", problem="is empty", fix="add at least one frame")
    c2w, Ks = [], []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise InputError(path=path, field=f"frame {i}", problem="is not an object", fix="write {\"c2w\": ..., \"K\": ...}")
        c2w.append(_matrix(path, fr, i, "c2w", 4))
        Ks.append(_matrix(path, fr, i, "K", 3))
    cams = Cameras(torch.tensor(Ks, dtype=torch.float64), torch.tensor(c2w, dtype=torch.float64), w, h)
    cams.validate(str(path), tol=ORTHONORMAL_TOL)
    K = cams.Ks
    bad = (K[:, 0, 1].abs() > 1e-9) | (K[:, 1, 0].abs() > 1e-9) | (K[:, 2] - K.new_tensor([0, 0, 1])).abs().amax(1).gt(1e-9)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise CameraError(path=path, field=f"frame {i} field K", problem="is not [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]",
                          fix="remove skew and fix the last row")
    prov = data.get("provenance", {})
    if not isinstance(prov, dict):
        raise InputError(path=path, field="provenance", problem="must be an object", fix="use {} when unknown")
    return Trajectory(cams, fps, prov)


def load_trajectory(path: str | Path, dtype: torch.dtype = torch.float32) -> Trajectory:
    """Read and validate a trajectory file; cameras come back in ``dtype``."""
    traj = trajectory_from_dict(read_json(path), path)
    return Trajectory(traj.cameras.to(dtype), traj.fps, traj.provenance)
