"""Renderer: fast backends against the dense reference, gradient checks, closed-form cases."""

import math
from unittest import mock

import pytest
import torch

from vdm3d.cameras import Cameras, look_at
from vdm3d.errors import ConfigError, Vdm3dError
from vdm3d.splat import Gaussians, render
from vdm3d.splat.backends import cpp as cpp_backend
from vdm3d.splat.backends import numba as compiled
from vdm3d.splat.backends import torch as tiled
from vdm3d.splat.backends.torch_ref import render_backend as render_ref


def random_scene(n=120, degree=3, dtype=torch.float32, max_opacity_logit=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    logits = r(n) + 0.5
    if max_opacity_logit is not None:
        logits = logits.clamp_max(max_opacity_logit)
    k = (degree + 1) ** 2
    return Gaussians(r(n, 3) * 0.6, r(n, 4), r(n, 3) * 0.4 - 2.3, logits, r(n, k, 3) * 0.4)


def two_cameras(dtype=torch.float32, width=37, height=29):
    eye = torch.tensor([[0.3, -0.6, -2.5], [-1.8, -0.4, -1.6]], dtype=dtype)
    c2w = look_at(eye, torch.zeros(2, 3, dtype=dtype), torch.tensor([0.0, -1.0, 0.0], dtype=dtype).expand(2, 3))
    return Cameras.from_fov(55.0, width, height, c2w)


def render_with_grads(g, cams, cotangents, backend, **kw):
    g = g.clone().requires_grad_()
    background = torch.tensor([0.2, 0.5, 0.9], dtype=g.dtype)
    if backend == "torch-small-tiles":  # the tiled backend with small tiles and chunks: many segments
        out = tiled.render_backend(g, cams, 3, background.expand(2, 3), tile=4, chunk=64)
    elif backend == "numba-small-tiles":  # Gaussians spread over many tiles, lists of all lengths
        out = compiled.render_backend(g, cams, 3, background.expand(2, 3), tile=3)
    elif backend == "cpp-32px-tiles":  # the C++ kernels' other tile size (chosen for images from 128 px)
        with mock.patch.object(cpp_backend, "tile_size", lambda width, height: 32):
            out = cpp_backend.render_backend(g, cams, g.sh_degree, background.expand(2, 3))
    else:
        out = render(g.to(kw.get("device", "cpu")), cams.to(kw.get("device", "cpu")), backend=backend,
                     background=background.to(kw.get("device", "cpu")))
    loss = sum((getattr(out, k).cpu() * cotangents[k]).sum() for k in ("rgb", "depth", "alpha"))
    loss.backward()
    grads = {k: getattr(g, k).grad for k in ("means", "quats", "log_scales", "opacity_logits", "sh")}
    grads["means2d"] = out.means2d.grad.cpu()
    return out, grads


@pytest.mark.parametrize("backend", ["torch", "torch-small-tiles", "numba", "numba-small-tiles", "cpp",
                                     "cpp-32px-tiles", pytest.param("gsplat", marks=pytest.mark.cuda)])
def test_fast_backend_matches_reference_forward_and_backward(backend):
    # gsplat clamps alpha at 0.999 and culls with integer radii: keep opacities low enough for both
    # to be irrelevant there; the torch backends are compared on the more opaque scene.
    g = random_scene(max_opacity_logit=-0.7 if backend == "gsplat" else None)
    cams = two_cameras()
    ref, ref_grads = None, None
    cot = {"rgb": torch.randn(2, 29, 37, 3), "depth": torch.randn(2, 29, 37) * 0.1, "alpha": torch.randn(2, 29, 37)}
    ref, ref_grads = render_with_grads(g, cams, cot, "torch_ref")
    assert 0.3 < float(ref.alpha.detach().mean()) < 0.999  # a scene with both gaps and saturated pixels
    out, grads = render_with_grads(g, cams, cot, backend, device="cuda" if backend == "gsplat" else "cpu")
    for k in ("rgb", "depth", "alpha"):
        torch.testing.assert_close(getattr(out, k).cpu(), getattr(ref, k), atol=1e-4, rtol=0)
    if backend == "gsplat":  # its radii come from its own float32 projection: allow rounding flips
        assert ((out.radii.cpu() - ref.radii).abs() <= 1).float().mean() > 0.95
    else:
        assert torch.equal(out.radii, ref.radii)
    for k, v in ref_grads.items():
        scale = float(v.abs().max())
        torch.testing.assert_close(grads[k].cpu(), v, atol=1e-4 * max(1.0, scale), rtol=1e-3, msg=k)


def test_reference_gradcheck_float64():
    g = random_scene(n=4, degree=1, dtype=torch.float64, seed=3)
    g = Gaussians(g.means * 0.2, g.quats, g.log_scales * 0.3 + 0.3, g.opacity_logits, g.sh)  # big, overlapping
    cams = two_cameras(torch.float64, width=6, height=5)[:1]
    bg = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)

    def f(means, quats, log_scales, logits, sh):
        out = render_ref(Gaussians(means, quats, log_scales, logits, sh), cams, 1, bg)
        return out.rgb, out.depth, out.alpha

    inputs = tuple(t.clone().requires_grad_() for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh))
    assert render_ref(g, cams, 1, bg).alpha.min() > 0.05  # every pixel sees the Gaussians
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, fast_mode=True)


