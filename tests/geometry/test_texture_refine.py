"""Texture refinement against ground truth: the texel lookup reproduces an exact render of a textured
mesh, and refinement recovers a texture from renders of it."""

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.geometry.mesh_scene import MeshScene
from vdm3d.geometry.texture_refine import UNLIT, TextureRefineConfig, refine_texture, sample_texture, texel_lookup
from vdm3d.metrics.image import psnr
from vdm3d.views import Views

SPOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "meshes" / "spot"


def _spot() -> trimesh.Trimesh:
    if not (SPOT / "spot_triangulated.obj").is_file():
        pytest.skip("the shared meshes are not here")
    mesh = trimesh.load(SPOT / "spot_triangulated.obj", process=False)
    mesh.apply_scale(1.0 / np.linalg.norm(mesh.vertices, axis=1).max())
    # a smooth texture (so the GL renderer's mipmaps and a bilinear lookup agree), different in u and v
    v, u = np.meshgrid(np.linspace(0, 1, 256), np.linspace(0, 1, 256), indexing="ij")
    rgb = np.stack([u, v, 0.5 + 0.4 * np.sin(6 * u + 3 * v)], -1)
    image = Image.fromarray((rgb * 255).round().astype(np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image)
    return trimesh.Trimesh(mesh.vertices, mesh.faces, visual=trimesh.visual.TextureVisuals(uv=mesh.visual.uv,
                                                                                          material=material),
                           process=False)


def _cams(n: int):
    return cameras_from_sv3d(torch.full((n,), 10.0), torch.arange(n) * 360.0 / n, 3.2163, 40.0, 64, 64)


def test_the_texel_lookup_reproduces_the_gl_render():
    mesh, cams = _spot(), _cams(3)
    truth = render_buffers(MeshScene.from_trimesh(mesh, light=UNLIT), cams, background=(1.0, 1.0, 1.0))
    grid, cover = texel_lookup(mesh, cams)
    torch.testing.assert_close(cover, (truth.depth > 0).float())
    texture = torch.from_numpy(np.asarray(mesh.visual.material.baseColorTexture, np.float32) / 255)
    mine = sample_texture(texture, grid, cover)
    inside = truth.alpha > 0.99  # edge pixels are antialiased in the GL render
    mse = ((mine - truth.rgb) ** 2)[inside].mean()
    assert float(-10 * torch.log10(mse)) > 30


def test_refinement_recovers_a_texture_from_renders():
    mesh, cams = _spot(), _cams(6)
    truth = render_buffers(MeshScene.from_trimesh(mesh, light=UNLIT), cams, background=(1.0, 1.0, 1.0))
    grey = Image.fromarray(np.full((256, 256, 3), 128, np.uint8))
    start = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False, visual=trimesh.visual.TextureVisuals(
        uv=mesh.visual.uv, material=trimesh.visual.material.PBRMaterial(baseColorTexture=grey)))
    views = Views(truth.rgb, cams, alphas=truth.alpha, origin=("input",) + ("generated",) * 5)
    grid, cover = texel_lookup(mesh, cams)

    def score(m):
        tex = torch.from_numpy(np.asarray(m.visual.material.baseColorTexture, np.float32) / 255)
        return float(psnr(sample_texture(tex, grid, cover), truth.rgb).mean())

    refined = refine_texture(start, views, TextureRefineConfig(steps=120, lr=0.05, perceptual_weight=0.0))
    before, after = score(start), score(refined)
    assert after > before + 6, (before, after)
