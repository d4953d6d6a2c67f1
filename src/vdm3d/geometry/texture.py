"""Colours for a reconstructed mesh, baked from renders, and GLB/OBJ export.

Baking projects surface points (mesh vertices, or the 3D point under every texel of a UV atlas) into
``N`` coloured views with depth. A view contributes to a point when the point is in the image, not
occluded (its z-depth is within ``depth_tol`` of the view's depth map there) and faces the camera; the
contribution is weighted by ``cos(angle between normal and view ray)^2``, so grazing views count less.
Points that no view sees take the colour of the nearest seen point (vertex colours) or of the nearest
filled texel (UV textures).

UV atlases come from xatlas (``xatlas.parametrize``); the texel-to-surface lookup is a small
vectorized rasterizer over each triangle's UV bounding box (numpy, no OpenGL needed). Export goes
through trimesh: GLB (binary glTF, vertex colours or a PBR base-colour texture) and OBJ (+MTL + PNG),
encoded in memory and written whole or not at all (:func:`encode_mesh`, :func:`write_files`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh
from jaxtyping import Float
from PIL import Image
from scipy.spatial import cKDTree
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.pixels import pixel_hits
from vdm3d.io.runs import replace_all_by_writing


def project_colors(points_world: np.ndarray, normals_world: np.ndarray, images: Float[Tensor, "N H W 3"],
                   depths: Float[Tensor, "N H W"], cameras: Cameras, depth_tol: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Visibility-weighted average colour of points over views: ``(colors [P, 3], weight [P])``."""
    pts = torch.tensor(np.asarray(points_world), dtype=torch.float32)
    nrm = torch.tensor(np.asarray(normals_world), dtype=torch.float32)
    acc = torch.zeros(pts.shape[0], 3)
    wsum = torch.zeros(pts.shape[0])
    for i in range(images.shape[0]):
        cam = cameras[i]
        hits = pixel_hits(cam, pts)
        visible = hits.inside & ((hits.gather(depths[i]) - hits.z).abs() < depth_tol)
        to_cam = cam.centers - pts
        cos = (nrm * to_cam).sum(-1) / to_cam.norm(dim=-1).clamp_min(1e-8)
        wt = torch.where(visible & (cos > 0), cos.clamp_min(0) ** 2, torch.zeros_like(cos))
        acc += wt[:, None] * hits.gather(images[i])
        wsum += wt
    colors = acc / wsum.clamp_min(1e-8)[:, None]
    return colors.numpy(), wsum.numpy()


