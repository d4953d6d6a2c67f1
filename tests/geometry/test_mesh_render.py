"""The ground-truth mesh renderer against closed forms, against itself across views, and against an
independent point-sampling path on the real textured meshes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.data.procedural import Light, Part, Scene, load_mesh, make_object, make_room, orbit_cameras, room_path
from vdm3d.data.procedural.shapes import ellipsoid
from vdm3d.geometry.flow import flow_from_depth, reproject_depth, sample_depth_2x2, unproject_depth
from vdm3d.geometry.mesh_render import mesh_edges, render_buffers

pytest.importorskip("moderngl")


def _gl_or_skip():
    from vdm3d.geometry.mesh_render import RenderBackendError, get_renderer

    try:
        get_renderer()
    except RenderBackendError as e:  # no EGL/Mesa on this machine: say so instead of failing
        pytest.skip(str(e), allow_module_level=True)


_gl_or_skip()


def _camera(eye, target=(0.0, 0.0, 0.0), w=64, h=48, fov=50.0) -> Cameras:
    c2w = look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    return Cameras.from_fov(fov, w, h, c2w.float())


def _sphere_scene(radius=0.8) -> Scene:
    s = ellipsoid(radius, radius, radius, nu=256, nv=128)
    part = Part(s.vertices, s.faces, s.normals, s.uv, np.full((1, 1, 3), 200, np.uint8),
                np.ones((len(s.vertices), 3), np.float32), instance_id=3)
    return Scene([part], light=Light((0.0, 0.0, 1.0), 0.3, 0.7))


def test_sphere_depth_normals_alpha_match_ray_casting():
    """A finely tessellated sphere against the exact ray-sphere intersection at every pixel centre."""
    r = 0.8
    cam = _camera((2.0, -1.5, 0.7), w=80, h=60)
    b = render_buffers(_sphere_scene(r), cam)
    o, d = cam.rays(normalize=True)  # [H, W, 3] each
    o, d = o.double(), d.double()
    bq = (o * d).sum(-1)
    disc = bq ** 2 - ((o * o).sum(-1) - r * r)
    hit = disc > 0
    t = -bq - disc.clamp_min(0).sqrt()
    p = o + t[..., None] * d
    z_exact = (p - cam.centers.double()) @ cam.forward.double()
    inner = hit & (disc > 0.02)  # away from the silhouette, where facets and sphere differ in coverage
    rel = ((b.depth[0].double() - z_exact).abs() / z_exact)[inner]
    # chord error of 256x128 facets: r (1 - cos(pi/256)) ~ 6e-5 r along the normal, more along slanted rays
    assert rel.median() < 1e-4 and rel.max() < 1e-3  # a wrong projection or depth model is off by > 1e-2
    ang = torch.rad2deg(torch.acos((b.normals[0].double() * p / r).sum(-1).clamp(-1, 1)))[inner]
    assert ang.max() < 1.0
    mask = b.alpha[0] > 0.5
    assert (mask != hit).sum() <= 0.01 * hit.sum() + 4  # boundary pixels only
    assert torch.equal(b.instance[0][mask], torch.full_like(b.instance[0][mask], 3))
    assert (b.depth[0][~mask] == 0).all() and (b.instance[0][~mask] == 0).all()
    # Lambert + ambient with light along +z and a uniform albedo of 200/255
    shade = 0.3 + 0.7 * (p[..., 2] / r).clamp_min(0)
    err = (b.rgb[0].double()[..., 0] - 200 / 255 * shade).abs()[inner]
    assert err.max() < 0.02  # texture is uint8, colour attachments float: only facet normal error left
    assert torch.allclose(b.rgb[0][~mask], torch.ones(3))  # white background by default


def test_pixel_centres_and_principal_point():
    """An off-centre principal point and a non-square image: a quad of 0.6 pixel around the world point
    that Cameras.unproject puts at the centre of pixel (row 11, column 23) covers exactly that pixel."""
    cam = _camera((0.0, -3.0, 0.0), w=40, h=30)
    Ks = cam.Ks.clone()
    Ks[0, 2] += 3.0
    Ks[1, 2] -= 2.0
    cam = Cameras(Ks, cam.c2w, 40, 30)
    i, j = 11, 23
    centre = cam.unproject(torch.tensor([[j + 0.5, i + 0.5]]), torch.tensor([3.0]))[0].double().numpy()
    right, down = cam.R[:, 0].double().numpy(), cam.R[:, 1].double().numpy()
    half = 0.3 * 3.0 / float(cam.fx)
    verts = np.array([centre + half * (sx * right + sy * down) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    scene = Scene([Part.make(verts, [[0, 1, 2], [0, 2, 3]])])
    b = render_buffers(scene, cam)
    assert b.alpha[0].sum() == 1 and b.alpha[0][i, j] == 1
    assert abs(float(b.depth[0][i, j]) - 3.0) < 1e-5


def test_batch_equals_single_and_is_deterministic():
    scene = make_object(5)
    cams = orbit_cameras(5, width=32, height=32)
    b = render_buffers(scene, cams)
    again = render_buffers(make_object(5), cams)
    for name in ("rgb", "alpha", "depth", "normals", "edges", "instance"):
        assert torch.equal(getattr(b, name), getattr(again, name)), name  # same input, same bits
    # a camera alone lands at another place of the atlas: same picture up to float rounding
    one = render_buffers(scene, cams[3])
    both = (b.alpha[3] > 0) & (one.alpha[0] > 0)
    assert (b.alpha[3] != one.alpha[0]).float().mean() < 0.005
    rel = (b.depth[3][both] - one.depth[0][both]).abs() / one.depth[0][both]
    assert rel.median() < 1e-6 and (rel > 1e-4).float().mean() < 0.005
    assert (b.instance[3] != one.instance[0]).float().mean() < 0.005


def test_ssaa_keeps_geometry_exact():
    scene = make_object(2)
    cams = orbit_cameras(2, width=32, height=32)
    b1 = render_buffers(scene, cams)
    b3 = render_buffers(scene, cams, ssaa=3)
    both = (b1.depth > 0) & (b3.depth > 0)
    assert (b1.instance != b3.instance).float().mean() < 0.005  # coverage ties at float rounding only
    rel = (b1.depth[both] - b3.depth[both]).abs() / b1.depth[both]
    # llvmpipe snaps vertices to 1/256 pixel, so a pixel on a part boundary may pick the other part
    assert rel.median() < 1e-6 and (rel > 1e-4).float().mean() < 0.05
    assert (b3.edges[b1.edges > 0] > 0).float().mean() > 0.9  # (lines rasterise with 1/256 px snapping)
    diff = (b1.rgb - b3.rgb).abs().mean(-1)
    assert diff.mean() < 0.05 and diff.max() > 0.05  # same picture, smoother edges


@pytest.mark.parametrize("ssaa", [1, 3])
def test_a_frame_larger_than_the_atlas_is_drawn_in_tiles(monkeypatch, ssaa):
    """A frame wider or taller than the atlas (``MAX_ATLAS``, 2048 px drawn) is drawn as crops of its camera and
    put together: the picture the atlas draws, up to float rounding (the projection moved by whole pixels).
    Before, it was a ValueError, so ``stylize`` refused --resolution above 680 and ``data make`` a
    --resolution times --ssaa above 2048."""
    import vdm3d.geometry.mesh_render as mesh_render

    scene, cams = make_object(3), orbit_cameras(3, width=70, height=52)
    whole = render_buffers(scene, cams, ssaa=ssaa)
    monkeypatch.setattr(mesh_render, "MAX_ATLAS", 40)  # tiles of at most 40 px: 2 x 2 at ssaa 1, 6 x 4 at 3
    tiled = render_buffers(scene, cams, ssaa=ssaa)
    assert torch.equal(tiled.alpha, whole.alpha) and torch.equal(tiled.instance, whole.instance)
    hit = whole.depth > 0  # the pixel centre's surface (at ssaa 3 a partly covered pixel may have none)
    assert torch.equal(tiled.depth > 0, hit)
    rel = (tiled.depth[hit] - whole.depth[hit]).abs() / whole.depth[hit]
    assert rel.max() < 1e-4 and (tiled.normals - whole.normals).abs().max() < 1e-3
    rgb = (tiled.rgb - whole.rgb).abs()
    assert rgb.mean() < 1e-3 and rgb.max() < 0.1  # a texel picked on the other side of a texel border
    assert (tiled.edges != whole.edges).float().mean() < 0.002


def test_a_frame_over_2048_pixels_renders():
    """The real size: 700 px at ssaa 3 draws 2100 px frames (2 x 2 tiles); its coverage is the 1x render's."""
    scene, cam = make_object(3), orbit_cameras(1, width=700, height=700)
    b3, b1 = render_buffers(scene, cam, ssaa=3), render_buffers(scene, cam)
    assert b3.alpha.shape == (1, 700, 700)
    assert abs(float(b3.alpha.mean()) - float(b1.alpha.mean())) < 0.002 * float(b1.alpha.mean()) + 1e-4
    assert torch.equal(b3.instance[b1.alpha > 0].unique(), b1.instance[b1.alpha > 0].unique())


