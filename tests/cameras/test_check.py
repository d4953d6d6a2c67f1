"""Scene checks against closed forms on a unit sphere; scene loading from every supported format."""

import math

import numpy as np
import pytest
import torch
import trimesh

from vdm3d.cameras import Cameras, look_at
from vdm3d.cameras.check import check_trajectory, coverage_mesh, coverage_points, winding_numbers
from vdm3d.cameras.scene import Scene, load_scene
from vdm3d.errors import InputError

D = torch.float64


@pytest.fixture(scope="module")
def sphere():
    m = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    pts, _ = trimesh.sample.sample_surface(m, 40000, seed=0)
    return m, Scene(np.asarray(pts), None, np.asarray(m.vertices), np.asarray(m.faces), "sphere")


def cams_at(distances, fov=60.0):
    d = torch.as_tensor(distances, dtype=D)
    eye = torch.stack([torch.zeros_like(d), -d, torch.zeros_like(d)], -1)
    target = torch.tensor([0.0, 5.0, 0.0], dtype=D).expand_as(eye)  # look along +y, through the center
    return Cameras.from_fov(fov, 64, 48, look_at(eye, target, torch.tensor([0, 0, 1.0], dtype=D).expand_as(eye)))


def disk_fraction(cam: Cameras, d: float) -> float:
    r = float(cam.fx[0]) * math.tan(math.asin(1 / d))  # projected radius of a unit sphere at distance d
    return math.pi * r * r / (cam.width * cam.height)


def test_winding_number_inside_outside(sphere):
    m, _ = sphere
    w = winding_numbers(np.array([[0, 0, 0], [0.5, 0.2, -0.3], [1.5, 0, 0], [0, 3, 0]], float), m.vertices, m.faces)
    np.testing.assert_allclose(np.abs(w), [1, 1, 0, 0], atol=1e-6)


@pytest.mark.parametrize("d", [3.0, 6.0])
def test_coverage_matches_projected_disk(sphere, d):
    _, scene = sphere
    cam = cams_at([d])
    exact = disk_fraction(cam, d)
    assert coverage_mesh(cam[0], scene.vertices, scene.faces, grid=64) == pytest.approx(exact, abs=0.02)
    # points count a cell when any point lands in it, so the silhouette's cells add a little
    assert coverage_points(cam[0], scene.points, grid=64) == pytest.approx(exact, abs=0.06)


def test_check_report_on_sphere(sphere):
    _, scene = sphere
    cams = cams_at([0.0, 1.03, 3.0, 6.0])
    for s in (scene, Scene(scene.points, source="points")):
        rep = check_trajectory(cams, s, min_distance=0.1)
        assert [f.inside for f in rep.frames] == [True, False, False, False]
        assert [f.too_close for f in rep.frames] == [False, True, False, False]
        assert [f.nearest for f in rep.frames] == pytest.approx([1.0, 0.03, 2.0, 5.0], abs=0.02)
        assert rep.frames[0].coverage > 0.97  # surrounded: (almost) every cell sees the sphere
        problems = rep.problems()
        assert len(problems) == 2 and problems[0].startswith("frame 0: inside geometry")
        assert len(rep.problems(ignore_inside=True)) == 1


def test_a_room_whose_walls_face_inwards_does_not_flag_the_cameras_inside_it(sphere):
    """The inside test is signed, as stylize's: the same sphere with its faces turned inwards (a room, a scan)
    winds -1 around its centre, and a camera there walks through it rather than sitting inside a solid."""
    _, scene = sphere
    room = Scene(scene.points, None, scene.vertices, scene.faces[:, ::-1].copy(), "room")
    rep = check_trajectory(cams_at([0.0, 0.5, 3.0]), room, min_distance=0.1)
    assert [f.inside for f in rep.frames] == [False, False, False]
    assert [f.inside for f in check_trajectory(cams_at([0.0, 0.5, 3.0]), scene, min_distance=0.1).frames] == [
        True, True, False]


