"""The object in an input image: its foreground mask, recentred and composited on white.

Object-orbit models (SV3D, V3D, the embedded tiny model) were trained on a centred object on a white
background, so every input goes through the same three steps (a large image first read shrunk, by the
largest whole factor that keeps its shorter side at least :data:`READ_MARGIN` times the orbit's size, with an
area filter: a phone's 4000x3000 photo took 15-27 s at full size before a 64 px run began, and takes about one
second; images under twice that size are read as they are):

1. **Mask.** A mask file given by the user (``--mask``: white = object) wins; otherwise an RGBA
   image's alpha is the mask. An RGB image on a plain background is masked by colour: the background
   colour is the median of the image border, and the border must agree with it (at least
   ``min_plain_fraction`` of border pixels within ``tol`` of it). The soft mask ramps from 0 at distance
   ``tol`` to 1 at ``2 * tol`` from the background colour (max channel difference); holes enclosed by
   the object are filled, since an object colour that happens to match the background must not punch
   a hole through the object (a hole in one silhouette would carve a tunnel through the whole
   reconstruction). An RGB **photo** on a busy background goes through OpenCV's GrabCut
   (:func:`grabcut_mask`), seeded with a centred box: outside the box is background, inside is
   probably the object. GrabCut and mask files are checked (:func:`check_mask`): a mask that is
   empty, or that covers most of the edge of the box (of the image, for a mask file) - the object
   is cut off, or the background was taken for it - is refused with a sentence that names ``--mask``.
   A mask file must also fit its image (:func:`read_mask`): one of another aspect ratio (a mask of
   another picture, or of a crop) is refused rather than stretched, one of the same aspect at another
   size is resized, and one whose pixels are mostly grey rather than black or white (a photo passed by
   mistake) is refused.
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
from typing import Callable

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage
from torch import Tensor

from vdm3d.errors import InputError
from vdm3d.io.images import check_image_file, say_first_frame, shrink, shrink_factor, upright_size

MIN_FOREGROUND_PIXELS = 16
#: an object image is read shrunk to no less than this many times the orbit's size on its shorter side: an object
#: filling an eighth of a photo's side still has the orbit's resolution; images under twice that are read whole
READ_MARGIN = 8
GRABCUT_MAX_SIDE = 320  # GrabCut runs at this size (its cost grows with pixels; the orbit models see 64-576 px)
GRABCUT_MARGIN = 0.06  # the seed box leaves this fraction of each side as certain background
GRABCUT_ITERATIONS = 5
MAX_EDGE_FRACTION = 0.5  # a mask covering more of the box's (image's) edge than this is refused
MAX_GREY_FRACTION = 0.25  # a mask file with more of its pixels strictly between 0.2 and 0.8 is refused
# (photos: 66-97 % of their grey levels there; masks with soft edges, alpha mattes: under 5 %)


@dataclasses.dataclass(frozen=True)
class Foreground:
    """An object image ready for an orbit model: composited on white, recentred, square."""

    image: Float[Tensor, "H W 3"]
    alpha: Float[Tensor, "H W"]
    #: where the mask came from: "mask" (a file), "alpha", "background" (plain colour) or "grabcut"
    mask_source: str
    #: background colour found in an RGB input (``None`` for RGBA inputs)
    background: tuple[float, float, float] | None = None


def read_rgba(path: str | Path, what: str = "image of the object", at_least: int | None = None,
              say: Callable[[str], None] | None = None) -> tuple[np.ndarray, bool]:
    """Read an image file as float32 ``[H, W, 4]`` in [0, 1] and whether it had an alpha channel
    (``what`` the file should be, for the error's fix). The pixels are upright: turned the way the
    file's EXIF orientation tag says a viewer shows them, as a phone's portrait photo is meant.

    ``at_least``: a large image is shrunk (area filter, premultiplied by alpha; a JPEG decoded at 1/2, 1/4
    or 1/8 scale) by the largest whole factor that keeps its shorter side at least that long, before the
    conversion to floats (:func:`vdm3d.io.images.shrink`). ``say`` hears that an animated file gives its
    first frame."""
    path = Path(path)
    check_image_file(path, f"an {what}" if what[0] in "aeiou" else f"a {what}")  # missing, a folder, empty, a bomb
    try:
        with Image.open(path) as im:
            full = im.size
            scale = shrink_factor(*full, at_least)
            if scale >= 2 and im.format == "JPEG":  # libjpeg's scaled decoding, at least the size asked for
                im.draft(im.mode, (full[0] // scale, full[1] // scale))
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            if im.mode.startswith("I"):  # 16-bit grey ("I;16", "I"): convert("RGBA") clips at 255, a white image
                grey = np.asarray(ImageOps.exif_transpose(im), dtype=np.float32)
                grey = np.clip(_shrunk(grey, at_least) / 65535.0, 0.0, 1.0)
                rgba = np.concatenate([np.repeat(grey[..., None], 3, -1), np.ones_like(grey)[..., None]], -1)
            else:
                rgba = _shrunk(np.asarray(ImageOps.exif_transpose(im.convert("RGBA"))), at_least)
                rgba = rgba.astype(np.float32) / 255.0
    # PIL says SyntaxError for a broken PNG chunk and EOFError for a file cut short
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise InputError(path=path, problem=f"is not a readable image ({type(e).__name__})",
                         fix=f"give a PNG, JPEG or WebP {what}") from e
    if rgba.shape[0] < 8 or rgba.shape[1] < 8:  # never shrunk: at_least is more than 8
        raise InputError(path=path, problem=f"is only {rgba.shape[1]}x{rgba.shape[0]} pixels",
                         fix="give an image at least 8 pixels on each side")
    say_first_frame(path, say)
    return rgba, has_alpha


def _shrunk(array: np.ndarray, at_least: int | None) -> np.ndarray:
    return shrink(array, shrink_factor(array.shape[1], array.shape[0], at_least))


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


def grabcut_mask(rgb: np.ndarray, margin: float = GRABCUT_MARGIN, iterations: int = GRABCUT_ITERATIONS,
                 max_side: int = GRABCUT_MAX_SIDE) -> np.ndarray:
    """Foreground mask ``[H, W]`` in {0, 1} of an ``[H, W, 3]`` photo, by GrabCut from a centred box.

    GrabCut (Rother et al. 2004, OpenCV's ``cv2.grabCut``) fits colour mixtures to the box's outside
    (certain background) and inside (probable object) and cuts the graph between them, ``iterations``
    times. It runs on a copy shrunk to ``max_side``; the mask is brought back to full size, its holes
    filled and only its largest connected part kept. OpenCV's random generator is seeded (k-means
    inside GrabCut), so the mask is reproducible.
    """
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = np.asarray(Image.fromarray((rgb * 255).round().astype(np.uint8)).resize(
        (max(8, round(w * scale)), max(8, round(h * scale))), Image.Resampling.BOX))
    sh, sw = small.shape[:2]
    mx, my = max(1, round(sw * margin)), max(1, round(sh * margin))
    mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, (mx, my, sw - 2 * mx, sh - 2 * my), bgd, fgd,
                iterations, cv2.GC_INIT_WITH_RECT)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
    labels, n = ndimage.label(fg)
    if n > 1:
        fg = labels == (1 + int(np.argmax(ndimage.sum(fg, labels, range(1, n + 1)))))
    fg = ndimage.binary_fill_holes(fg)
    full = np.asarray(Image.fromarray(fg.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR))
    return (full > 0.5).astype(np.float32)


def edge_fraction(alpha: np.ndarray, margin: float = 0.0) -> float:
    """Fraction of the pixels on the edge of the box (``margin`` of each side inside the image; 0: the
    image border) that are foreground."""
    h, w = alpha.shape
    y0, x0 = round(h * margin), round(w * margin)
    y1, x1 = max(y0 + 1, h - y0 - 1), max(x0 + 1, w - x0 - 1)
    ring = np.concatenate([alpha[y0, x0:x1 + 1], alpha[y1, x0:x1 + 1], alpha[y0:y1 + 1, x0], alpha[y0:y1 + 1, x1]])
    return float((ring > 0.5).mean())


def check_mask(alpha: np.ndarray, path: str | Path, source: str, margin: float = 0.0) -> None:
    """Refuse a mask that is empty or covers most of the edge of its box (see the module docstring)."""
    what = "the mask file" if source == "mask" else "the foreground found by GrabCut"
    fix = ("give a mask with the object in white on black" if source == "mask" else
           "give a mask of the object with --mask MASK.png, or an RGBA image with the background removed")
    if int((alpha > 0.5).sum()) < max(MIN_FOREGROUND_PIXELS, 0.002 * alpha.size):
        raise InputError(path=path, problem=f"has no foreground object ({what} is empty)", fix=fix)
    touching = edge_fraction(alpha, margin)
    if touching > MAX_EDGE_FRACTION:
        where = "the image border" if margin == 0 else "the edge of the centred box GrabCut starts from"
        raise InputError(path=path, problem=(f"has no clear object: {what} covers {100 * touching:.0f}% of {where} "
                                             "(the object is cut off or the background was taken for it)"), fix=fix)


def read_mask(path: str | Path, height: int, width: int, shape: tuple[int, int] | None = None
              ) -> Float[np.ndarray, "h w"]:
    """A mask image (white = object; an RGBA mask's alpha) as float ``[height, width]`` in [0, 1] (or at
    ``shape``, ``(h, w)``: the size a large image was read at, :func:`read_rgba`'s ``at_least``).

    A mask of the image's aspect ratio at another size (within a pixel's rounding) is resized; one of
    another aspect ratio is refused, since stretching it would put the object's outline in the wrong
    place; so is one with more than :data:`MAX_GREY_FRACTION` of its pixels grey (between 0.2 and 0.8),
    which is a picture rather than a mask. Both refusals are one sentence naming the file."""
    height_out, width_out = shape or (height, width)
    shrunk = (height_out, width_out) != (height, width)  # the image was: the mask is read shrunk as well
    rgba, has_alpha = read_rgba(path, "black-and-white mask of the object",
                                at_least=min(height_out, width_out) if shrunk else None)
    m = rgba[..., 3] if has_alpha and rgba[..., 3].min() < 0.99 else rgba[..., :3].mean(-1)
    mw, mh = upright_size(path) or m.shape[::-1]  # the file's own size: it may have been read smaller
    if abs(mh - height * mw / width) > 1.0 and abs(mw - width * mh / height) > 1.0:
        raise InputError(path=path, problem=(f"is {mw}x{mh} pixels, which is not the shape of the {width}x{height} "
                                             "image (another aspect ratio: stretched, its outline would miss "
                                             "the object)"),
                         fix=f"give a mask made for this image, {width}x{height} pixels or scaled evenly")
    grey = float(((m > 0.2) & (m < 0.8)).mean())
    if grey > MAX_GREY_FRACTION:
        raise InputError(path=path, problem=(f"is not a black-and-white mask: {100 * grey:.0f}% of its pixels are "
                                             "grey (is it a photo?)"),
                         fix="give a mask with the object in white on black, or leave --mask out to find the "
                             "object automatically")
    if m.shape != (height_out, width_out):
        m = np.asarray(Image.fromarray(m.astype(np.float32)).resize((width_out, height_out), Image.Resampling.BILINEAR))
    return np.clip(m, 0.0, 1.0).astype(np.float32)


def load_object_image(path: str | Path, size: int, border_ratio: float = 0.2, recentre: bool = True,
                      tol: float = 0.06, min_plain_fraction: float = 0.9, mask: str | Path | None = None,
                      say: Callable[[str], None] | None = None) -> Foreground:
    """Read an object image and return it masked, recentred and composited on white at ``size``.

    ``mask``: a mask image of the object (white) that replaces every automatic mask. Raises
    :class:`InputError` (one sentence) for unreadable files, masks that are empty or cover most of
    their edge, and images with no foreground. A large image is read shrunk to no less than
    :data:`READ_MARGIN` times ``size`` on its shorter side (its mask file too), so a phone's 12-megapixel
    photo is masked and recentred at a fraction of its size; ``say`` hears that an animated file gives its
    first frame.
    """
    rgba, has_alpha = read_rgba(path, at_least=READ_MARGIN * size, say=say)
    rgb, bg = rgba[..., :3], None
    width, height = upright_size(path) or (rgb.shape[1], rgb.shape[0])  # the file's own size
    if mask is not None and str(mask) not in ("", "."):
        alpha, source = read_mask(mask, height, width, rgb.shape[:2]), "mask"
        check_mask(alpha, mask, source)
    elif has_alpha and rgba[..., 3].min() < 0.99:
        alpha, source = rgba[..., 3], "alpha"
    else:
        bg, agree = plain_background(rgb, tol, min_plain_fraction)
        if agree >= min_plain_fraction:
            alpha, source = mask_from_background(rgb, bg, tol), "background"
        else:  # a photo: the border is no single colour
            alpha, source, bg = grabcut_mask(rgb), "grabcut", None
            check_mask(alpha, path, source, GRABCUT_MARGIN)
            if say is not None:  # the mask a user should look at when the object comes out as a slab
                say(f"{path}: no transparency and no plain background, so the object was cut out by GrabCut from "
                    "a centred box; check mask.png in the run, or pass --mask")
    if int((alpha > 0.5).sum()) < MIN_FOREGROUND_PIXELS:
        raise InputError(path=path, problem="has no foreground object (the mask is empty)",
                         fix="give an image with the object visible, on a transparent or plain background")
    if recentre:
        image, alpha_out = recenter(rgb, alpha, size, border_ratio)
    else:
        premult = np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1)
        if width != height:
            raise InputError(path=path, problem=f"is {width}x{height}, not square",
                             fix="pass a square image or turn recentring on")
        image, alpha_out = composite_resized(premult.astype(np.float32), size)
    return Foreground(torch.from_numpy(image), torch.from_numpy(alpha_out), source,
                      None if bg is None else tuple(float(c) for c in bg))
