"""Batched pinhole cameras in the one convention vdm3d uses inside: OpenCV, camera-to-world.

Convention (every other one is converted at the edge, in :mod:`vdm3d.cameras.io`):

* camera axes: x right, y down, z forward (the camera looks along +z);
* ``c2w [..., 4, 4]`` maps camera coordinates to world coordinates; ``w2c`` is its inverse;
* ``Ks [..., 3, 3]`` are intrinsics in pixels, ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``;
* pixel centers sit at +0.5: the top-left pixel covers ``[0, 1) x [0, 1)`` and its center is
  ``(0.5, 0.5)``; a camera with ``cx = width / 2`` has its optical axis through the image center;
* ``width`` and ``height`` are shared by the whole batch.

Projection of a world point ``p``: ``p_cam = R^T (p - t)`` with ``c2w = [R | t]``, then
``u = fx * x / z + cx``, ``v = fy * y / z + cy``. Unprojection inverts it given the z-depth.

>>> cams = Cameras.from_fov(fov_deg=60.0, width=64, height=48, c2w=torch.eye(4))
>>> uv, z = cams.project(torch.tensor([[0.0, 0.0, 2.0]]))
>>> uv.tolist(), z.tolist()
([[32.0, 24.0]], [2.0])
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float, Shaped
from torch import Tensor

from vdm3d.errors import CameraError

ORTHONORMAL_TOL = 1e-3


@dataclasses.dataclass(frozen=True)
class Cameras:
    """A batch of pinhole cameras (OpenCV convention, camera-to-world). Batch shape ``*B``.

    ``Ks`` and ``c2w`` may be given as numpy arrays (or nested lists): they become tensors, of the other
    field's dtype and device when that one is a tensor, else ``c2w`` keeps its float dtype (integers:
    float32)."""

    Ks: Float[Tensor, "*B 3 3"] | Shaped[np.ndarray, "*B 3 3"]  # kept as a tensor
    c2w: Float[Tensor, "*B 4 4"] | Shaped[np.ndarray, "*B 4 4"]
    width: int
    height: int

    def __post_init__(self) -> None:
        for name, other in (("c2w", "Ks"), ("Ks", "c2w")):  # arrays become tensors (as from_fov's c2w)
            value, like = getattr(self, name), getattr(self, other)
            if torch.is_tensor(value):
                continue
            try:
                t = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError) as e:
                raise CameraError(f"Cameras: {name} must be a tensor or an array of numbers, got "
                                  f"{type(value).__name__}.") from e
            if torch.is_tensor(like):
                t = t.to(dtype=like.dtype, device=like.device)
            elif not t.is_floating_point():
                t = t.to(torch.float32)
            object.__setattr__(self, name, t)
        if self.Ks.shape[-2:] != (3, 3) or self.c2w.shape[-2:] != (4, 4):
            raise CameraError(f"Cameras: Ks must be [...,3,3] and c2w [...,4,4], got "
                              f"{tuple(self.Ks.shape)} and {tuple(self.c2w.shape)}.")
        if self.Ks.shape[:-2] != self.c2w.shape[:-2]:
            raise CameraError(f"Cameras: Ks batch {tuple(self.Ks.shape[:-2])} differs from c2w batch "
                              f"{tuple(self.c2w.shape[:-2])}.")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CameraError(f"Cameras: width and height must be positive, got {self.width}x{self.height}.")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # -- construction ---------------------------------------------------------------------------
    @staticmethod
    def from_fov(fov_deg: float | Tensor, width: int, height: int, c2w: Float[Tensor, "*B 4 4"],
                 axis: str = "x") -> "Cameras":
        """Cameras with square pixels, principal point at the image center, and a field of view
        ``fov_deg`` across the given axis (``"x"``: horizontal, ``"y"``: vertical)."""
        c2w = torch.as_tensor(c2w, dtype=torch.float32) if not torch.is_tensor(c2w) else c2w
        fov = torch.as_tensor(fov_deg, dtype=c2w.dtype, device=c2w.device)
        span = width if axis == "x" else height
        f = 0.5 * span / torch.tan(torch.deg2rad(fov) / 2)
        f = f.expand(c2w.shape[:-2])
        Ks = intrinsics(f, f, torch.full_like(f, width / 2), torch.full_like(f, height / 2))
        return Cameras(Ks=Ks, c2w=c2w, width=width, height=height)

    # -- batch handling -------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.c2w.shape[:-2]

    def __len__(self) -> int:
        if len(self.shape) == 0:
            raise TypeError("a single camera has no length")
        return self.shape[0]

    def __getitem__(self, index) -> "Cameras":
        if not isinstance(index, tuple):
            index = (index,)
        if Ellipsis not in index:
            index = index + (Ellipsis,)
        return Cameras(self.Ks[index], self.c2w[index], self.width, self.height)

    def reshape(self, *shape: int | tuple[int, ...]) -> "Cameras":
        """Another batch shape, given as numbers or as one tuple (``reshape(())``: one camera), as torch takes it."""
        if len(shape) == 1 and isinstance(shape[0], tuple):
            shape = shape[0]
        return Cameras(self.Ks.reshape(*shape, 3, 3), self.c2w.reshape(*shape, 4, 4), self.width, self.height)

    def flatten(self) -> "Cameras":
        return self.reshape(-1)

    def to(self, *args, **kwargs) -> "Cameras":
        """Move or cast like :meth:`torch.Tensor.to`."""
        return Cameras(self.Ks.to(*args, **kwargs), self.c2w.to(*args, **kwargs), self.width, self.height)

    def translated(self, offset) -> "Cameras":
        """The same cameras in a world moved by ``offset`` (3 numbers added to every centre), computed in the
        cameras' dtype: a float64 path far from the origin is moved near it before it becomes float32."""
        c2w = self.c2w.clone()
        c2w[..., :3, 3] += torch.as_tensor(offset, dtype=c2w.dtype, device=c2w.device)
        return Cameras(self.Ks, c2w, self.width, self.height)

    def transformed(self, matrix) -> "Cameras":
        """The same cameras in a world moved rigidly by the 4x4 ``matrix`` (``c2w -> matrix @ c2w``), as
        :meth:`vdm3d.splat.gaussians.Gaussians.transformed` moves Gaussians: each camera sees the same image."""
        T = rigid_matrix(matrix, "Cameras.transformed", torch.float64, self.c2w.device)  # a far world keeps its digits
        return Cameras(self.Ks, (T @ self.c2w.double()).to(self.c2w.dtype), self.width, self.height)

    def mirrored(self, normal, d: float = 0.0) -> "Cameras":
        """The cameras reflected through the plane ``normal . x = d``, each with its x axis turned round so that
        its frame stays right-handed (and its principal point flipped, ``cx -> width - cx``): the camera whose
        image of the mirror image of a scene is this camera's image of the scene flipped left to right."""
        n = torch.as_tensor(normal, dtype=self.c2w.dtype, device=self.c2w.device)
        n = n / torch.linalg.vector_norm(n)
        reflect = torch.eye(3, dtype=n.dtype, device=n.device) - 2 * n[:, None] * n[None, :]
        flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=n.dtype, device=n.device))
        c2w = self.c2w.clone()
        c2w[..., :3, :3] = reflect @ self.c2w[..., :3, :3] @ flip
        c2w[..., :3, 3] = self.c2w[..., :3, 3] @ reflect.T + 2 * d * n
        ks = self.Ks.clone()
        ks[..., 0, 2] = self.width - self.Ks[..., 0, 2]
        return Cameras(ks, c2w, self.width, self.height)

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def dtype(self) -> torch.dtype:
        return self.c2w.dtype

    @staticmethod
    def cat(cameras: Sequence["Cameras"], dim: int = 0) -> "Cameras":
        w, h = cameras[0].width, cameras[0].height
        if any((c.width, c.height) != (w, h) for c in cameras):
            raise CameraError("Cameras.cat: all cameras must share one image size.")
        return Cameras(torch.cat([c.Ks for c in cameras], dim), torch.cat([c.c2w for c in cameras], dim), w, h)

    # -- derived quantities ---------------------------------------------------------------------
    @property
    def w2c(self) -> Float[Tensor, "*B 4 4"]:
        """World-to-camera, computed in closed form from the rigid c2w (R^T, -R^T t)."""
        return rigid_inverse(self.c2w)

    @property
    def R(self) -> Float[Tensor, "*B 3 3"]:
        return self.c2w[..., :3, :3]

    @property
    def centers(self) -> Float[Tensor, "*B 3"]:
        """Camera centers in world coordinates."""
        return self.c2w[..., :3, 3]

    @property
    def forward(self) -> Float[Tensor, "*B 3"]:
        """Viewing direction (+z of the camera) in world coordinates."""
        return self.c2w[..., :3, 2]

    @property
    def fx(self) -> Tensor:
        return self.Ks[..., 0, 0]

    @property
    def fy(self) -> Tensor:
        return self.Ks[..., 1, 1]

    @property
    def cx(self) -> Tensor:
        return self.Ks[..., 0, 2]

    @property
    def cy(self) -> Tensor:
        return self.Ks[..., 1, 2]

    @property
    def fov_x_deg(self) -> Tensor:
        return torch.rad2deg(2 * torch.atan(0.5 * self.width / self.fx))

    @property
    def fov_y_deg(self) -> Tensor:
        return torch.rad2deg(2 * torch.atan(0.5 * self.height / self.fy))

    @property
    def square_fov_deg(self) -> Tensor:
        """Horizontal field of view of each image's centre square (what a job that crops its input to a
        square sees)."""
        return torch.rad2deg(2 * torch.atan(0.5 * min(self.width, self.height) / self.fx))

    # -- projection -----------------------------------------------------------------------------
    def world_to_cam(self, points_world: Float[Tensor, "*B N 3"]) -> Float[Tensor, "*B N 3"]:
        R, t = self.R, self.centers
        # p_cam = R^T (p_world - t), written as a row-vector product: (p - t) @ R
        return (points_world - t.unsqueeze(-2)) @ R

    def cam_to_world(self, points_cam: Float[Tensor, "*B N 3"]) -> Float[Tensor, "*B N 3"]:
        return points_cam @ self.R.transpose(-1, -2) + self.centers.unsqueeze(-2)

    def project(self, points_world: Float[Tensor, "*B N 3"], eps: float = 1e-8
                ) -> tuple[Float[Tensor, "*B N 2"], Float[Tensor, "*B N"]]:
        """World points to pixel coordinates (pixel centers at +0.5) and z-depth.

        Points behind the camera get a depth <= 0; their pixel coordinates are meaningless and the
        caller should mask them with ``depth > 0``.
        """
        p = self.world_to_cam(points_world)
        z = p[..., 2]
        z_safe = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
        u = self.fx.unsqueeze(-1) * p[..., 0] / z_safe + self.cx.unsqueeze(-1)
        v = self.fy.unsqueeze(-1) * p[..., 1] / z_safe + self.cy.unsqueeze(-1)
        return torch.stack([u, v], -1), z

    def unproject(self, uv_pix: Float[Tensor, "*B N 2"], depth: Float[Tensor, "*B N"]
                  ) -> Float[Tensor, "*B N 3"]:
        """Pixel coordinates and z-depth back to world points (inverse of :meth:`project`)."""
        x = (uv_pix[..., 0] - self.cx.unsqueeze(-1)) / self.fx.unsqueeze(-1) * depth
        y = (uv_pix[..., 1] - self.cy.unsqueeze(-1)) / self.fy.unsqueeze(-1) * depth
        return self.cam_to_world(torch.stack([x, y, depth], -1))

    def pixel_grid(self) -> Float[Tensor, "H W 2"]:
        """Pixel-center coordinates ``(u, v)`` of the image, ``[H, W, 2]``."""
        v, u = torch.meshgrid(torch.arange(self.height, dtype=self.dtype, device=self.device) + 0.5,
                              torch.arange(self.width, dtype=self.dtype, device=self.device) + 0.5,
                              indexing="ij")
        return torch.stack([u, v], -1)

    def rays(self, normalize: bool = True) -> tuple[Float[Tensor, "*B H W 3"], Float[Tensor, "*B H W 3"]]:
        """Ray origins and directions in world coordinates through every pixel center.

        With ``normalize=False`` directions have unit z in camera space, so ``origin + d * depth``
        is the point at z-depth ``depth``.
        """
        uv = self.pixel_grid()  # [H, W, 2]
        batch = self.shape
        fx, fy = self.fx[..., None, None], self.fy[..., None, None]
        cx, cy = self.cx[..., None, None], self.cy[..., None, None]
        x = (uv[..., 0] - cx) / fx  # [*B, H, W]
        y = (uv[..., 1] - cy) / fy
        d_cam = torch.stack([x, y, torch.ones_like(x)], -1)  # [*B, H, W, 3]
        d_world = torch.einsum("...ij,...hwj->...hwi", self.R, d_cam)
        if normalize:
            d_world = d_world / d_world.norm(dim=-1, keepdim=True)
        origins = self.centers[..., None, None, :].expand(*batch, self.height, self.width, 3)
        return origins, d_world

    def plucker(self) -> Float[Tensor, "*B H W 6"]:
        """Plucker ray coordinates ``(d, o x d)`` with unit d, per pixel."""
        o, d = self.rays(normalize=True)
        return torch.cat([d, torch.cross(o, d, dim=-1)], -1)

    # -- image-space edits ----------------------------------------------------------------------
    def resize(self, width: int, height: int) -> "Cameras":
        """Intrinsics for the same view rendered at another resolution (pixel centers kept at +0.5)."""
        sx, sy = width / self.width, height / self.height
        Ks = self.Ks.clone()
        Ks[..., 0, :] *= sx
        Ks[..., 1, :] *= sy
        Ks[..., 2, :] = self.Ks[..., 2, :]
        return Cameras(Ks, self.c2w, width, height)

    def scale(self, factor: float) -> "Cameras":
        """Resize by a factor (``0.5`` halves both sides; sizes are rounded)."""
        return self.resize(max(1, round(self.width * factor)), max(1, round(self.height * factor)))

    def crop(self, left: int, top: int, width: int, height: int) -> "Cameras":
        """Intrinsics of a crop whose top-left corner is pixel ``(left, top)``."""
        Ks = self.Ks.clone()
        Ks[..., 0, 2] -= left
        Ks[..., 1, 2] -= top
        return Cameras(Ks, self.c2w, width, height)

    # -- validation -----------------------------------------------------------------------------
    def validate(self, source: str = "cameras", tol: float = ORTHONORMAL_TOL) -> "Cameras":
        """Raise :class:`CameraError` naming the first bad camera and field; return self otherwise."""
        flat_K, flat_c2w = self.Ks.reshape(-1, 3, 3), self.c2w.reshape(-1, 4, 4)
        for name, t in (("Ks", flat_K), ("c2w", flat_c2w)):
            bad = ~torch.isfinite(t).flatten(1).all(1)
            if bad.any():
                i = int(bad.nonzero()[0])
                raise CameraError(f"{source}: frame {i} field {name} has a non-finite number (NaN or inf); "
                                  "fix or drop that frame.")
        R = flat_c2w[:, :3, :3].double()
        err = (R @ R.transpose(1, 2) - torch.eye(3, dtype=R.dtype)).abs().flatten(1).amax(1)
        det = torch.linalg.det(R)
        bad = (err > tol) | (det < 0)
        if bad.any():
            i = int(bad.nonzero()[0])
            e, d = float(err[i]), float(det[i])  # four decimals of det: a scale of 1.001 shows as 1.0030, not 1
            over = f" > {tol:g}" if e > tol else ""
            raise CameraError(f"{source}: frame {i} field rotation is not orthonormal with det +1 "
                              f"(max |R R^T - I| = {e:.2g}{over}, det = {d:.4f}); re-orthonormalize it (the nearest "
                              "rotation to R = U S V^T is U V^T) or check the matrix layout.")
        bottom = flat_c2w[:, 3, :] - torch.tensor([0, 0, 0, 1.0], dtype=flat_c2w.dtype, device=flat_c2w.device)
        bad = bottom.abs().amax(1) > 1e-6
        if bad.any():
            i = int(bad.nonzero()[0])
            raise CameraError(f"{source}: frame {i} field c2w has a last row other than [0, 0, 0, 1]; "
                              "pass a rigid 4x4 camera-to-world matrix.")
        bad = (flat_K[:, 0, 0] <= 0) | (flat_K[:, 1, 1] <= 0)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise CameraError(f"{source}: frame {i} field focal length must be positive, got "
                              f"fx={float(flat_K[i, 0, 0]):.4g}, fy={float(flat_K[i, 1, 1]):.4g}.")
        return self


