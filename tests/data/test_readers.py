"""Scene readers: split rules, LLFF fern in COLMAP's world frame, COLMAP and transforms.json round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.cameras.io import colmap_from_cameras, read_colmap, write_colmap, write_transforms_json
from vdm3d.data.readers import Split, read_scene, split_indices
from vdm3d.errors import ConfigError, InputError
from vdm3d.io.images import write_image


def test_split_every_kth_and_sparse_protocol():
    train, test = split_indices(20, Split(test_every=8))
    assert test == [0, 8, 16] and train == [i for i in range(20) if i not in (0, 8, 16)]
    train3, _ = split_indices(20, Split(test_every=8, num_train_views=3))
    assert train3 == [1, 10, 19]
    train, test = split_indices(6, Split(test_views=(5, 2), train_views=(0, 1)))
    assert (train, test) == ([0, 1], [2, 5])
    assert split_indices(4, Split(test_every=0)) == ([0, 1, 2, 3], [])


@pytest.mark.parametrize("n,split", [(9, Split(test_views=(9,))),  # out of range
                                     (9, Split(train_views=(0,))),  # 0 is held out
                                     (20, Split(num_train_views=18)),  # only 17 remain
                                     (9, Split(test_every=1))])  # nothing left to train on
def test_split_errors_name_the_problem(n, split):
    with pytest.raises(ConfigError, match="scene"):
        split_indices(n, split)


def test_fern_llff_in_colmap_world_frame(shared_data):
    root = shared_data / "llff_fern"
    scene = read_scene(root, Split(test_every=8))
    assert scene.format == "llff"
    assert scene.train.images.shape == (17, 378, 504, 3) and scene.test.images.shape == (3, 378, 504, 3)
    assert scene.test_names == ("image000.png", "image008.png", "image016.png")
    torch.testing.assert_close(scene.train.cameras.fx, torch.full((17,), 3260.52633288 / 8))
    assert scene.points_world.shape == (10091, 3)
    # LLFF's near/far bounds are the 0.1 / 99.9 depth percentiles of the points each image sees
    # (COLMAP image id i + 1 is pose i): equal only if poses and points share one world frame and
    # the axis conversion is right.
    model = read_colmap(root / "sparse" / "0")
    bounds = np.load(root / "poses_bounds.npy")[:, 15:]
    full = read_scene(root, Split(test_every=0))
    cams = full.train.cameras.to(torch.float64)
    xyz = torch.as_tensor(model.points3D.xyz)
    for i in (0, 7, 13, 19):
        seen = torch.tensor([bool((t[:, 0] == i + 1).any()) for t in model.points3D.tracks])
        uv, z = cams[i].project(xyz[seen])
        lo, hi = np.percentile(z.numpy(), [0.1, 99.9])
        assert abs(lo - bounds[i, 0]) < 1e-3 * bounds[i, 0] and abs(hi - bounds[i, 1]) < 1e-3 * bounds[i, 1]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= 504) & (uv[:, 1] >= 0) & (uv[:, 1] <= 378)
        assert bool(inside.all())


def test_fern_downscale_rescales_intrinsics(shared_data):
    scene = read_scene(shared_data / "llff_fern", Split(test_every=8, num_train_views=3), downscale=4)
    assert scene.train.images.shape == (3, 94, 126, 3) and scene.train_names[0] == "image001.png"
    # a point projects to the same relative image position at both resolutions
    full = read_scene(shared_data / "llff_fern", Split(test_every=8, num_train_views=3))
    p = scene.points_world[:50].unsqueeze(0).expand(3, -1, -1)
    uv_small, _ = scene.train.cameras.project(p)
    uv_full, _ = full.train.cameras.project(p)
    torch.testing.assert_close(uv_small * torch.tensor([504 / 126, 378 / 94]), uv_full, rtol=1e-4, atol=1e-3)


def _tiny_scene(n=5, w=24, h=16):
    eye = torch.stack([torch.tensor([np.cos(a), 0.3, np.sin(a)], dtype=torch.float32) * 3
                       for a in np.linspace(0, 1.5, n)])
    c2w = look_at(eye, torch.tensor([0.2, 0.0, -0.1]).expand(n, 3), torch.tensor([0.0, -1.0, 0.0]).expand(n, 3))
    cams = Cameras.from_fov(50.0, w, h, c2w)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, h, w, 3, generator=g)
    return cams, images


def test_colmap_folder_round_trip(tmp_path):
    cams, images = _tiny_scene()
    names = [f"f{i:02d}.png" for i in range(len(cams))]
    (tmp_path / "images").mkdir()
    for name, img in zip(names, images):
        write_image(tmp_path / "images" / name, img)
    pts = torch.randn(30, 3)
    write_colmap(colmap_from_cameras(cams, names, pts), tmp_path / "sparse" / "0")
    scene = read_scene(tmp_path, Split(test_every=2))
    assert scene.format == "colmap" and scene.test_names == ("f00.png", "f02.png", "f04.png")
    torch.testing.assert_close(scene.train.cameras.c2w, cams.c2w[[1, 3]], atol=1e-5, rtol=0)
    torch.testing.assert_close(scene.train.images, images[[1, 3]], atol=1 / 255, rtol=0)
    torch.testing.assert_close(scene.points_world, pts, atol=1e-6, rtol=0)


def test_transforms_json_with_alpha_and_missing_file(tmp_path):
    cams, images = _tiny_scene()
    names = [f"./frames/{i}" for i in range(len(cams))]  # Blender style: no extension
    (tmp_path / "frames").mkdir()
    alpha = torch.zeros(16, 24)
    alpha[4:12, 6:18] = 1
    for i, img in enumerate(images):
        write_image(tmp_path / "frames" / f"{i}.png", torch.cat([img, alpha[..., None]], -1))
    write_transforms_json(tmp_path / "transforms.json", cams, names)
    scene = read_scene(tmp_path, Split(test_every=0), downscale=2)
    assert scene.format == "transforms" and scene.train.images.shape == (5, 8, 12, 3)
    assert scene.train.alphas is not None and float(scene.train.alphas[0, 4, 6]) == 1.0
    torch.testing.assert_close(scene.train.cameras.fx, cams.fx / 2)
    torch.testing.assert_close(scene.train.cameras.c2w, cams.c2w, atol=1e-5, rtol=0)
    data = json.loads((tmp_path / "transforms.json").read_text())
    data["frames"][2]["file_path"] = "./frames/nope"
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="nope"):
        read_scene(tmp_path)


def test_not_a_scene(tmp_path):
    with pytest.raises(InputError, match="poses_bounds"):
        read_scene(tmp_path)
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "cameras.bin").write_bytes(b"\0" * 8)  # a COLMAP model missing its images file is named as such
    with pytest.raises(InputError, match="sparse/0: has cameras.bin but no images.bin or images.txt"):
        read_scene(tmp_path)


def test_sparse_points_from_training_views_only(shared_data):
    root = shared_data / "llff_fern"
    scene = read_scene(root, Split(test_every=8, num_train_views=3), downscale=8, points_from="train")
    model = read_colmap(root / "sparse" / "0")
    train_ids = {i + 1 for i in scene.train_indices}  # views 1, 10, 19 are COLMAP images 2, 11, 20
    seen = np.array([len(set(t[:, 0].tolist()) & train_ids) >= 2 for t in model.points3D.tracks])
    assert 0 < seen.sum() < len(seen)
    torch.testing.assert_close(scene.points_world, torch.as_tensor(model.points3D.xyz[seen], dtype=torch.float32))


def test_a_vdm3d_run_folder_is_a_scene(tmp_path):
    """A job's run folder (frames beside cameras/transforms.json, as object, explore, stylize, fit and
    complete write them) reads as its cameras/transforms.json, so `vdm3d fit RUN` chains; a folder of
    such folders (a `vdm3d data make` root) is refused naming the one inside to pass."""
    cams, images = _tiny_scene()
    run = tmp_path / "runs" / "walk"
    (run / "frames").mkdir(parents=True)
    for i, img in enumerate(images):
        write_image(run / "frames" / f"{i:04d}.png", img)
    write_transforms_json(run / "cameras" / "transforms.json", cams, [f"../frames/{i:04d}.png" for i in range(5)])
    scene = read_scene(run, Split(test_every=0))
    assert scene.format == "transforms" and scene.train_names == tuple(f"{i:04d}.png" for i in range(5))
    torch.testing.assert_close(scene.train.cameras.c2w, cams.c2w, atol=1e-5, rtol=0)
    torch.testing.assert_close(scene.train.images, images, atol=1 / 255, rtol=0)
    with pytest.raises(InputError, match=r"runs: holds no .*\(the folder .*runs/walk inside it is one: pass that\)"):
        read_scene(tmp_path / "runs")


FAR = np.array([5e6, 3e6, 100.0])  # UTM-like: a drone survey's cameras, 5e6 units from the origin


def _write_scene(folder, fmt, cams, images, pts):
    names = [f"f{i:02d}.png" for i in range(len(cams))]
    (folder / "images").mkdir(parents=True)
    for name, img in zip(names, images):
        write_image(folder / "images" / name, img)
    if fmt == "colmap":
        write_colmap(colmap_from_cameras(cams, names, pts), folder / "sparse" / "0")
    else:
        write_transforms_json(folder / "transforms.json", cams, [f"images/{n}" for n in names])


def _orthonormal(cams: Cameras) -> Cameras:
    """``cams`` in float64 with rotations orthonormal to float64's digits."""
    c2w = cams.c2w.double().clone()
    u, _, vh = torch.linalg.svd(c2w[:, :3, :3])
    c2w[:, :3, :3] = u @ vh
    return Cameras(cams.Ks.double(), c2w, cams.width, cams.height)


