"""SV3D's illumination model for the object fit: white light from 24 spherical Gaussians, Lambertian.

SV3D (SEED_SYSTEMS.md §1.6) fits its mesh with a spherical-Gaussian illumination model so that
shading the generator baked into its frames is explained by light, not by the albedo, and ties the
light to the input view through the HSV value of the input image. Here, the same model on Gaussians:

* **Light**: ``L(w) = sum_k a_k exp(s (mu_k . w - 1))`` with ``K = 24`` lobes on a Fibonacci sphere,
  one shared sharpness ``s``, non-negative white amplitudes ``a_k = softplus(theta_k)``.
* **Shading** of a unit normal ``n``: the Lambertian irradiance ``E(n) = 1/pi int L(w) max(0, n . w) dw``,
  by quadrature on ``quadrature`` Fibonacci directions (differentiable, exact as the count grows;
  closed-form SG-cosine approximations exist but the quadrature is short and checkable). The light
  starts as ``E = 1`` everywhere (constant amplitudes normalized so), i.e. the fit starts unlit.
* **Normals** of Gaussians: the axis of the smallest scale, flipped to point away from the object's
  centre (the origin) -- right for the near-convex objects the job sees; splats are flat after a few
  hundred steps, so the shortest axis is the surface normal.
* **Colour** of a Gaussian: ``albedo x E(n)``, the albedo being the fitted SH DC colour
  (:class:`Illumination` is the fit's ``appearance`` hook).
* **Value loss** (:meth:`Illumination.value_loss`): at the input view, the rendered shading (a grey
  render of ``E(n)``) against the HSV value (``max(R, G, B)``) of the input, inside its mask, up to one
  global scale (the ratio is solved in closed form each step), L1.

The light's amplitudes are stepped by their own Adam in :meth:`Illumination.step` (the caller runs it
between fitting steps).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.cameras.camera import Cameras
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.render import render
from vdm3d.splat.sh import rgb_to_sh, sh_to_rgb

LOBES = 24  # SV3D's count


def fibonacci_sphere(n: int, dtype: torch.dtype = torch.float32) -> Float[Tensor, "n 3"]:
    """``n`` nearly uniform unit vectors (golden-angle spiral)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = (1 - z * z).clamp_min(0).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], -1).to(dtype)


def gaussian_normals(gaussians: Gaussians, centre: Tensor | None = None) -> Float[Tensor, "N 3"]:
    """Unit normals: each Gaussian's shortest axis, pointing away from ``centre`` (default origin)."""
    rot = gaussians.rotations  # [N, 3, 3], columns = local axes in world
    shortest = gaussians.log_scales.argmin(-1)  # [N]
    n = rot.gather(2, shortest[:, None, None].expand(-1, 3, 1))[..., 0]
    out = gaussians.means - (0 if centre is None else centre)
    return torch.where(((n * out).sum(-1, keepdim=True) < 0), -n, n)


class SGLight(nn.Module):
    """White light from ``lobes`` spherical Gaussians and its Lambertian shading."""

    def __init__(self, lobes: int = LOBES, sharpness: float = 8.0, quadrature: int = 256):
        super().__init__()
        self.register_buffer("axes", fibonacci_sphere(lobes))
        self.register_buffer("dirs", fibonacci_sphere(quadrature))
        self.sharpness = sharpness
        lobe = torch.exp(sharpness * (self.dirs @ self.axes.T - 1))  # [Q, K]
        # irradiance of a unit-amplitude constant light (all lobes equal) at any normal, to start at E = 1
        e_unit = float(self._irradiance(torch.tensor([[0.0, 0.0, 1.0]]), lobe.sum(1))[0])
        self.theta = nn.Parameter(torch.full((lobes,), math.log(math.expm1(1.0 / e_unit))))
        self.register_buffer("lobe", lobe)

    def _irradiance(self, normals: Tensor, radiance: Tensor) -> Tensor:
        cos = (normals @ self.dirs.T.to(normals)).clamp_min(0)  # [N, Q]
        return cos @ radiance.to(normals) * (4.0 / len(self.dirs))  # (1/pi) * (4 pi / Q) * sum

    def amplitudes(self) -> Float[Tensor, "K"]:
        return nn.functional.softplus(self.theta)

    def radiance(self) -> Float[Tensor, "Q"]:
        """The light's radiance on the quadrature directions."""
        return self.lobe @ self.amplitudes()

    def shading(self, normals: Float[Tensor, "N 3"]) -> Float[Tensor, "N"]:
        """Lambertian irradiance ``E(n)`` of unit normals."""
        return self._irradiance(normals, self.radiance())


class Illumination:
    """The fit's appearance hook (albedo x shading), the value loss, and the light's optimizer."""

    def __init__(self, light: SGLight | None = None, lr: float = 0.02):
        self.light = light or SGLight()
        self.optimizer = torch.optim.Adam(self.light.parameters(), lr=lr)

    def __call__(self, gaussians: Gaussians) -> Gaussians:
        """Gaussians whose DC colour is ``albedo x E(n)`` (differentiable in both and in the light)."""
        albedo = sh_to_rgb(gaussians.sh[:, 0])
        shade = self.light.shading(gaussian_normals(gaussians)).to(albedo)
        sh = torch.cat([rgb_to_sh(albedo * shade[:, None])[:, None], gaussians.sh[:, 1:]], 1)
        return Gaussians(gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits, sh)

    def shading_render(self, gaussians: Gaussians, camera: Cameras, backend: str = "auto"
                       ) -> tuple[Float[Tensor, "H W"], Float[Tensor, "H W"]]:
        """The shading ``E(n)`` rendered as a grey image at one camera (on black) and the coverage."""
        shade = self.light.shading(gaussian_normals(gaussians)).to(gaussians.means)
        grey = Gaussians(gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits,
                         rgb_to_sh(shade[:, None].expand(-1, 3))[:, None])
        out = render(grey, camera.reshape(1).to(dtype=gaussians.dtype), backend=backend, sh_degree=0,
                     background=torch.zeros(3, dtype=gaussians.dtype))
        return out.rgb[0, ..., 0], out.alpha[0]

    def value_loss(self, gaussians: Gaussians, camera: Cameras, image: Float[Tensor, "H W 3"],
                   alpha: Float[Tensor, "H W"], backend: str = "auto") -> Float[Tensor, ""]:
        """L1 between the rendered shading and the input's HSV value inside its mask, up to a scale."""
        shade, cover = self.shading_render(gaussians, camera, backend)
        value = image.max(-1).values.to(shade)
        w = (alpha.to(shade) > 0.5).to(shade) * cover.detach()
        shade = shade / cover.detach().clamp_min(1e-3)  # un-premultiply
        scale = ((w * value * shade).sum() / (w * shade * shade).sum().clamp_min(1e-8)).detach()
        return (w * (scale * shade - value).abs()).sum() / w.sum().clamp_min(1.0)

    def step(self) -> None:
        """Apply the gradients the last fitting step left on the light, then clear them."""
        if any(p.grad is not None for p in self.light.parameters()):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
