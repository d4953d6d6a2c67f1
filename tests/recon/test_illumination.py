"""SV3D's spherical-Gaussian light: constant light, a sharp lobe as a directional light, and fitting the
light to the HSV value of a rendered Lambertian sphere."""

import pytest
import torch

from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.recon.illumination import Illumination, SGLight, fibonacci_sphere, gaussian_normals
from vdm3d.splat.gaussians import Gaussians


def test_the_initial_light_is_unit_irradiance_from_every_direction():
    light = SGLight()
    e = light.shading(fibonacci_sphere(100))
    assert float((e - 1).abs().max()) < 0.03  # the 24 lobes nearly tile the sphere


def test_a_sharp_lobe_shades_like_a_directional_light():
    light = SGLight(lobes=1, sharpness=60.0, quadrature=20000)
    axis = light.axes[0]
    normals = torch.stack([torch.cos(t) * axis + torch.sin(t) * torch.tensor([1.0, 0, 0]).cross(axis, dim=0)
                           / torch.tensor([1.0, 0, 0]).cross(axis, dim=0).norm()
                           for t in torch.linspace(0, 1.2, 7)])
    e = light.shading(normals)
    cos = normals @ axis
    torch.testing.assert_close(e / e[0], cos / cos[0], atol=0.02, rtol=0)
    # E(axis) = a / pi * int exp(s (t - 1)) t 2 pi dt over [-1, 1] = 2 a (1 / s - 1 / s^2) (+ O(exp(-2 s)))
    s = 60.0
    assert abs(float(e[0]) / (float(light.amplitudes()[0]) * 2 * (1 / s - 1 / s**2)) - 1) < 0.002


def _sphere_of_splats(n: int = 3000, radius: float = 0.7) -> Gaussians:
    """Flat splats tangent to a sphere (shortest axis along the radius), white albedo."""
    normals = fibonacci_sphere(n)
    z = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3)
    axis = torch.cross(z, normals, dim=-1)
    s = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(s[:, 0], normals[:, 2])
    axis = torch.where(s > 1e-6, axis / s.clamp_min(1e-9), torch.tensor([1.0, 0.0, 0.0]))
    quats = torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * axis], -1)
    g = Gaussians.from_points(normals * radius, torch.ones(n, 3), opacity=0.99, sh_degree=0)
    scales = torch.tensor([0.04, 0.04, 0.002]).log().expand(n, 3)  # local z (-> the radius) is the shortest
    return Gaussians(g.means, quats, scales.clone(), g.opacity_logits, g.sh)


def test_gaussian_normals_are_the_shortest_axis_pointing_outwards():
    g = _sphere_of_splats(200)
    torch.testing.assert_close(gaussian_normals(g), g.means / g.means.norm(dim=-1, keepdim=True), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_the_value_loss_recovers_where_the_light_comes_from():
    g = _sphere_of_splats(1200)
    normals = gaussian_normals(g)
    sun = torch.tensor([0.0, -0.6, 0.8])  # towards the light: above and to the camera's right
    cam = cameras_from_sv3d(10.0, 0.0, 3.2163, 40.0, 64, 64)
    truth = 0.3 + 0.7 * (normals @ sun).clamp_min(0)  # Lambertian + ambient, white albedo
    lit = Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh.clone())
    from vdm3d.splat.render import render
    from vdm3d.splat.sh import rgb_to_sh
    lit.sh[:, 0] = rgb_to_sh(truth[:, None].expand(-1, 3))
    image = render(lit, cam.reshape(1), sh_degree=0, background=torch.zeros(3)).rgb[0]
    alpha = render(lit, cam.reshape(1), sh_degree=0).alpha[0]
    illum = Illumination(lr=0.05)
    for _ in range(80):
        illum.value_loss(g, cam, image, alpha).backward()
        illum.step()
    fitted = illum.light.shading(normals).detach()
    facing = (normals @ cam.forward.reshape(3)) < -0.2  # the half the input camera sees
    corr = torch.corrcoef(torch.stack([fitted[facing], truth[facing]]))[0, 1]
    assert float(corr) > 0.9, float(corr)
    lit_side, dark_side = facing & (normals @ sun > 0.5), facing & (normals @ sun < 0)
    assert float(fitted[lit_side].mean()) > 1.5 * float(fitted[dark_side].mean())  # it started uniform
