"""Initial points from training depth maps: exact round trip through the cameras, and the file reader."""

from __future__ import annotations

import numpy as np
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.io_transforms import write_transforms_json
from vdm3d.data.depths import read_train_depths
from vdm3d.data.readers import Split, read_scene
from vdm3d.io.images import encode_image
from vdm3d.recon.depth_points import points_from_depths


def _cams(n: int = 2) -> Cameras:
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.arange(n, dtype=torch.float32) * 0.5
    return Cameras.from_fov(50.0, 12, 10, c2w)


def test_points_reproject_to_their_pixels_and_depths():
    cams = _cams()
    depths = torch.rand(2, 10, 12, generator=torch.Generator().manual_seed(0)) + 1.0
    depths[1, :3] = 0  # unknown depth: no point
    images = torch.rand(2, 10, 12, 3)
    pts, rgb = points_from_depths(images, depths, cams)
    assert len(pts) == 2 * 120 - 36
    uv, z = cams[0].project(pts[:120])
    torch.testing.assert_close(z, depths[0].reshape(-1))
    torch.testing.assert_close(uv, cams.pixel_grid().reshape(-1, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(rgb[:120], images[0].reshape(-1, 3))


def test_read_train_depths_follows_the_split(tmp_path):
    cams = _cams(4)
    (tmp_path / "images").mkdir()
    (tmp_path / "depth").mkdir()
    names, frames = [], []
    for j in range(4):
        (tmp_path / f"images/{j}.png").write_bytes(encode_image(torch.full((10, 12, 3), j / 4)))
        np.save(tmp_path / f"depth/{j}.npy", np.full((10, 12), 1.0 + j, np.float32))
        names.append(f"images/{j}.png")
        frames.append({"depth_file_path": f"depth/{j}.npy"})
    write_transforms_json(tmp_path / "transforms.json", cams, names, extras={"frames": frames})
    scene = read_scene(tmp_path, Split(test_views=(0,), train_views=(1, 3)))
    d = read_train_depths(tmp_path, scene)
    assert d.shape == (2, 10, 12) and float(d[0, 0, 0]) == 2.0 and float(d[1, 0, 0]) == 4.0
