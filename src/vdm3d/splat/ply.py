"""Gaussians to and from the standard 3DGS PLY file that common splat viewers open.

Layout (the one the original 3DGS implementation writes): a binary little-endian PLY with one
``vertex`` element of float32 properties, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}  opacity
    scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

* ``nx ny nz`` are zeros (viewers ignore them);
* ``f_dc_c = sh[:, 0, c]``; ``f_rest`` is channel-major: all R coefficients of bands 1.., then G,
  then B, i.e. ``f_rest_{c (K-1) + k - 1} = sh[:, k, c]`` (45 values at degree 3);
* ``opacity`` is the logit, ``scale_*`` the log standard deviations, ``rot_*`` the quaternion
  ``(w, x, y, z)`` as stored (not normalized), exactly like the raw fields of :class:`Gaussians`.

The file always carries the full degree-3 layout (45 ``f_rest``, zeros above the Gaussians' own
degree), because INRIA-style loaders read exactly that; a header comment ``vdm3d sh_degree D``
records the degree, and :func:`load_ply` drops the zero bands above it again. Files without the
comment load at the degree their ``f_rest`` count implies.

Values are stored as float32, so float32 Gaussians reload bit-identically. Reading and writing go
through ``plyfile``; any other layout raises :class:`~vdm3d.errors.InputError` naming the file and
the property.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vdm3d.errors import InputError
from vdm3d.io.runs import replace_by_writing
from vdm3d.splat.gaussians import Gaussians


def ply_property_names(sh_degree: int) -> list[str]:
    """The vertex property names, in file order, for Gaussians of ``sh_degree``."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_ply(path: str | Path, gaussians: Gaussians) -> Path:
    """Write ``gaussians`` as a binary little-endian 3DGS PLY at ``path``; returns the path."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    g = gaussians.detach().to("cpu", torch.float32)
    n, k = len(g), 16  # always degree 3's 16 coefficients: INRIA-style loaders expect 45 f_rest
    zeros = torch.zeros(n, 3)
    sh = torch.cat([g.sh, g.sh.new_zeros(n, k - g.sh.shape[1], 3)], 1)  # [N, 16, 3], zeros above the degree
    rest = sh[:, 1:, :].permute(0, 2, 1).reshape(n, 3 * (k - 1))  # [N, 3, K-1] -> channel-major
    columns = torch.cat([g.means, zeros, sh[:, 0, :], rest, g.opacity_logits[:, None], g.log_scales, g.quats], 1)
    names = ply_property_names(3)
    assert columns.shape[1] == len(names)
    data = np.empty(n, dtype=[(name, "<f4") for name in names])
    values = columns.numpy()
    for i, name in enumerate(names):
        data[name] = values[:, i]
    path.parent.mkdir(parents=True, exist_ok=True)
    ply = PlyData([PlyElement.describe(data, "vertex")], text=False, byte_order="<",
                  comments=[f"vdm3d sh_degree {g.sh_degree}"])
    # whole or not at all: a PLY cut short by a full disk was left at ``path``, where `vdm3d complete --resume`
    # takes an existing baseline.ply as its finished baseline (and was refused on it from then on)
    replace_by_writing(path, ply.write)
    return path


def _read(path: Path, fix: str):
    """The parsed ``PlyData`` of ``path``; a missing or malformed file is an :class:`InputError` ending in ``fix``."""
    from plyfile import PlyData

    if not path.is_file():
        raise InputError(path=path, problem="does not exist", fix="check the path to the .ply file")
    try:
        return PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several types for malformed headers and bodies
        raise InputError(path=path, problem=f"is not a readable PLY file ({type(exc).__name__}: {exc})".rstrip("."),
                         fix=fix) from exc


def load_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS PLY (any SH degree 0..3) into float32 :class:`Gaussians` on the CPU."""
    path = Path(path)
    return _gaussians(_read(path, "write it again or pass a 3DGS .ply"), path)


