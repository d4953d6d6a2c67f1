"""Property tests over every file reader: random mutations of a valid file (bytes flipped, inserted,
deleted, the file cut short) either read, or raise the project's own error. Nothing else may leave a
reader: no numpy/PIL/OpenCV/plyfile/JSON exception, no traceback for the user."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from vdm3d.errors import Vdm3dError


def _build(root: Path) -> dict[str, tuple[str, bytes]]:
    from vdm3d.cameras.io import cameras_from_sv3d, colmap_from_cameras, write_colmap, write_re10k
    from vdm3d.cameras.io_transforms import write_transforms_json
    from vdm3d.cameras.trajectory import Trajectory
    from vdm3d.cameras.trajectory_file import save_trajectory
    from vdm3d.io.images import encode_image, write_depth
    from vdm3d.models.weights import save_state_dict
    from vdm3d.splat.gaussians import Gaussians
    from vdm3d.splat.ply import save_ply

    g = torch.Generator().manual_seed(0)
    cams = cameras_from_sv3d(10.0, torch.tensor([0.0, 40.0, 80.0]), 2.0, 40.0, 16, 16)
    files: dict[str, tuple[str, bytes]] = {}
    files["png"] = ("a.png", encode_image(torch.rand(8, 8, 4, generator=g), ".png"))
    files["jpeg"] = ("a.jpg", encode_image(torch.rand(8, 8, 3, generator=g), ".jpg"))
    llff = np.zeros((3, 17))
    for i in range(3):
        pose = np.zeros((3, 5))
        pose[:, 0], pose[:, 1], pose[:, 2], pose[:, 3] = [0, -1, 0], [1, 0, 0], [0, 0, 1], [0.1 * i, 0, 0]
        pose[:, 4] = [16, 16, 20]
        llff[i] = np.concatenate([pose.reshape(-1), [1.0, 10.0]])
    np.save(root / "poses_bounds.npy", llff)
    files["llff"] = ("poses_bounds.npy", (root / "poses_bounds.npy").read_bytes())
    write_transforms_json(root / "transforms.json", cams, ["a.png", "b.png", "c.png"])
    files["transforms"] = ("transforms.json", (root / "transforms.json").read_bytes())
    save_trajectory(root / "path.json", Trajectory(cams, fps=12.0))
    files["trajectory"] = ("path.json", (root / "path.json").read_bytes())
    write_re10k(root / "path.txt", cams, url="https://example.com")
    files["re10k"] = ("path.txt", (root / "path.txt").read_bytes())
    for binary, suffix in ((False, "txt"), (True, "bin")):
        write_colmap(colmap_from_cameras(cams, ["a.png", "b.png", "c.png"], torch.rand(5, 3, generator=g)),
                     root / suffix, binary=binary)
        for part in ("cameras", "images", "points3D"):
            files[f"colmap-{suffix}-{part}"] = (f"{part}.{suffix}", (root / suffix / f"{part}.{suffix}").read_bytes())
    gs = Gaussians.from_points(torch.rand(6, 3, generator=g), torch.rand(6, 3, generator=g), sh_degree=1)
    save_ply(root / "splats.ply", gs)
    files["ply"] = ("splats.ply", (root / "splats.ply").read_bytes())
    write_depth(root / "depth.png", torch.rand(8, 8, generator=g) * 3)
    files["depth-png"] = ("depth.png", (root / "depth.png").read_bytes())
    save_state_dict({"w": torch.rand(3, 2, generator=g)}, root / "w.safetensors")
    files["safetensors"] = ("w.safetensors", (root / "w.safetensors").read_bytes())
    files["yaml"] = ("c.yaml", b"fit_steps: 30\nseed: 2\nimage: a.png\n")
    files["mesh-obj"] = ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    return files


def _readers():
    from vdm3d.cameras.formats import read_camera_file
    from vdm3d.cameras.io import cameras_from_llff, read_colmap, read_re10k
    from vdm3d.cameras.io_transforms import read_transforms_json
    from vdm3d.cameras.scene import load_scene
    from vdm3d.cameras.trajectory_file import load_trajectory
    from vdm3d.cli.config import build, read_config_file
    from vdm3d.io.foreground import read_rgba
    from vdm3d.io.images import read_depth, read_image
    from vdm3d.jobs.object import ObjectConfig
    from vdm3d.models.weights import load_state_dict
    from vdm3d.splat.ply import load_ply

    def colmap(path: Path):
        for part, suffix in (("cameras", path.suffix), ("images", path.suffix), ("points3D", path.suffix)):
            if not (path.parent / f"{part}{suffix}").exists():
                (path.parent / f"{part}{suffix}").write_bytes(FILES[f"colmap-{suffix[1:]}-{part}"][1])
        return read_colmap(path.parent)

    return {
        "png": [read_image, read_rgba], "jpeg": [read_image],
        "llff": [lambda p: cameras_from_llff(p, 16, 16), read_camera_file],
        "transforms": [read_transforms_json, read_camera_file],
        "trajectory": [load_trajectory, read_camera_file], "re10k": [read_re10k, read_camera_file],
        **{f"colmap-{s}-{p}": [colmap] for s in ("txt", "bin") for p in ("cameras", "images", "points3D")},
        "ply": [load_ply, load_scene], "depth-png": [read_depth], "safetensors": [load_state_dict],
        "yaml": [lambda p: build(ObjectConfig, read_config_file(p)[0], None, str(p))],
        "mesh-obj": [load_scene],
    }


FILES = _build(Path(tempfile.mkdtemp(prefix="vdm3d-readers-")))
READERS = _readers()


def test_the_valid_files_read():
    with tempfile.TemporaryDirectory() as d:
        for kind, (name, data) in FILES.items():
            for reader in READERS[kind]:
                folder = Path(d) / kind
                folder.mkdir(exist_ok=True)
                (folder / name).write_bytes(data)
                reader(folder / name)


mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "cut", "digit"]), st.integers(0, 10**6),
                     st.integers(0, 255))


def _mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, pos, value in ops:
        if not b:
            break
        i = pos % len(b)
        if op == "flip":
            b[i] ^= 1 << (value % 8)
        elif op == "insert":
            b[i:i] = bytes([value])
        elif op == "delete":
            del b[i:i + 1 + value % 8]
        elif op == "cut":
            del b[i:]
        else:  # a digit or sign where a number was: what a hand edit of a text file does
            b[i] = b"0123456789-.eN"[value % 14]
    return bytes(b)


@pytest.mark.parametrize("kind", sorted(FILES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(mutation, min_size=1, max_size=4))
def test_a_mutated_file_reads_or_raises_our_error(kind, ops):
    name, data = FILES[kind]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(_mutate(data, ops))
        for reader in READERS[kind]:
            try:
                reader(path)
            except Vdm3dError as e:
                assert str(e).endswith(".") and "\n" not in str(e), str(e)
