"""Camera converters: every pair round-trips on an off-center scene, and real files read correctly."""

import json
import math

import numpy as np
import pytest
import torch

from vdm3d.cameras import Cameras, look_at
from vdm3d.cameras.io import (cameras_from_colmap, cameras_from_llff, cameras_from_sv3d, colmap_from_cameras,
                              llff_from_cameras, opencv_from_opengl, opengl_from_opencv, points_from_colmap,
                              read_colmap, read_re10k, read_transforms_json, write_colmap, write_re10k,
                              write_transforms_json)
from vdm3d.errors import CameraError, InputError

D = torch.float64


def scene_cameras(n: int = 5, seed: int = 0, per_frame_K: bool = True) -> Cameras:
    """Cameras around an off-center target, with distinct intrinsics so a swapped field fails."""
    g = torch.Generator().manual_seed(seed)
    eye = torch.randn(n, 3, generator=g, dtype=D) * 2 + torch.tensor([3.0, -1.0, 2.0], dtype=D)
    c2w = look_at(eye, torch.tensor([1.0, 2.0, -0.5], dtype=D).expand(n, 3), torch.tensor([0.0, 0.0, 1.0], dtype=D).expand(n, 3))
    f = 60 + 40 * torch.rand(n if per_frame_K else 1, generator=g, dtype=D)
    Ks = torch.zeros(n, 3, 3, dtype=D)
    Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = f, f * 1.05, 41.3, 27.9, 1
    return Cameras(Ks, c2w, 80, 60)


def assert_same(a: Cameras, b: Cameras, atol=1e-10):
    assert (a.width, a.height) == (b.width, b.height)
    torch.testing.assert_close(a.Ks.to(D), b.Ks.to(D), atol=atol, rtol=0)
    torch.testing.assert_close(a.c2w.to(D), b.c2w.to(D), atol=atol, rtol=0)


# -- OpenGL / transforms.json ------------------------------------------------------------------
def test_opengl_flip_semantics():
    cams = scene_cameras(3)
    gl = opengl_from_opencv(cams.c2w)
    torch.testing.assert_close(opencv_from_opengl(gl), cams.c2w)
    # an OpenGL camera looks along its -z: the same world direction as OpenCV's +z
    torch.testing.assert_close(-gl[:, :3, 2], cams.forward)
    torch.testing.assert_close(gl[:, :3, 1], -cams.c2w[:, :3, 1])  # y up vs y down
    torch.testing.assert_close(gl[:, :3, 3], cams.centers)


@pytest.mark.parametrize("per_frame", [True, False])
def test_transforms_json_round_trip(tmp_path, per_frame):
    cams = scene_cameras(4, per_frame_K=per_frame)
    names = [f"images/{i:03d}.png" for i in range(4)]
    write_transforms_json(tmp_path / "t.json", cams, names)
    data = json.loads((tmp_path / "t.json").read_text())
    assert ("fl_x" in data) != per_frame and ("fl_x" in data["frames"][0]) == per_frame
    back, names2, extras = read_transforms_json(tmp_path / "t.json", dtype=D)
    assert names2 == names
    assert_same(back, cams)
    # the stored matrix really is OpenGL: its third column points away from the target
    T = torch.tensor(data["frames"][0]["transform_matrix"], dtype=D)
    to_target = torch.tensor([1.0, 2.0, -0.5], dtype=D) - T[:3, 3]
    assert float(T[:3, 2] @ to_target) < 0


def test_transforms_json_keeps_distortion_and_extra_keys(tmp_path):
    cams = scene_cameras(3)
    extras = {"top": {"applied_transform": [[1, 0, 0, 0]], "ply_file_path": "sparse.ply"},
              "frames": [{"colmap_im_id": i} for i in range(3)], "camera_model": "OPENCV",
              "distortion": [{"k1": 0.01 * i, "k2": -0.002, "p1": 0.0, "p2": 0.001} for i in range(3)]}
    write_transforms_json(tmp_path / "t.json", cams, ["a", "b", "c"], extras=extras)
    back, _, extras2 = read_transforms_json(tmp_path / "t.json", dtype=D)
    assert extras2 == extras
    assert_same(back, cams)


