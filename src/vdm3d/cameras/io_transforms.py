"""OpenGL / Blender / nerfstudio ``transforms.json`` cameras, read and written.

The file holds OpenGL camera-to-world matrices (camera looks along -z, y up) per frame under
``frames[i].transform_matrix`` with ``frames[i].file_path``, and intrinsics either once at the top
level (shared) or per frame (a per-frame key overrides the top-level one):

* ``fl_x``, ``fl_y``, ``cx``, ``cy`` in pixels and ``w``, ``h`` (nerfstudio), or
* ``camera_angle_x`` (and optionally ``camera_angle_y``) in radians (Blender/NeRF synthetic); when
  ``w``/``h`` are absent the size is read from the first image's header.

Written files always name their ``camera_model``: ``PINHOLE`` for vdm3d's cameras, ``OPENCV`` when
distortion read from a file is written back, or the model the file was read with.
Distortion (``k1..k4``, ``p1``, ``p2`` of ``camera_model`` OPENCV) is not applied - vdm3d cameras are
pinhole - but kept in ``extras["distortion"]`` and written back (a camera path read through
:func:`vdm3d.cameras.formats.read_camera_file` refuses it unless asked to drop or keep it). Fisheye and equirectangular
models are refused with a clear message. Every other key survives a read/write round trip through
``extras["top"]`` (top level) and ``extras["frames"]`` (per frame).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import CameraError, InputError
from vdm3d.io.runs import atomic_write_bytes

_FLIP_YZ = (1.0, -1.0, -1.0, 1.0)
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_PINHOLE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")


def opencv_from_opengl(c2w: Float[Tensor, "*B 4 4"]) -> Float[Tensor, "*B 4 4"]:
    """OpenGL/Blender camera-to-world (looks along -z, y up) to OpenCV (looks along +z, y down).

    Same center and right axis; the camera's y and z axes are negated. Right-multiplying by
    ``diag(1, -1, -1, 1)`` flips the camera's own axes (columns), not the world's.
    """
    return c2w * c2w.new_tensor(_FLIP_YZ)


def opengl_from_opencv(c2w: Float[Tensor, "*B 4 4"]) -> Float[Tensor, "*B 4 4"]:
    """OpenCV camera-to-world to OpenGL/Blender: the same flip (it is its own inverse)."""
    return c2w * c2w.new_tensor(_FLIP_YZ)


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, turning every failure into one sentence naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist" if not path.exists() else "is not a file",
                         fix="check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (Windows editors) is not an error
    except json.JSONDecodeError as e:
        raise InputError(path=path, problem=f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                         fix="fix the syntax") from None
    except UnicodeDecodeError:
        raise InputError(path=path, problem="is not UTF-8 text", fix="pass a JSON file") from None


def _number(path: Path, where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path=path, field=f"{where} field {key}", problem=f"must be a number, got {value!r}",
                         fix="write a plain number")
    if not math.isfinite(value):
        raise CameraError(path=path, field=f"{where} field {key}", problem=f"is not finite ({value})",
                          fix="fix or drop that frame")
    return float(value)


def _slashes(file_path: str) -> str:
    """A ``file_path`` with Windows separators (``images\\000.png``, as Windows tools write them) in ``/``
    form, so that it names the same file here."""
    return file_path.replace("\\", "/")


def _image_size(path: Path, file_path: str) -> tuple[int, int] | None:
    from vdm3d.io.images import check_image_file

    p = path.parent / file_path
    for cand in (p, p.with_name(p.name + ".png")):
        if cand.is_file():
            return check_image_file(cand)  # the header's size; a decompression bomb is refused here
    return None


def read_transforms_json(path: str | Path, dtype: torch.dtype = torch.float32
                         ) -> tuple[Cameras, list[str], dict[str, Any]]:
    """Cameras (OpenCV, c2w), the frames' ``file_path`` strings and everything else in ``extras``."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise InputError(path=path, field="frames", problem="is missing or empty",
                         fix="a transforms.json needs a non-empty list of frames")
    model = data.get("camera_model", "OPENCV")
    if model not in _PINHOLE_MODELS:
        raise CameraError(path=path, field="camera_model", problem=f"{model!r} is not a pinhole model vdm3d supports",
                          fix="undistort to OPENCV/PINHOLE first (e.g. ns-process-data or colmap image_undistorter)")
    top = {k: v for k, v in data.items() if k not in ("frames", "camera_model", *_INTRINSIC_KEYS, *_DISTORTION_KEYS)}
    Ks, c2ws, names, frame_extras, dists, sizes = [], [], [], [], [], set()
    for i, fr in enumerate(data["frames"]):
        where = f"frame {i}"
        if not isinstance(fr, dict):
            raise InputError(path=path, field=where, problem="is not an object", fix="each frame is a JSON object")
        if "transform_matrix" not in fr:
            raise InputError(path=path, field=f"{where} field transform_matrix", problem="is missing",
                             fix="add the 4x4 camera-to-world matrix")
        merged = {**{k: data[k] for k in (*_INTRINSIC_KEYS, *_DISTORTION_KEYS) if k in data}, **fr}
        size = (merged.get("w"), merged.get("h"))
        if None in size:
            size = _image_size(path, _slashes(str(fr.get("file_path", ""))))
            if size is None:
                raise InputError(path=path, field=f"{where} fields w/h", problem="are missing and the image was not found",
                                 fix="add \"w\" and \"h\" (image size in pixels)")
        w, h = (int(_number(path, where, k, v)) for k, v in zip("wh", size))
        sizes.add((w, h))
        if "fl_x" in merged:
            fx = _number(path, where, "fl_x", merged["fl_x"])
        elif "camera_angle_x" in merged:
            fx = 0.5 * w / math.tan(0.5 * _number(path, where, "camera_angle_x", merged["camera_angle_x"]))
        else:
            raise InputError(path=path, field=f"{where} field fl_x", problem="is missing (and no camera_angle_x)",
                             fix="add the focal length in pixels")
        if "fl_y" in merged:
            fy = _number(path, where, "fl_y", merged["fl_y"])
        elif "camera_angle_y" in merged:
            fy = 0.5 * h / math.tan(0.5 * _number(path, where, "camera_angle_y", merged["camera_angle_y"]))
        else:
            fy = fx
        cx = _number(path, where, "cx", merged["cx"]) if "cx" in merged else w / 2
        cy = _number(path, where, "cy", merged["cy"]) if "cy" in merged else h / 2
        Ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        T = fr["transform_matrix"]
        try:
            t = torch.tensor(T, dtype=torch.float64)
        except (TypeError, ValueError):
            raise InputError(path=path, field=f"{where} field transform_matrix", problem="is not a matrix of numbers",
                             fix="write a 4x4 list of lists") from None
        if t.shape == (3, 4):
            t = torch.cat([t, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)])
        if t.shape != (4, 4):
            raise InputError(path=path, field=f"{where} field transform_matrix",
                             problem=f"has shape {list(t.shape)} instead of 4x4", fix="write a 4x4 list of lists")
        c2ws.append(t)
        names.append(_slashes(str(fr.get("file_path", f"frame_{i:05d}"))))
        dists.append({k: _number(path, where, k, merged[k]) for k in _DISTORTION_KEYS if k in merged})
        frame_extras.append({k: v for k, v in fr.items()
                             if k not in ("file_path", "transform_matrix", *_INTRINSIC_KEYS, *_DISTORTION_KEYS)})
    if len(sizes) != 1:
        raise CameraError(path=path, field="w/h", problem=f"differ between frames ({sorted(sizes)})",
                          fix="resize the images to one size; vdm3d cameras share one image size")
    w, h = sizes.pop()
    Ks_t = torch.tensor(Ks, dtype=torch.float64)
    c2w = torch.stack(c2ws)
    Cameras(Ks_t, c2w, w, h).validate(str(path))  # names the frame and field of the first bad value
    cams = Cameras(Ks_t.to(dtype), opencv_from_opengl(c2w).to(dtype), w, h)
    distortion: Any = None
    if any(dists):
        distortion = dists[0] if all(d == dists[0] for d in dists) else dists
    extras = {"top": top, "frames": frame_extras, "camera_model": data.get("camera_model"), "distortion": distortion}
    return cams, names, extras


