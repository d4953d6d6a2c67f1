"""The object in an input image: its foreground mask, recentred and composited on white.

Object-orbit models (SV3D, V3D, the embedded tiny model) were trained on a centred object on a white
background, so every input goes through the same three steps:

1. **Mask.** An RGBA image is used as given (its alpha is the mask). An RGB image must sit on a plain
   background: the background colour is the median of the image border, and the border must agree
   with it (at least ``min_plain_fraction`` of border pixels within ``tol`` of it), otherwise we stop
   with a sentence asking for an RGBA input. The soft mask ramps from 0 at distance ``tol`` to 1 at
   ``2 * tol`` from the background colour (max channel difference); holes enclosed by the object are
   filled, since an object colour that happens to match the background must not punch a hole through
   the object (a hole in one silhouette would carve a tunnel through the whole reconstruction).
2. **Recentre** (like V3D's ``recenter(mask, border_ratio)``): crop to the mask's bounding box and pad
   to a square whose side is ``max(w, h) / (1 - border_ratio)``, so the object's longer side covers
   ``1 - border_ratio`` of the output, centred.
3. **Composite** on white and resize to the model's resolution (area filter for the colour and the
   mask together, premultiplied so the edges do not turn grey).

The same masking serves generated frames (:func:`mask_from_background` with a white background).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from torch import Tensor

from vdm3d.errors import InputError

MIN_FOREGROUND_PIXELS = 16


@dataclasses.dataclass(frozen=True)
class Foreground:
    """An object image ready for an orbit model: composited on white, recentred, square."""

    image: Float[Tensor, "H W 3"]
    alpha: Float[Tensor, "H W"]
    #: where the mask came from: the file's alpha channel or the plain background colour
    mask_source: str
    #: background colour found in an RGB input (``None`` for RGBA inputs)
    background: tuple[float, float, float] | None = None


def read_rgba(path: str | Path) -> tuple[np.ndarray, bool]:
    """Read an image file as float32 ``[H, W, 4]`` in [0, 1] and whether it had an alpha channel."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist", fix="check the path to the input image")
    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(path=path, problem=f"is not a readable image ({type(e).__name__})",
                         fix="give a PNG, JPEG or WebP image of the object") from e
    if rgba.shape[0] < 8 or rgba.shape[1] < 8:
        raise InputError(path=path, problem=f"is only {rgba.shape[1]}x{rgba.shape[0]} pixels",
                         fix="give an image at least 8 pixels on each side")
    return rgba, has_alpha


def border_pixels(rgb: np.ndarray, width: int = 2) -> np.ndarray:
    """The pixels of the outer ``width``-pixel frame of an ``[H, W, 3]`` image, ``[M, 3]``."""
    w = max(1, min(width, rgb.shape[0] // 4, rgb.shape[1] // 4))
    parts = [rgb[:w].reshape(-1, 3), rgb[-w:].reshape(-1, 3), rgb[w:-w, :w].reshape(-1, 3),
             rgb[w:-w, -w:].reshape(-1, 3)]
    return np.concatenate(parts)


def mask_from_background(rgb: np.ndarray, background: np.ndarray | None = None, tol: float = 0.06,
                         fill_holes: bool = True) -> np.ndarray:
    """Soft foreground mask ``[H, W]`` of an ``[H, W, 3]`` image on a plain background colour.

    ``background`` defaults to the median border colour. A pixel whose largest channel difference
    from it is below ``tol`` is background (0); above ``2 * tol`` it is foreground (1); linear between.
    """
    bg = np.median(border_pixels(rgb), axis=0) if background is None else np.asarray(background, np.float32)
    dist = np.abs(rgb - bg).max(-1)
    alpha = np.clip((dist - tol) / tol, 0.0, 1.0).astype(np.float32)
    if fill_holes:
        solid = ndimage.binary_fill_holes(alpha > 0.5)
        alpha = np.where(solid & (alpha <= 0.5), 1.0, alpha).astype(np.float32)
    return alpha


def plain_background(rgb: np.ndarray, tol: float, min_plain_fraction: float) -> tuple[np.ndarray, float]:
    """The median border colour and the fraction of border pixels within ``tol`` of it."""
    border = border_pixels(rgb)
    bg = np.median(border, axis=0)
    agree = float((np.abs(border - bg).max(-1) < tol).mean())
    return bg.astype(np.float32), agree


def recenter(rgb: np.ndarray, alpha: np.ndarray, size: int, border_ratio: float,
             threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Crop to the mask's box, pad to a centred square with a border, composite on white, resize.

    Returns ``(image [size, size, 3] on white, alpha [size, size])``.
    """
    ys, xs = np.nonzero(alpha > threshold)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = y1 - y0, x1 - x0
    side = int(np.ceil(max(h, w) / max(1e-3, 1.0 - border_ratio)))
    canvas = np.zeros((side, side, 4), np.float32)  # premultiplied colour + alpha
    oy, ox = (side - h) // 2, (side - w) // 2
    a = alpha[y0:y1, x0:x1, None]
    canvas[oy:oy + h, ox:ox + w, :3] = rgb[y0:y1, x0:x1] * a
    canvas[oy:oy + h, ox:ox + w, 3:] = a
    return composite_resized(canvas, size)


def composite_resized(premultiplied: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a premultiplied RGBA ``[S, S, 4]`` to ``size`` (area filter) and composite on white."""
    chans = [np.asarray(Image.fromarray(premultiplied[..., c]).resize((size, size), Image.Resampling.BOX))
             for c in range(4)]
    out = np.stack(chans, -1).clip(0, 1)
    alpha = out[..., 3]
    image = out[..., :3] + (1.0 - alpha[..., None])  # premultiplied "over" white
    return image.clip(0, 1).astype(np.float32), alpha.astype(np.float32)


def load_object_image(path: str | Path, size: int, border_ratio: float = 0.2, recentre: bool = True,
                      tol: float = 0.06, min_plain_fraction: float = 0.9) -> Foreground:
    """Read an object image and return it masked, recentred and composited on white at ``size``.

    Raises :class:`InputError` (one sentence) for unreadable files, RGB images whose background is not
    a plain colour, and images with no foreground.
    """
    rgba, has_alpha = read_rgba(path)
    rgb, bg = rgba[..., :3], None
    if has_alpha and rgba[..., 3].min() < 0.99:
        alpha, source = rgba[..., 3], "alpha"
    else:
        bg, agree = plain_background(rgb, tol, min_plain_fraction)
        if agree < min_plain_fraction:
            raise InputError(path=path, problem=(f"has no alpha channel and its background is not a plain colour "
                                                 f"(only {100 * agree:.0f}% of border pixels match)"),
                             fix="give an RGBA image with the background removed (transparent)")
        alpha, source = mask_from_background(rgb, bg, tol), "background"
    if int((alpha > 0.5).sum()) < MIN_FOREGROUND_PIXELS:
        raise InputError(path=path, problem="has no foreground object (the mask is empty)",
                         fix="give an image with the object visible, on a transparent or plain background")
    if recentre:
        image, alpha_out = recenter(rgb, alpha, size, border_ratio)
    else:
        premult = np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1)
        if rgb.shape[0] != rgb.shape[1]:
            raise InputError(path=path, problem=f"is {rgb.shape[1]}x{rgb.shape[0]}, not square",
                             fix="pass a square image or turn recentring on")
        image, alpha_out = composite_resized(premult.astype(np.float32), size)
    return Foreground(torch.from_numpy(image), torch.from_numpy(alpha_out), source,
                      None if bg is None else tuple(float(c) for c in bg))