def test_blender_camera_angle_x_and_image_size(tmp_path):
    from vdm3d.io.images import write_image

    write_image(tmp_path / "r_0.png", np.zeros((30, 40, 3)))
    c2w_gl = opengl_from_opencv(scene_cameras(1).c2w)[0]
    (tmp_path / "transforms_train.json").write_text(json.dumps(
        {"camera_angle_x": 2 * math.atan(0.5), "frames": [{"file_path": "./r_0", "transform_matrix": c2w_gl.tolist()}]}))
    cams, names, _ = read_transforms_json(tmp_path / "transforms_train.json", dtype=D)
    assert (cams.width, cams.height) == (40, 30)
    assert float(cams.fx[0]) == pytest.approx(40.0) and float(cams.fy[0]) == pytest.approx(40.0)
    assert float(cams.cx[0]) == 20 and float(cams.cy[0]) == 15


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(camera_model="OPENCV_FISHEYE"), "not a pinhole model"),
    (lambda d: d["frames"][1].update(transform_matrix=[[1, 0], [0, 1]]), "frame 1 field transform_matrix"),
    (lambda d: d["frames"][0]["transform_matrix"][0].__setitem__(0, float("nan")), "frame 0"),
    (lambda d: d["frames"][2]["transform_matrix"][0].__setitem__(0, 3.0), "frame 2 field rotation"),
    (lambda d: d.update(fl_x=-5.0), "focal length must be positive"),
    (lambda d: d.pop("frames"), "frames"),
])
def test_transforms_json_bad_input(tmp_path, edit, match):
    write_transforms_json(tmp_path / "t.json", scene_cameras(3, per_frame_K=False), ["a", "b", "c"])
    data = json.loads((tmp_path / "t.json").read_text())
    edit(data)
    (tmp_path / "t.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=match) as e:
        read_transforms_json(tmp_path / "t.json")
    assert "t.json" in str(e.value)


def test_malformed_json_names_line(tmp_path):
    (tmp_path / "t.json").write_text('{"frames": [\n  {"file_path": "a",}\n]}')
    with pytest.raises(InputError, match="not valid JSON .*line 2"):
        read_transforms_json(tmp_path / "t.json")


# -- COLMAP ------------------------------------------------------------------------------------
@pytest.mark.parametrize("binary", [True, False])
def test_colmap_round_trip(tmp_path, binary):
    cams = scene_cameras(4)
    pts = torch.randn(50, 3, dtype=D) + torch.tensor([1.0, 2.0, -0.5], dtype=D)
    model = colmap_from_cameras(cams, ["c.png", "a.png", "d.png", "b.png"], pts, np.arange(150).reshape(50, 3))
    # add keypoints and tracks so every field of the format is exercised
    im = model.images[1]
    im.xys, im.point3D_ids = np.array([[1.5, 2.25], [3.0, 4.0]]), np.array([7, -1])
    model.points3D.tracks[7] = np.array([[1, 0], [3, 5]], np.int32)
    write_colmap(model, tmp_path / "sparse" / "0", binary=binary)
    back = read_colmap(tmp_path)  # the scene folder: finds sparse/0 itself
    assert (tmp_path / "sparse/0" / f"cameras.{'bin' if binary else 'txt'}").is_file()
    c2, names = cameras_from_colmap(back, dtype=D)
    assert names == ["a.png", "b.png", "c.png", "d.png"]  # sorted by name
    order = [1, 3, 0, 2]
    assert_same(c2, cams[order])
    np.testing.assert_array_equal(back.points3D.xyz, pts.numpy())
    np.testing.assert_array_equal(back.points3D.rgb, np.arange(150).reshape(50, 3))
    np.testing.assert_array_equal(back.images[1].point3D_ids, [7, -1])
    np.testing.assert_array_equal(back.images[1].xys, [[1.5, 2.25], [3.0, 4.0]])
    np.testing.assert_array_equal(back.points3D.tracks[7], [[1, 0], [3, 5]])


def test_colmap_projection_matches_keypoints(tmp_path):
    """World-to-camera from COLMAP must project points where the cameras say (no hidden flip)."""
    cams = scene_cameras(3)
    pts = torch.tensor([[1.0, 2.0, -0.5], [1.3, 1.8, -0.2]], dtype=D)
    model = colmap_from_cameras(cams, ["0", "1", "2"], pts)
    write_colmap(model, tmp_path, binary=True)
    c2, _ = cameras_from_colmap(read_colmap(tmp_path), dtype=D)
    torch.testing.assert_close(c2.project(pts.expand(3, -1, -1))[0], cams.project(pts.expand(3, -1, -1))[0])


def test_colmap_distortion_refused_or_dropped(shared_data, tmp_path):
    model = read_colmap(shared_data / "llff_fern" / "sparse" / "0")
    assert model.cameras[1].model == "SIMPLE_RADIAL" and len(model.images) == 0
    fake = colmap_from_cameras(scene_cameras(1), ["x"])
    model.images = fake.images
    model.images[1].camera_id = 1
    model.cameras[1].width, model.cameras[1].height = 80, 60
    with pytest.raises(CameraError, match="distortion"):
        cameras_from_colmap(model)
    cams, _ = cameras_from_colmap(model, distortion="drop")
    assert float(cams.fx[0]) == pytest.approx(3260.52633, rel=1e-6)


def test_colmap_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_colmap(tmp_path / "nope")
    with pytest.raises(InputError, match="no cameras.bin"):
        read_colmap(tmp_path)
    (tmp_path / "cameras.bin").write_bytes(b"\x05\x00\x00")
    with pytest.raises(InputError, match="malformed or truncated"):
        read_colmap(tmp_path)


def test_fern_points_bin_round_trip(shared_data, tmp_path):
    model = read_colmap(shared_data / "llff_fern")
    assert len(model.points3D) == 10091
    write_colmap(model, tmp_path / "txt", binary=False)
    write_colmap(read_colmap(tmp_path / "txt"), tmp_path / "bin", binary=True)
    assert (tmp_path / "bin" / "points3D.bin").read_bytes() == (shared_data / "llff_fern/sparse/0/points3D.bin").read_bytes()
    assert (tmp_path / "bin" / "cameras.bin").read_bytes() == (shared_data / "llff_fern/sparse/0/cameras.bin").read_bytes()


# -- LLFF --------------------------------------------------------------------------------------
def test_llff_round_trip():
    cams = scene_cameras(4, per_frame_K=False)
    Ks = cams.Ks.clone()
    Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2] = Ks[:, 0, 0], 40, 30
    cams = Cameras(Ks, cams.c2w, 80, 60)
    bounds = torch.rand(4, 2, dtype=D) + torch.tensor([1.0, 5.0], dtype=D)
    arr = llff_from_cameras(cams, bounds)
    back, b2 = cameras_from_llff(arr, dtype=D)
    assert_same(back, cams)
    torch.testing.assert_close(b2, bounds)
    half, _ = cameras_from_llff(arr, width=40, height=30, dtype=D)
    torch.testing.assert_close(half.fx, cams.fx / 2)


