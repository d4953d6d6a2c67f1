"""The mesh-scene type filled from any trimesh-loadable file: up-axis conversion at the edge, the same
depth and edges as the in-memory scene it was written from, and one-sentence errors for bad files."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.data.procedural import make_object
from vdm3d.errors import InputError
from vdm3d.geometry.mesh_scene import Y_UP_TO_Z_UP, MeshScene, load_mesh_scene, up_axis_for

SRC = Path(__file__).resolve().parents[2] / "src" / "vdm3d"
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "meshes"


def _camera(eye, w=48, h=40) -> Cameras:
    c2w = look_at(torch.tensor(eye, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    return Cameras.from_fov(45.0, w, h, c2w.float())


def _write(scene: MeshScene, path: Path, up: str) -> None:
    """Write ``scene`` (z-up) to ``path`` in the ``up`` convention: a y-up file stores (x, z, -y)."""
    (scene.transformed(np.linalg.inv(Y_UP_TO_Z_UP)) if up == "y" else scene).export(path)


def test_geometry_does_not_import_data():
    """geometry/ is below data/: procedural data builds the mesh scene, never the other way round."""
    for f in (SRC / "geometry").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("vdm3d.data") for n in names), f"{f.name} imports {names}"


@pytest.mark.parametrize("suffix,up", [(".glb", "y"), (".obj", "y"), (".ply", "z")])
def test_files_load_z_up_with_the_same_geometry(tmp_path, suffix, up):
    """A procedural object written in each format's up convention loads back onto the original vertices."""
    scene = make_object(3, max_parts=2)
    assert up_axis_for(f"x{suffix}") == up
    path = tmp_path / f"scene{suffix}"
    _write(scene, path, up)
    loaded = load_mesh_scene(path, normalize=False)
    v0 = np.concatenate([p.vertices for p in scene.parts])
    v1 = np.concatenate([p.vertices for p in loaded.parts])
    np.testing.assert_allclose(np.sort(v1, 0), np.sort(v0, 0), atol=1e-5)
    wrong = load_mesh_scene(path, normalize=False, up="z" if up == "y" else "y")  # the other convention
    assert np.abs(np.sort(np.concatenate([p.vertices for p in wrong.parts]), 0) - np.sort(v0, 0)).max() > 0.05


def test_loaded_file_renders_the_same_depth_and_edges(tmp_path):
    """Depth and geometric edges rendered from a GLB path equal those of the scene it was written from."""
    pytest.importorskip("moderngl")
    from vdm3d.geometry.mesh_render import RenderBackendError, render_buffers

    scene = make_object(5, max_parts=3)
    path = tmp_path / "scene.glb"
    _write(scene, path, "y")
    cams = Cameras.cat([_camera((2.2, -1.4, 0.9)).reshape(1), _camera((-1.8, -1.9, 0.5)).reshape(1)])
    try:
        a = render_buffers(scene, cams)
    except RenderBackendError as e:
        pytest.skip(str(e))
    b = render_buffers(path, cams)  # a path is loaded through load_mesh_scene (GLB: y-up)
    hit = (a.depth > 0) & (b.depth > 0)
    assert (a.alpha - b.alpha).abs().mean() < 0.01
    assert (a.depth[hit] - b.depth[hit]).abs().max() < 1e-3
    agree = ((a.edges > 0) == (b.edges > 0)).float().mean()
    assert agree > 0.99 and a.edges.sum() > 50