def test_tiled_rasterizer_gradcheck_float64():
    g = random_scene(n=6, degree=0, dtype=torch.float64, seed=5)
    g = Gaussians(g.means * 0.3, g.quats, g.log_scales + 1.0, g.opacity_logits, g.sh)
    cams = two_cameras(torch.float64, width=9, height=7)[:1]
    from vdm3d.splat.projection import project_gaussians

    p = project_gaussians(g, cams, 0)
    binning = tiled.bin_gaussians(p.means2d[0], p.conics[0], p.opacities[0], p.extents[0], p.depths[0], p.visible[0],
                                   9, 7, tile=4, chunk=48)
    assert len(binning.groups) > 1 and any(g.gauss.shape[1] > g.seg for g in binning.groups)  # segments
    inputs = tuple(t.detach()[0].clone().requires_grad_() for t in (p.means2d, p.conics, p.opacities, p.colors, p.depths))
    f = lambda *x: tiled.RasterizeTiles.apply(*x, binning)  # noqa: E731
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, fast_mode=True)


def test_single_gaussian_matches_closed_form():
    # An isotropic Gaussian of std s at depth z on the optical axis projects to a 2D Gaussian of
    # variance (f s / z)^2 + 0.3 px^2 centered on the principal point.
    f_px, z, s, o = 20.0, 2.0, 0.1, 0.6
    g = Gaussians.from_points(torch.tensor([[0.0, 0.0, z]]), torch.tensor([[0.25, 0.5, 0.75]]),
                              scales=torch.tensor([s]), opacity=o, sh_degree=2)
    K = torch.tensor([[f_px, 0, 10.0], [0, f_px, 8.0], [0, 0, 1]])
    cam = Cameras(K, torch.eye(4), 20, 16)
    for backend in ("torch_ref", "torch", "numba", "cpp"):
        out = render(g, cam, backend=backend, background=torch.ones(3))
        uv = cam.pixel_grid()
        var = (f_px * s / z) ** 2 + 0.3
        d2 = ((uv - torch.tensor([10.0, 8.0])) ** 2).sum(-1)
        alpha = o * torch.exp(-0.5 * d2 / var)
        alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
        torch.testing.assert_close(out.alpha[0], alpha, atol=1e-6, rtol=1e-5)
        expect_rgb = alpha[..., None] * torch.tensor([0.25, 0.5, 0.75]) + (1 - alpha[..., None])
        torch.testing.assert_close(out.rgb[0], expect_rgb, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.depth[0], torch.where(alpha > 0, torch.full_like(alpha, z), torch.zeros_like(alpha)))
        assert int(out.radii[0, 0]) == math.ceil(math.sqrt(2 * math.log(255 * o)) * math.sqrt(var))


def test_opaque_stack_stops_at_transmittance_floor():
    # Three Gaussians on the axis with alphas 0.99 (clamped from 0.999), 0.9, 0.99 at the center
    # pixel: T goes 1 -> 0.01 -> 0.001, and the third would take it to 1e-5 < 1e-4, so 3DGS stops
    # there and does not blend it (without the rule, blue would get 0.001 * 0.99).
    means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    g = Gaussians.from_points(means, colors, scales=torch.tensor([1.0, 2.0, 3.0]), sh_degree=0)
    g = Gaussians(g.means, g.quats, g.log_scales, torch.logit(torch.tensor([0.999, 0.9, 0.999])), g.sh)
    cam = Cameras(torch.tensor([[4.0, 0, 2.5], [0, 4.0, 2.5], [0, 0, 1]]), torch.eye(4), 5, 5)
    for backend in ("torch_ref", "torch", "numba", "cpp"):
        out = render(g, cam, backend=backend)
        torch.testing.assert_close(out.rgb[0, 2, 2], torch.tensor([0.99, 0.009, 0.0]), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.alpha[0, 2, 2], torch.tensor(0.999), atol=1e-5, rtol=0)