def inside_fraction(cams: Cameras, points: torch.Tensor) -> torch.Tensor:
    uv, z = cams.project(points.expand(len(cams), -1, -1))
    inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < cams.width) & (uv[..., 1] >= 0) & (uv[..., 1] < cams.height)
    return inside.double().mean(1)


def test_fern_llff_cameras_see_colmap_points(shared_data):
    """images.bin is absent, but LLFF poses live in COLMAP's world frame: the points must project
    inside the images, with depths inside LLFF's near/far bounds."""
    cams, bounds = cameras_from_llff(shared_data / "llff_fern" / "poses_bounds.npy", 504, 378, dtype=D)
    assert (cams.width, cams.height) == (504, 378) and float(cams.fx[0]) == pytest.approx(3260.526 / 8, rel=1e-5)
    model = read_colmap(shared_data / "llff_fern" / "sparse" / "0")
    points, colors = points_from_colmap(model, dtype=D)
    frac = inside_fraction(cams, points)
    assert float(frac.min()) > 0.9, frac  # measured: 0.962 ... 0.992
    _, z = cams.project(points.expand(len(cams), -1, -1))
    in_bounds = ((z > 0.9 * bounds[:, :1]) & (z < 1.1 * bounds[:, 1:])).double().mean()
    assert float(in_bounds) > 0.95
    # forgetting to negate LLFF's "back" column makes the cameras look away: nothing projects
    wrong = cams.c2w.clone()
    wrong[:, :3, 2] *= -1
    wrong[:, :3, 1] *= -1  # keep det +1
    assert float(inside_fraction(Cameras(cams.Ks, wrong, 504, 378), points).max()) < 0.01


