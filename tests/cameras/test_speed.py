"""Retiming a path (WorldWarp's speed multiplier)."""

import pytest
import torch

from vdm3d.cameras.presets import apply_movements, preset_movements
from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.speed import retime
from vdm3d.errors import ConfigError


def _path(n=9):
    start = Cameras.from_fov(60.0, 32, 32, torch.eye(4, dtype=torch.float64))
    return apply_movements(start, preset_movements(["dolly-in", "pan-left"], speed=20), n)


def test_speed_two_keeps_every_other_frame_and_half_keeps_the_knots():
    cams = _path()
    fast = retime(cams, 2.0)
    assert len(fast) == 5
    torch.testing.assert_close(fast.c2w, cams.c2w[::2], atol=1e-9, rtol=0)
    slow = retime(cams, 0.5)
    assert len(slow) == 17
    torch.testing.assert_close(slow.c2w[::2], cams.c2w, atol=1e-9, rtol=0)
    mid = slow.centers[1]  # between the first two knots, on the (nearly straight) path
    assert float((mid - 0.5 * (cams.centers[0] + cams.centers[1])).norm()) < 1e-3
    assert float((slow.R[1] @ slow.R[1].T - torch.eye(3, dtype=torch.float64)).abs().max()) < 1e-9
    assert retime(cams, 1.0) is cams


def test_bad_speed_is_refused():
    with pytest.raises(ConfigError, match="--speed"):
        retime(_path(), 0.0)
