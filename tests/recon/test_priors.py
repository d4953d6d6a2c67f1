"""Geometric priors against analytic ground truth: normals of a plane's depth, least-squares
and what the smoothness terms do and do not penalize (depth alignment: tests/recon/test_cache.py)."""

import torch

from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.recon.priors import bilateral_normal_loss, depth_normals, smooth_depth_loss


def _plane_depth(cam, normal_cam: torch.Tensor, d: float) -> torch.Tensor:
    """z-depth of the plane ``n . X = d`` (camera frame) at every pixel centre of ``cam``."""
    k = cam.Ks.reshape(3, 3).double()
    v, u = torch.meshgrid(torch.arange(32, dtype=torch.float64) + 0.5, torch.arange(32, dtype=torch.float64) + 0.5,
                          indexing="ij")
    ray = torch.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], torch.ones_like(u)], -1)
    return d / (ray @ normal_cam.double())


def test_normals_of_a_plane_are_its_normal_facing_the_camera():
    cam = cameras_from_sv3d(10.0, 0.0, 3.0, 40.0, 32, 32)
    n = torch.tensor([0.3, -0.2, -0.9])
    n = n / n.norm()
    depth = _plane_depth(cam, n, -3.0)  # n . X = -3 with n_z < 0: in front of the camera
    out = depth_normals(depth.float(), cam)
    torch.testing.assert_close(out[1:-1, 1:-1], n.float().expand(30, 30, 3), atol=1e-3, rtol=0)


def test_smoothness_terms_vanish_on_a_plane_and_respect_image_edges():
    cam = cameras_from_sv3d(10.0, 0.0, 3.0, 40.0, 32, 32)
    flat = torch.full((32, 32), 3.0)
    alpha = torch.ones(32, 32)
    assert float(smooth_depth_loss(flat, alpha)) == 0.0
    step = flat.clone()
    step[:, 16:] = 3.5
    assert float(smooth_depth_loss(step, alpha)) > 0.0
    assert float(smooth_depth_loss(step, torch.where(torch.arange(32) == 16, 0.0, 1.0).expand(32, 32))) == 0.0
    # two planes meeting at a crease: their normals differ; an image edge on the crease excuses it
    crease = torch.cat([_plane_depth(cam, torch.tensor([0.0, 0.0, -1.0]), -3.0)[:, :16],
                        _plane_depth(cam, torch.tensor([0.5, 0.0, -0.866]), -3.0)[:, 16:]], 1).float()
    normals = depth_normals(crease, cam)
    plain = torch.full((32, 32, 3), 0.5)
    edged = plain.clone()  # image edges between columns 14|15|16|17, where central differences mix the planes
    edged[:, :15], edged[:, 15], edged[:, 16], edged[:, 17:] = 0.1, 0.4, 0.7, 1.0
    assert float(bilateral_normal_loss(normals, edged, alpha)) < 0.2 * float(bilateral_normal_loss(normals, plain, alpha))