# -- small helpers shared by converters and trajectories ----------------------------------------
def intrinsics(fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor) -> Float[Tensor, "*B 3 3"]:
    """Stack focal lengths and principal points (pixels) into ``[..., 3, 3]`` matrices."""
    fx, fy, cx, cy = torch.broadcast_tensors(*(torch.as_tensor(a, dtype=torch.float32) if not torch.is_tensor(a)
                                               else a for a in (fx, fy, cx, cy)))
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([torch.stack([fx, zero, cx], -1),
                        torch.stack([zero, fy, cy], -1),
                        torch.stack([zero, zero, one], -1)], -2)


def rigid_inverse(T: Float[Tensor, "*B 4 4"]) -> Float[Tensor, "*B 4 4"]:
    """Inverse of rigid transforms ``[R | t]`` as ``[R^T | -R^T t]`` (exact, no matrix solve)."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1
    return out


RIGID_TOL = 1e-4
"""How far from orthonormal (``max |R R^T - I|``) a world move's rotation may be: float32 digits, not a scale."""


def rigid_matrix(matrix, who: str, dtype: torch.dtype, device: torch.device | str | None = None
                 ) -> Float[Tensor, "4 4"]:
    """``matrix`` as a ``4x4`` tensor of ``dtype``, refused with :class:`CameraError` (an ``InputError``) unless
    it is a rigid move: a rotation (orthonormal to :data:`RIGID_TOL`, det +1: no mirror, no scale), a
    translation and the last row ``[0, 0, 0, 1]``. Scene and cameras moved by anything else no longer make the
    same images, which is what ``transformed`` promises; ``who`` names the caller in the message."""
    T = torch.as_tensor(matrix, dtype=dtype, device=device)
    bottom = torch.tensor([0, 0, 0, 1], dtype=dtype, device=T.device)
    if T.shape != (4, 4) or not bool(torch.isfinite(T).all()) or not torch.allclose(T[3], bottom, atol=1e-6):
        raise CameraError(f"{who}: the matrix must be a 4x4 rigid transform (a rotation, no scale or mirror, and a "
                          f"translation, last row 0 0 0 1), got shape {tuple(T.shape)}"
                          + ("" if T.shape != (4, 4) else f" with last row {T[3].tolist()}") + ".")
    R = T[:3, :3].double()
    err, det = float((R @ R.T - torch.eye(3, dtype=R.dtype, device=R.device)).abs().max()), float(torch.linalg.det(R))
    if err > RIGID_TOL or det < 0:
        raise CameraError(f"{who}: the matrix must be a 4x4 rigid transform (a rotation, no scale or mirror, and a "
                          f"translation), but its 3x3 part has max |R R^T - I| = {err:.2g} and det = {det:.4f}.")
    return T