def test_culling_batching_and_means2d_grad():
    g = random_scene(n=30)
    behind = Gaussians.from_points(torch.tensor([[0.0, 0.0, -4.0]]), torch.ones(1, 3), sh_degree=3)
    g = Gaussians.cat([g, behind]).requires_grad_()
    cams = two_cameras()
    out = render(g, cams)  # auto -> torch on the CPU
    assert out.rgb.shape == (2, 29, 37, 3) and out.means2d.shape == (2, 31, 2)
    assert (out.radii[:, -1] == 0).all() and (out.radii[:, :-1] > 0).any()
    out.rgb.sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad[:, -1].abs().max() == 0
    single = render(g.detach(), cams[0])  # an unbatched camera still gives [1, ...]
    torch.testing.assert_close(single.rgb[0], out.rgb[0].detach())
    empty = render(g.detach(), cams[1], background=torch.tensor([0.1, 0.2, 0.3]), backend="torch_ref")
    far = empty.alpha[0] == 0
    assert far.any() and torch.equal(empty.rgb[0][far], torch.tensor([0.1, 0.2, 0.3]).expand(int(far.sum()), 3))


def test_bad_options_raise_clear_errors():
    g, cams = random_scene(n=3, degree=1), two_cameras()
    with pytest.raises(ConfigError, match="sh_degree"):
        render(g, cams, sh_degree=2)
    with pytest.raises((ConfigError, TypeError), match="backend"):  # jaxtyping may object first in tests
        render(g, cams, backend="opengl")  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_gsplat_backend_without_cuda_fails_clearly():
    g, cams = random_scene(n=3, degree=1), two_cameras()
    with pytest.raises(Vdm3dError, match="backend 'gsplat'.*backend='torch'"):
        render(g, cams, backend="gsplat")


@pytest.mark.parametrize("backend", ["torch_ref", "torch", "numba", "cpp"])
def test_empty_scene_shows_the_background(backend):
    g = Gaussians(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 1, 3))
    out = render(g, Cameras.from_fov(60.0, 8, 6, torch.eye(4)), backend=backend, background=torch.tensor([1.0, 0.5, 0.0]))
    assert torch.equal(out.rgb, torch.tensor([1.0, 0.5, 0.0]).expand(1, 6, 8, 3))
    assert out.alpha.abs().max() == 0 and out.depth.abs().max() == 0 and out.radii.shape == (1, 0)


@pytest.mark.parametrize("backend", ["torch", "numba", "cpp", "cpp-32px-tiles"])
def test_behind_border_and_larger_than_image_match_reference(backend):
    # One Gaussian behind the camera, one straddling the left border, one centered just off the
    # bottom edge, one far larger than the image (its box is clipped, every pixel evaluates it), and
    # one centered far outside the frustum (its Jacobian is clamped) that still reaches in, a thin
    # diagonal needle, and a few ordinary ones so the large one is blended over others.
    cam = Cameras.from_fov(60.0, 24, 18, torch.eye(4))
    means = torch.tensor([[0.0, 0.0, -1.0], [-0.62, 0.1, 1.5], [0.2, 0.52, 1.5], [0.05, -0.05, 3.0],
                          [1.2, 0.0, 1.0], [0.1, 0.1, 2.0], [-0.2, 0.0, 2.2], [0.0, 0.2, 4.0], [0.0, 0.0, 1.8]])
    scales = torch.tensor([0.3, 0.15, 0.12, 4.0, 0.5, 0.1, 0.2, 0.3, 1.0])
    gen = torch.Generator().manual_seed(7)
    g = Gaussians.from_points(means, torch.rand(9, 3, generator=gen), scales=scales, opacity=0.6, sh_degree=1)
    log_scales = g.log_scales + 0.3 * torch.randn(9, 3, generator=gen)
    log_scales[8] = torch.tensor([0.0, -6.0, -6.0])  # a needle along a diagonal: its box corners lie far
    quats = torch.randn(9, 4, generator=gen)           # outside it (the per-pixel exp fallback)
    quats[8] = torch.tensor([0.924, 0.0, 0.0, -0.383])  # -45 degrees about the optical axis
    g = Gaussians(g.means, quats, log_scales, g.opacity_logits, g.sh + 0.1 * torch.randn(g.sh.shape, generator=gen))
    cams = Cameras(cam.Ks.expand(2, 3, 3), torch.stack([cam.c2w, cam.c2w]), 24, 18)
    cot = {"rgb": torch.randn(2, 18, 24, 3, generator=gen), "depth": 0.1 * torch.randn(2, 18, 24, generator=gen),
           "alpha": torch.randn(2, 18, 24, generator=gen)}
    ref, ref_grads = render_with_grads(g, cams, cot, "torch_ref")
    assert ref.radii[0, 0] == 0 and (ref.radii[0, 1:] > 0).all()  # behind: culled; the rest: drawn
    assert float(ref.alpha.detach().min()) > 0.3  # the large one covers every pixel
    out, grads = render_with_grads(g, cams, cot, backend)
    for k in ("rgb", "depth", "alpha"):
        torch.testing.assert_close(getattr(out, k), getattr(ref, k), atol=1e-4, rtol=0)
    assert torch.equal(out.radii, ref.radii)
    assert grads["means"][0].abs().max() == 0 and grads["means"][1:].abs().max() > 0
    for k, v in ref_grads.items():
        scale = float(v.abs().max())
        torch.testing.assert_close(grads[k], v, atol=1e-4 * max(1.0, scale), rtol=1e-3, msg=k)


