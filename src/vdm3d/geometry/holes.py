"""Filling the holes of a rendered view by interpolation (OpenCV's Telea method), whole or only at their rim.

A render of the explore cache at a new camera is exact where it is valid and empty in the holes
(disocclusions, the border the camera turns toward). Telea's fast-marching inpainting propagates the
known pixels inward, weighted by distance and by the direction of the image gradient: it is the
non-generative baseline of ``vdm3d eval explore`` for whole holes, and the explore job uses it for the
rim of a hole (the pixels within a few pixels of a known one), which a latent model whose tokens cover
4x4 pixels cannot resolve; the interior is left to the video model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor


def telea_fill(images: Float[Tensor, "F H W 3"], valid: Bool[Tensor, "F H W"], radius: int = 3
               ) -> Float[Tensor, "F H W 3"]:
    """``images`` with the invalid pixels inpainted by OpenCV Telea (per frame, at 8 bits, ``radius`` px)."""
    import cv2
    import numpy as np

    out = []
    for img, ok in zip(images, valid):
        u8 = (img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        holes = (~ok).numpy().astype(np.uint8)
        out.append(torch.from_numpy(cv2.inpaint(u8, holes, radius, cv2.INPAINT_TELEA)).float() / 255)
    return torch.stack(out)


def hole_rim(valid: Bool[Tensor, "F H W"], px: int) -> Bool[Tensor, "F H W"]:
    """Invalid pixels within ``px`` pixels (a ``2 px + 1`` square) of a valid one (0: none)."""
    if px <= 0:
        return torch.zeros_like(valid)
    near = F.max_pool2d(valid.float()[:, None], 2 * px + 1, stride=1, padding=px)[:, 0] > 0.5
    return near & ~valid