def test_camera_looking_away_sees_nothing(sphere):
    _, scene = sphere
    eye = torch.tensor([[0.0, -3.0, 0.0]], dtype=D)
    c = Cameras.from_fov(60.0, 64, 48, look_at(eye, torch.tensor([[0.0, -9.0, 0.0]], dtype=D),
                                                torch.tensor([[0, 0, 1.0]], dtype=D)))
    rep = check_trajectory(c, scene)
    assert rep.frames[0].coverage == 0.0 and "known content in 0%" in rep.problems()[0]


def test_load_scene_formats(tmp_path, shared_data):
    from plyfile import PlyData, PlyElement

    pts = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    v = np.zeros(100, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("f_dc_0", "f4"), ("f_dc_1", "f4"), ("f_dc_2", "f4")])
    v["x"], v["y"], v["z"], v["f_dc_0"] = pts[:, 0], pts[:, 1], pts[:, 2], 1.0
    PlyData([PlyElement.describe(v, "vertex")]).write(str(tmp_path / "splat.ply"))
    s = load_scene(tmp_path / "splat.ply")
    np.testing.assert_allclose(s.points, pts, atol=1e-6)
    assert s.colors[0].tolist() == pytest.approx([0.5 + 0.28209479, 0.5, 0.5])
    trimesh.creation.box().export(tmp_path / "box.ply")
    assert load_scene(tmp_path / "box.ply").is_mesh
    np.save(tmp_path / "p.npy", pts)
    assert load_scene(tmp_path / "p.npy").points.shape == (100, 3)
    garden = load_scene(shared_data / "points" / "test_garden.npz", max_points=5000)
    assert garden.points.shape == (5000, 3) and garden.colors.max() <= 1
    duck = load_scene(shared_data / "meshes" / "duck" / "Duck.glb", mesh_samples=2000)
    assert duck.is_mesh and len(duck.faces) == 4212
    fern = load_scene(shared_data / "llff_fern" / "sparse" / "0")
    assert len(fern.points) == 10091
    with pytest.raises(InputError, match="does not exist"):
        load_scene(tmp_path / "nope.ply")
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(InputError, match="not a readable PLY"):
        load_scene(tmp_path / "bad.ply")
    np.save(tmp_path / "bad.npy", np.zeros((4, 2)))
    with pytest.raises(InputError, match=r"must be \[N, 3\]"):
        load_scene(tmp_path / "bad.npy")


def _winding_reference(points, vertices, faces):
    """The same solid angles in plain numpy, point by point (what the kernel replaced)."""
    out = []
    for p in points:
        a, b, c = (vertices[faces[:, i]] - p for i in range(3))
        la, lb, lc = (np.linalg.norm(v, axis=1) for v in (a, b, c))
        det = np.einsum("ti,ti->t", a, np.cross(b, c))
        den = la * lb * lc + (a * b).sum(1) * lc + (b * c).sum(1) * la + (c * a).sum(1) * lb
        out.append((2 * np.arctan2(det, den)).sum() / (4 * np.pi))
    return np.array(out)


def test_winding_numbers_match_the_numpy_formula_and_the_sphere(sphere):
    m, _ = sphere
    pts = np.random.default_rng(1).uniform(-1.5, 1.5, (50, 3))
    ref = winding_numbers(pts, m.vertices, m.faces)
    np.testing.assert_allclose(ref, _winding_reference(pts, np.asarray(m.vertices), np.asarray(m.faces)), atol=1e-9)
    inside = np.linalg.norm(pts, axis=1) < 0.99
    np.testing.assert_allclose(np.abs(ref[inside | (np.linalg.norm(pts, axis=1) > 1.01)]),
                               inside[inside | (np.linalg.norm(pts, axis=1) > 1.01)].astype(float), atol=1e-6)
    # an open mesh (the sphere's upper half): fractional numbers, equal to the formula too
    half = m.faces[m.vertices[m.faces].mean(1)[:, 2] > 0]
    np.testing.assert_allclose(winding_numbers(pts, m.vertices, half),
                               _winding_reference(pts, np.asarray(m.vertices), np.asarray(half)), atol=1e-9)
    # float32 and uint32 inputs (a trimesh loaded from a GLB) give the same numbers
    np.testing.assert_allclose(winding_numbers(pts.astype(np.float32), np.asarray(m.vertices, np.float32),
                                               np.asarray(m.faces, np.uint32)), ref, atol=1e-5)