@pytest.mark.parametrize("compiled_projection", ["numba", "cpp"])
def test_compiled_projection_matches_torch_projection(compiled_projection):
    from vdm3d.splat.backends.cpp import project_gaussians_cpp
    from vdm3d.splat.backends.numba_projection import project_gaussians_numba
    from vdm3d.splat.projection import project_gaussians

    g = random_scene(n=60, degree=3, seed=4)
    behind = Gaussians.from_points(torch.tensor([[0.3, -0.6, -2.5], [0.0, 0.0, -4.0]]), torch.ones(2, 3), sh_degree=3)
    g = Gaussians.cat([g, behind])  # one at the first camera's centre, one behind both cameras
    cams = two_cameras()
    gen = torch.Generator().manual_seed(5)
    results = []
    fast = {"numba": project_gaussians_numba, "cpp": project_gaussians_cpp}[compiled_projection]
    for project in (project_gaussians, fast):
        h = g.clone().requires_grad_()
        p = project(h, cams, 2)  # a lower degree than the Gaussians carry: the rest get no gradient
        gen.manual_seed(5)
        loss = sum((getattr(p, k) * torch.randn(getattr(p, k).shape, generator=gen)).sum()
                   for k in ("means2d", "conics", "depths", "opacities", "colors"))
        loss.backward()
        results.append((p, {k: getattr(h, k).grad for k in ("means", "quats", "log_scales", "opacity_logits", "sh")}))
    (p_ref, g_ref), (p_fast, g_fast) = results
    for k in ("means2d", "conics", "depths", "opacities", "colors", "extents"):
        torch.testing.assert_close(getattr(p_fast, k).detach(), getattr(p_ref, k).detach(), atol=1e-4, rtol=1e-5, msg=k)
    assert torch.equal(p_fast.visible, p_ref.visible) and torch.equal(p_fast.radii, p_ref.radii)
    assert g_fast["sh"][:, 9:].abs().max() == 0 and g_fast["sh"][:, :9].abs().max() > 0
    for k, v in g_ref.items():
        torch.testing.assert_close(g_fast[k], v, atol=1e-4 * max(1.0, float(v.abs().max())), rtol=1e-3, msg=k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_depth_order_is_torch_stable_sort(dtype):
    # The compiled binning orders the visible Gaussians by a radix sort on the depths' bit patterns;
    # it must give torch's stable argsort, ties in index order (the order torch_ref blends in).
    gen = torch.Generator().manual_seed(11)
    depths = torch.rand(3000, generator=gen, dtype=dtype) * 50 + 0.01
    depths[::7] = depths[3]  # many exact ties
    depths[1::11] = 0.01  # the near plane itself
    visible = torch.rand(3000, generator=gen) < 0.6
    vis = visible.nonzero().squeeze(1)
    expected = vis[torch.argsort(depths[vis], stable=True)]
    bits = depths.numpy().view("u4" if dtype == torch.float32 else "u8")
    order = compiled._depth_order(bits, visible.numpy())
    assert torch.equal(torch.from_numpy(order), expected)
    assert compiled._depth_order(bits, torch.zeros(3000, dtype=torch.bool).numpy()).shape == (0,)


def test_cpp_binning_matches_numba():
    # The C++ binning must give numba's tile lists exactly: the same stable front-to-back order (many exact
    # depth ties), the same boxes, with Gaussians off the image, on its border and larger than it.
    import numpy as np

    from vdm3d.splat.backends import cpp

    module = cpp._load()
    if module is None:
        pytest.skip(f"the C++ kernels cannot be built here: {cpp.available()[1]}")
    gen = torch.Generator().manual_seed(12)
    n, width, height = 3000, 61, 47
    means2d = torch.rand(n, 2, generator=gen) * torch.tensor([width + 40.0, height + 40.0]) - 20.0
    extents = torch.rand(n, 2, generator=gen) * 6.0
    extents[::97] = 500.0  # larger than the image
    depths = torch.rand(n, generator=gen) * 50 + 0.01
    depths[::7] = depths[3]
    visible = torch.rand(n, generator=gen) < 0.6
    arrays = [t.contiguous().numpy() for t in (means2d, extents, depths, visible)]
    for tile in (16, 32):
        bins = module.bin(*cpp._ptrs(*map(torch.from_numpy, arrays)), n, width, height, tile)
        ref = compiled.bin_gaussians(*arrays, width, height, tile)
        offsets, gauss = np.frombuffer(bins.offsets, np.int64), np.frombuffer(bins.gauss, np.int32)
        assert np.array_equal(offsets, ref.offsets) and np.array_equal(gauss, ref.gauss) and len(gauss) > n // 4
        listed = np.unique(ref.gauss)
        assert np.array_equal(np.frombuffer(bins.boxes, np.int32).reshape(n, 4)[listed], ref.boxes[listed])
    with pytest.raises(ValueError, match="16 or 32"):
        module.bin(*cpp._ptrs(*map(torch.from_numpy, arrays)), n, width, height, 8)


def test_cpp_projection_backward_refuses_degree_3_without_16_coefficients():
    # The C++ module has no degree-3 backward for another coefficient count (Gaussians hold 1, 4, 9 or 16 and
    # render at most their degree, so it had no caller, and it cost every first build 8-9 CPU-s): a direct
    # call with one is refused, rather than read with the wrong stride; degree 2 of 16 coefficients works.
    from vdm3d.splat.backends import cpp

    module = cpp._load()
    if module is None:
        pytest.skip(f"the C++ kernels cannot be built here: {cpp.available()[1]}")
    n = 5
    cams = torch.from_numpy(cpp._camera_table(two_cameras()[:1]))

    def call(degree, K):
        inputs = [torch.randn(n, 3), torch.randn(n, 4), torch.rand(n, 3), torch.rand(n), torch.randn(n, K, 3), cams]
        cotangents = [torch.ones(1, n, dtype=torch.bool), torch.randn(1, n, 2), torch.randn(1, n, 3),
                      torch.randn(1, n), torch.randn(1, n), torch.randn(1, n, 3)]
        grads = [torch.empty(n, 3), torch.empty(n, 4), torch.empty(n, 3), torch.empty(n), torch.empty(n, K, 3)]
        module.project_backward(1, n, K, degree, *cpp._ptrs(*inputs), 37, 29, 0.01, 0.3,
                                *cpp._ptrs(*cotangents, *grads))
        return grads

    with pytest.raises(ValueError, match="SH degree 3 needs K = 16 coefficients"):
        call(3, 25)
    assert torch.isfinite(call(2, 16)[4]).all()


def test_cpp_falls_back_to_numba_for_float64_and_without_a_compiler(monkeypatch):
    # Float64 Gaussians, and a machine where the C++ kernels cannot be built, get the numba backend's
    # images and gradients exactly (the same code runs).
    from vdm3d.splat.backends import cpp

    cams = two_cameras(torch.float64)
    cot = {"rgb": torch.randn(2, 29, 37, 3, dtype=torch.float64), "depth": torch.randn(2, 29, 37, dtype=torch.float64),
           "alpha": torch.randn(2, 29, 37, dtype=torch.float64)}
    g = random_scene(n=40, dtype=torch.float64)
    for scene, cameras, cotangents in ((g, cams, cot), (g.to(torch.float32), two_cameras(),
                                                         {k: v.float() for k, v in cot.items()})):
        if scene.dtype == torch.float32:
            monkeypatch.setattr(cpp, "_state", {"module": None, "reason": "no compiler (test)"})
            assert cpp.available() == (False, "no compiler (test)")
        out, grads = render_with_grads(scene, cameras, cotangents, "cpp")
        ref, ref_grads = render_with_grads(scene, cameras, cotangents, "numba")
        for k in ("rgb", "depth", "alpha"):
            assert torch.equal(getattr(out, k), getattr(ref, k)), k
        for k, v in ref_grads.items():
            assert torch.equal(grads[k], v), k


@pytest.mark.parametrize("size", [(61, 47), (130, 128)])  # 16- and 32-pixel tiles
def test_cpp_threads_give_the_same_result(size):
    # Tiles run in parallel, and each (tile, Gaussian) pair has its own gradient slot added up in pair
    # order afterwards: the result does not depend on the thread count.
    (width, height), g = size, random_scene(n=200)
    cams = two_cameras(width=width, height=height)
    cot = {"rgb": torch.randn(2, height, width, 3), "depth": torch.randn(2, height, width),
           "alpha": torch.randn(2, height, width)}
    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(render_with_grads(g, cams, cot, "cpp"))
    finally:
        torch.set_num_threads(before)
    (a, ga), (b, gb) = results
    for k in ("rgb", "depth", "alpha"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    for k in ga:
        assert torch.equal(ga[k], gb[k]), k


def test_cpp_gradient_arrays_are_reused_only_once_released():
    # The C++ backend hands a gradient array out again (warm pages instead of fresh ones) only when nothing
    # refers to it any more: gradients a caller still holds are never overwritten by a later pass, and what
    # a reused array held before (another pass's gradients) does not show in the next ones.
    g, cams = random_scene(n=200), two_cameras()
    cot = {"rgb": torch.randn(2, 29, 37, 3), "depth": torch.randn(2, 29, 37), "alpha": torch.randn(2, 29, 37)}
    _, first = render_with_grads(g, cams, cot, "cpp")
    kept = {k: v.clone() for k, v in first.items()}
    out, second = render_with_grads(g, cams, {k: -3.0 * v for k, v in cot.items()}, "cpp")
    for k in kept:
        assert first[k].data_ptr() != second[k].data_ptr(), k
        assert torch.equal(first[k], kept[k]) and not torch.equal(second[k], kept[k]), k
    addresses = {k: second[k].data_ptr() for k in ("means", "quats", "log_scales", "opacity_logits", "sh")}
    del out, second  # the render's graph holds the Gaussians, which hold their .grad
    _, third = render_with_grads(g, cams, cot, "cpp")
    for k, address in addresses.items():
        assert third[k].data_ptr() == address, k
        assert torch.equal(third[k], kept[k]), k


def test_cpp_render_leaves_no_reference_cycle():
    # The C++ backend's autograd nodes keep arrays, never their own output tensors: a render's tensors are
    # freed as soon as the caller drops them, without waiting for the garbage collector.
    import gc
    import weakref

    g = random_scene(n=50).requires_grad_()
    gc.disable()
    try:
        out = render(g, two_cameras(), backend="cpp")
        (out.rgb.sum() + out.depth.sum() + out.alpha.sum()).backward()
        refs = [weakref.ref(t) for t in (out.rgb, out.depth, out.alpha, out.means2d, out.radii)]
        del out
        assert [r() is None for r in refs] == [True] * len(refs)
    finally:
        gc.enable()


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # the infinite scale
def test_cpp_unseen_degenerate_gaussian_gets_zero_gradients():
    # A Gaussian no camera sees gets exact zeros, even with a zero quaternion and an infinite scale (whose
    # chain rule alone would give 0 / 0 and 0 * inf); the seen ones keep finite, non-zero gradients. (numba's
    # projection raises ZeroDivisionError on the zero quaternion instead.)
    g = random_scene(n=30)
    means, quats, log_scales = g.means.clone(), g.quats.clone(), g.log_scales.clone()
    means[0] = torch.tensor([0.0, 0.0, 40.0])  # behind both cameras (they look at the origin from z < 0)
    quats[0], log_scales[0] = 0.0, torch.tensor([100.0, 0.0, 0.0])
    g = Gaussians(means, quats, log_scales, g.opacity_logits, g.sh)
    cot = {"rgb": torch.randn(2, 29, 37, 3), "depth": torch.randn(2, 29, 37), "alpha": torch.randn(2, 29, 37)}
    out, grads = render_with_grads(g, two_cameras(), cot, "cpp")
    assert (out.radii[:, 0] == 0).all()
    for k in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(grads[k][0], torch.zeros_like(grads[k][0])), k
        assert torch.isfinite(grads[k]).all() and grads[k][1:].abs().max() > 0, k
