"""A mesh file never makes vdm3d read files outside its folder (vdm3d.io.meshes), whatever trimesh's version.

trimesh before 5.0 (pyproject allows 4) opened any path a glTF or an MTL named: these tests put that old
resolver back (``old_trimesh``) and check that every mesh reader of vdm3d still reads only the mesh's folder."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from vdm3d.errors import InputError

VERTS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
UV = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
BLOB = VERTS.tobytes() + UV.tobytes() + np.array([0, 1, 2], np.uint16).tobytes() + b"\0\0"


@pytest.fixture(params=["new", "old"])
def old_trimesh(request, monkeypatch):
    """trimesh's file resolver as it is, and as it was before 5.0: the named path opened as it stands."""
    import trimesh

    if request.param == "old":
        def get(self, name):
            with open(os.path.join(self.parent, name.strip()), "rb") as f:
                return f.read()

        monkeypatch.setattr(trimesh.resolvers.FilePathResolver, "get", get)
    return request.param


def _gltf(buffer_uri: str, image_uri: str) -> dict:
    views = [(0, 36), (36, 24), (60, 6)]
    return {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
            "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
            "textures": [{"source": 0}], "images": [{"uri": image_uri}],
            "buffers": [{"uri": buffer_uri, "byteLength": len(BLOB)}],
            "bufferViews": [{"buffer": 0, "byteOffset": o, "byteLength": n} for o, n in views],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0],
                           "max": [1, 1, 0]},
                          {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"},
                          {"bufferView": 2, "componentType": 5123, "count": 3, "type": "SCALAR"}]}


def _readers():
    from vdm3d.cameras.scene import load_scene
    from vdm3d.geometry.mesh_scene import load_mesh_scene
    from vdm3d.viewer.content import load_mesh

    return {"load_mesh_scene": load_mesh_scene, "load_scene": load_scene, "viewer": load_mesh}


def test_a_gltf_naming_a_file_outside_its_folder_is_refused(tmp_path, old_trimesh):
    """A buffer named by ``../`` or an absolute path is one sentence naming the mesh and the file, from each mesh
    reader; a texture so named is not read (the mesh loads untextured, as trimesh does with a texture it cannot
    open). Before, trimesh 4 read both (a red mesh), and trimesh 5's refusal told the user to pass
    `FilePathResolver(path, allow_anywhere=True)`."""
    secret, user = tmp_path / "secret", tmp_path / "user"
    secret.mkdir()
    user.mkdir()
    (secret / "outside.bin").write_bytes(BLOB)
    Image.fromarray(np.full((4, 4, 3), (255, 0, 0), np.uint8)).save(secret / "tex.png")
    (user / "buf.bin").write_bytes(BLOB)
    for name, uri in {"rel.gltf": "../secret/outside.bin", "abs.gltf": str(secret / "outside.bin")}.items():
        (user / name).write_text(json.dumps(_gltf(uri, "tex.png")))
        for reader, read in _readers().items():
            with pytest.raises(InputError) as e:
                read(user / name)
            assert str(e.value) == (f"{user / name}: names {uri!r}, a file outside its folder, which vdm3d does not "
                                    "read for a mesh; copy that file beside the mesh and name it there."), reader
    from vdm3d.geometry.mesh_scene import load_mesh_scene

    for uri in ("../secret/tex.png", str(secret / "tex.png")):
        (user / "tex.gltf").write_text(json.dumps(_gltf("buf.bin", uri)))
        texture = load_mesh_scene(user / "tex.gltf").parts[0].texture
        assert not np.any(np.all(texture.reshape(-1, 3) == [255, 0, 0], axis=1)), uri


def test_an_obj_material_outside_its_folder_is_not_read(tmp_path, old_trimesh):
    """An OBJ whose ``mtllib`` lies outside its folder loads untextured (as with a missing MTL): before, with
    trimesh 4, the outside MTL and the texture it named were read and bound (a red mesh). The same MTL beside
    the mesh is read."""
    from vdm3d.geometry.mesh_scene import load_mesh_scene

    secret, user = tmp_path / "secret", tmp_path / "user"
    secret.mkdir()
    user.mkdir()
    Image.fromarray(np.full((4, 4, 3), (255, 0, 0), np.uint8)).save(secret / "tex.png")
    mtl = f"newmtl red\nmap_Kd {secret / 'tex.png'}\n"
    (secret / "a.mtl").write_text(mtl)
    obj = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nusemtl red\nf 1/1 2/2 3/3\n"
    (user / "m.obj").write_text(f"mtllib ../secret/a.mtl\n{obj}")
    (user / "abs.obj").write_text(f"mtllib {secret / 'a.mtl'}\n{obj}")
    for name in ("m.obj", "abs.obj"):
        part = load_mesh_scene(user / name).parts[0]
        assert not np.array_equal(part.texture.reshape(-1, 3)[0], [255, 0, 0]), name
    Image.fromarray(np.full((4, 4, 3), (0, 0, 255), np.uint8)).save(user / "blue.png")
    (user / "a.mtl").write_text("newmtl red\nmap_Kd blue.png\n")
    (user / "beside.obj").write_text(f"mtllib a.mtl\n{obj}")
    texture = load_mesh_scene(user / "beside.obj").parts[0].texture
    assert texture.shape[:2] == (4, 4) and np.all(texture.reshape(-1, 3) == [0, 0, 255])
