"""Video metrics against geometry: temporal consistency through exact flow, structure against the
mesh's edges, and colour distance to a style image.

* :func:`warp_error`: each frame ``t+1`` pulled back into frame ``t`` through the exact flow, the
  mean absolute difference where the correspondence is valid (seen in both, not occluded). A video
  that moves with the scene scores near 0 (the ground-truth render of a Lambertian scene scores only
  its resampling error); flicker and swimming textures score high.
* :func:`edge_fscore`: Canny edges of each frame against the mesh's geometric edges, with a
  ``tolerance``-pixel match in both directions (precision: predicted edges near a true edge; recall:
  true edges near a predicted one).
* :func:`color_histogram_distance`: the Hellinger distance between the joint RGB histograms
  (``bins^3``) of the frames and of the style image: 0 for identical colour distributions, 1 for
  disjoint ones.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from vdm3d.geometry.flow import warp_backward


def warp_error(frames: Float[Tensor, "F H W 3"], flow: Float[Tensor, "F1 H W 2"], valid: Bool[Tensor, "F1 H W"]
               ) -> float:
    """Mean over consecutive pairs of the mean ``|frame_t - warp(frame_{t+1})|`` on valid pixels."""
    errs = []
    for t in range(len(flow)):
        m = valid[t]
        if not bool(m.any()):
            continue
        pulled = warp_backward(frames[t + 1], flow[t])
        errs.append(float((frames[t] - pulled).abs().mean(-1)[m].mean()))
    return float(np.mean(errs)) if errs else float("nan")


def canny_edges(image: Float[Tensor, "H W 3"], low: int = 50, high: int = 120) -> np.ndarray:
    """Canny edges (bool ``[H, W]``) of the luminance after a 3x3 Gaussian blur."""
    grey = (image.clamp(0, 1) @ image.new_tensor([0.299, 0.587, 0.114]) * 255).round().byte().numpy()
    return cv2.Canny(cv2.GaussianBlur(grey, (3, 3), 0), low, high) > 0


def edge_fscore(frames: Float[Tensor, "F H W 3"], true_edges: Float[Tensor, "F H W"], tolerance: int = 1) -> float:
    """Mean F-score of the frames' Canny edges against ``true_edges`` (> 0.5) within ``tolerance`` px."""
    k = 2 * tolerance + 1
    scores = []
    for img, gt in zip(frames, true_edges):
        pred = torch.from_numpy(canny_edges(img)).float()
        truth = (gt > 0.5).float()
        near_truth = F.max_pool2d(truth[None, None], k, 1, tolerance)[0, 0] > 0
        near_pred = F.max_pool2d(pred[None, None], k, 1, tolerance)[0, 0] > 0
        p = float((pred.bool() & near_truth).sum() / pred.sum().clamp_min(1))
        r = float((truth.bool() & near_pred).sum() / truth.sum().clamp_min(1))
        scores.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(scores))


def color_histogram(images: Float[Tensor, "*B H W 3"], bins: int = 8) -> Float[Tensor, " K"]:
    """Normalized joint RGB histogram with ``bins`` per channel."""
    q = (images.reshape(-1, 3).clamp(0, 1) * bins).long().clamp(max=bins - 1)
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    h = torch.bincount(idx, minlength=bins ** 3).double()
    return h / h.sum()


def color_histogram_distance(frames: Float[Tensor, "F H W 3"], style: Float[Tensor, "H2 W2 3"], bins: int = 8
                             ) -> float:
    """Mean over frames of the Hellinger distance between the frame's and the style's histograms."""
    s = color_histogram(style, bins)
    d = [float((1 - (color_histogram(f, bins) * s).sqrt().sum()).clamp_min(0).sqrt()) for f in frames]
    return float(np.mean(d))
