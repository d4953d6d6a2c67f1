"""Small valid inputs for every command, and broken variants of each, built once per session.

Everything is tiny (16x16 images, 4 views, a tetrahedron), so that a command given one bad input
fails in well under a second: the table in ``test_bad_inputs.py`` runs every case through the real
CLI entry. ``bad_inputs["name"]`` is a path; ``{name}`` in a case's arguments is replaced by it.
"""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm3d.io.images import write_image


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` pixels, followed by a few bytes of data:
    decoders that trust the header allocate width x height x 3 bytes before they notice."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def transforms_scene(folder: Path, n: int = 4, size: int = 16, extra: dict | None = None,
                     write_images: bool = True) -> Path:
    """A nerfstudio scene: ``n`` random images looking at the origin from a small arc."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    frames = []
    for i in range(n):
        if write_images:
            write_image(folder / f"im{i}.png", torch.rand(size, size, 3, generator=g))
        c2w = np.eye(4)
        c2w[:3, 3] = [0.2 * i - 0.3, 0.0, 3.0]  # OpenGL: looks along -z, toward the origin
        frames.append({"file_path": f"im{i}.png", "transform_matrix": c2w.tolist()})
    data = {"camera_model": "PINHOLE", "fl_x": 20.0, "fl_y": 20.0, "cx": size / 2, "cy": size / 2, "w": size,
            "h": size, "frames": frames, **(extra or {})}
    (folder / "transforms.json").write_text(json.dumps(data))
    return folder


def llff_scene(folder: Path, poses: np.ndarray | bytes | None, n: int = 4, size: int = 16) -> Path:
    """An LLFF scene with ``images/`` and the given ``poses_bounds.npy`` content (array or raw bytes)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    for i in range(n):
        write_image(folder / "images" / f"im{i}.png", torch.rand(size, size, 3, generator=g))
    target = folder / "poses_bounds.npy"
    if isinstance(poses, bytes):
        target.write_bytes(poses)
    elif poses is not None:
        np.save(target, poses, allow_pickle=True)
    return folder


def valid_llff_poses(n: int = 4, size: int = 16) -> np.ndarray:
    rows = []
    for i in range(n):
        pose = np.zeros((3, 5))
        pose[:, 0], pose[:, 1], pose[:, 2] = [0, -1, 0], [1, 0, 0], [0, 0, 1]  # down, right, back
        pose[:, 3] = [0.1 * i, 0, 0]
        pose[:, 4] = [size, size, 20.0]
        rows.append(np.concatenate([pose.reshape(-1), [1.0, 10.0]]))
    return np.stack(rows)


class _Evil:
    def __reduce__(self):
        return (print, ("a pickle ran code",))


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    f: dict[str, Path] = {"root": root}
    g = torch.Generator().manual_seed(2)

    # images
    f["image"] = root / "object.png"
    rgba = torch.ones(32, 32, 4)
    rgba[8:24, 8:24, :3] = torch.rand(16, 16, 3, generator=g)
    rgba[..., 3] = 0
    rgba[8:24, 8:24, 3] = 1
    write_image(f["image"], rgba)
    f["bomb_png"] = root / "bomb.png"
    png_header_only(f["bomb_png"], 60_000, 60_000)
    f["text_png"] = root / "notes.png"
    f["text_png"].write_text("this is not an image\n")
    f["empty_png"] = root / "empty.png"
    f["empty_png"].write_bytes(b"")
    f["truncated_png"] = root / "truncated.png"
    f["truncated_png"].write_bytes(f["image"].read_bytes()[:40])
    f["folder_png"] = root / "folder.png"
    f["folder_png"].mkdir()
    f["missing"] = root / "no-such-file.png"
    f["mask_wide"] = root / "mask_wide.png"  # another aspect than the 32x32 image
    wide = torch.zeros(32, 48, 3)
    wide[8:24, 16:32] = 1
    write_image(f["mask_wide"], wide)
    f["mask_photo"] = root / "mask_photo.png"  # a picture, not a black-and-white mask
    write_image(f["mask_photo"], 0.3 + 0.4 * torch.rand(32, 32, 3, generator=g))

    # scenes
    f["scene"] = transforms_scene(root / "scene")
    f["scene_missing_images"] = transforms_scene(root / "scene_missing", write_images=False)
    write_image(f["scene_missing_images"] / "im1.png", torch.rand(16, 16, 3, generator=g))
    f["scene_fisheye"] = transforms_scene(root / "scene_fisheye", extra={"camera_model": "OPENCV_FISHEYE"})
    f["scene_bad_json"] = root / "scene_bad_json"
    f["scene_bad_json"].mkdir()
    (f["scene_bad_json"] / "transforms.json").write_text('{"frames": [ {"file_path": "a.png",, } ]')
    f["scene_nan"] = root / "scene_nan"
    transforms_scene(f["scene_nan"])
    data = json.loads((f["scene_nan"] / "transforms.json").read_text())
    data["frames"][1]["transform_matrix"][0][3] = float("nan")
    (f["scene_nan"] / "transforms.json").write_text(json.dumps(data))
    f["scene_bomb_image"] = transforms_scene(root / "scene_bomb")
    png_header_only(f["scene_bomb_image"] / "im2.png", 60_000, 60_000)
    f["scene_lens"] = transforms_scene(root / "scene_lens", extra={"camera_model": "OPENCV", "k1": 0.1, "p1": 0.01})
    f["scene_k4"] = transforms_scene(root / "scene_k4", extra={"camera_model": "OPENCV", "k1": 0.1, "k4": 0.2})
    f["empty_folder"] = root / "empty_folder"
    f["empty_folder"].mkdir()

    # LLFF camera arrays: pickled, garbage, empty, wrong shape, all-zero rotations
    f["llff_pickle"] = llff_scene(root / "llff_pickle", np.array([_Evil()], dtype=object))
    f["llff_garbage"] = llff_scene(root / "llff_garbage", b"\x93NUMPY garbage that is not an array" * 3)
    f["llff_empty"] = llff_scene(root / "llff_empty", b"")
    f["llff_shape"] = llff_scene(root / "llff_shape", np.zeros((4, 12)))
    zero = valid_llff_poses()
    zero[:, :15] = 0
    f["llff_zero"] = llff_scene(root / "llff_zero", zero)
    f["llff_count"] = llff_scene(root / "llff_count", valid_llff_poses(3))

    # COLMAP model with a broken images.txt
    colmap = root / "colmap" / "sparse" / "0"
    colmap.mkdir(parents=True)
    (colmap / "cameras.txt").write_text("1 PINHOLE 16 16 20 20 8 8\n")
    (colmap / "images.txt").write_text("1 1 0 0 0 0 0 3 1 im0.png\n\n2 not-a-number 0 0 0 0 0 3 1 im1.png\n\n")
    (colmap / "points3D.txt").write_text("")
    f["colmap_bad"] = root / "colmap"
    colmap_model = root / "colmap_model" / "sparse" / "0"
    colmap_model.mkdir(parents=True)
    (colmap_model / "cameras.txt").write_text("1 EQUIRECTANGULAR 16 16 20 20 8 8\n")
    (colmap_model / "images.txt").write_text("1 1 0 0 0 0 0 3 1 im0.png\n\n")
    (colmap_model / "points3D.txt").write_text("")
    f["colmap_model"] = root / "colmap_model"

    # trajectories
    from vdm3d.cli.main import main

    f["trajectory"] = root / "path.json"
    assert main(["trajectory", "make", "orbit", "--frames", "4", "--width", "16", "--height", "16",
                 "--out", str(f["trajectory"])]) == 0
    f["traj_bad_version"] = root / "path_v9.json"
    doc = json.loads(f["trajectory"].read_text())
    f["traj_bad_version"].write_text(json.dumps({**doc, "version": 9}))
    f["traj_nan"] = root / "path_nan.json"
    doc_nan = json.loads(f["trajectory"].read_text())
    doc_nan["frames"][1]["c2w"][0][3] = float("nan")
    f["traj_nan"].write_text(json.dumps(doc_nan))
    f["traj_text"] = root / "path.txt"
    f["traj_text"].write_text("https://example.com/video\n1 2 3\n")
    f["npy_pickle"] = root / "cams_pickle.npy"
    np.save(f["npy_pickle"], np.array([_Evil()], dtype=object), allow_pickle=True)

    # meshes and splats
    f["mesh"] = root / "tetra.obj"
    f["mesh"].write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    f["mesh_garbage"] = root / "garbage.obj"
    f["mesh_garbage"].write_text("this is not a mesh\n")
    f["ply_garbage"] = root / "splats.ply"
    f["ply_garbage"].write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\nend_header\n\x00\x01")

    # config files and manifests
    f["yaml_bad"] = root / "bad.yaml"
    f["yaml_bad"].write_text("fit_steps: [1, 2\n")
    f["yaml_unknown"] = root / "unknown.yaml"
    f["yaml_unknown"].write_text("fit_stepz: 3\n")
    f["yaml_type"] = root / "type.yaml"
    f["yaml_type"].write_text("fit_steps: many\n")
    f["yaml_range"] = root / "range.yaml"
    f["yaml_range"].write_text("fit_steps: -3\n")
    f["yaml_list"] = root / "list.yaml"
    f["yaml_list"].write_text("- 1\n- 2\n")
    f["manifest_bad"] = root / "run_bad" / "manifest.json"
    f["manifest_bad"].parent.mkdir()
    f["manifest_bad"].write_text('{"format": "vdm3d.run", "command": 3}')
    f["manifest_not_json"] = root / "run_text" / "manifest.json"
    f["manifest_not_json"].parent.mkdir()
    f["manifest_not_json"].write_text("not json")
    f["batch_bad"] = root / "cases.yaml"
    f["batch_bad"].write_text("cases: 3\n")
    f["batch_unknown_job"] = root / "cases_job.yaml"
    f["batch_unknown_job"].write_text("job: teleport\ncases:\n  - {name: a}\n")

    # checkpoints
    f["ckpt_pickle"] = root / "model.ckpt"
    with open(f["ckpt_pickle"], "wb") as fh:
        pickle.dump({"state_dict": {"w": _Evil()}}, fh)
    f["ckpt_garbage"] = root / "garbage.ckpt"
    f["ckpt_garbage"].write_bytes(b"\x00\x01 not a checkpoint")

    # an out location whose parent is a file, and one that cannot be written
    f["file"] = root / "a-file"
    f["file"].write_text("x")
    f["readonly"] = root / "readonly"
    f["readonly"].mkdir()
    f["readonly"].chmod(0o500)
    return f
