"""The object-depth model's relief units and, when shipped, its accuracy on held-out objects."""

from __future__ import annotations

import pytest
import torch

from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.data.procedural import make_object
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.models.tiny.depth import depth_from_relief, object_extent, relief_from_depth

RADIUS, FOV = 3.2163, 40.0


def _view(seed: int, size: int = 64, radius: float = RADIUS):
    cam = cameras_from_sv3d(10.0, 0.0, radius, FOV, size, size).reshape(1)
    buf = render_buffers(make_object(seed), cam, background=(1.0, 1.0, 1.0), ssaa=3)
    depth = torch.where(buf.depth > 0, buf.depth, torch.full_like(buf.depth, float("inf"))).float()
    return buf.rgb.float(), torch.isfinite(depth).float(), depth, cam


def test_relief_round_trips_and_does_not_change_with_the_distance():
    _, alpha, depth, cam = _view(1_500_000)
    relief = relief_from_depth(depth, alpha, cam)
    back = depth_from_relief(relief, alpha, cam)
    inside = alpha > 0.5
    torch.testing.assert_close(back[inside], depth[inside], atol=1e-5, rtol=0)
    assert torch.isinf(back[~inside]).all()
    # a unit sphere's silhouette spans about 2 units at the centre's depth: the extent is near 1
    assert 0.4 < float(object_extent(alpha, cam)) < 1.2
    _, alpha2, depth2, cam2 = _view(1_500_000, radius=1.5 * RADIUS)  # the same object, smaller in the image
    r1, r2 = relief[inside], relief_from_depth(depth2, alpha2, cam2)[alpha2 > 0.5]
    assert abs(float(r1.mean() - r2.mean())) < 0.05 and abs(float(r1.min() - r2.min())) < 0.1


def test_the_orbit_source_carries_the_input_by_the_depth_models_estimate():
    from vdm3d.geometry.inflate import carried_maps, depth_layers
    from vdm3d.jobs.object_orbit import BackboneOrbit
    from vdm3d.models.tiny.depth import DepthConfig, TinyDepth, object_depth

    rgb, alpha, _, cam = _view(1_500_001)
    torch.manual_seed(0)
    net = TinyDepth(DepthConfig(channels=(8, 8))).eval()
    targets = cameras_from_sv3d(torch.tensor([10.0, 10.0]), torch.tensor([20.0, 40.0]), RADIUS, FOV, 64, 64).reshape(1, 2)
    source = BackboneOrbit(None, proxy_maps=True, carry="depth+back", depth_model=net)
    maps = source.carried(rgb[0], alpha[0], cam, targets)
    depth = object_depth(net, rgb, alpha, cam)
    torch.testing.assert_close(maps, carried_maps(rgb, depth_layers(depth, cam, back=True), cam, targets))
    assert maps.shape == (1, 2, 64, 64, 5) and float(maps[..., 3].mean()) > 0.1
    with pytest.raises(Exception, match="depth_model"):
        BackboneOrbit(None, proxy_maps=True, carry="depth").carried(rgb[0], alpha[0], cam, targets)


@pytest.mark.slow
def test_the_shipped_object_depth_model_beats_the_balloon_on_held_out_objects():
    from vdm3d.geometry.inflate import inflated_depth
    from vdm3d.models.tiny import available, load_tiny
    from vdm3d.models.tiny.depth import object_depth

    if "object_depth" not in available():
        pytest.skip("object_depth is not shipped")
    net = load_tiny("object_depth")
    ours, balloon = [], []
    for seed in range(1_500_000, 1_500_008):
        rgb, alpha, depth, cam = _view(seed)
        inside = alpha[0] > 0.5
        ours.append(((object_depth(net, rgb, alpha, cam)[0] - depth[0]).abs() / depth[0])[inside].mean())
        balloon.append(((inflated_depth(alpha[0], cam[0])[0] - depth[0]).abs() / depth[0])[inside].mean())
    ours, balloon = float(torch.stack(ours).mean()), float(torch.stack(balloon).mean())
    assert ours < 0.9 * balloon, (ours, balloon)


def test_the_job_loads_the_depth_model_only_for_a_backbone_that_takes_maps():
    from types import SimpleNamespace

    from vdm3d.jobs.object import ObjectConfig, depth_carry
    from vdm3d.models.tiny import available
    from vdm3d.models.tiny.depth import TinyDepth

    if "object_depth" not in available():
        pytest.skip("object_depth is not shipped")
    config = ObjectConfig()
    assert config.proxy_maps and config.carry == "depth"  # the default since issue 18's depth-carried maps
    tiny = SimpleNamespace(slots=frozenset({"reference", "cameras", "maps"}))
    hub = SimpleNamespace(slots=frozenset({"reference", "cameras"}))
    assert isinstance(depth_carry(config, tiny)["depth_model"], TinyDepth)
    assert depth_carry(config, hub) == {"carry": "depth"}
    assert depth_carry(ObjectConfig(proxy_maps=False), tiny) == {"carry": "depth"}
