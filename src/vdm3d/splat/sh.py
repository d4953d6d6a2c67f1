"""Real spherical harmonics up to degree 3, with the constants and sign convention of 3DGS.

A Gaussian's color seen along the unit direction ``d = (x, y, z)`` (from the camera center to the
Gaussian, world frame) is ``max(0, 0.5 + sum_k sh[k] * Y_k(d))``. The basis functions ``Y_k`` are the
real SH in the order used by the original 3DGS implementation and by gsplat; the signs of the odd
bands follow that code (``-C1 y, +C1 z, -C1 x``), so coefficients trained elsewhere render the same.

The DC term alone gives ``rgb = 0.5 + C0 * sh[0]``; :func:`rgb_to_sh` and :func:`sh_to_rgb` convert.

>>> dirs = torch.tensor([[0.0, 0.0, 1.0]])
>>> sh = rgb_to_sh(torch.tensor([[0.2, 0.4, 0.6]]))[:, None, :]  # [N, 1, 3]
>>> eval_sh(0, sh, dirs)
tensor([[0.2000, 0.4000, 0.6000]])
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.errors import ConfigError

C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def num_sh_bases(degree: int) -> int:
    """Number of coefficients per channel for SH of ``degree`` (0..3): ``(degree + 1) ** 2``."""
    if degree not in (0, 1, 2, 3):
        raise ConfigError(f"sh_degree must be 0, 1, 2 or 3, got {degree}; pick one of those.")
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    """Inverse of :func:`num_sh_bases`; raises for counts that are not 1, 4, 9 or 16."""
    for d in range(4):
        if (d + 1) ** 2 == k:
            return d
    raise ConfigError(f"SH coefficient count must be 1, 4, 9 or 16 per channel, got {k}; "
                      "pad or truncate the coefficients to a full degree.")


def sh_basis(degree: int, dirs: Float[Tensor, "*B 3"]) -> Float[Tensor, "*B K"]:
    """The ``(degree+1)**2`` basis values ``Y_k(d)`` for unit directions ``dirs``."""
    num_sh_bases(degree)
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [C2[0] * xy, C2[1] * yz, C2[2] * (2 * zz - xx - yy), C2[3] * xz, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [C3[0] * y * (3 * xx - yy), C3[1] * xy * z, C3[2] * y * (4 * zz - xx - yy),
                C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy),
                C3[5] * z * (xx - yy), C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def eval_sh(degree: int, sh: Float[Tensor, "*B K 3"], dirs: Float[Tensor, "*B 3"]) -> Float[Tensor, "*B 3"]:
    """RGB seen along unit ``dirs``: ``max(0, 0.5 + sum_k sh[..., k, :] * Y_k(dirs))``.

    Only the first ``(degree+1)**2`` coefficients are used, so a degree-3 model can be shown at a lower
    degree (as 3DGS does while it raises the degree during training).
    """
    k = num_sh_bases(degree)
    if sh.shape[-2] < k:
        raise ConfigError(f"eval_sh: degree {degree} needs {k} coefficients per channel but the Gaussians "
                          f"have {sh.shape[-2]}; lower sh_degree.")
    basis = sh_basis(degree, dirs)  # [*B, K]
    rgb = torch.einsum("...k,...kc->...c", basis, sh[..., :k, :])  # no [*B, K, 3] temporary
    return (rgb + 0.5).clamp_min(0.0)


def rgb_to_sh(rgb: Float[Tensor, "*B 3"]) -> Float[Tensor, "*B 3"]:
    """DC coefficient that shows ``rgb`` from every direction."""
    return (rgb - 0.5) / C0


def sh_to_rgb(sh_dc: Float[Tensor, "*B 3"]) -> Float[Tensor, "*B 3"]:
    """Color of a DC coefficient (before the clamp at 0)."""
    return sh_dc * C0 + 0.5
