"""Spherical harmonics: orthonormal basis on the sphere, DC round trip, degree truncation."""

import math

import pytest
import torch

from vdm3d.errors import ConfigError
from vdm3d.splat.sh import C0, eval_sh, num_sh_bases, rgb_to_sh, sh_basis, sh_to_rgb


def fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5 ** 0.5) * i
    r = (1 - z * z).sqrt()
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def test_basis_is_orthonormal_on_the_sphere():
    dirs = fibonacci_sphere(40000)
    Y = sh_basis(3, dirs)  # [n, 16]
    gram = Y.T @ Y * (4 * math.pi / len(dirs))  # quadrature of the inner products
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)


def test_dc_round_trip_and_view_independence():
    rgb = torch.rand(50, 3)
    sh = torch.zeros(50, 16, 3)
    sh[:, 0] = rgb_to_sh(rgb)
    dirs = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    torch.testing.assert_close(eval_sh(3, sh, dirs), rgb)
    torch.testing.assert_close(sh_to_rgb(rgb_to_sh(rgb)), rgb)
    assert C0 == pytest.approx(0.5 / math.sqrt(math.pi))


def test_degree_one_band_is_linear_in_direction_and_clamped():
    # With only band 1 set, color - 0.5 is a linear function of the direction: f(-d) = -f(d).
    sh = torch.zeros(1, 4, 3)
    sh[0, 1:] = torch.randn(3, 3)
    d = torch.nn.functional.normalize(torch.randn(1, 3), dim=-1)
    plus = sh_basis(1, d)[0, 1:] @ sh[0, 1:]
    minus = sh_basis(1, -d)[0, 1:] @ sh[0, 1:]
    torch.testing.assert_close(plus, -minus)
    dark = torch.zeros(1, 1, 3)
    dark[0, 0] = -10.0
    assert torch.equal(eval_sh(0, dark, d), torch.zeros(1, 3))  # clamped at 0 like 3DGS


def test_bad_degree_raises():
    with pytest.raises(ConfigError):
        num_sh_bases(4)
    with pytest.raises(ConfigError):
        eval_sh(3, torch.zeros(1, 4, 3), torch.tensor([[0.0, 0.0, 1.0]]))
