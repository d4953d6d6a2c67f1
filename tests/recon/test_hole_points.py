"""Points for a reconstruction's holes from generated frames: aligned to its depth, on the true surface."""

import math

import torch

from vdm3d.recon.cache import CacheConfig, grow_cache
from vdm3d.recon.hole_points import hole_points
from vdm3d.recon.render import render_views
from vdm3d.views import Views


def _room():
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.geometry.mesh_render import render_buffers

    scene = make_room(1_000_004)
    cams = room_path(scene, 4, 2, width=48, height=48, fov_deg=60.0, step=0.08)
    buf = render_buffers(scene, cams, ssaa=1)
    return cams, buf.rgb.float(), buf.depth.float()


def test_hole_points_land_on_the_true_surface_at_the_reconstructions_scale():
    cams, rgb, depth = _room()
    # a "reconstruction" that knows only the left half of what frame 0 sees: frames 0-1 have a hole
    left = torch.zeros_like(depth[0], dtype=torch.bool)
    left[:, :24] = True
    recon = grow_cache(None, rgb[:1], depth[:1], cams[:1], left[None], CacheConfig(scale_factor=1.0),
                       torch.Generator().manual_seed(0))
    rendered = render_views(recon, cams[:2])
    # the "generated" frames are the exact ones; their depth is known only up to an affine map
    relative = 0.37 * depth[:2] + 0.2
    g = hole_points(Views(rgb[:2], cams[:2]), rendered, relative, share=0.25,
                    generator=torch.Generator().manual_seed(1))
    holes = rendered.alphas < 0.7
    assert len(g) == sum(math.ceil(0.25 * int(h.sum())) for h in holes if bool(h.any()))
    # each new point re-projects into frame 0 onto the true depth there (where frame 0 sees it)
    from vdm3d.geometry.pixels import pixel_hits

    hits = pixel_hits(cams[:1], g.means[None])
    inside = hits.inside[0]
    truth = hits.gather(depth[:1])[0]
    rel_err = ((hits.z[0] - truth).abs() / truth)[inside].median()
    assert int(inside.sum()) > 50 and float(rel_err) < 0.03
    assert g.sh_degree == 0 and float(torch.sigmoid(g.opacity_logits).mean()) == 0.5


def test_no_holes_or_no_opaque_pixels_add_nothing():
    cams, rgb, depth = _room()
    full = grow_cache(None, rgb[:1], depth[:1], cams[:1], None, CacheConfig(), torch.Generator().manual_seed(0))
    rendered = render_views(full, cams[:1])
    assert hole_points(Views(rgb[:1], cams[:1]), rendered, depth[:1], hole_alpha=0.0) is None
    empty = Views(rgb[:1], cams[:1], alphas=torch.zeros_like(depth[:1]), depths=torch.zeros_like(depth[:1]))
    assert hole_points(Views(rgb[:1], cams[:1]), empty, depth[:1]) is None
