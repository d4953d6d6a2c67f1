"""What every rendering backend returns: :class:`RenderOutput`, and the shared tail that builds it.

It lives apart from :mod:`vdm3d.splat.render` so the backends can import it at the top while
``render`` imports the backends: the dependency runs one way, render -> backends -> output.
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclasses.dataclass
class RenderOutput:
    """Rendered images for ``B`` cameras (``B = 1`` for a single, unbatched camera)."""

    rgb: Float[Tensor, "B H W 3"]
    depth: Float[Tensor, "B H W"]  # expected camera z: sum(w_i z_i) / alpha, 0 where alpha is 0
    alpha: Float[Tensor, "B H W"]  # accumulated opacity, 1 - final transmittance
    means2d: Float[Tensor, "B N 2"]  # projected centers (pixels); retains .grad when it requires grad
    radii: Int[Tensor, "B N"]  # pixel radius of the alpha >= 1/255 box, 0 where culled


def finish(rgb_fg: Float[Tensor, "B H W 3"], depth_sum: Float[Tensor, "B H W"], alpha: Float[Tensor, "B H W"],
           background: Float[Tensor, "B 3"], means2d: Float[Tensor, "B N 2"],
           radii: Int[Tensor, "B N"]) -> RenderOutput:
    """Shared tail of the CPU backends: add the background, normalize the depth."""
    rgb = rgb_fg + (1 - alpha)[..., None] * background[:, None, None, :]
    covered = alpha > 1e-6  # any blended Gaussian has alpha >= 1/255, so this is "anything at all"
    depth = torch.where(covered, depth_sum / torch.where(covered, alpha, torch.ones_like(alpha)),
                        torch.zeros_like(alpha))
    return RenderOutput(rgb=rgb, depth=depth, alpha=alpha, means2d=means2d, radii=radii)