def _shared(values: Tensor) -> bool:
    return bool(torch.allclose(values, values[:1].expand_as(values), rtol=1e-12, atol=0))


def write_transforms_json(path: str | Path, cameras: Cameras, file_paths: Sequence[str],
                          extras: dict[str, Any] | None = None, shared_intrinsics: bool | None = None) -> Path:
    """Write cameras as nerfstudio ``transforms.json`` (OpenGL c2w), atomically.

    Intrinsics go to the top level when all cameras share them (or ``shared_intrinsics=True``),
    else into each frame. ``extras`` (as returned by :func:`read_transforms_json`) is written back.
    """
    cams = cameras.flatten().to(torch.float64)
    if len(file_paths) != len(cams):
        raise InputError(f"write_transforms_json: {len(cams)} cameras but {len(file_paths)} file paths; "
                         "pass one file path per camera.")
    extras = extras or {}
    intr = torch.stack([cams.fx, cams.fy, cams.cx, cams.cy], -1)  # [N, 4]
    shared = _shared(intr) if shared_intrinsics is None else shared_intrinsics
    out: dict[str, Any] = {}
    if extras.get("camera_model"):
        out["camera_model"] = extras["camera_model"]
    elif extras.get("distortion"):
        out["camera_model"] = "OPENCV"
    else:  # name it always: readers differ on the default (nerfstudio assumes OPENCV)
        out["camera_model"] = "PINHOLE"
    keys = ("fl_x", "fl_y", "cx", "cy")
    if shared:
        out.update({k: float(v) for k, v in zip(keys, intr[0])})
    out["w"], out["h"] = cams.width, cams.height
    dist = extras.get("distortion")
    if isinstance(dist, dict):
        out.update(dist)
    out.update(extras.get("top", {}))
    c2w_gl = opengl_from_opencv(cams.c2w)
    frame_extras = extras.get("frames") or [{}] * len(cams)
    if len(frame_extras) != len(cams):
        raise InputError(f"write_transforms_json: extras has {len(frame_extras)} frames but there are {len(cams)} "
                         "cameras; drop the extras or keep them aligned.")
    frames = []
    for i in range(len(cams)):
        fr: dict[str, Any] = {"file_path": str(file_paths[i]), "transform_matrix": c2w_gl[i].tolist()}
        if not shared:
            fr.update({k: float(v) for k, v in zip(keys, intr[i])})
        if isinstance(dist, list):
            fr.update(dist[i])
        fr.update(frame_extras[i])
        frames.append(fr)
    out["frames"] = frames
    try:
        text = json.dumps(out, indent=2, allow_nan=False)
    except ValueError:
        raise CameraError(f"{path}: cameras contain NaN or inf; validate them before writing.") from None
    atomic_write_bytes(path, (text + "\n").encode())
    return Path(path)
