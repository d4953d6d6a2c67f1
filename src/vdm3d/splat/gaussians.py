"""Gaussians: the 3D Gaussian splatting scene representation (3DGS parameterization).

Each of the ``N`` Gaussians stores raw, unconstrained parameters, as 3DGS optimizes them:

* ``means [N, 3]``: centers in world coordinates;
* ``quats [N, 4]``: rotation as a quaternion ``(w, x, y, z)``; need not be unit (it is normalized
  where used, so the optimizer may move it freely);
* ``log_scales [N, 3]``: natural log of the standard deviations along the rotated axes;
* ``opacity_logits [N]``: ``opacity = sigmoid(opacity_logits)``;
* ``sh [N, K, 3]``: spherical-harmonic color coefficients, ``K = (degree + 1) ** 2`` with degree 0..3;
  ``sh[:, 0]`` is the DC term (``color = 0.5 + C0 * sh[:, 0]`` seen from anywhere, see :mod:`.sh`).

The covariance is ``Sigma = R S S^T R^T`` with ``R`` from the normalized quaternion and
``S = diag(exp(log_scales))``.

Training: an optimizer needs independent leaf tensors, one group per parameter kind (3DGS gives the
higher SH bands a 20x smaller learning rate than the DC term). :meth:`Gaussians.parameters` returns a
dict of fresh leaves named :data:`PARAM_NAMES` (``sh`` split into ``sh_dc [N,1,3]`` and
``sh_rest [N,K-1,3]``), and :meth:`Gaussians.from_parameters` rebuilds Gaussians from such a dict
differentiably (a ``cat`` of the two SH parts), so gradients of a render land on the dict's leaves.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float, Shaped
from torch import Tensor

from vdm3d.cameras.camera import rigid_matrix
from vdm3d.cameras.rotations import matrix_from_quat, quat_from_matrix
from vdm3d.errors import InputError
from vdm3d.splat.sh import num_sh_bases, rgb_to_sh, sh_basis, sh_degree_from_bases
from vdm3d.views import unit_range

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")
"""Keys of :meth:`Gaussians.parameters` (one optimizer group each)."""


@dataclasses.dataclass(frozen=True)
class Gaussians:
    """``N`` 3D Gaussians with raw (pre-activation) parameters; see the module docstring."""

    means: Float[Tensor, "N 3"]
    quats: Float[Tensor, "N 4"]
    log_scales: Float[Tensor, "N 3"]
    opacity_logits: Float[Tensor, "N"]
    sh: Float[Tensor, "N K 3"]

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expect = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
        for name, shape in expect.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise InputError(f"Gaussians: field {name} must have shape {shape}, got {tuple(t.shape)}; "
                                 "give every field the same number of Gaussians.")
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise InputError(f"Gaussians: field sh must be [N, K, 3] with N={n}, got {tuple(self.sh.shape)}.")
        if self.sh.shape[1] not in (1, 4, 9, 16):
            raise InputError(f"Gaussians: field sh has {self.sh.shape[1]} coefficients per channel; it needs "
                             "1, 4, 9 or 16 (SH degree 0 to 3).")

    # -- derived, activated quantities ----------------------------------------------------------
    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(self.sh.shape[1])

    @property
    def scales(self) -> Float[Tensor, "N 3"]:
        return self.log_scales.exp()

    @property
    def opacities(self) -> Float[Tensor, "N"]:
        return torch.sigmoid(self.opacity_logits)

    @property
    def rotations(self) -> Float[Tensor, "N 3 3"]:
        return matrix_from_quat(self.quats)

    @property
    def covariances(self) -> Float[Tensor, "N 3 3"]:
        """World-frame covariances ``R S S^T R^T``."""
        M = self.rotations * self.scales.unsqueeze(-2)  # R S: scale the columns
        return M @ M.transpose(-1, -2)

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    # -- container behaviour --------------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    def _map(self, fn) -> "Gaussians":
        return Gaussians(*(fn(getattr(self, f.name)) for f in dataclasses.fields(self)))

    def to(self, *args, **kwargs) -> "Gaussians":
        """Move or cast every field like :meth:`torch.Tensor.to`."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Gaussians":
        return self._map(lambda t: t.detach())

    def clone(self) -> "Gaussians":
        return self._map(lambda t: t.clone())

    def requires_grad_(self, requires_grad: bool = True) -> "Gaussians":
        """Mark every field (which must be leaf tensors) as requiring gradients; returns self."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).requires_grad_(requires_grad)
        return self

    def __getitem__(self, index) -> "Gaussians":
        """Select Gaussians by a boolean mask, an index tensor, a slice or an int list."""
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return self._map(lambda t: t[index])

    def select(self, mask: Tensor) -> "Gaussians":
        """The Gaussians where the boolean ``mask [N]`` (or an index tensor) selects."""
        return self[mask]

    @staticmethod
    def cat(parts: Sequence["Gaussians"]) -> "Gaussians":
        """Concatenate along N; all parts must share the SH degree."""
        degrees = {p.sh_degree for p in parts}
        if len(degrees) != 1:
            raise InputError(f"Gaussians.cat: parts have different SH degrees {sorted(degrees)}; "
                             "convert them with with_sh_degree first.")
        return Gaussians(*(torch.cat([getattr(p, f.name) for p in parts], 0) for f in dataclasses.fields(Gaussians)))

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """Same Gaussians with SH truncated or zero-padded to ``degree``."""
        k = num_sh_bases(degree)
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            pad = sh.new_zeros(len(self), k - sh.shape[1], 3)
            sh = torch.cat([sh, pad], 1)
        return dataclasses.replace(self, sh=sh)

    def transformed(self, matrix: Tensor | np.ndarray) -> "Gaussians":
        """The same Gaussians in a world moved rigidly by ``matrix`` (a 4x4 rotation and translation: points
        ``x -> R x + t``): centres moved, orientations rotated, and the view-dependent colour (SH bands 1-3)
        rotated with them, so that every camera moved by the same matrix renders the same image."""
        T = rigid_matrix(matrix, "Gaussians.transformed", self.means.dtype, self.means.device)
        R, t = T[:3, :3], T[:3, 3]
        sh = self.sh
        if self.sh_degree > 0:
            sh = torch.einsum("jk,nkc->njc", sh_rotation(self.sh_degree, R), sh)
        return dataclasses.replace(self, means=self.means @ R.T + t, quats=quat_from_matrix(R @ self.rotations),
                                   sh=sh)

    # -- optimization ---------------------------------------------------------------------------
    def parameters(self) -> dict[str, Tensor]:
        """Independent leaf copies (``requires_grad=True``) keyed by :data:`PARAM_NAMES`.

        ``sh_dc`` is ``[N, 1, 3]`` and ``sh_rest`` is ``[N, K-1, 3]`` (``[N, 0, 3]`` at degree 0).
        Rebuild the differentiable Gaussians each step with :meth:`from_parameters`.
        """
        raw = {"means": self.means, "quats": self.quats, "log_scales": self.log_scales,
               "opacity_logits": self.opacity_logits, "sh_dc": self.sh[:, :1], "sh_rest": self.sh[:, 1:]}
        return {k: v.detach().clone().requires_grad_(True) for k, v in raw.items()}

    @staticmethod
    def from_parameters(params: dict[str, Tensor]) -> "Gaussians":
        """Gaussians whose fields are (differentiable functions of) the tensors in ``params``."""
        missing = [k for k in PARAM_NAMES if k not in params]
        if missing:
            raise InputError(f"Gaussians.from_parameters: missing keys {missing}; pass the dict returned "
                             "by Gaussians.parameters().")
        return Gaussians(params["means"], params["quats"], params["log_scales"], params["opacity_logits"],
                         torch.cat([params["sh_dc"], params["sh_rest"]], 1))

    # -- construction ---------------------------------------------------------------------------
    @staticmethod
    def from_points(points: Float[Tensor, "N 3"] | Shaped[np.ndarray, "N 3"], colors: Tensor | np.ndarray,
                    scales: Float[Tensor, "N"] | Float[Tensor, "N 3"] | None = None,
                    opacity: float = 0.1, sh_degree: int = 3) -> "Gaussians":
        """Isotropic Gaussians at ``points`` (world) with ``colors`` (float in [0, 1], or uint8).

        Both may be tensors or numpy arrays. Float colours outside [0, 1] (0..255 floats, say) are refused.
        Without ``scales`` each Gaussian's standard deviation is the root mean squared distance to
        its three nearest neighbours (the 3DGS initialization), from a scipy cKDTree. Rotation is the
        identity, opacity is ``opacity`` everywhere, and the higher SH bands start at zero.
        """
        if isinstance(points, np.ndarray):
            points = torch.as_tensor(points)
        if not torch.is_tensor(points):
            raise InputError(f"Gaussians.from_points: points must be a torch tensor or numpy array [N, 3], "
                             f"got {type(points).__name__}.")
        colors = unit_range(colors, "Gaussians.from_points: colors",
                            uint8_to=points.dtype if points.is_floating_point() else torch.float32)
        if points.dim() != 2 or points.shape[1] != 3 or colors.shape != points.shape:
            raise InputError(f"Gaussians.from_points: points and colors must both be [N, 3], got "
                             f"{tuple(points.shape)} and {tuple(colors.shape)}.")
        if not 0.0 < opacity < 1.0:
            raise InputError(f"Gaussians.from_points: opacity must be in (0, 1), got {opacity}.")
        n = points.shape[0]
        dtype = points.dtype if points.is_floating_point() else torch.float32
        points = points.to(dtype)
        rgb = colors.to(dtype=dtype, device=points.device)
        if scales is None:
            scales = knn_scales(points)
        scales = torch.as_tensor(scales, dtype=dtype, device=points.device)
        if scales.dim() == 1:
            scales = scales[:, None].expand(n, 3)
        k = num_sh_bases(sh_degree)
        sh = torch.zeros(n, k, 3, dtype=dtype, device=points.device)
        sh[:, 0] = rgb_to_sh(rgb)
        quats = torch.zeros(n, 4, dtype=dtype, device=points.device)
        quats[:, 0] = 1.0
        logit = math.log(opacity / (1.0 - opacity))
        return Gaussians(points.clone(), quats, scales.clamp_min(1e-7).log().contiguous(),
                         torch.full((n,), logit, dtype=dtype, device=points.device), sh)


def knn_scales(points: Float[Tensor, "N 3"], k: int = 3) -> Float[Tensor, "N"]:
    """Root mean squared distance from each point to its ``k`` nearest other points (cKDTree).

    Duplicate points get the smallest positive distance found in the cloud, so no scale is zero.
    """
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    n = pts.shape[0]
    if n < 2:
        return torch.full((n,), 0.01, dtype=points.dtype, device=points.device)
    kk = min(k, n - 1)
    dist, _ = cKDTree(pts).query(pts, k=kk + 1)  # column 0 is the point itself
    d2 = np.square(dist[:, 1:]).mean(1)
    positive = d2[d2 > 0]
    floor = positive.min() if positive.size else 1e-4
    d2 = np.maximum(d2, floor)
    return torch.from_numpy(np.sqrt(d2)).to(dtype=points.dtype, device=points.device)


def sh_rotation(degree: int, R: Float[Tensor, "3 3"]) -> Float[Tensor, "K K"]:
    """The matrix ``M`` that rotates SH coefficients by ``R``: colours ``sum_k (M c)_k Y_k(R d)`` seen along
    the rotated direction equal ``sum_k c_k Y_k(d)`` seen along ``d``. Solved by least squares from the basis
    at 64 fixed directions (each band maps into itself, so the solve is exact to rounding) rather than
    with Wigner matrices: it reuses :func:`vdm3d.splat.sh.sh_basis`, so its sign conventions cannot drift."""
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(64, 3, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    R64 = R.detach().to("cpu", torch.float64)
    before, after = sh_basis(degree, dirs), sh_basis(degree, dirs @ R64.T)  # [64, K]
    M = torch.linalg.lstsq(after, before).solution  # after @ M = before: c' = M c
    return M.to(R.dtype).to(R.device)
