"""The public constructors as a Python caller meets them (QA findings A4, B3): numpy arrays are taken as tensors
with the same result, uint8 is scaled, and a float colour or image on the 0..255 scale, a single image or a
channels-first batch is refused in one sentence that names the field and the fix (instead of a silently wrong
render or a raw torch error far from the call)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.errors import CameraError, InputError
from vdm3d.splat.gaussians import Gaussians
from vdm3d.views import Views


@pytest.fixture
def as_user():
    """Without the tests' runtime type checking (a user's process has none), so a call with the wrong layout
    reaches vdm3d's own sentence; the type checker refuses it first otherwise, also clearly."""
    import jaxtyping

    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", before)


def _points_colors(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g) * 0.5, torch.rand(n, 3, generator=g)


def _same_gaussians(a: Gaussians, b: Gaussians):
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def _cameras(n=2, size=16) -> Cameras:
    c2w = look_at(torch.tensor([[0.0, -3.0, 0.5]] * n), torch.zeros(n, 3), torch.tensor([[0.0, 0.0, 1.0]] * n))
    return Cameras.from_fov(50.0, size, size, c2w)


# -- Gaussians.from_points --------------------------------------------------------------------------------------

def test_from_points_takes_numpy_arrays():
    pts, col = _points_colors()
    ref = Gaussians.from_points(pts, col, opacity=0.3, sh_degree=1)
    _same_gaussians(ref, Gaussians.from_points(pts.numpy(), col.numpy(), opacity=0.3, sh_degree=1))
    _same_gaussians(ref, Gaussians.from_points(pts.numpy(), col, opacity=0.3, sh_degree=1))


def test_from_points_uint8_colours_are_scaled_as_before():
    pts, col = _points_colors()
    u8 = (col * 255).round().to(torch.uint8)
    g = Gaussians.from_points(pts.double(), u8.numpy(), sh_degree=0)
    # the division happens in the points' dtype, as it always did
    _same_gaussians(g, Gaussians.from_points(pts.double(), u8.double() / 255.0, sh_degree=0))


def test_from_points_refuses_float_colours_on_the_255_scale():
    pts, col = _points_colors()
    with pytest.raises(InputError) as e:
        Gaussians.from_points(pts, col * 255)
    hi = float((col * 255).max())
    lo = float((col * 255).min())
    assert str(e.value) == (f"Gaussians.from_points: colors must be floats in [0, 1], got values in "
                            f"[{lo:.4g}, {hi:.4g}]; divide by 255 (or pass uint8).")
    with pytest.raises(InputError, match=r"^Gaussians.from_points: colors must be floats in \[0, 1\], got values "
                                         r"in \[-0.5, 0.5\]; rescale them \(or pass uint8\)\.$"):
        Gaussians.from_points(pts[:2], torch.tensor([[-0.5, 0.0, 0.0], [0.5, 0.5, 0.5]]))
    with pytest.raises(InputError, match=r"^Gaussians.from_points: colors are int64; pass floats in \[0, 1\] or "
                                         r"uint8 in 0..255\.$"):
        Gaussians.from_points(pts, (col * 255).long())
    Gaussians.from_points(pts[:1], torch.tensor([[1.0 + 1e-6, 0.0, -1e-6]]))  # rounding slack is fine


def test_from_points_refuses_other_types_in_one_sentence(as_user):
    _, col = _points_colors(2)
    with pytest.raises(InputError, match=r"^Gaussians.from_points: points must be a torch tensor or numpy array "
                                         r"\[N, 3\], got list\.$"):
        Gaussians.from_points([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]], col)


# -- Cameras ------------------------------------------------------------------------------------------------------

def _same_cameras(a: Cameras, b: Cameras):
    assert torch.equal(a.Ks, b.Ks) and torch.equal(a.c2w, b.c2w) and a.Ks.dtype == b.Ks.dtype
    assert (a.width, a.height) == (b.width, b.height)


def test_cameras_take_numpy_arrays_and_render_the_same():
    from vdm3d.splat.render import render

    ref = _cameras()
    _same_cameras(ref, Cameras(ref.Ks.numpy(), ref.c2w.numpy(), 16, 16))
    _same_cameras(ref, Cameras(ref.Ks.numpy(), ref.c2w, 16, 16))
    _same_cameras(ref, Cameras(ref.Ks, ref.c2w.numpy(), 16, 16))
    # float64 arrays beside a float32 tensor take the tensor's dtype; two float64 arrays stay float64
    _same_cameras(ref, Cameras(ref.Ks.double().numpy(), ref.c2w, 16, 16))
    both64 = Cameras(ref.Ks.double().numpy(), ref.c2w.double().numpy(), 16, 16)
    assert both64.Ks.dtype == both64.c2w.dtype == torch.float64
    single = Cameras(np.array([[20, 0, 8], [0, 20, 8], [0, 0, 1]]), np.eye(4, dtype=np.int64), 16, 16)
    assert single.Ks.dtype == single.c2w.dtype == torch.float32 and single.Ks[0, 0] == 20.0

    pts, col = _points_colors()
    g = Gaussians.from_points(pts, col, sh_degree=0)
    cams = Cameras(ref.Ks.numpy(), ref.c2w.numpy(), 16, 16)
    assert torch.equal(render(g, cams, backend="torch").rgb, render(g, ref, backend="torch").rgb)


