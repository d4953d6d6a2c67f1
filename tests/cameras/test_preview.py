"""Preview PNG: decodes, right size, cameras drawn where they are; the look-at point is found."""

import numpy as np
import torch

from vdm3d.cameras.preview import focus_point, frustum_lines, preview_png
from vdm3d.cameras.scene import Scene
from vdm3d.cameras.trajectory import orbit


def test_preview_png_draws_frusta_and_scene(tmp_path):
    from vdm3d.io.images import read_image

    t = orbit(frames=12, radius=2.0, elevation_deg=30)
    pts = np.random.default_rng(0).normal(size=(2000, 3)) * 0.3
    png = preview_png(t.cameras, Scene(pts, None, source="blob"), title="test")
    (tmp_path / "p.png").write_bytes(png)
    img = read_image(tmp_path / "p.png")
    assert img.shape[2] == 3 and img.shape[1] > img.shape[0]
    colored = (img.max(-1).values - img.min(-1).values) > 0.3  # frusta are viridis-colored lines
    assert 0.002 < float(colored.float().mean()) < 0.3
    empty = preview_png(t.cameras[:1])  # a single camera is fine too
    assert empty[:8] == b"\x89PNG\r\n\x1a\n"


def test_focus_point_and_frusta():
    t = orbit(frames=8, radius=3.0, elevation_deg=10, target=(0.5, -0.2, 0.1))
    cams = t.cameras.to(torch.float64)
    np.testing.assert_allclose(focus_point(cams), [0.5, -0.2, 0.1], atol=1e-5)
    segs = frustum_lines(cams, 0.5)
    assert segs.shape == (8, 8, 2, 3)
    # frustum edges start at the camera center and reach depth 0.5 along the view axis
    d = (torch.from_numpy(segs[:, 0, 1]) - cams.centers) @ torch.eye(3, dtype=torch.float64)
    depth = (d * cams.forward).sum(-1)
    np.testing.assert_allclose(depth.numpy(), 0.5, atol=1e-9)