@pytest.mark.parametrize("fmt", ["colmap", "transforms"])
def test_a_georeferenced_scene_is_recentred_before_float32(tmp_path, fmt):
    """Cameras and points 5e6 units away are moved, while still float64, so that the cameras' mean centre is
    at the origin; the offset is kept. In float32 they would sit on a 0.5-unit grid (the cameras are 3 apart)."""
    cams, images = _tiny_scene()
    cams = _orthonormal(cams)  # COLMAP stores world-to-camera: a float32 rotation moves a far centre by 0.05
    pts = np.random.default_rng(0).normal(size=(30, 3))
    _write_scene(tmp_path / "near", fmt, cams, images, pts)
    _write_scene(tmp_path / "far", fmt, cams.to(torch.float64).translated(FAR), images, pts + FAR)
    near, far = (read_scene(tmp_path / name, Split(test_every=2)) for name in ("near", "far"))
    assert not near.offset.any()  # near the origin: not moved, the cameras as the file has them
    torch.testing.assert_close(near.train.cameras.c2w, cams.c2w[[1, 3]].float(), atol=1e-5, rtol=0)
    centre = cams.centers.double().mean(0).numpy()
    assert far.offset.dtype == np.float64
    np.testing.assert_allclose(far.offset, FAR + centre, rtol=0, atol=1e-6)
    for got, want in ((far.train, near.train), (far.test, near.test)):
        assert got.cameras.c2w.dtype == torch.float32
        back = got.cameras.to(torch.float64).translated(far.offset - FAR)  # the file's frame, less FAR
        torch.testing.assert_close(back.c2w, want.cameras.c2w.double(), atol=1e-5, rtol=0)
    if fmt == "colmap":
        assert far.points_world.dtype == torch.float32
        torch.testing.assert_close(far.points_world.double() + torch.from_numpy(far.offset - FAR),
                                   torch.from_numpy(pts), atol=1e-5, rtol=0)