def _teapot_like():
    """A non-convex, open-ish test mesh: a torus with a box through it (many triangles of all sizes)."""
    a = trimesh.creation.torus(1.0, 0.35, major_sections=24, minor_sections=12)
    b = trimesh.creation.box((0.4, 0.4, 2.5))
    return trimesh.util.concatenate([a, b])


@pytest.mark.parametrize("eye", [[0.0, -4.0, 1.0], [0.0, -1.5, 0.2], [0.3, 0.0, 0.6], [1.0, 0.05, 0.0]])
def test_coverage_equals_casting_every_ray(eye):
    """The rasterized coverage is the ray-cast definition: every cell's ray tested against every triangle
    (the reference), whether the camera is far, close, or inside the torus (triangles crossing its plane)."""
    from vdm3d.cameras.check import _grid_rays, _ray_hits

    m = _teapot_like()
    e = torch.tensor([eye], dtype=D)
    cam = Cameras.from_fov(70.0, 64, 48, look_at(e, torch.tensor([[0.0, 0.0, 0.0]], dtype=D) + torch.tensor([[0, 1e-3, 0]], dtype=D),
                                                 torch.tensor([[0, 0, 1.0]], dtype=D)))[0]
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    dirs, origin, _ = _grid_rays(cam, 20 * 4)
    ref = _ray_hits(origin, dirs, v[f]).mean()
    assert 0.02 < ref <= 1.0
    assert coverage_mesh(cam, v, f, grid=20) == pytest.approx(ref, abs=2 / len(dirs))  # at most 2 cells on a tie


def test_fill_triangles_small_budget_and_tiny_triangles():
    from vdm3d.cameras.check import fill_triangles

    # a unit grid of 2 triangles per cell, offset by half a cell: every cell center lies in exactly one triangle
    n = 20
    xs, ys = np.meshgrid(np.arange(n + 1) - 0.5, np.arange(n + 1) - 0.5)
    quads = np.stack([xs[:-1, :-1], ys[:-1, :-1]], -1).reshape(-1, 2)
    tris = np.concatenate([np.stack([quads, quads + [1, 0], quads + [1, 1]], 1),
                           np.stack([quads, quads + [1, 1], quads + [0, 1]], 1)])
    tris = tris + np.random.default_rng(0).uniform(-0.2, 0.2, (1, 1, 2))  # one shift: still a tiling
    mask = np.zeros((n + 4, n + 4), bool)
    fill_triangles(mask, tris[..., 0] + 2, tris[..., 1] + 2, budget=7)
    assert mask.sum() == n * n and mask[2:-2, 2:-2].all()


def test_progress_only_when_slow():
    import io

    from vdm3d.cameras.check import DelayedProgress

    t = [0.0]
    quick, out = DelayedProgress(after_s=3.0, stream=io.StringIO(), clock=lambda: t[0]), None
    for i in range(1, 11):
        t[0] += 0.1
        quick(i, 10)
    assert quick.stream.getvalue() == ""  # 1 s in all: nothing printed
    t[0] = 0.0
    slow = DelayedProgress(after_s=3.0, stream=io.StringIO(), clock=lambda: t[0])
    for i in range(1, 21):
        t[0] += 2.0
        slow(i, 20)
    out = slow.stream.getvalue().splitlines()
    assert out[0] == "validate 2/20 (10%), 4.0 s, ETA 36.0 s"  # 2 s a frame, counted from the start
    assert out[-1].startswith("validate 20/20 (100%), 40.0 s")
    t[0] = 0.0  # 21 s of setup (a dense mesh's search tree) before the first frame: not counted as frame time
    setup = DelayedProgress(after_s=3.0, stream=io.StringIO(), clock=lambda: t[0])
    t[0] = 21.0
    setup(0, 20)
    for i in range(1, 3):
        t[0] += 2.0
        setup(i, 20)
    assert setup.stream.getvalue().splitlines()[0] == "validate 2/20 (10%), 4.0 s, ETA 36.0 s"  # not 25 s, ETA 225 s
