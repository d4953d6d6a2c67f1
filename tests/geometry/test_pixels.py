"""pixel_hits / PixelHits.gather: the containing pixel of exact projections, batched like a loop."""

import torch

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.geometry.pixels import pixel_hits


def _cameras(n: int) -> Cameras:
    a = torch.linspace(-0.5, 0.5, n)
    eye = torch.stack([3 * torch.sin(a), torch.zeros(n), -3 * torch.cos(a)], -1)
    return Cameras.from_fov(50.0, 12, 10, look_at(eye, torch.zeros(n, 3), torch.tensor([0.0, -1.0, 0.0]).expand(n, 3)))


def test_pixel_centres_hit_their_own_pixel_and_the_rest_is_outside():
    cams = _cameras(1)[0]
    uv = cams.pixel_grid().reshape(-1, 2)  # centres at +0.5
    pts = cams.unproject(uv, torch.full((len(uv),), 2.0))
    hits = pixel_hits(cams, pts)
    assert hits.inside.all()
    assert torch.equal(hits.u, uv[:, 0].floor().long()) and torch.equal(hits.v, uv[:, 1].floor().long())
    torch.testing.assert_close(hits.z, torch.full((len(uv),), 2.0))
    behind_or_out = cams.unproject(torch.tensor([[-0.5, 3.0], [6.0, 10.5], [6.0, 5.0]]), torch.tensor([2.0, 2.0, -1.0]))
    assert not pixel_hits(cams, behind_or_out).inside.any()


def test_batched_gather_matches_a_loop_over_cameras():
    cams = _cameras(3)
    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(3, 50, 3, generator=g) - 0.5) * 2
    maps = torch.rand(3, 10, 12, 2, generator=g)
    hits = pixel_hits(cams, pts)
    got = hits.gather(maps)
    for i in range(3):
        one = pixel_hits(cams[i], pts[i])
        assert torch.equal(one.inside, hits.inside[i])
        torch.testing.assert_close(got[i][one.inside], maps[i, one.v, one.u][one.inside])
        torch.testing.assert_close(one.gather(maps[i]), got[i])
    assert hits.inside.float().mean() > 0.5