def _covisible_stats(scene, cams, ia, ib):
    b = render_buffers(scene, cams)
    da, db = b.depth[ia], b.depth[ib]
    _, valid = flow_from_depth(da, cams[ia], cams[ib], db)
    uv_b, z_b = reproject_depth(da, cams[ia], cams[ib])
    nb = sample_depth_2x2(db, uv_b.reshape(-1, 2)).reshape(*da.shape, 4)
    nearest = nb.gather(-1, (nb - z_b[..., None]).abs().argmin(-1, keepdim=True))[..., 0]
    return ((nearest - z_b).abs() / z_b)[valid], int(valid.sum())


@pytest.mark.parametrize("world", ["object", "room"])
def test_depth_reprojects_across_views(world):
    """Depth of view A moved into view B matches B's own depth on co-visible pixels."""
    if world == "object":
        scene, cams, pair = make_object(1), orbit_cameras(8, width=96, height=96), (0, 1)
    else:
        scene = make_room(1)
        cams, pair = room_path(scene, 30, seed=1, width=96, height=96), (0, 10)
    rel, n = _covisible_stats(scene, cams, *pair)
    assert n > 500
    assert rel.median() < 0.01
    assert rel.quantile(0.9) < 0.02


def _depth_normals(depth, cam):
    p = unproject_depth(depth, cam)
    n = torch.cross(p[1:-1, 2:] - p[1:-1, :-2], p[2:, 1:-1] - p[:-2, 1:-1], dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _smooth_interior(b, i):
    d, inst = b.depth[i], b.instance[i]
    c = d[1:-1, 1:-1]
    ok = c > 0
    for sl in ((slice(1, -1), slice(2, None)), (slice(1, -1), slice(None, -2)),
               (slice(2, None), slice(1, -1)), (slice(None, -2), slice(1, -1))):
        ok &= (d[sl] > 0) & ((d[sl] - c).abs() < 0.05 * c) & (inst[sl] == inst[1:-1, 1:-1])
    ok &= (d[1:-1, 2:] + d[1:-1, :-2] - 2 * c).abs() < 0.005 * c  # no kink in x
    ok &= (d[2:, 1:-1] + d[:-2, 1:-1] - 2 * c).abs() < 0.005 * c  # no kink in y
    return ok


@pytest.mark.parametrize("seed", [0, 1])
def test_normals_agree_with_depth_gradients(seed):
    scene, cams = make_object(seed), orbit_cameras(4, width=96, height=96)
    b = render_buffers(scene, cams)
    angles = []
    for i in range(len(cams)):
        n_depth = _depth_normals(b.depth[i], cams[i])
        cos = (n_depth * b.normals[i][1:-1, 1:-1]).sum(-1).abs().clamp(max=1)
        angles.append(torch.rad2deg(torch.acos(cos))[_smooth_interior(b, i)])
    a = torch.cat(angles)
    assert len(a) > 5000
    assert a.median() < 2.0   # shading normals vs facet normals: half a facet angle at most
    assert a.quantile(0.9) < 5.0


def _discontinuity(b, i, rel=0.02, bend_deg=20.0):
    """Pixels with a depth jump, a coverage or instance change, or a normal bend in their 3x3."""
    d, n, inst = b.depth[i], b.normals[i], b.instance[i]
    h, w = d.shape
    pd = F.pad(d, (1, 1, 1, 1))
    pn = F.pad(n.permute(2, 0, 1), (1, 1, 1, 1)).permute(1, 2, 0)
    pi = F.pad(inst, (1, 1, 1, 1))
    out = torch.zeros_like(d, dtype=torch.bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            nd, nn_, ni = (t[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for t in (pd, pn, pi))
            out |= ((nd - d).abs() > rel * torch.minimum(nd, d).clamp_min(1e-6)) | ((nd > 0) != (d > 0)) | (ni != inst)
            bend = torch.rad2deg(torch.acos((nn_ * n).sum(-1).clamp(-1, 1))) > bend_deg
            out |= bend & (nd > 0) & (d > 0)
    return out


@pytest.mark.parametrize("world", ["object", "room"])
def test_edges_lie_on_depth_or_normal_discontinuities(world):
    if world == "object":
        scene, cams = make_object(0), orbit_cameras(4, width=128, height=128)
    else:
        scene = make_room(0)
        cams = room_path(scene, 30, seed=0, width=128, height=128)[::10]
    b = render_buffers(scene, cams)
    on_edge, off_edge = [], []
    for i in range(len(cams)):
        disc = _discontinuity(b, i)
        e = b.edges[i] > 0
        on_edge.append(disc[e])
        off_edge.append(disc[~e & (b.alpha[i] > 0)])
    on, off = torch.cat(on_edge).float(), torch.cat(off_edge).float()
    assert len(on) > 300
    assert on.mean() > 0.95
    assert off.mean() < 0.3  # the criterion is selective: most surface pixels are not discontinuities


def test_crease_edges_of_a_box():
    """A box seen from a corner direction: all 12 edges are creases, 9 visible; no diagonal edges."""
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    seg, n1, n2, cos = mesh_edges(Scene.from_trimesh(box).parts[0])
    assert len(seg) == 18 and (np.isclose(cos, 0.0)).sum() == 12 and (np.isclose(cos, 1.0)).sum() == 6
    b = render_buffers(box, _camera((2.0, -2.5, 1.8), w=96, h=96))
    e = b.edges[0] > 0
    assert e.sum() > 100
    # every edge pixel sits within one pixel of a face change (the box's faces have distinct normals)
    assert _discontinuity(b, 0, bend_deg=45.0)[e].float().mean() > 0.97


def _surface_samples(part: Part, n: int, seed: int):
    """Independent reference: points on the textured surface, colour by bilinear texture lookup and
    Lambert shading with barycentric-interpolated normals (numpy, no GL)."""
    mesh = trimesh.Trimesh(part.vertices, part.faces, process=False)
    pts, fidx = trimesh.sample.sample_surface(mesh, n, seed=seed)
    tri = part.vertices[part.faces[fidx]].astype(np.float64)
    bary = trimesh.triangles.points_to_barycentric(tri, pts)
    f = part.faces[fidx]
    uv = (part.uv[f] * bary[..., None]).sum(1)
    nrm = (part.normals[f] * bary[..., None]).sum(1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    tex = part.texture.astype(np.float64) / 255.0
    th, tw = tex.shape[:2]
    x = np.mod(uv[:, 0], 1.0) * tw - 0.5  # texel centres at +0.5; image row 0 is v = 1
    y = (1.0 - np.mod(uv[:, 1], 1.0)) * th - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    look = lambda yy, xx: tex[np.mod(yy, th), np.mod(xx, tw)]  # noqa: E731
    albedo = ((1 - fx) * (1 - fy) * look(y0, x0) + fx * (1 - fy) * look(y0, x0 + 1)
              + (1 - fx) * fy * look(y0 + 1, x0) + fx * fy * look(y0 + 1, x0 + 1))
    albedo *= (part.colors[f] * bary[..., None]).sum(1)
    return pts, nrm, albedo


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spot/spot_triangulated.obj", "bob/bob_tri.obj", "duck/Duck.glb"])
def test_shared_textured_mesh_matches_point_samples(shared_data, name):
    """Render a real textured mesh and compare with surface point samples projected by Cameras.

    Tolerance: median absolute colour error < 0.03 and 90th percentile < 0.08 (of 1.0) over visible
    samples; the residual comes from texture filtering (GL trilinear mipmaps vs bilinear on the full
    image) and from samples not at pixel centres (the render is bilinearly interpolated there).
    """
    scene = load_mesh(shared_data / "meshes" / name)
    light = Light((0.3, -0.5, 0.81), 0.35, 0.65)
    cams = orbit_cameras(3, width=256, height=256, elevation_deg=15.0, azimuth0_deg=-90.0)
    b = render_buffers(scene, cams, light=light)
    part = scene.parts[0]
    pts, nrm, albedo = _surface_samples(part, 40000, seed=0)
    ld = np.asarray(light.direction) / np.linalg.norm(light.direction)
    errs = []
    for i in range(len(cams)):
        cam = cams[i]
        uv, z = cam.project(torch.tensor(pts, dtype=torch.float32))
        view = pts - cam.centers.numpy()
        n_face = np.where(((nrm * view).sum(1) > 0)[:, None], -nrm, nrm)  # two-sided, like the renderer
        color = albedo * (light.ambient + light.diffuse * np.clip(n_face @ ld, 0, None))[:, None]
        H, W = cam.height, cam.width
        grid = torch.stack([2 * uv[:, 0] / W - 1, 2 * uv[:, 1] / H - 1], -1)[None, None].float()
        depth_at = F.grid_sample(b.depth[i][None, None], grid, mode="nearest", align_corners=False)[0, 0, 0]
        visible = (z > 0) & ((depth_at - z).abs() < 0.003 * z)
        rgb_at = F.grid_sample(b.rgb[i].permute(2, 0, 1)[None], grid, mode="bilinear", align_corners=False)
        rgb_at = rgb_at[0, :, 0].T.numpy()
        # only samples whose 2x2 render neighbourhood is on the surface (no background mixed in)
        alpha_min = -F.max_pool2d(-b.alpha[i][None, None], 2, stride=1, padding=1)[0, 0]
        inside = F.grid_sample(alpha_min[None, None, :H, :W], grid, mode="nearest", align_corners=False)[0, 0, 0] > 0.5
        keep = (visible & inside).numpy()
        errs.append(np.abs(rgb_at[keep] - color[keep]).mean(1))
    e = np.concatenate(errs)
    assert len(e) > 5000
    assert np.median(e) < 0.03
    assert np.quantile(e, 0.9) < 0.08


def test_trimesh_input_and_vertex_colours():
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    box.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(box.vertices), 1))
    b = render_buffers(box, _camera((2.0, -2.5, 1.8), w=32, h=32), light=Light((0.0, 0.0, 1.0), 1.0, 0.0))
    m = b.alpha[0] > 0
    assert torch.allclose(b.rgb[0][m], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)


@pytest.mark.parametrize("world", ["object", "room"])
def test_back_face_culling_changes_nothing_on_closed_worlds(world):
    """Procedural worlds promise `closed` (no back face is ever visible): culling must not change the
    picture, which checks that every face of every part is wound the right way."""
    if world == "object":
        scene, cams = make_object(3), orbit_cameras(6, width=48, height=48)
    else:
        scene = make_room(3)
        cams = room_path(scene, 12, seed=3, width=48, height=48)
    assert scene.closed
    a = render_buffers(scene, cams, cull=False)
    b = render_buffers(scene, cams, cull=True)
    assert ((a.depth - b.depth).abs() > 1e-4 * a.depth).float().mean() < 1e-3
    assert (a.instance != b.instance).float().mean() < 1e-3


def _render_in_thread(fn):
    """fn() run in a new thread; its result, or the exception it raised."""
    import threading

    out = {}

    def work():
        try:
            out["v"] = fn()
        except Exception as e:  # noqa: BLE001 - handed back to the test
            out["v"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if isinstance(out["v"], Exception):
        raise out["v"]
    return out["v"]


def _same_buffers(a, b):
    for f in ("rgb", "alpha", "depth", "normals", "edges", "instance"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


def test_renders_from_any_thread_in_any_order():
    """A notebook's background thread or a web server's worker renders the same bytes as the main thread,
    whichever thread rendered first (the GL context used to stay current only in its creating thread:
    the other thread got NaN images or `cannot create buffer`)."""
    from vdm3d.geometry.mesh_render import MeshRenderer

    scene, cam = _sphere_scene(), _camera((2.0, -1.5, 0.7), w=40, h=30)
    main = render_buffers(scene, cam)  # the process renderer, main thread first
    assert torch.isfinite(main.rgb).all() and main.alpha.sum() > 100
    _same_buffers(main, _render_in_thread(lambda: render_buffers(scene, cam)))
    _same_buffers(main, render_buffers(scene, cam))  # and back in the main thread

    # a renderer created in a worker thread that has ended, then used from the main thread and another worker
    own = _render_in_thread(MeshRenderer)
    try:
        _same_buffers(main, _render_in_thread(lambda: own.render(scene, cam)))
        _same_buffers(main, own.render(scene, cam))
        _same_buffers(main, render_buffers(scene, cam))  # the process renderer is unaffected
    finally:
        own.ctx.release()  # current in no thread, so EGL destroys it now


def test_concurrent_renders_from_threads_are_serialised():
    """Several threads rendering at once each get the single-thread result."""
    from concurrent.futures import ThreadPoolExecutor

    scene = _sphere_scene()
    cams = [_camera((2.0, -1.5, z), w=32, h=24) for z in (0.3, 0.7, 1.1, 1.5)]
    expected = [render_buffers(scene, c) for c in cams]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: render_buffers(scene, c), cams * 2))
    for i, g in enumerate(got):
        _same_buffers(expected[i % 4], g)
