"""Lens distortion is removed at the edge, checked against OpenCV's own undistortPoints on a synthetic
distorted image, and the scene readers apply it (transforms.json k1..p2, COLMAP beside LLFF)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from vdm3d.cameras.distortion import Distortion, distortion_from_colmap, undistort_image
from vdm3d.data.readers import read_scene
from vdm3d.errors import CameraError
from vdm3d.io.images import write_image

W, H = 64, 48
K = np.array([[60.0, 0, 32.5], [0, 60.0, 24.3], [0, 0, 1]])  # vdm3d's convention: pixel centres at +0.5
K_CV = K - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])  # the same camera for OpenCV (centres at whole numbers)
LENS = Distortion(k1=-0.25, k2=0.08, p1=0.002, p2=-0.003, k3=0.01, source="test")


def pinhole(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The undistorted scene, analytic and smooth (bilinear sampling is nearly exact on it)."""
    return np.stack([0.5 + 0.4 * np.sin(u / 5.0) * np.cos(v / 7.0), 0.5 + 0.4 * np.cos(u / 9.0),
                     0.5 + 0.4 * np.sin(v / 6.0)], -1)


def distorted_image(lens: Distortion = LENS) -> np.ndarray:
    """What the lens saw: each distorted pixel shows the pinhole scene at OpenCV's undistortPoints of it (scene
    coordinates in vdm3d's convention: pixel (i, j) is centred at (i + 0.5, j + 0.5))."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    pix = np.stack([u.ravel(), v.ravel()], -1)[:, None, :]
    und = cv2.undistortPoints(pix, K_CV, lens.coeffs, P=K_CV).reshape(H, W, 2) + 0.5
    return pinhole(und[..., 0], und[..., 1]).astype(np.float32)


def test_undistort_recovers_the_pinhole_image_that_opencv_describes():
    out = undistort_image(torch.from_numpy(distorted_image()), torch.from_numpy(K), LENS).numpy()
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    truth = pinhole(u + 0.5, v + 0.5)
    # where the pinhole pixel's source lies inside the distorted image (away from its border)
    src = _sources(u, v)
    inside = (src[..., 0] > 1) & (src[..., 0] < W - 2) & (src[..., 1] > 1) & (src[..., 1] < H - 2)
    assert inside.mean() > 0.8
    err = np.abs(out - truth)[inside]
    assert err.max() < 0.02 and err.mean() < 0.003, (err.max(), err.mean())
    without = np.abs(distorted_image() - truth)[inside]  # ignoring the lens is far off
    assert without.mean() > 10 * err.mean()


def _sources(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where each pinhole pixel is seen in the distorted image: OpenCV's projectPoints with the lens."""
    rays = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0], (v + 0.5 - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    rays = rays.reshape(-1, 1, 3)
    pts, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), K_CV, LENS.coeffs)
    return pts.reshape(H, W, 2)


def test_a_blob_lands_where_undistort_points_says():
    x_d = np.array([[[52.3, 9.6]]])  # near a corner, where the lens moves points most
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5  # pixel centres
    blob = np.exp(-((u - x_d[0, 0, 0]) ** 2 + (v - x_d[0, 0, 1]) ** 2) / (2 * 1.2 ** 2)).astype(np.float32)
    out = undistort_image(torch.from_numpy(blob[..., None]), torch.from_numpy(K), LENS).numpy()[..., 0]
    centroid = np.array([(out * u).sum(), (out * v).sum()]) / out.sum()
    expected = cv2.undistortPoints(x_d - 0.5, K_CV, LENS.coeffs, P=K_CV)[0, 0] + 0.5
    assert np.linalg.norm(centroid - expected) < 0.25, (centroid, expected)
    assert np.linalg.norm(expected - x_d[0, 0]) > 1  # the lens really moved it (1.26 px)


def _scene(tmp_path, extra: dict):
    images = distorted_image()
    frames = []
    for i in range(3):
        write_image(tmp_path / f"im{i}.png", torch.from_numpy(images), bits=16)
        c2w = np.eye(4)
        c2w[0, 3] = 0.1 * i
        frames.append({"file_path": f"im{i}.png", "transform_matrix": c2w.tolist()})
    data = {"camera_model": "OPENCV", "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "w": W, "h": H,
            "frames": frames, **extra}
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    return tmp_path


def test_undistorted_pixels_land_where_the_lens_says_with_vdm3d_pixel_centres():
    """An image whose pixels hold their own undistorted position (a ramp, which bilinear sampling keeps nearly
    exactly): undistorted, pixel (i, j) must hold (i + 0.5, j + 0.5). OpenCV was handed vdm3d's K as it is, which
    it reads half a pixel off, and pixels landed up to 0.28 px (mean 0.08) from there; now 0.02 (interpolation)."""
    w, h = 64, 48
    k = np.array([[40.0, 0, 32.0], [0, 40.0, 24.0], [0, 0, 1]])  # 77 degrees across, axis through the centre
    k_cv = k - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    und = cv2.undistortPoints(np.stack([u.ravel(), v.ravel()], -1)[:, None, :], k_cv, LENS.coeffs, P=k_cv)
    ramp = (und.reshape(h, w, 2) + 0.5).astype(np.float32)
    out = undistort_image(torch.from_numpy(ramp), torch.from_numpy(k), LENS).numpy()
    err = np.linalg.norm(out - np.stack([u + 0.5, v + 0.5], -1), axis=-1)
    assert err.max() < 0.05 and err.mean() < 0.015, (err.max(), err.mean())


def test_transforms_json_distortion_is_undistorted_and_recorded(tmp_path):
    lens = {k: getattr(LENS, k) for k in ("k1", "k2", "p1", "p2", "k3")}
    scene = read_scene(_scene(tmp_path, lens))
    expected = undistort_image(torch.from_numpy(distorted_image()), torch.from_numpy(K), LENS)
    torch.testing.assert_close(scene.train.images[0], expected, atol=1e-4, rtol=0)
    assert len(scene.undistorted) == 1 and scene.undistorted[0]["k1"] == pytest.approx(LENS.k1)
    assert "transforms.json" in scene.undistorted[0]["source"]


def test_colmap_lens_models_and_fisheye_terms():
    assert distortion_from_colmap("SIMPLE_RADIAL", {"k1": 0.02}, "m").k1 == 0.02
    assert distortion_from_colmap("PINHOLE", {}, "m") is None
    with pytest.raises(CameraError, match="k4"):
        distortion_from_colmap("FULL_OPENCV", {"k1": 0.1, "k4": 0.2}, "m")


@pytest.mark.data
def test_fern_is_undistorted_with_the_colmap_lens_beside_its_llff_poses(shared_data):
    scene = read_scene(shared_data / "llff_fern", downscale=8)
    assert [d["source"].endswith("(SIMPLE_RADIAL)") for d in scene.undistorted] == [True]
    assert scene.undistorted[0]["k1"] == pytest.approx(0.0197505, abs=1e-6)


def test_undistortion_leaves_no_black_band_along_the_border():
    # pixels outside the distorted footprint repeat the edge: a black band would be fitted and scored as scene
    K = torch.tensor([[400.0, 0, 252], [0, 400.0, 189], [0, 0, 1]])
    flat = torch.full((378, 504, 3), 0.6)
    out = undistort_image(flat, K, Distortion(k1=0.0197, source="fern-like"))
    assert float((out - 0.6).abs().max()) < 1e-5