def test_real_glb_is_turned_z_up():
    """The Khronos duck stands on its feet: glTF's +y becomes +z, so the mesh is taller along z than
    the file's own z extent."""
    path = DATA / "duck" / "Duck.glb"
    if not path.is_file():
        pytest.skip("../shared/data is absent")
    raw = load_mesh_scene(path, up="z", normalize=False)
    turned = load_mesh_scene(path, normalize=False)
    np.testing.assert_allclose(turned.bounds[:, 2], raw.bounds[:, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(turned.bounds[:, 1], -raw.bounds[::-1, 2], rtol=1e-5, atol=1e-5)
    assert turned.parts[0].texture.shape[0] > 2  # the embedded texture is bound


def test_bad_files_raise_one_sentence(tmp_path):
    not_mesh = tmp_path / "notes.glb"
    not_mesh.write_text("this is not a mesh")
    with pytest.raises(InputError, match=r"notes\.glb: could not be read as a mesh .*; pass a mesh file"):
        load_mesh_scene(not_mesh)
    empty = tmp_path / "empty.obj"
    empty.write_text("# no faces\nv 0 0 0\nv 1 0 0\n")
    with pytest.raises(InputError, match=r"empty\.obj: contains no triangles"):
        load_mesh_scene(empty)
    with pytest.raises(InputError, match="does not exist"):
        load_mesh_scene(tmp_path / "missing.ply")
    # QA chain: `stylize --mesh runs/object` said the run folder "does not exist"; it names the mesh inside
    run = tmp_path / "object"
    run.mkdir()
    (run / "mesh.glb").write_bytes(b"")
    with pytest.raises(InputError, match=rf"object: is a folder, not a mesh file; pass the mesh inside it, "
                       rf"{str(run / 'mesh.glb')}\."):
        load_mesh_scene(run)
    with pytest.raises(InputError, match=r"is a folder, not a mesh file; pass a mesh file \(GLB"):
        load_mesh_scene(tmp_path)


def test_triangles_join_the_parts_with_their_vertex_offsets():
    import trimesh

    scene = make_object(1)
    assert len(scene.parts) == 4
    vertices, faces = scene.triangles()
    joined = trimesh.util.concatenate([trimesh.Trimesh(p.vertices, p.faces, process=False) for p in scene.parts])
    assert vertices.dtype == np.float64 and faces.dtype == np.int64 and len(faces) == scene.num_faces
    np.testing.assert_array_equal(vertices, joined.vertices)
    np.testing.assert_array_equal(faces, joined.faces)


def test_a_far_mesh_is_recentred_in_float64_and_says_by_how_much(tmp_path):
    """A y-up OBJ (text, float64) 5e6 units out: ``recentre`` moves it before its vertices become float32, so a
    0.01-unit step survives (float32 steps by 0.5 there), and the offset is said in the z-up world."""
    import trimesh

    from vdm3d.geometry.precision import far_offset, float32_spacing

    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.01, 0.01, 1]], [[0, 2, 1], [0, 1, 3], [1, 2, 3],
                                                                                [0, 3, 2]], process=False)
    mesh.apply_translation([5e6, 200.0, -3e5])
    mesh.export(tmp_path / "far.obj")  # OBJ: y-up by convention
    kept = load_mesh_scene(tmp_path / "far.obj", normalize=False)
    moved = load_mesh_scene(tmp_path / "far.obj", normalize=False, recentre=True)
    assert not kept.offset.any()
    np.testing.assert_allclose(moved.offset, [5e6 + 0.5, 3e5 - 0.5, 200.5], rtol=0, atol=1e-9)  # (x, -z, y)
    back = np.concatenate([p.vertices for p in moved.parts]).astype(np.float64) + moved.offset
    truth = (Y_UP_TO_Z_UP[:3, :3] @ np.asarray(mesh.vertices, np.float64).T).T
    nearest = lambda v: np.linalg.norm(v[:, None] - truth[None], axis=-1).min(1).max()  # noqa: E731 (crease copies)
    assert nearest(back) < 1e-6
    assert nearest(np.concatenate([p.vertices for p in kept.parts]).astype(np.float64)) > 0.005  # float32's own grid
    assert float32_spacing(5e6) == 0.5 * 5e6 / 2 ** 22
    assert far_offset(np.zeros(3), np.ones(3) * 2) is None and far_offset(np.full(3, 1e3), np.full(3, 1e3 + 2)) is None


def test_a_damaged_texture_is_one_sentence_and_a_whole_one_reads_exactly(tmp_path):
    """A texture image is read through vdm3d's image reader: PIL's convert() let a damaged PNG's SyntaxError
    through as a traceback. An 8-bit texture comes back byte for byte."""
    import trimesh
    from PIL import Image

    box = trimesh.creation.box()
    box.export(tmp_path / "box.obj")
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((16, 16, 3), (51, 153, 76), np.uint8)).save(flat)
    data = bytearray(flat.read_bytes())
    data[36] ^= 1 << 3  # the IDAT chunk's length: PIL takes pixel bytes for the next chunk ("broken PNG file")
    flat.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"flat\.png: "):
        load_mesh_scene(tmp_path / "box.obj", texture=flat)

    from vdm3d.geometry.mesh_scene import read_texture

    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "tex.png")
    assert np.array_equal(read_texture(tmp_path / "tex.png"), pixels)
