"""Validity of cache renders and the path check, against exact geometry (a fronto-parallel wall)."""

import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.path_check import check_path
from vdm3d.geometry.validity import geometric_validity, latent_validity, validity_mask


def _wall(size=32, z=2.0):
    cam = Cameras.from_fov(60.0, size, size, torch.eye(4, dtype=torch.float64))
    return cam.reshape(1), torch.full((1, size, size), z, dtype=torch.float64)


def test_truck_sideways_validates_exactly_the_pixels_the_source_saw():
    src, depth = _wall()
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[0, 3] = 0.5  # half a metre to the right: a wall at 2 m shifts by f * 0.5 / 2 pixels
    dst = Cameras(src.Ks, c2w[None], 32, 32)
    valid = geometric_validity(depth, dst, depth, src)[0]
    shift = float(src.fx[0]) * 0.5 / 2.0  # 6.93 px
    cols = (torch.arange(32) + 0.5 + shift) < 32  # the column's wall point is inside the source view
    assert torch.equal(valid, cols[None].expand(32, 32))
    # the same pixels at a wrong depth (a second wall 20 % nearer) fail the 10 % depth test
    assert not geometric_validity(depth * 0.8, dst, depth, src).any()
    assert geometric_validity(depth * 0.95, dst, depth, src)[0].sum() == valid.sum()


def test_mask_threshold_erosion_and_latent_pooling():
    alpha = torch.ones(1, 16, 16)
    geo = torch.ones(1, 16, 16, dtype=torch.bool)
    geo[0, 6:10, 6:10] = False  # a 4x4 hole
    m = validity_mask(alpha, geo, 0.5, erode_px=1)
    assert int((~m).sum()) == 36  # grown to 6x6; the image border is not eaten
    assert validity_mask(alpha * 0.4, geo, 0.5, 0).sum() == 0
    lat = latent_validity(m.repeat(5, 1, 1), factor=4, temporal_factor=4)
    assert lat.shape == (2, 1, 4, 4)
    assert not lat[0, 0, 1:3, 1:3].any() and lat[0, 0, 0].all()


def test_path_check_finds_cameras_behind_the_wall_and_too_close():
    src, depth = _wall()
    c2w = torch.eye(4, dtype=torch.float64).repeat(5, 1, 1)
    c2w[:, 2, 3] = torch.tensor([0.0, 0.5, 1.0, 1.95, 2.5])
    cams = Cameras(src.Ks.expand(5, 3, 3), c2w, 32, 32)
    report = check_path(cams, depth[0], max_step=1.0)
    assert report.first_inside == 4 and report.first_too_close == 3
    assert len(report.problems) == 2 and report.median_depth == 2.0
    fast = check_path(cams[:3], depth[0])  # 0.5 per frame is a quarter of the depth
    assert fast.first_inside is None and any("per frame" in p for p in fast.problems)