def look_at(eye: Float[Tensor, "*B 3"], target: Float[Tensor, "*B 3"], up: Float[Tensor, "*B 3"]
            ) -> Float[Tensor, "*B 4 4"]:
    """OpenCV camera-to-world matrices for cameras at ``eye`` looking at ``target``.

    ``up`` is the world direction that should appear up in the image; since OpenCV's y axis points
    down, the camera's y axis is built from ``-up``. Raises if ``up`` is parallel to the view.
    """
    eye, target, up = torch.broadcast_tensors(eye, target, up)
    z = target - eye
    zn = z.norm(dim=-1, keepdim=True)
    if not bool((zn > 0).all()):  # no direction to look in: 0/0 made NaN cameras without a word
        raise CameraError("look_at: a camera's eye is at its target, so it has no viewing direction; move the "
                          "target or the eye.")
    z = z / zn
    x = torch.cross(z, up, dim=-1)  # right = forward x up (right-handed: x = y x z with y = down)
    n = x.norm(dim=-1, keepdim=True)
    if (n < 1e-8).any():
        raise CameraError("look_at: the up vector is parallel to the viewing direction; choose another up.")
    x = x / n
    y = torch.cross(z, x, dim=-1)  # down = forward x right
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = x, y, z, eye
    c2w[..., 3, 3] = 1
    return c2w


def fov_to_focal(fov_deg: float, size: int) -> float:
    """Focal length in pixels for a field of view across ``size`` pixels."""
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2)
