"""Acceptance: the object job's files open everywhere.

* ``splats.ply`` has the INRIA 3DGS layout that INRIA-style loaders read: 62 float vertex properties;
* ``mesh.glb`` is a well-formed glTF 2.0 binary, y-up as glTF requires (vdm3d's z-up turned at the
  edge), and the Khronos glTF validator reports 0 errors (the npm package ``gltf-validator`` run by
  node; ``make`` installs it into ``.venv/gltf-validator`` when npm is present, and that check skips
  with the reason otherwise);
* ``cameras/transforms.json`` names its ``camera_model``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh
from plyfile import PlyData

from vdm3d.jobs.object import Y_UP, ObjectConfig, run_object
from vdm3d.splat.ply import load_ply

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SPOT = ROOT / "src" / "vdm3d" / "assets" / "spot.png"
TINY = dict(fit_steps=10, carve_resolution=24, num_points=200, mesh_resolution=24, mesh_views=6, turntable_frames=2,
            steps=2, frames=6)
VALIDATE_JS = """
const fs = require('fs');
const validator = require(process.argv[1]);
validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])))
  .then((r) => console.log(JSON.stringify({errors: r.issues.numErrors, warnings: r.issues.numWarnings,
                                            messages: r.issues.messages.filter((m) => m.severity <= 1)})))
  .catch((e) => { console.error(String(e)); process.exit(3); });
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "object"
    return out, run_object(ObjectConfig(image=SPOT, out=out, **TINY), progress=None)


def test_splats_ply_loads_in_plyfile_with_62_vertex_properties(demo):
    out, result = demo
    ply = PlyData.read(str(out / "splats.ply"))
    props = ply["vertex"].properties
    assert len(props) == 62 and all(p.val_dtype in ("f4", "float32", "<f4") or p.val_dtype.endswith("f4")
                                     for p in props)
    assert sum(p.name.startswith("f_rest_") for p in props) == 45
    assert len(ply["vertex"].data) == len(result.gaussians)
    assert load_ply(out / "splats.ply").sh_degree == result.gaussians.sh_degree


def read_glb(path: Path) -> tuple[dict, bytes]:
    """The JSON and BIN chunks of a GLB, checking the container (glTF 2.0 spec, section 4.4)."""
    raw = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", raw, 0)
    assert magic == 0x46546C67 and version == 2 and length == len(raw)  # "glTF", version 2, whole file
    json_len, json_type = struct.unpack_from("<II", raw, 12)
    assert json_type == 0x4E4F534A and json_len % 4 == 0  # "JSON", 4-byte aligned
    doc = json.loads(raw[20:20 + json_len])
    bin_len, bin_type = struct.unpack_from("<II", raw, 20 + json_len)
    assert bin_type == 0x004E4942  # "BIN\0"
    assert 28 + json_len + bin_len == len(raw)
    return doc, raw[28 + json_len:]


def test_glb_is_gltf_2_and_y_up(demo):
    out, result = demo
    doc, blob = read_glb(out / "mesh.glb")
    assert doc["asset"]["version"] == "2.0" and doc["buffers"][0]["byteLength"] <= len(blob)
    position = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert "min" in position and "max" in position  # required for POSITION
    glb = trimesh.load(out / "mesh.glb", force="mesh", process=False)
    expected = trimesh.transform_points(np.asarray(result.mesh.vertices), Y_UP)  # z-up -> y-up: (x, z, -y)
    np.testing.assert_allclose(np.asarray(glb.vertices), expected, atol=1e-5)
    np.testing.assert_allclose(position["max"], expected.max(0), atol=1e-5)


def gltf_validator() -> Path | None:
    candidates = [os.environ.get("VDM3D_GLTF_VALIDATOR", ""), ROOT / ".venv" / "gltf-validator" / "node_modules" /
                  "gltf-validator"]
    return next((Path(c) for c in candidates if c and (Path(c) / "package.json").is_file()), None)


def test_glb_has_no_errors_in_the_khronos_validator(demo):
    out, _ = demo
    module = gltf_validator()
    if shutil.which("node") is None or module is None:
        pytest.skip("the Khronos glTF validator is not installed (make installs it with npm into .venv/gltf-validator)")
    proc = subprocess.run(["node", "-e", VALIDATE_JS, str(module), str(out / "mesh.glb")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    print(f"gltf-validator: {report['errors']} errors, {report['warnings']} warnings")
    assert report["errors"] == 0, report["messages"]
    assert report["warnings"] == 0, report["messages"]


def test_transforms_json_names_its_camera_model(demo):
    out, _ = demo
    data = json.loads((out / "cameras" / "transforms.json").read_text())
    assert data["camera_model"] == "PINHOLE"
    # and orbit.mp4's frame rate, as orbit.json has it (QA chain: read back at 24 fps, orbit.json says 6)
    from vdm3d.cameras.formats import read_camera_file

    fps = [read_camera_file(out / "cameras" / f).trajectory.fps for f in ("transforms.json", "orbit.json")]
    assert fps == [6.0, 6.0]
