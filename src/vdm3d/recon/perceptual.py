"""The perceptual term of V3D's Gaussian fitting: LPIPS when its weights are here, else MS-SSIM.

V3D fits its Gaussians with ``(1 - SSIM) + 2 * LPIPS + 0.1 * mean(opacity)`` (SEED_SYSTEMS.md §2.4).
LPIPS needs pretrained AlexNet features plus LPIPS' linear heads, which cannot be downloaded on our
machines (and torchvision, which normally provides AlexNet, breaks our install). So:

* **LPIPS (AlexNet)** runs when a safetensors file with its weights is present locally, at
  ``$VDM3D_LPIPS_WEIGHTS`` or ``~/.cache/vdm3d/lpips_alex.safetensors``. The network is written here
  in plain torch (five convolutions; no torchvision). Keys: ``features.{0,3,6,8,10}.{weight,bias}``
  (torchvision's ``alexnet().features`` names) and ``lin{0..4}.weight`` of shape ``[1, C, 1, 1]``
  (the ``lin{k}.model.1.weight`` of the ``lpips`` package, renamed). Inputs go to [-1, 1], then
  through LPIPS' fixed shift/scale; features are unit-normalized over channels, their squared
  difference weighted by the linear heads, averaged over space and summed over layers.
* **Weight-free substitute: multi-scale SSIM on an image pyramid.** ``sum_s w_s (1 - SSIM_s)`` over
  the scales of a 2x average-pooling pyramid down to 8 pixels, with Wang et al.'s MS-SSIM scale
  weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` renormalized to the scales used. It compares
  structure at coarse scales as well as fine ones, which is what the perceptual term adds over the
  single-scale D-SSIM term; it is not a learned metric.

:func:`make_perceptual` picks one and reports its name, which the run manifest records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
ALEX_CHANNELS = (64, 192, 384, 256, 256)

PerceptualLoss = Callable[[Tensor, Tensor], Tensor]


def lpips_weights_path() -> Path:
    """Where LPIPS weights are looked for (``$VDM3D_LPIPS_WEIGHTS`` overrides the cache location)."""
    env = os.environ.get("VDM3D_LPIPS_WEIGHTS")
    return Path(env) if env else Path.home() / ".cache" / "vdm3d" / "lpips_alex.safetensors"


def _gaussian_window(size: int, sigma: float, channels: int) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_map(x: Float[Tensor, "B C H W"], y: Float[Tensor, "B C H W"], window: int = 7,
             sigma: float = 1.5) -> Float[Tensor, "B C H W"]:
    """Per-pixel SSIM (Gaussian window, replicate padding so every pixel counts), differentiable."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    w = _gaussian_window(window, sigma, x.shape[1]).to(x)
    pad = window // 2
    blur = lambda t: F.conv2d(F.pad(t, (pad,) * 4, mode="replicate"), w, groups=x.shape[1])  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ms_ssim_pyramid_loss(pred: Float[Tensor, "*B H W 3"], target: Float[Tensor, "*B H W 3"],
                         min_size: int = 8) -> Float[Tensor, ""]:
    """``sum_s w_s (1 - SSIM_s)`` over a 2x average-pooling pyramid (the weight-free substitute)."""
    x = pred.reshape(-1, *pred.shape[-3:]).permute(0, 3, 1, 2)
    y = target.reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2)
    losses = []
    for _ in MS_SSIM_WEIGHTS:
        losses.append(1 - ssim_map(x, y).mean())
        if min(x.shape[-2:]) // 2 < min_size:
            break
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    w = torch.tensor(MS_SSIM_WEIGHTS[:len(losses)], dtype=pred.dtype)
    return (torch.stack(losses) * (w / w.sum())).sum()


class LPIPSAlex(nn.Module):
    """LPIPS with AlexNet features, plain torch; weights from a local safetensors file."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU())
        self.taps = (1, 4, 7, 9, 11)  # outputs of relu1..relu5
        for k, c in enumerate(ALEX_CHANNELS):
            self.register_parameter(f"lin{k}", nn.Parameter(torch.zeros(1, c, 1, 1)))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)

    @staticmethod
    def from_file(path: str | Path) -> "LPIPSAlex":
        from safetensors.torch import load_file

        from vdm3d.errors import InputError

        net = LPIPSAlex()
        state = load_file(str(path))
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if k not in ("shift", "scale")]
        if missing or unexpected:
            raise InputError(path=path, field="LPIPS weights",
                             problem=f"do not match AlexNet-LPIPS (missing {missing[:3]}, unexpected {unexpected[:3]})",
                             fix="save features.{0,3,6,8,10}.{weight,bias} and lin{0..4}.weight into the file")
        return net.eval()

    def _feats(self, x: Tensor) -> list[Tensor]:
        h = ((x * 2 - 1) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, pred: Float[Tensor, "*B H W 3"], target: Float[Tensor, "*B H W 3"]) -> Tensor:
        x = pred.reshape(-1, *pred.shape[-3:]).permute(0, 3, 1, 2)
        y = target.reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2)
        total = 0.0
        for k, (fx, fy) in enumerate(zip(self._feats(x), self._feats(y))):
            lin = getattr(self, f"lin{k}")
            total = total + ((fx - fy) ** 2 * lin).sum(1).mean((1, 2))
        return total.mean()


def make_perceptual(kind: str = "auto") -> tuple[PerceptualLoss, str]:
    """The perceptual loss and its name: ``"lpips-alex"`` or ``"ms-ssim-pyramid"``.

    ``kind="auto"`` uses LPIPS when :func:`lpips_weights_path` exists; ``"lpips"`` requires it;
    ``"ms-ssim"`` always uses the substitute.
    """
    path = lpips_weights_path()
    if kind == "lpips" or (kind == "auto" and path.is_file()):
        if not path.is_file():
            from vdm3d.errors import MissingWeightsError
            raise MissingWeightsError(f"{path}: LPIPS weights are not present; convert AlexNet + LPIPS linear "
                                      "heads to safetensors there (or set VDM3D_LPIPS_WEIGHTS), or use "
                                      "--perceptual ms-ssim.")
        return LPIPSAlex.from_file(path), "lpips-alex"
    return ms_ssim_pyramid_loss, "ms-ssim-pyramid"
