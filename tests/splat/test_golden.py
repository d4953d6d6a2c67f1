"""Golden image: the real Mip-NeRF 360 "garden" points rendered from their real camera.

The expected PNG in ``golden/`` was rendered by the dense reference (``torch_ref``); both the
default backend (the compiled ``numba`` one on the CPU), the tiled ``torch`` one and the reference must reproduce it to within one 8-bit level. To review a change,
run with ``VDM3D_GOLDEN_WRITE=1``: the actual image is written beside the expected one as
``<name>.actual.png`` (rename it over the expected file to accept it).
"""

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from vdm3d.cameras import Cameras
from vdm3d.splat import Gaussians, render

GOLDEN = Path(__file__).parent / "golden"
STRIDE = 40  # every 40th of the 138,766 points: 3,470 Gaussians
SCALE = 0.25  # 648x420 -> 162x105


def garden_render(shared_data: Path, backend: str) -> np.ndarray:
    data = np.load(shared_data / "points" / "test_garden.npz")
    points = torch.from_numpy(data["means3d"][::STRIDE].copy())
    colors = torch.from_numpy(data["colors"][::STRIDE].copy())
    g = Gaussians.from_points(points, colors, opacity=0.8, sh_degree=0)
    c2w = torch.linalg.inv(torch.from_numpy(data["viewmats"][0]).double()).float()
    cam = Cameras(torch.from_numpy(data["Ks"][0]), c2w, int(data["width"]), int(data["height"])).scale(SCALE)
    with torch.no_grad():
        out = render(g, cam, backend=backend, background=torch.ones(3))
    return (out.rgb[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def check_golden(name: str, actual: np.ndarray) -> None:
    expected_path = GOLDEN / f"{name}.png"
    if os.environ.get("VDM3D_GOLDEN_WRITE"):
        iio.imwrite(GOLDEN / f"{name}.actual.png", actual)
    if not expected_path.exists():
        pytest.fail(f"{expected_path} is missing; run with VDM3D_GOLDEN_WRITE=1 and rename {name}.actual.png")
    expected = iio.imread(expected_path)
    assert expected.shape == actual.shape
    diff = np.abs(expected.astype(int) - actual.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.02, f"max {diff.max()} mean {diff.mean():.4f} levels"


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_garden_golden_default_backend(shared_data, backend):
    image = garden_render(shared_data, backend)
    assert image.shape == (105, 162, 3)
    assert 40 < image.mean() < 215 and image.std() > 20  # a real picture, not blank or saturated
    check_golden("garden_x4", image)


@pytest.mark.slow
def test_garden_golden_reference_backend(shared_data):
    check_golden("garden_x4", garden_render(shared_data, "torch_ref"))