def fill_unseen(points: np.ndarray, colors: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Give unseen points the colour of the nearest seen point (grey when nothing was seen)."""
    if seen.all():
        return colors
    if not seen.any():
        return np.full_like(colors, 0.5)
    _, nearest = cKDTree(points[seen]).query(points[~seen])
    out = colors.copy()
    out[~seen] = colors[seen][nearest]
    return out


def bake_vertex_colors(mesh: trimesh.Trimesh, images: Float[Tensor, "N H W 3"], depths: Float[Tensor, "N H W"],
                       cameras: Cameras, depth_tol: float) -> trimesh.Trimesh:
    """A copy of ``mesh`` with RGBA vertex colours baked from the views."""
    colors, wsum = project_colors(mesh.vertices, mesh.vertex_normals, images, depths, cameras, depth_tol)
    colors = fill_unseen(np.asarray(mesh.vertices), colors, wsum > 0)
    rgba = np.concatenate([colors, np.ones((len(colors), 1))], 1)
    out = mesh.copy()
    out.visual = trimesh.visual.ColorVisuals(out, vertex_colors=(rgba * 255).round().astype(np.uint8))
    return out


def rasterize_uv(uvs: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each texel centre of a ``size x size`` atlas, the face covering it and its barycentrics.

    Returns ``face_index [size, size]`` (-1 where no face) and ``bary [size, size, 3]``. Texel
    ``(row, col)`` has UV ``((col + 0.5) / size, 1 - (row + 0.5) / size)`` (glTF/OBJ: v up).
    """
    tri = uvs[faces] * size  # [F, 3, 2] in texel units, v up
    tri[..., 1] = size - tri[..., 1]  # rows grow downward
    lo = np.floor(tri.min(1) - 0.5).astype(np.int64).clip(0, size - 1)
    hi = np.ceil(tri.max(1) - 0.5).astype(np.int64).clip(0, size - 1)
    nx, ny = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    counts = nx * ny
    face = np.repeat(np.arange(len(faces)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    col = lo[face, 0] + local % nx[face]
    row = lo[face, 1] + local // nx[face]
    p = np.stack([col + 0.5, row + 0.5], -1)
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    l0 = 1 - l1 - l2
    ok = (l0 >= -1e-6) & (l1 >= -1e-6) & (l2 >= -1e-6)
    face_index = np.full((size, size), -1, np.int64)
    bary = np.zeros((size, size, 3), np.float64)
    face_index[row[ok], col[ok]] = face[ok]
    bary[row[ok], col[ok]] = np.stack([l0, l1, l2], -1)[ok]
    return face_index, bary


def dilate_texture(texture: np.ndarray, filled: np.ndarray, passes: int = 8) -> np.ndarray:
    """Grow filled texels into empty ones (mean of filled 8-neighbours), so chart seams do not bleed
    background colour under bilinear filtering."""
    tex, mask = texture.copy(), filled.copy()
    for _ in range(passes):
        pad_t = np.pad(tex * mask[..., None], ((1, 1), (1, 1), (0, 0)))
        pad_m = np.pad(mask.astype(np.float64), 1)
        s = sum(pad_t[1 + dy:pad_t.shape[0] - 1 + dy, 1 + dx:pad_t.shape[1] - 1 + dx]
                for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        n = sum(pad_m[1 + dy:pad_m.shape[0] - 1 + dy, 1 + dx:pad_m.shape[1] - 1 + dx]
                for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        grow = (~mask) & (n > 0)
        tex[grow] = s[grow] / n[grow][:, None]
        mask = mask | grow
    return tex


def bake_uv_texture(mesh: trimesh.Trimesh, images: Float[Tensor, "N H W 3"], depths: Float[Tensor, "N H W"],
                    cameras: Cameras, depth_tol: float, size: int = 512) -> trimesh.Trimesh:
    """Unwrap ``mesh`` with xatlas and bake a ``size^2`` base-colour texture from the views."""
    import xatlas

    vmapping, indices, uvs = xatlas.parametrize(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces))
    verts = np.asarray(mesh.vertices)[vmapping]
    normals = np.asarray(mesh.vertex_normals)[vmapping]
    face_index, bary = rasterize_uv(uvs, indices, size)
    filled = face_index >= 0
    corners = indices[face_index[filled]]  # [T, 3]
    b = bary[filled]
    pts = (verts[corners] * b[..., None]).sum(1)
    nrm = (normals[corners] * b[..., None]).sum(1)
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True).clip(1e-8)
    colors, wsum = project_colors(pts, nrm, images, depths, cameras, depth_tol)
    colors = fill_unseen(pts, colors, wsum > 0)
    texture = np.ones((size, size, 3))
    texture[filled] = colors
    texture = dilate_texture(texture, filled)
    image = Image.fromarray((texture.clip(0, 1) * 255).round().astype(np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image, metallicFactor=0.0,
                                                   roughnessFactor=1.0)
    visual = trimesh.visual.TextureVisuals(uv=uvs, material=material)
    return trimesh.Trimesh(verts, indices, visual=visual, process=False)


def export_mesh(mesh: trimesh.Trimesh, folder: str | Path, stem: str = "mesh") -> dict[str, Path]:
    """Write ``<stem>.glb`` and ``<stem>.obj`` into ``folder``; a textured mesh's OBJ comes with
    ``<stem>.mtl`` and ``<stem>.png`` (named after the mesh, so two runs' OBJs copied into one folder keep
    their own textures), whose material is white (``Kd 1``, no specular): viewers multiply the texture
    by ``Kd`` (three.js's MTLLoader does), and trimesh's default grey 0.4 would show it at 40 %."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    glb, obj = folder / f"{stem}.glb", folder / f"{stem}.obj"
    files = encode_mesh(mesh, glb)
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.ColorVisuals):
        files |= encode_mesh(mesh, obj, include_color=True)
    elif isinstance(visual, trimesh.visual.TextureVisuals) and visual.material is not None:
        image = getattr(visual.material, "baseColorTexture", None) or getattr(visual.material, "image", None)
        white = trimesh.visual.material.SimpleMaterial(image=image, diffuse=[255] * 4, ambient=[255] * 4,
                                                       specular=[0, 0, 0, 255], name=stem)
        flat = mesh.copy()
        flat.visual = trimesh.visual.TextureVisuals(uv=visual.uv, material=white)
        files = encode_mesh(flat, obj, mtl_name=f"{stem}.mtl") | files  # the OBJ's texture first, the GLB last
    else:
        files |= encode_mesh(mesh, obj)
    write_files(files)  # the GLB and the OBJ of one mesh: both new, or both as they were
    return {"glb": glb, "obj": obj}


def write_mesh(mesh: trimesh.Trimesh | trimesh.Scene, path: str | Path, **options) -> list[Path]:
    """Write ``mesh`` at ``path`` in the format its suffix names (``options`` go to trimesh's encoder), with
    the files it refers to beside it (an OBJ's MTL and texture, a glTF's buffers), whole or not at all;
    returns the paths written, the mesh file last."""
    files = encode_mesh(mesh, path, **options)
    write_files(files)
    return list(files)


def encode_mesh(mesh: trimesh.Trimesh | trimesh.Scene, path: str | Path, **options) -> dict[Path, bytes]:
    """The files that writing ``mesh`` at ``path`` makes, encoded in memory: path -> bytes, the files the
    mesh refers to first, the mesh file last.

    trimesh's own ``export(path)`` opens the file before encoding and writes into it: an encoder error left
    an empty file where the old one was, and a disk filling up a cut one that still looks like a mesh.
    Encoding first and writing with :func:`write_files` leaves the old files, or none, on any failure."""
    path = Path(path)
    file_type = path.suffix.lstrip(".").lower()
    if file_type == "obj":  # the MTL and texture come back beside the text, not written through a resolver
        options["return_texture"] = True
    encoded = mesh.export(file_type=file_type, **options)
    if file_type == "obj":
        main, beside = encoded
    elif isinstance(encoded, dict):  # glTF: the JSON under trimesh's default name, then its buffers
        beside = dict(encoded)
        main = beside.pop("model.gltf")
    else:
        main, beside = encoded, {}
    files = {path.parent / name: data for name, data in beside.items()} | {path: main}
    return {p: data.encode("utf-8") if isinstance(data, str) else bytes(data) for p, data in files.items()}


def write_files(files: dict[Path, bytes]) -> None:
    """Write encoded files that belong together, in order, each to a temp file renamed over its path only
    once all are whole (:func:`~vdm3d.io.runs.replace_all_by_writing`)."""
    replace_all_by_writing({path: (lambda f, data=data: f.write(data)) for path, data in files.items()})
