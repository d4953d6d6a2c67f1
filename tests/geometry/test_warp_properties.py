"""Property tests (hypothesis) of forward warping and depth flow against exact truths: warping a view into its
own camera gives it back (any pose, intrinsics, supersampling, holes), and a fronto-parallel plane seen from a
camera moved sideways by a whole number of pixels' worth (``t = k z / f``) shifts by exactly ``k`` pixels, in
the forward warp, in the flow from depth, and back through the backward warp."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vdm3d.cameras.camera import Cameras, intrinsics
from vdm3d.cameras.rotations import matrix_from_quat
from vdm3d.geometry.flow import flow_from_depth, warp_backward
from vdm3d.geometry.warp import forward_warp
from vdm3d.views import Views

D = torch.float64


def camera(seed: int, width: int, height: int, rotate: bool) -> Cameras:
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=D)
    if rotate:
        c2w[:3, :3] = matrix_from_quat(torch.randn(4, generator=g, dtype=D))
        c2w[:3, 3] = torch.randn(3, generator=g, dtype=D) * 100
    f = 5 + float(torch.rand((), generator=g, dtype=D)) * 60
    fy = f * (0.7 + 0.6 * float(torch.rand((), generator=g)))
    K = intrinsics(torch.tensor(f, dtype=D), torch.tensor(fy, dtype=D), torch.rand((), generator=g, dtype=D) * width,
                   torch.rand((), generator=g, dtype=D) * height)
    return Cameras(K[None], c2w[None], width, height)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), w=st.integers(1, 24), h=st.integers(1, 24), s=st.integers(1, 4),
       rotate=st.booleans())
def test_warping_a_view_into_its_own_camera_gives_it_back(seed, w, h, s, rotate):
    g = torch.Generator().manual_seed(seed)
    cam = camera(seed, w, h, rotate)
    depth = 0.1 + torch.rand(1, h, w, generator=g, dtype=D) * 50
    holes = torch.rand(1, h, w, generator=g) < 0.2
    depth[holes] = torch.where(torch.rand(int(holes.sum()), generator=g) < 0.5, 0.0, float("inf")).to(D)
    rgb = torch.rand(1, h, w, 3, generator=g, dtype=D)
    out = forward_warp(Views(rgb, cam, depths=depth), cam, supersample=s)
    surface = ~holes[0]
    assert torch.equal(out.confidence[0] > 0, surface)
    assert torch.equal(out.images[0][surface], rgb[0][surface]) and not out.images[0][~surface].any()
    torch.testing.assert_close(out.depths[0][surface], depth[0][surface], atol=0, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(w=st.integers(4, 24), h=st.integers(4, 24), f=st.floats(2.0, 80.0), z=st.floats(0.1, 100.0),
       kx=st.integers(-3, 3), ky=st.integers(-3, 3), s=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_a_plane_shifts_by_whole_pixels_in_the_forward_warp_the_flow_and_back(w, h, f, z, kx, ky, s, seed):
    g = torch.Generator().manual_seed(seed)
    K = intrinsics(torch.tensor(f, dtype=D), torch.tensor(f, dtype=D), torch.tensor(w / 2, dtype=D),
                   torch.tensor(h / 2, dtype=D))[None]
    a = Cameras(K, torch.eye(4, dtype=D)[None], w, h)
    c2w = torch.eye(4, dtype=D)
    c2w[0, 3], c2w[1, 3] = kx * z / f, ky * z / f  # the camera moves right/down: the image moves left/up
    b = Cameras(K, c2w[None], w, h)
    rgb = torch.rand(1, h, w, 3, generator=g, dtype=D)
    depth = torch.full((1, h, w), z, dtype=D)
    out = forward_warp(Views(rgb, a, depths=depth), b, supersample=s)
    ys, xs = slice(max(0, -ky), h - max(0, ky)), slice(max(0, -kx), w - max(0, kx))  # B's pixels that A sees
    yt, xt = slice(max(0, ky), h - max(0, -ky)), slice(max(0, kx), w - max(0, -kx))  # the same in A
    expect = torch.zeros(h, w, dtype=torch.bool)
    expect[ys, xs] = True
    assert torch.equal(out.confidence[0] > 0, expect)
    assert torch.equal(out.images[0, ys, xs], rgb[0, yt, xt])
    torch.testing.assert_close(out.depths[0][expect], torch.full((int(expect.sum()),), z, dtype=D), atol=0,
                               rtol=1e-12)
    flow, valid = flow_from_depth(depth[0], a, b, out.depths[0])
    torch.testing.assert_close(flow, torch.tensor([-kx, -ky], dtype=D).expand(h, w, 2), atol=1e-9, rtol=0)
    seen = torch.zeros(h, w, dtype=torch.bool)
    seen[yt, xt] = True  # A's pixels that land inside B (and B sees them: same depth)
    assert torch.equal(valid, seen)
    back = warp_backward(out.images[0], flow)  # B's warped image looked up along the flow: A's image
    torch.testing.assert_close(back[seen], rgb[0][seen], atol=1e-12, rtol=0)