def test_a_scene_far_only_for_its_size_is_moved(tmp_path):
    """The test is float32's step at the cameras' distance against their spread: 100 units away from cameras 3
    apart is fine (a step of 8e-6), so nothing moves; the same cameras shrunk to 0.0003 apart are moved."""
    cams, images = _tiny_scene()
    _write_scene(tmp_path / "a", "transforms", cams.to(torch.float64).translated([100.0, 0, 0]), images, None)
    assert not read_scene(tmp_path / "a").offset.any()
    small = Cameras(cams.Ks, cams.c2w.clone(), cams.width, cams.height).to(torch.float64)
    small.c2w[:, :3, 3] *= 1e-4
    _write_scene(tmp_path / "b", "transforms", small.translated([100.0, 0, 0]), images, None)
    np.testing.assert_allclose(read_scene(tmp_path / "b").offset,
                               [100.0, 0, 0] + small.centers.mean(0).numpy(), rtol=0, atol=1e-9)


def test_a_far_scene_shot_from_one_point_is_moved(tmp_path):
    """Cameras turning on one spot 5e6 units out have no spread, so far_offset saw no size and the scene stayed
    where float32 steps by 0.5 (its 30 points, 1 unit across, collapsed onto that grid). Its points now size
    it (1 unit without points); fit's line says the cameras sit at one point instead of '5.83e+306 times'."""
    from vdm3d.data.readers import recentred_line

    cams, images = _tiny_scene()
    c2w = cams.c2w.double().clone()
    c2w[:, :3, 3] = 0.0
    spot = _orthonormal(Cameras(cams.Ks.double(), c2w, cams.width, cams.height))
    pts = np.random.default_rng(0).normal(size=(30, 3)) * 0.3 + [0, 0, -3]
    _write_scene(tmp_path / "colmap", "colmap", spot.translated(FAR), images, pts + FAR)
    _write_scene(tmp_path / "json", "transforms", spot.translated(FAR), images, None)
    for name in ("colmap", "json"):
        scene = read_scene(tmp_path / name, Split(test_every=0))
        np.testing.assert_allclose(scene.offset, FAR, rtol=0, atol=1e-6)
        torch.testing.assert_close(scene.train.cameras.centers, torch.zeros(len(images), 3), atol=1e-5, rtol=0)
        if name == "json":  # COLMAP's world-to-camera round trip leaves a spread of 6e-9 (moved before too)
            assert "its cameras all at one point; fitted about" in recentred_line(tmp_path / name, scene)
    torch.testing.assert_close(read_scene(tmp_path / "colmap", Split(test_every=0)).points_world.double(),
                               torch.from_numpy(pts), atol=1e-5, rtol=0)
    _write_scene(tmp_path / "near", "transforms", spot.translated([100.0, 0, 0]), images, None)
    assert not read_scene(tmp_path / "near", Split(test_every=0)).offset.any()  # 100 out: float32 is fine there


