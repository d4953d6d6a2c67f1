"""Colour baking against an analytic textured sphere, and GLB/OBJ export that trimesh reads back."""

import math

import numpy as np
import pytest
import torch
import trimesh

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.geometry.texture import bake_uv_texture, bake_vertex_colors, export_mesh, rasterize_uv

R = 0.6


def color_at(p):
    """A smooth colour field on the sphere: each channel follows one coordinate."""
    return (p / R + 1) / 2 * 0.8 + 0.1


def views(n=12, size=64):
    az = torch.arange(n) * 2 * math.pi / n
    el = torch.where(torch.arange(n) % 2 == 0, 0.7, -0.6)
    eye = 2.5 * torch.stack([torch.cos(az) * torch.cos(el), torch.sin(az) * torch.cos(el), torch.sin(el)], -1)
    cams = Cameras.from_fov(40.0, size, size, look_at(eye, torch.zeros(n, 3), torch.tensor([0, 0, 1.0]).expand(n, 3)))
    o, d = cams.rays(normalize=False)
    dn = d / d.norm(dim=-1, keepdim=True)
    b = (o * dn).sum(-1)
    disc = b * b - ((o * o).sum(-1) - R * R)
    hit = disc > 0
    t = -b - disc.clamp_min(0).sqrt()
    p = o + t[..., None] * dn
    images = torch.where(hit[..., None], color_at(p), torch.ones_like(p))
    depths = torch.where(hit, t / d.norm(dim=-1), torch.full_like(t, float("inf")))
    return images, depths, cams


@pytest.fixture(scope="module")
def scene():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=R)
    return mesh, *views()


def test_vertex_colors_match_the_surface_colour(scene):
    mesh, images, depths, cams = scene
    baked = bake_vertex_colors(mesh, images, depths, cams, depth_tol=0.05)
    got = baked.visual.vertex_colors[:, :3] / 255.0
    want = color_at(torch.tensor(mesh.vertices, dtype=torch.float32)).numpy()
    # nearest-pixel sampling at 64x64: about one pixel (~0.03 in colour) of error
    assert np.abs(got - want).mean() < 0.02


def test_uv_texture_matches_the_surface_colour(scene):
    mesh, images, depths, cams = scene
    baked = bake_uv_texture(mesh, images, depths, cams, depth_tol=0.05, size=256)
    tex = np.asarray(baked.visual.material.baseColorTexture.convert("RGB"), np.float64) / 255
    uv = baked.visual.uv
    col = np.clip((uv[:, 0] * 256).astype(int), 0, 255)
    row = np.clip(((1 - uv[:, 1]) * 256).astype(int), 0, 255)
    got = tex[row, col]
    want = color_at(torch.tensor(baked.vertices, dtype=torch.float32)).numpy()
    assert np.abs(got - want).mean() < 0.03


def test_rasterize_uv_covers_a_triangle_exactly():
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    face_index, bary = rasterize_uv(uvs, np.array([[0, 1, 2]]), 16)
    # texel (row, col) centre has u = (col+.5)/16, v = 1-(row+.5)/16; inside when u + v <= 1
    rows, cols = np.mgrid[0:16, 0:16]
    inside = (cols + 0.5) / 16 + 1 - (rows + 0.5) / 16 <= 1
    assert ((face_index == 0) == inside).all()
    np.testing.assert_allclose(bary[inside].sum(-1), 1.0)


def test_export_round_trip(tmp_path, scene):
    mesh, images, depths, cams = scene
    baked = bake_vertex_colors(mesh, images, depths, cams, depth_tol=0.05)
    paths = export_mesh(baked, tmp_path)
    loaded = trimesh.load(paths["glb"], force="mesh")
    assert len(loaded.faces) == len(mesh.faces) and loaded.is_watertight
    assert loaded.visual.kind == "vertex" and loaded.visual.vertex_colors[:, :3].std() > 10
    obj = trimesh.load(paths["obj"], force="mesh")
    assert len(obj.faces) == len(mesh.faces)
    textured = bake_uv_texture(mesh, images, depths, cams, depth_tol=0.05, size=64)
    paths = export_mesh(textured, tmp_path / "tex")
    loaded = trimesh.load(paths["glb"], force="mesh")
    assert loaded.visual.kind == "texture" and loaded.visual.material.baseColorTexture is not None
    # the OBJ's material is white, so viewers that multiply the texture by Kd show it as baked, and its
    # MTL and PNG are named after the mesh
    assert sorted(p.name for p in (tmp_path / "tex").iterdir()) == ["mesh.glb", "mesh.mtl", "mesh.obj", "mesh.png"]
    mtl = dict(line.split(" ", 1) for line in (tmp_path / "tex" / "mesh.mtl").read_text().splitlines()
               if line and not line.startswith("#"))
    assert [float(v) for v in mtl["Kd"].split()] == [1.0, 1.0, 1.0] and mtl["map_Kd"] == "mesh.png"
    assert [float(v) for v in mtl["Ks"].split()] == [0.0, 0.0, 0.0]
    obj = trimesh.load(paths["obj"], force="mesh")
    png = np.asarray(obj.visual.material.image.convert("RGB"))
    np.testing.assert_array_equal(png, np.asarray(loaded.visual.material.baseColorTexture.convert("RGB")))


@pytest.mark.parametrize("failure", ["disk fills", "encoder raises"])
def test_a_failed_export_leaves_the_old_mesh_files_whole(tmp_path, scene, monkeypatch, failure):
    """export_mesh let trimesh open mesh.glb / mesh.obj in place and write into them: a disk that filled
    up partway left a cut GLB or OBJ that looks whole, and an encoder that raised left an empty mesh.obj
    (the old one truncated) beside a new mesh.glb. Now every file is the old one, whole, or absent."""
    import errno
    import resource

    mesh, images, depths, cams = scene
    old = bake_uv_texture(mesh, images, depths, cams, depth_tol=0.05, size=32)
    new = bake_uv_texture(mesh, images, depths, cams, depth_tol=0.05, size=64)
    export_mesh(old, tmp_path / "old")
    olds = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}
    assert sorted(olds) == ["mesh.glb", "mesh.mtl", "mesh.obj", "mesh.png"]
    (tmp_path / "fresh").mkdir()

    def fail(folder):
        if failure == "encoder raises":  # the OBJ encoder fails after the GLB is encoded
            def broken(*args, **kwargs):
                raise ValueError("no OBJ today")

            with monkeypatch.context() as m:
                m.setitem(trimesh.exchange.export._mesh_exporters, "obj", broken)
                with pytest.raises(ValueError, match="no OBJ today"):
                    export_mesh(new, folder)
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)  # no file grows past 4 KiB: a disk filling up
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            with pytest.raises(OSError) as raised:
                export_mesh(new, folder)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert raised.value.errno == errno.EFBIG

    fail(tmp_path / "old")
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == olds
    fail(tmp_path / "fresh")
    assert list((tmp_path / "fresh").iterdir()) == []
    export_mesh(new, tmp_path / "old")  # and once the disk has room, the new files replace the old ones
    assert trimesh.load(tmp_path / "old" / "mesh.obj", force="mesh").visual.material.image.size == (64, 64)
