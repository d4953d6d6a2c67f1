"""Procedural worlds: determinism, variety, closed well-oriented primitives, rooms and camera paths."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import trimesh

from vdm3d.data.procedural import make_object, make_room, room_path
from vdm3d.data.procedural.rooms import free_space
from vdm3d.data.procedural.scene import crease_normals
from vdm3d.data.procedural.shapes import PRIMITIVES, random_primitive
from vdm3d.data.procedural.textures import KINDS, random_texture


def _scene_bytes(scene) -> bytes:
    out = []
    for p in scene.parts:
        out += [p.vertices.tobytes(), p.faces.tobytes(), p.normals.tobytes(), p.uv.tobytes(), p.texture.tobytes(),
                p.colors.tobytes(), str(p.instance_id).encode()]
    out.append(repr(scene.light).encode())
    return b"".join(out)


@pytest.mark.parametrize("make", [make_object, make_room])
def test_same_seed_same_bytes_different_seed_different_world(make):
    a, b, c = make(7), make(7), make(8)
    assert _scene_bytes(a) == _scene_bytes(b)
    assert _scene_bytes(a) != _scene_bytes(c)


def test_objects_fit_the_unit_sphere_and_vary():
    counts, kinds = [], set()
    for seed in range(12):
        s = make_object(seed)
        v = np.concatenate([p.vertices for p in s.parts])
        r = np.linalg.norm(v, axis=1).max()
        assert abs(r - 1.0) < 1e-5
        assert np.abs(0.5 * (v.min(0) + v.max(0))).max() < 1e-5
        assert sorted(p.instance_id for p in s.parts) == list(range(1, len(s.parts) + 1))
        counts.append(len(s.parts))
        kinds |= {p.name for p in s.parts}
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) >= 3
    assert len(kinds) >= 5


@pytest.mark.parametrize("kind", PRIMITIVES)
def test_primitives_are_closed_and_outward(kind):
    rng = np.random.default_rng(3)
    for _ in range(3):
        surf, k = random_primitive(rng, kind=kind)
        mesh = trimesh.Trimesh(surf.vertices, surf.faces, process=True)  # welds uv seams and rims
        assert mesh.is_watertight, kind
        assert mesh.volume > 0, kind  # outward orientation gives a positive signed volume
        # shading normals agree with the face normals they were averaged from
        vn = surf.normals[surf.faces].mean(1)
        tri = trimesh.Trimesh(surf.vertices, surf.faces, process=False)
        cos = (tri.face_normals * vn / np.linalg.norm(vn, axis=1, keepdims=True)).sum(1)
        assert np.median(cos) > 0.99 and (cos > 0).all(), kind


@pytest.mark.parametrize("kind", KINDS)
def test_textures_tile_seamlessly(kind):
    rng = np.random.default_rng(0)
    img, k = random_texture(rng, size=64, kind=kind)
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3) and k == kind
    f = img.astype(np.float64)
    steps = np.abs(np.diff(f, axis=1)).mean((0, 2))  # mean step between neighbouring columns
    seam = np.abs(f[:, 0] - f[:, -1]).mean()
    assert seam <= steps.max() + 1.0  # the wrap-around step is like an ordinary step (a check edge at most)
    rows = np.abs(np.diff(f, axis=0)).mean((1, 2))
    assert np.abs(f[0] - f[-1]).mean() <= rows.max() + 1.0
    assert f.std() > 5  # a pattern, not a flat colour


def test_crease_normals_split_a_box_and_keep_a_sphere_smooth():
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    src, faces, normals = crease_normals(box.vertices, box.faces)
    assert len(src) == 24  # 8 corners x 3 faces each
    assert np.allclose(np.abs(normals).max(1), 1.0)
    sphere = trimesh.creation.icosphere(3)
    src, faces, normals = crease_normals(sphere.vertices, sphere.faces)
    assert len(src) == len(sphere.vertices)
    assert (np.einsum("ij,ij->i", normals, sphere.vertices[src]) > 0.99).all()


def test_room_layout_and_furniture_count():
    for seed in range(3):
        s = make_room(seed)
        lx, ly, hc = s.meta["size"]
        furniture = s.meta["furniture"]
        assert 3 <= len(furniture) <= 10
        ids = {p.instance_id for p in s.parts}
        assert {1, 2, 3, 4, 5, 6} <= ids and len(ids) == 6 + len(furniture)
        v = np.concatenate([p.vertices for p in s.parts])
        assert v[:, 2].min() > -1e-4 and v[:, 2].max() < hc + 1e-4  # nothing below floor or above ceiling
        assert np.abs(v[:, 0]).max() < lx / 2 + 0.2 and np.abs(v[:, 1]).max() < ly / 2 + 0.2
        for i, (x, y, r, h, kind) in enumerate(furniture):  # footprints do not overlap
            for x2, y2, r2, _, _ in furniture[i + 1:]:
                assert np.hypot(x - x2, y - y2) >= r + r2


@pytest.mark.slow
def test_room_path_stays_inside_and_clear():
    """Every camera of the path is inside the room, at least `clearance` from walls and furniture
    footprints, and the renders see geometry at least that far in every pixel (no near clipping)."""
    pytest.importorskip("moderngl")
    from vdm3d.geometry.mesh_render import RenderBackendError, get_renderer, render_buffers

    try:
        get_renderer()
    except RenderBackendError as e:
        pytest.skip(str(e))

    for seed in range(3):
        scene = make_room(seed)
        cams = room_path(scene, 40, seed=seed, width=32, height=32, clearance=0.4)
        c = cams.centers.numpy()
        lx, ly, hc = scene.meta["size"]
        assert (np.abs(c[:, 0]) <= lx / 2 - 0.4 + 1e-3).all() and (np.abs(c[:, 1]) <= ly / 2 - 0.4 + 1e-3).all()
        for x, y, r, _, _ in scene.meta["furniture"]:
            assert (np.hypot(c[:, 0] - x, c[:, 1] - y) >= r + 0.4 - 0.05).all()  # grid cell tolerance
        assert (c[:, 2] > 1.0).all() and (c[:, 2] < hc - 0.5).all()
        steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
        assert steps.max() < 0.2  # smooth: no jumps
        fwd = cams.forward.numpy()
        assert (np.einsum("ij,ij->i", fwd[1:], fwd[:-1]) > np.cos(np.deg2rad(10))).all()  # no sudden turns
        b = render_buffers(scene, cams)
        assert b.depth[b.alpha > 0].min() > 0.3
        assert free_space(scene, 0.4)[0].any()
    again = room_path(make_room(0), 40, seed=0, width=32, height=32)
    first = room_path(make_room(0), 40, seed=0, width=32, height=32)
    assert torch.equal(again.c2w, first.c2w)
    assert not torch.equal(room_path(make_room(0), 40, seed=1, width=32, height=32).c2w, first.c2w)


def test_the_light_palette_keeps_the_shape_and_the_pattern_in_light_colours():
    """The procedural palette (saturation 0.3-0.9) never draws a white or pastel object; users' meshes often
    are one (the object job turned a white cow brown). light_palette repaints the same pattern in them."""
    import colorsys

    from vdm3d.data.procedural.objects import light_palette
    from vdm3d.data.procedural.textures import LUMA

    for seed in range(6):
        scene = make_object(seed)
        light = light_palette(scene, seed)
        assert light_palette(scene, seed).parts[0].texture.tobytes() == light.parts[0].texture.tobytes()
        for a, b in zip(scene.parts, light.parts):
            assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
            before, after = (p.texture.astype(np.float32) @ LUMA for p in (a, b))
            if before.std() > 1:  # the same two-tone pattern (two light tones may swap which is lighter)
                assert abs(np.corrcoef(before.ravel(), after.ravel())[0, 1]) > 0.95
            top = b.texture.reshape(-1, 3)[np.argmax(after)] / 255  # the light tone
            h, s, v = colorsys.rgb_to_hsv(*top)
            assert s <= 0.351 and v >= 0.79, (seed, s, v)
        assert light.meta["palette"] == "light" and "palette" not in scene.meta
    # seeds differ, and about half of the objects give all their parts one palette
    tones = [tuple(light_palette(make_object(s), s).parts[0].texture.reshape(-1, 3).max(0)) for s in range(6)]
    assert len(set(tones)) == 6


def test_a_mirror_symmetric_object_looks_the_same_from_the_mirrored_camera_flipped():
    """Most things users bring are mirror-symmetric and a random union of parts never is; mirror_symmetric joins
    an object with its image through an upright plane. Its depth from a camera and from that camera reflected
    through the plane (image flipped) must agree pixel for pixel, which also checks that the mirrored faces were
    wound again: with back faces culled, a mirrored part wound the wrong way shows its far side."""
    from vdm3d.data.procedural.cameras import orbit_cameras
    from vdm3d.data.procedural.objects import mirror_symmetric
    from vdm3d.geometry.mesh_render import render_buffers

    for seed in (0, 3):
        plain = make_object(seed)
        scene = mirror_symmetric(plain, seed)
        assert _scene_bytes(scene) == _scene_bytes(mirror_symmetric(plain, seed))
        assert len(scene.parts) == 2 * len(plain.parts) and scene.meta["shape"] == "symmetric"
        *n, d = scene.meta["mirror_plane"]
        n = np.array(n)
        assert abs(n[2]) < 1e-12 and np.isclose(np.linalg.norm(n), 1.0)  # upright: contains the orbit's z axis
        reflect = np.eye(3) - 2 * np.outer(n, n)  # x -> x - 2 (n . x - d) n
        half = len(plain.parts)
        for a, b in zip(scene.parts[:half], scene.parts[half:]):
            np.testing.assert_allclose(a.vertices @ reflect.T + 2 * d * n, b.vertices, atol=1e-6)
        assert np.isclose(scene.bounding_sphere()[1], 1.0, atol=1e-6)

        cams = orbit_cameras(3, width=48, height=48, fov_deg=33.8, elevation_deg=20.0, azimuth0_deg=35.0)
        mirrored = cams.mirrored(n, d)  # the plane n . x = d
        depth = render_buffers(scene, cams).depth
        seen = render_buffers(scene, mirrored).depth.flip(-1)
        hit = torch.isfinite(depth) & torch.isfinite(seen)
        assert (torch.isfinite(depth) == torch.isfinite(seen)).float().mean() > 0.99
        assert (depth[hit] - seen[hit]).abs().max() < 1e-3
        # the same check on an object whose mirrored half keeps its old winding fails
        wrong = dataclasses.replace(scene, parts=scene.parts[:half] + [
            dataclasses.replace(p, faces=p.faces[:, ::-1].copy()) for p in scene.parts[half:]])
        bad = render_buffers(wrong, mirrored).depth.flip(-1)
        both = torch.isfinite(depth) & torch.isfinite(bad)
        assert (depth[both] - bad[both]).abs().max() > 0.1