def test_cameras_refuse_what_is_not_numbers(as_user):
    with pytest.raises(CameraError, match=r"^Cameras: Ks must be a tensor or an array of numbers, got str\.$"):
        Cameras("K", torch.eye(4), 16, 16)


# -- Views ------------------------------------------------------------------------------------------------------

def test_views_take_numpy_and_uint8_images():
    cams = _cameras()
    images = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    v = Views(images.numpy(), cams, depths=np.ones((2, 16, 16), np.float32))
    assert torch.is_tensor(v.images) and torch.equal(v.images, images) and torch.is_tensor(v.depths)
    u8 = (images * 255).round().to(torch.uint8)
    v8 = Views(u8.numpy(), cams)
    assert v8.images.dtype == torch.float32 and torch.equal(v8.images, u8.float() / 255.0)
    assert torch.equal(v[1].images, images[1:])  # indexing, cat and to still go through the same checks
    assert torch.equal(Views.cat([v, v]).images, torch.cat([images, images]))
    assert v.to(dtype=torch.float64).images.dtype == torch.float64


def test_views_refuse_images_on_another_scale_or_layout(as_user):
    cams = _cameras()
    images = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    lo, hi = (float(x) for x in torch.aminmax(images * 255))
    with pytest.raises(InputError) as e:
        Views(images * 255, cams)
    assert str(e.value) == (f"Views: images must be floats in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                            "divide by 255 (or pass uint8).")
    with pytest.raises(InputError) as e:
        Views(images.permute(0, 3, 1, 2), cams)
    assert str(e.value) == ("Views: images must be [N, H, W, 3], got [2, 3, 16, 16] "
                            "(channels first: pass images.permute(0, 2, 3, 1)).")
    with pytest.raises(InputError) as e:
        Views(images[0], cams[:1])
    assert str(e.value) == "Views: images must be [N, H, W, 3], got [16, 16, 3] (one image: pass images[None])."
    with pytest.raises(InputError) as e:
        Views(images, cams.Ks)
    assert str(e.value) == "Views: cameras must be Cameras, got Tensor."
    with pytest.raises(InputError) as e:  # dataclasses.replace checks too
        dataclasses.replace(Views(images, cams), images=images * 2)
    assert str(e.value).startswith("Views: images must be floats in [0, 1], got values in [")


# -- relative_depth -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_depth():
    from vdm3d.models.registry import load_depth

    return load_depth("tiny-depth")


def test_relative_depth_converts_uint8_float64_and_numpy(tiny_depth):
    from vdm3d.models.depth import relative_depth

    u8 = torch.randint(0, 256, (2, 32, 32, 3), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    images = u8.float() / 255.0
    ref = relative_depth(tiny_depth, images)
    assert ref.dtype == torch.float32 and torch.allclose(ref.flatten(1).median(1).values, torch.ones(2))
    assert torch.equal(relative_depth(tiny_depth, u8), ref)
    assert torch.equal(relative_depth(tiny_depth, u8.numpy()), ref)
    d64 = relative_depth(tiny_depth, images.double())
    assert d64.dtype == torch.float64 and torch.equal(d64, ref.double())


def test_relative_depth_refuses_other_layouts_in_one_sentence(tiny_depth, as_user):
    from vdm3d.models.depth import relative_depth

    images = torch.rand(2, 32, 32, 3)
    cases = {
        "one image": (images[0], "got [32, 32, 3] (one image: pass images[None])."),
        "channels first": (images.permute(0, 3, 1, 2), "got [2, 3, 32, 32] (channels first: pass "
                                                        "images.permute(0, 2, 3, 1))."),
        "one channels-first image": (images[0].permute(2, 0, 1), "got [3, 32, 32] (one channels-first image: "
                                                                 "pass images.permute(1, 2, 0)[None])."),
    }
    for label, (bad, tail) in cases.items():
        with pytest.raises(InputError) as e:
            relative_depth(tiny_depth, bad)
        assert str(e.value) == f"relative_depth: images must be [N, H, W, 3], {tail}", label
    with pytest.raises(InputError, match=r"^relative_depth: images must be floats in \[0, 1\], got values in "):
        relative_depth(tiny_depth, images * 255)


# -- fit_gaussians ------------------------------------------------------------------------------------------------

def test_fit_float64_views_of_float32_gaussians_fit_as_float32():
    """Float64 views (images and cameras) of float32 Gaussians used to stop with a torch dtype clash; they are
    fitted in the Gaussians' dtype, the same numbers as float32 views."""
    from vdm3d.recon.render import render_views
    from vdm3d.recon.trainer import FitConfig, fit_gaussians

    cams = _cameras(3, size=16)
    pts, col = _points_colors(40, seed=4)
    truth = Gaussians.from_points(pts, col, scales=torch.full((40,), 0.15), opacity=0.8, sh_degree=0)
    train = render_views(truth, cams, backend="torch")
    init = Gaussians.from_points(pts + 0.05, torch.full((40, 3), 0.5), scales=torch.full((40,), 0.1), sh_degree=0)
    config = FitConfig(steps=4, sh_degree=0, backend="torch")
    ref = fit_gaussians(Views(train.images, cams), init, config)
    got = fit_gaussians(Views(train.images.double(), cams.to(dtype=torch.float64)), init, config)
    assert got.dtype == torch.float32
    _same_gaussians(ref, got)