def test_llff_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        cameras_from_llff(tmp_path / "poses_bounds.npy")
    with pytest.raises(InputError, match=r"\[N, 17\]"):
        cameras_from_llff(np.zeros((3, 15)))
    arr = llff_from_cameras(Cameras.from_fov(50.0, 40, 30, torch.eye(4, dtype=D)[None]), torch.ones(1, 2))
    arr[0, 3] = np.nan
    with pytest.raises(CameraError, match="frame 0"):
        cameras_from_llff(arr)


# -- RealEstate10K -----------------------------------------------------------------------------
def test_re10k_round_trip(tmp_path):
    cams = scene_cameras(3)
    write_re10k(tmp_path / "a.txt", cams, [10, 20, 30], "https://example.com/v")
    back, stamps, url = read_re10k(tmp_path / "a.txt", width=80, height=60, dtype=D)
    assert stamps == [10, 20, 30] and url == "https://example.com/v"
    assert_same(back, cams, atol=1e-9)


def test_real_re10k_to_transforms_json_and_back(shared_data, tmp_path):
    files = sorted((shared_data / "trajectories_re10k").glob("*.txt"))
    assert len(files) == 5
    for f in files:
        cams, stamps, url = read_re10k(f, dtype=D)
        assert len(cams) == 16
        write_transforms_json(tmp_path / "t.json", cams, [str(s) for s in stamps])
        mid, names, _ = read_transforms_json(tmp_path / "t.json", dtype=D)
        write_re10k(tmp_path / "r.txt", mid, [int(n) for n in names], url)
        orig = np.array([[float(v) for v in ln.split()] for ln in f.read_text().splitlines()[1:]])
        again = np.array([[float(v) for v in ln.split()] for ln in (tmp_path / "r.txt").read_text().splitlines()[1:]])
        assert np.abs(orig - again).max() < 1e-9  # measured: 0 (the 9-digit values come back as written)
        assert (tmp_path / "r.txt").read_text().splitlines()[0] == url


def test_re10k_bad_line(tmp_path):
    (tmp_path / "a.txt").write_text("url\n1 0.5 0.5 0.5 0.5 0 0 1 0 0\n")
    with pytest.raises(InputError, match="frame 0 has 10 numbers"):
        read_re10k(tmp_path / "a.txt")


# -- SV3D --------------------------------------------------------------------------------------
def test_sv3d_cameras_geometry():
    cams = cameras_from_sv3d([0.0, 30.0, -10.0], [0.0, 90.0, 225.0], 2.0, 33.8, 64, 64, dtype=D)
    e, a = torch.deg2rad(torch.tensor([0.0, 30.0, -10.0], dtype=D)), torch.deg2rad(torch.tensor([0.0, 90.0, 225.0], dtype=D))
    expected = 2 * torch.stack([e.cos() * a.cos(), e.cos() * a.sin(), e.sin()], -1)
    torch.testing.assert_close(cams.centers, expected)
    uv, z = cams.project(torch.zeros(3, 1, 3, dtype=D))
    torch.testing.assert_close(uv[:, 0], torch.full((3, 2), 32.0, dtype=D))  # origin at the image center
    torch.testing.assert_close(z[:, 0], torch.full((3,), 2.0, dtype=D))
    up_uv, _ = cams.project(torch.tensor([[[0.0, 0.0, 0.3]]], dtype=D).expand(3, 1, 3))
    assert (up_uv[:, 0, 1] < 32).all()  # world +z appears up in the image
    torch.testing.assert_close(cams.fov_x_deg, torch.full((3,), 33.8, dtype=D))
    with pytest.raises(CameraError):
        cameras_from_sv3d(90.0, 0.0, 2.0, 30.0, 64, 64)


# -- property tests: random off-center scenes through every in-memory converter pair -------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6))
def test_converters_round_trip_property(seed, n):
    cams = scene_cameras(n, seed)
    names = [f"{i:03d}" for i in range(n)]
    back, names2 = cameras_from_colmap(colmap_from_cameras(cams, names), dtype=D)
    assert names2 == names
    assert_same(back, cams, atol=1e-9)
    torch.testing.assert_close(opencv_from_opengl(opengl_from_opencv(cams.c2w)), cams.c2w, atol=0, rtol=0)
    sq = Cameras(cams.Ks.clone(), cams.c2w, 80, 60)
    sq.Ks[:, 1, 1], sq.Ks[:, 0, 2], sq.Ks[:, 1, 2] = sq.Ks[:, 0, 0], 40, 30  # LLFF: one focal, centered
    ll, _ = cameras_from_llff(llff_from_cameras(sq, torch.ones(n, 2, dtype=D)), dtype=D)
    assert_same(ll, sq, atol=1e-12)
    # projections agree too (the test that catches a transposed rotation)
    pts = torch.randn(n, 7, 3, dtype=D) * 0.5 + torch.tensor([1.0, 2.0, -0.5], dtype=D)
    torch.testing.assert_close(back.project(pts)[0], cams.project(pts)[0], atol=1e-7, rtol=0)


