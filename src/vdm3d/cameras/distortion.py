"""Lens distortion of photos, removed once at the edge so that everything inside stays pinhole.

vdm3d's :class:`~vdm3d.cameras.camera.Cameras` are pinhole. Photos from real lenses come with
distortion coefficients: ``k1, k2, p1, p2[, k3]`` in a nerfstudio ``transforms.json``
(``camera_model`` OPENCV), or a COLMAP camera model (SIMPLE_RADIAL ``k``, RADIAL ``k1 k2``, OPENCV
``k1 k2 p1 p2``) - which LLFF scenes carry beside ``poses_bounds.npy`` in ``sparse/0``. Ignoring
them puts image points several pixels from where the cameras project (fern's SIMPLE_RADIAL
``k = 0.0197`` moves its corners by 1.2 %). The readers undistort such images to the same pinhole
intrinsics with OpenCV (:func:`undistort_image`) and record what they did in the run's manifest;
they never drop the coefficients silently.

The model is OpenCV's (Brown-Conrady): a normalized point ``(x, y)`` with ``r^2 = x^2 + y^2`` is seen at
``x (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x y + p2 (r^2 + 2 x^2)`` (and symmetrically for y).
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from typing import Any

import cv2
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.errors import CameraError


@dataclasses.dataclass(frozen=True)
class Distortion:
    """OpenCV distortion coefficients of one camera, and where they were read."""

    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0
    source: str = ""
    """the file and camera model they came from (recorded in the manifest)"""

    @property
    def coeffs(self) -> np.ndarray:
        """OpenCV's ``distCoeffs`` vector ``[k1, k2, p1, p2, k3]``."""
        return np.array([self.k1, self.k2, self.p1, self.p2, self.k3], dtype=np.float64)

    @property
    def is_zero(self) -> bool:
        return not np.any(self.coeffs)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, **{k: getattr(self, k) for k in ("k1", "k2", "p1", "p2", "k3")},
                "undistorted_with": "cv2.undistort to the same pinhole intrinsics"}


_OPENCV_TERMS = ("k1", "k2", "p1", "p2", "k3")


def distortion_from_colmap(model: str, coefficients: dict[str, float], source: str) -> Distortion | None:
    """The distortion of a COLMAP camera (``model`` and its named coefficients, as
    :func:`vdm3d.cameras.io.colmap_intrinsics` returns them: SIMPLE_RADIAL, RADIAL, OPENCV, and
    FULL_OPENCV without its rational terms), or None if it has none."""
    beyond = {k: v for k, v in coefficients.items() if k not in _OPENCV_TERMS and v}
    if beyond:
        raise CameraError(f"{source}: camera model {model} has distortion terms {sorted(beyond)} that vdm3d cannot "
                          "undistort; undistort the images first (colmap image_undistorter).")
    d = Distortion(**{k: float(coefficients.get(k, 0.0)) for k in _OPENCV_TERMS}, source=f"{source} ({model})")
    return None if d.is_zero else d


def distortion_from_transforms(values: dict[str, float], source: str) -> Distortion | None:
    """The distortion of a ``transforms.json`` frame (its ``k1..k4, p1, p2`` keys), or None if it has none."""
    if values.get("k4"):
        raise CameraError(f"{source}: k4 is a fisheye coefficient that vdm3d cannot undistort; undistort the images "
                          "first (e.g. ns-process-data) and drop k4.")
    for key, v in values.items():
        if not math.isfinite(v):
            raise CameraError(f"{source}: distortion {key} is {v}; fix it or drop the key.")
    d = Distortion(**{k: float(values.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2", "k3")},
                   source=f"{source} (OPENCV)")
    return None if d.is_zero else d


def lens_text(coefficients: dict[str, float]) -> str:
    """A lens's non-zero coefficients as a sentence shows them: ``k1=0.1, p1=0.01``."""
    return ", ".join(f"{k}={v:g}" for k, v in coefficients.items() if v)


def has_lens(kept: Any) -> bool:
    """Whether distortion kept beside cameras (``extras["distortion"]``: one ``{"k1": ...}`` dict for every
    frame, a list of them per frame, or None) bends any ray: an OPENCV ``transforms.json`` whose
    coefficients are all zero (common in nerfstudio exports) has none."""
    if isinstance(kept, dict):
        return any(v for v in kept.values())
    if isinstance(kept, (list, tuple)):
        return any(has_lens(d) for d in kept)
    return False


def refuse_distortion(path: Any, field: str, coefficients: dict[str, float],
                      undistort: str = "colmap image_undistorter") -> CameraError:
    """The refusal of a camera file whose lens would be lost in vdm3d's pinhole cameras, in one sentence that
    says what a command-line user can do (``vdm3d trajectory convert ... --distortion drop``) and names the
    library's keyword. ``field`` names the camera or frame; ``undistort`` the tool that undistorts the images."""
    return CameraError(path=path, field=field, problem=f"has lens distortion ({lens_text(coefficients)}), which "
                       "vdm3d's pinhole cameras would drop",
                       fix=f"undistort the images first ({undistort}), or, if they already are, write a pinhole "
                       f"copy with `vdm3d trajectory convert {shlex.quote(str(path))} --distortion drop --out "
                       "path.json` (in Python: distortion='drop')")


def undistort_image(image: Float[Tensor, "H W C"], K: Float[Tensor, "3 3"], distortion: Distortion
                    ) -> Float[Tensor, "H W C"]:
    """The image a pinhole camera with intrinsics ``K`` would have taken (bilinear, OpenCV's remap).

    Pixels that no source pixel reaches (a band of a few pixels along the border, outside the distorted
    image's footprint) repeat the nearest edge pixel: black there would be fitted as scene content and
    scored against every render (on fern, held-out PSNR fell from 23.5 to 20.4 dB with a black band).

    ``K`` is in vdm3d's convention (pixel centres at +0.5, as COLMAP and nerfstudio write them); OpenCV puts them
    at whole numbers, so it gets ``cx - 0.5, cy - 0.5``: handing it ``K`` as it is bent the image about a point
    half a pixel off and misplaced pixels by up to 0.28 px (``k1 = -0.25`` at 77 degrees across).
    """
    K_np = np.array(K, dtype=np.float64)
    K_np[:2, 2] -= 0.5  # OpenCV's pixel (0, 0) is centred at 0, vdm3d's at 0.5
    img = np.ascontiguousarray(image.detach().cpu().numpy() if torch.is_tensor(image) else image, dtype=np.float32)
    h, w = img.shape[:2]
    map_x, map_y = cv2.initUndistortRectifyMap(K_np, distortion.coeffs, None, K_np, (w, h), cv2.CV_32FC1)
    out = cv2.remap(img, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return torch.from_numpy(out.reshape(img.shape))


__all__ = ["Distortion", "distortion_from_colmap", "distortion_from_transforms", "has_lens", "lens_text",
           "refuse_distortion", "undistort_image"]