def test_non_finite_sparse_points_are_left_out_with_a_count(tmp_path, shared_data, capsys):
    """A COLMAP model with a NaN point stopped `vdm3d fit` in scipy's k-d tree ("data must be finite", a
    traceback); its points are now left out with one warning line that counts them, as load_points does for
    a PLY, after the training-view selection (which matches points to tracks by index); a model with no finite
    point is one sentence."""
    cams, images = _tiny_scene()
    names = [f"f{i:02d}.png" for i in range(len(cams))]
    (tmp_path / "images").mkdir()
    for name, img in zip(names, images):
        write_image(tmp_path / "images" / name, img)
    pts = torch.randn(30, 3, dtype=torch.float64)
    pts[[2, 7, 8], 1] = float("nan")
    write_colmap(colmap_from_cameras(cams, names, pts), tmp_path / "sparse" / "0")
    scene = read_scene(tmp_path, Split(test_every=2))
    keep = torch.ones(30, dtype=torch.bool)
    keep[[2, 7, 8]] = False
    torch.testing.assert_close(scene.points_world, pts[keep].float(), atol=1e-6, rtol=0)
    assert capsys.readouterr().err == (f"warning: {tmp_path}: 3 of 30 points have a non-finite x, y or z (NaN or "
                                       "inf) and are left out\n")
    write_colmap(colmap_from_cameras(cams, names, torch.full((4, 3), float("inf"))), tmp_path / "sparse" / "0")
    with pytest.raises(InputError) as raised:
        read_scene(tmp_path, Split(test_every=2))
    assert str(raised.value) == (f"{tmp_path}: points3D has no point with finite x, y and z (all 4 are NaN or inf); "
                                 "triangulate the model again, or fit with --init random.")

    fern = tmp_path / "fern"  # LLFF, its points picked by the training views' tracks
    fern.mkdir()
    for name in ("images_8", "poses_bounds.npy"):
        (fern / name).symlink_to(shared_data / "llff_fern" / name)
    model = read_colmap(shared_data / "llff_fern" / "sparse" / "0")
    model.points3D.xyz[[0, 3, 4, 5, 9]] = np.nan  # 3, 4 and 5 are seen by two training views, 0 and 9 not
    write_colmap(model, fern / "sparse" / "0")
    scene = read_scene(fern, Split(test_every=8, num_train_views=3), downscale=8, points_from="train")
    train_ids = {i + 1 for i in scene.train_indices}
    seen = np.array([len(set(t[:, 0].tolist()) & train_ids) >= 2 for t in model.points3D.tracks])
    finite = np.isfinite(model.points3D.xyz).all(1)
    torch.testing.assert_close(scene.points_world, torch.as_tensor(model.points3D.xyz[seen & finite],
                                                                   dtype=torch.float32))
    assert int((seen & ~finite).sum()) == 3
    assert capsys.readouterr().err == (f"warning: {fern / 'sparse' / '0'}: 3 of {int(seen.sum())} points have a "
                                       "non-finite x, y or z (NaN or inf) and are left out\n")