def test_transforms_json_from_windows_tools_reads(tmp_path):
    """A BOM (Notepad) made every JSON camera file "not valid JSON", and backslash file_paths named no image."""
    from PIL import Image

    from vdm3d.cameras.io import read_transforms_json

    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "000.png")
    frame = {"file_path": "images\\000.png", "transform_matrix": np.eye(4).tolist()}
    text = json.dumps({"fl_x": 5.0, "fl_y": 5.0, "cx": 4.0, "cy": 3.0, "frames": [frame]})
    (tmp_path / "transforms.json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    cams, names, _ = read_transforms_json(tmp_path / "transforms.json")
    assert names == ["images/000.png"] and (tmp_path / names[0]).is_file()
    assert (cams.width, cams.height) == (8, 6)  # the image's size, found through the backslash path


def test_re10k_without_a_size_is_read_with_square_pixels(tmp_path):
    """QA chain: explore's cameras/re10k.txt (64x64 frames, 60 deg) read back at 640x360 gave fx 554 and fy 312,
    and `stylize --trajectory` rendered a 34 x 60 deg squeezed view without a word. A file without a size is read
    at the size with square pixels, 360 high: the dataset's 16:9 files stay 640x360, a square path becomes
    360x360 with its field of view; one given side fixes the other."""
    from vdm3d.cameras.camera import Cameras

    square = Cameras.from_fov(60.0, 64, 64, scene_cameras(2).c2w)
    write_re10k(tmp_path / "square.txt", square, [0, 83333])
    back, _, _ = read_re10k(tmp_path / "square.txt", dtype=D)
    assert (back.width, back.height) == (360, 360)
    torch.testing.assert_close(back.fov_x_deg, torch.full((2,), 60.0, dtype=D), atol=1e-9, rtol=0)
    torch.testing.assert_close(back.fov_y_deg, back.fov_x_deg, atol=1e-9, rtol=0)
    wide = Cameras.from_fov(60.0, 1280, 720, scene_cameras(2).c2w)
    write_re10k(tmp_path / "wide.txt", wide, [0, 83333])
    assert (read_re10k(tmp_path / "wide.txt")[0].width, read_re10k(tmp_path / "wide.txt")[0].height) == (640, 360)
    assert read_re10k(tmp_path / "wide.txt", width=320)[0].height == 180
    assert read_re10k(tmp_path / "square.txt", width=80, height=60)[0].height == 60  # a size given is kept


def test_a_re10k_file_without_its_url_line_is_refused_not_read_a_frame_short(tmp_path):
    """A RealEstate10K file whose URL line was left out took its first frame for the URL: two frames read as
    one (the path started at its second camera) without a word, and a one-frame file 'had no frames'."""
    from vdm3d.cameras.io import read_re10k

    frame = "{} 0.5 0.888 0.5 0.5 0 0 1 0 0 {} 0 1 0 0 0 0 1 0"
    (tmp_path / "two.txt").write_text(frame.format(0, 0.0) + "\n" + frame.format(33366, 0.5) + "\n")
    (tmp_path / "one.txt").write_text(frame.format(0, 0.0) + "\n")
    for name in ("two.txt", "one.txt"):
        with pytest.raises(InputError, match=rf"{name}: line 1 is a frame \(19 numbers\), not the video's URL; add "
                                             r"the URL line \(any text\) above the first frame"):
            read_re10k(tmp_path / name)
    (tmp_path / "ok.txt").write_text("https://www.youtube.com/watch?v=x\n" + frame.format(0, 0.0) + "\n"
                                     + frame.format(33366, 0.5) + "\n")
    cams, stamps, url = read_re10k(tmp_path / "ok.txt")
    assert len(cams) == 2 and stamps == [0, 33366] and url.endswith("v=x")