def _gaussians(ply, path: Path) -> Gaussians:
    """The Gaussians of a parsed 3DGS PLY (:func:`load_ply`)."""
    if "vertex" not in [e.name for e in ply.elements]:
        raise InputError(path=path, field="element 'vertex'", problem="is missing",
                         fix="pass a 3DGS PLY with one vertex per Gaussian")
    vertex = ply["vertex"]
    present = [p.name for p in vertex.properties]
    n_rest = sum(1 for p in present if p.startswith("f_rest_"))
    if n_rest % 3 or (n_rest // 3 + 1) not in (1, 4, 9, 16):
        raise InputError(path=path, field="f_rest_*", problem=f"has {n_rest} properties",
                         fix="a 3DGS PLY has 0, 9, 24 or 45 of them (SH degree 0 to 3)")
    k = n_rest // 3 + 1
    degree = int(round(k ** 0.5)) - 1
    needed = [name for name in ply_property_names(degree) if name not in ("nx", "ny", "nz")]
    for name in needed:
        if name not in present:
            raise InputError(path=path, field=f"property '{name}'", problem="is missing",
                             fix="export the file in the standard 3DGS PLY layout")
    n = len(vertex.data)

    def column(name: str) -> np.ndarray:
        return np.asarray(vertex.data[name], dtype=np.float32)

    def stack(names: list[str]) -> torch.Tensor:
        if not names:
            return torch.zeros(n, 0)
        return torch.from_numpy(np.stack([column(nm) for nm in names], 1).reshape(n, len(names)))

    means = stack(["x", "y", "z"])
    dc = stack([f"f_dc_{c}" for c in range(3)])
    rest = stack([f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k - 1).permute(0, 2, 1)
    sh = torch.cat([dc[:, None, :], rest], 1).contiguous()
    stored = [int(c.split()[-1]) for c in ply.comments if c.startswith("vdm3d sh_degree ") and c.split()[-1].isdigit()]
    if stored and stored[0] < degree:
        sh = sh[:, :(stored[0] + 1) ** 2].contiguous()  # the zero bands save_ply added for the full layout
    opacity = torch.from_numpy(column("opacity").copy())
    log_scales = stack(["scale_0", "scale_1", "scale_2"])
    quats = stack(["rot_0", "rot_1", "rot_2", "rot_3"])
    for name, t in (("x/y/z", means), ("f_dc/f_rest", sh), ("opacity", opacity), ("scale_*", log_scales),
                    ("rot_*", quats)):
        if not torch.isfinite(t).all():
            i = int((~torch.isfinite(t.reshape(n, -1))).any(1).nonzero()[0])
            raise InputError(path=path, field=f"property {name}", problem=f"has a non-finite value at vertex {i}",
                             fix="remove or repair that Gaussian")
    if n and (quats.norm(dim=1) == 0).any():
        i = int((quats.norm(dim=1) == 0).nonzero()[0])
        raise InputError(path=path, field="property rot_*", problem=f"is an all-zero quaternion at vertex {i}",
                         fix="store a nonzero (w, x, y, z) rotation")
    return Gaussians(means, quats, log_scales, opacity, sh)


#: the vertex properties that make a PLY a 3DGS file rather than a point cloud
_SPLAT_PROPERTIES = {"f_dc_0", "opacity", "scale_0", "rot_0"}


def load_points(path: str | Path, say: Callable[[str], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[P, 3]`` (float64) and colours ``[P, 3]`` in [0, 1] of any PLY with x, y, z vertices: a point cloud's
    ``red``/``green``/``blue`` (bytes, or floats in [0, 1]), a 3DGS file's DC colour, else mid-grey.

    Vertices without finite x, y and z are left out with a warning line to ``say`` (None: stderr) that names the
    file and how many: a handful of NaN points in an exported cloud is common and harmless to leave out, but
    silently is how a cloud that is mostly NaN would start a fit from its few good points. A file whose every
    vertex is non-finite is refused, since nothing of it would be used."""
    path = Path(path)
    return _points(_read_points_file(path), path, say)


def load_start(path: str | Path, say: Callable[[str], None] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, Gaussians | None]:
    """What a fit can start from, in one read of the file (a 3DGS PLY of millions of Gaussians is hundreds of
    MB): :func:`load_points`' points and colours, and the Gaussians when the file is a 3DGS one
    (its vertices carry ``f_dc_*``, ``opacity``, ``scale_*`` and ``rot_*``), else ``None``."""
    path = Path(path)
    ply = _read_points_file(path)
    splat = "vertex" in [e.name for e in ply.elements] and _SPLAT_PROPERTIES <= set(ply["vertex"].data.dtype.names)
    splats = _gaussians(ply, path) if splat else None  # first: it refuses a non-finite Gaussian, which is not left out
    points, rgb = _points(ply, path, say)
    return points, rgb, splats


def _read_points_file(path: Path):
    if path.is_dir():
        inside = path / "splats.ply"
        raise InputError(path=path, problem="is a folder, not a .ply file",
                         fix=f"pass the .ply inside it ({inside})" if inside.is_file() else "pass a .ply file")
    return _read(path, "write it again or pass another .ply")


def _points(ply, path: Path, say: Callable[[str], None] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    from vdm3d.splat.sh import sh_to_rgb

    if "vertex" not in [e.name for e in ply.elements]:
        raise InputError(path=path, field="element 'vertex'", problem="is missing",
                         fix="pass a point cloud or a 3DGS PLY with one vertex per point")
    vertex = ply["vertex"]
    names = vertex.data.dtype.names
    missing = [c for c in ("x", "y", "z") if c not in names]
    if missing:
        raise InputError(path=path, field=f"property '{missing[0]}'", problem="is missing",
                         fix="pass a PLY whose vertices have x, y and z")
    xyz = np.stack([vertex[c] for c in ("x", "y", "z")], -1).astype(np.float64)  # a double PLY far out keeps its digits
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([vertex[c] for c in ("red", "green", "blue")], -1)
        rgb = rgb.astype(np.float32) / (255.0 if np.issubdtype(rgb.dtype, np.integer) else 1.0)
    elif all(f"f_dc_{c}" in names for c in range(3)):
        rgb = sh_to_rgb(torch.from_numpy(np.stack([vertex[f"f_dc_{c}"] for c in range(3)], -1).astype(np.float32)))
        rgb = rgb.numpy()
    else:
        rgb = np.full(xyz.shape, 0.5, np.float32)
    return finite_points(torch.from_numpy(xyz), torch.from_numpy(np.clip(rgb, 0.0, 1.0).astype(np.float32)), path,
                         "element 'vertex'", "export the point cloud again or pass another .ply", say)


def finite_points(points: torch.Tensor, colors: torch.Tensor, source: str | Path, field: str, fix: str,
                  say: Callable[[str], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``points`` ``[P, 3]`` with finite x, y and z, and their ``colors``; the others are left out with one
    warning line to ``say`` (None: stderr) that names ``source`` and counts them, and a set with no finite
    point is refused (:class:`InputError` naming ``source``, its ``field`` and the ``fix``). A few NaN points
    are common in exported and triangulated clouds and harmless to leave out; silently, a cloud that is
    mostly NaN started a fit from its few good points, and one NaN stopped a fit in a k-d tree's traceback."""
    keep = torch.isfinite(points).all(1)
    dropped = int((~keep).sum())
    if dropped and dropped == len(keep):
        raise InputError(path=source, field=field,
                         problem=f"has no point with finite x, y and z (all {dropped} are NaN or inf)", fix=fix)
    if dropped:
        (say or (lambda line: print(line, file=sys.stderr, flush=True)))(
            f"warning: {source}: {dropped} of {len(keep)} points have a non-finite x, y or z (NaN or inf) and are "
            "left out")
    return points[keep], colors[keep]
