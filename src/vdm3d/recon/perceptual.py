"""The perceptual term of V3D's Gaussian fitting: LPIPS when its weights are here, else MS-SSIM.

V3D fits its Gaussians with ``(1 - SSIM) + 2 * LPIPS + 0.1 * mean(opacity)`` (SEED_SYSTEMS.md §2.4).
LPIPS needs pretrained AlexNet features plus LPIPS' linear heads, which cannot be downloaded on our
machines (and torchvision, which normally provides AlexNet, breaks our install). So:

* **LPIPS (AlexNet)** runs when a safetensors file with its weights is present locally, at
  ``$VDM3D_LPIPS_WEIGHTS`` or ``lpips_alex.safetensors`` in the cache folder (:mod:`vdm3d.io.cache`). The network is written here
  in plain torch (five convolutions; no torchvision). Keys: ``features.{0,3,6,8,10}.{weight,bias}``
  (torchvision's ``alexnet().features`` names) and ``lin{0..4}.weight`` of shape ``[1, C, 1, 1]``
  (the ``lin{k}.model.1.weight`` of the ``lpips`` package, renamed). Inputs go to [-1, 1], then
  through LPIPS' fixed shift/scale; features are unit-normalized over channels, their squared
  difference weighted by the linear heads, averaged over space and summed over layers.
* **Weight-free substitute: multi-scale SSIM** (Wang et al. 2003) on a 2x average-pooling image
  pyramid, as many of its five scales as the image size allows (three at 64x64), through
  :func:`vdm3d.metrics.image.ms_ssim`; the term is ``1 - MS-SSIM``. It compares structure at coarse
  scales as well as fine ones, which is what the perceptual term adds over the single-scale D-SSIM
  term; it is not a learned metric.

:func:`make_perceptual` picks one and reports its name, which the run manifest records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.errors import InputError, MissingWeightsError
from vdm3d.io.cache import cache_root
from vdm3d.models.weights import load_state_dict
from vdm3d.recon.losses import ms_ssim_loss

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
ALEX_CHANNELS = (64, 192, 384, 256, 256)

PerceptualLoss = Callable[[Tensor, Tensor], Tensor]


def lpips_weights_path() -> Path:
    """Where LPIPS weights are looked for (``$VDM3D_LPIPS_WEIGHTS`` overrides the cache location)."""
    env = os.environ.get("VDM3D_LPIPS_WEIGHTS")
    return Path(env) if env else cache_root() / "lpips_alex.safetensors"


def ms_ssim_substitute(pred: Float[Tensor, "B H W 3"], target: Float[Tensor, "B H W 3"]) -> Float[Tensor, ""]:
    """``1 - MS-SSIM`` (:func:`vdm3d.recon.losses.ms_ssim_loss`): the weight-free perceptual term."""
    return ms_ssim_loss(pred, target)


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
        net = LPIPSAlex()
        state = load_state_dict(path)
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
    """The perceptual loss and its name: ``"lpips-alex"`` or ``"ms-ssim"``.

    ``kind="auto"`` uses LPIPS when :func:`lpips_weights_path` exists; ``"lpips"`` requires it;
    ``"ms-ssim"`` always uses the substitute.
    """
    path = lpips_weights_path()
    if kind == "lpips" or (kind == "auto" and path.is_file()):
        if not path.is_file():
            raise MissingWeightsError(f"{path}: LPIPS weights are not present; convert AlexNet + LPIPS linear "
                                      "heads to safetensors there (or set VDM3D_LPIPS_WEIGHTS), or use "
                                      "--perceptual ms-ssim.")
        return LPIPSAlex.from_file(path), "lpips-alex"
    return ms_ssim_substitute, "ms-ssim"
