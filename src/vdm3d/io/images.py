"""Images and depth maps on disk, in the one in-memory layout vdm3d uses: float ``[H, W, C]`` in [0, 1].

Reading
    :func:`read_image` decodes PNG, JPEG, BMP, TIFF, WebP (OpenCV, with imageio as a fallback for
    other formats, among them a phone's HEIC / HEIF through pillow-heif) into a float32 tensor
    ``[H, W, 3]`` (or ``[H, W, 4]`` when the file has alpha and
    ``alpha=True``); 8-bit files are divided by 255, 16-bit files by 65535. Grey files are repeated
    to three channels. A missing, empty, corrupt or non-image file, a folder, or a header that claims
    more than :data:`MAX_IMAGE_PIXELS` (a decompression bomb; checked before decoding by
    :func:`check_image_file`, the entry every image reader of vdm3d goes through) raises
    :class:`InputError` with one sentence naming the file.

    Pixels come as stored unless ``upright=True``, which turns them the way the file's EXIF
    orientation tag says a viewer shows them (a phone's portrait JPEG is stored sideways with tag 6).
    A single photo given to a job is read upright; posed photos are read as stored, because their
    cameras (COLMAP, transforms.json) describe the stored pixels.

    ``at_least=N`` reads a large image smaller, for a job that works at a fraction of its size: it is
    shrunk by the largest whole factor that keeps its shorter side at least ``N`` pixels (:func:`shrink_factor`),
    before any conversion to floats, with an area filter (the colour premultiplied by alpha, so a cut-out's
    hidden colour does not bleed into its edge; a JPEG is decoded at 1/2, 1/4 or 1/8 scale directly, each
    pixel the mean of its 8x8 block's share). An image under ``2 N`` on its shorter side is read as it is.
    A 4000x3000 photo for a 64 px job took seconds of float conversion, masking and hole filling at
    full size before anything ran.

    An animated GIF, WebP or PNG (or a multi-page TIFF) gives its first frame, and says so once
    (``say``, else a warning): "anim.gif has 2 frames; using the first".

Writing
    :func:`write_image` writes PNG (8 or 16 bit) or JPEG atomically (encode in memory, then
    :func:`vdm3d.io.runs.atomic_write_bytes`), so a failed write never leaves half a file.

Depth
    :func:`write_depth` / :func:`read_depth` store z-depth ``[H, W]`` (same units as the scene):

    * ``.npy``: float32, exact (lossless) - the default choice for pipelines;
    * ``.png``: 16-bit unsigned, ``value = round(depth * scale)`` with ``scale = 1000`` by default
      (millimetres when depth is in metres: resolution ``1 / scale``, range up to ``65535 / scale``);
      0 means "no depth" and reads back as 0. This is the common RGB-D dataset layout, viewable in
      any image tool. Values outside the range raise instead of clipping silently.

OpenCV stores channels as BGR(A); the flips to RGB(A) happen here and nowhere else.
"""

from __future__ import annotations

import functools
import io
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Literal

import cv2
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.errors import InputError
from vdm3d.io.runs import atomic_write_bytes

DEPTH_PNG_SCALE = 1000.0
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# Decoding allocates width x height x channels before it can notice a lie in the header, so a file
# whose header claims more pixels than this is refused before any decoder runs (a "decompression
# bomb": a few bytes of PNG that claim 60,000 x 60,000 pixels). VDM3D_MAX_IMAGE_PIXELS raises it.
MAX_IMAGE_PIXELS = 1 << 27  # 134 megapixels, e.g. 16384 x 8192

def quiet_opencv(cv) -> None:
    """Keep OpenCV to errors: it prints "[ WARN:0@...]" lines of its own for files it cannot read, and our
    sentence says it better. OpenCV 4.13 moved the switch to ``cv2.utils.logging``; before it (pyproject
    allows 4.11) ``cv2.setLogLevel`` took the level as a number, errors being 2 in both."""
    logging = getattr(cv.utils, "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    else:
        cv.setLogLevel(2)


quiet_opencv(cv2)


def max_image_pixels() -> int:
    value = os.environ.get("VDM3D_MAX_IMAGE_PIXELS", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_IMAGE_PIXELS


@functools.cache
def _pil_reads_heif() -> None:
    """Teach PIL (and so imageio) HEIC / HEIF, the format phones save photos in; once per process
    (50 ms), at the first image read."""
    try:
        import pillow_heif
    except ImportError:  # a broken or missing pillow-heif costs HEIC only, never PNG or JPEG
        return
    pillow_heif.register_heif_opener()


def check_image_file(path: str | Path, what: str = "an image") -> tuple[int, int] | None:
    """The guarded entry of every image reader: the file exists, is a file, is not empty, and its header
    does not claim more than :func:`max_image_pixels` pixels. Returns ``(width, height)`` from the
    header, or ``None`` when PIL does not know the format (the decoder then has the last word).

    Reads only the header; nothing is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_file(path, what)
    _pil_reads_heif()
    cap = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we apply our own cap below
            try:
                with Image.open(path) as im:
                    width, height = im.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        size = _opencv_only_size(path)  # formats OpenCV decodes and PIL does not know (Radiance .hdr, PFM)
        if size is None:
            return None
        width, height = size
    if width * height > cap:
        raise InputError(path=path, problem=f"claims {width}x{height} pixels in its header, more than the "
                         f"{cap:,} vdm3d decodes", fix="resize the image (or raise VDM3D_MAX_IMAGE_PIXELS)")
    return width, height


_RADIANCE_SIZE = re.compile(rb"^([-+])([XY]) (\d+) ([-+])([XY]) (\d+)$")


def _opencv_only_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the header of an image PIL does not read and OpenCV decodes: Radiance HDR
    (``#?RADIANCE``, run-length coded, so a 60 MB file of one colour is 30000 x 30000 pixels, 10.8 GB as
    floats, which OpenCV's own limit of 2**30 pixels lets through) and PFM; None for anything else."""
    with open(path, "rb") as f:
        head = f.read(4096)
    lines = head.split(b"\n")
    if head.startswith(b"#?"):  # header lines, an empty line, then "-Y H +X W"
        if b"" not in lines[:-1]:
            return None
        m = _RADIANCE_SIZE.match(lines[lines.index(b"") + 1].strip())
        if m is None:
            return None
        first, second = int(m.group(3)), int(m.group(6))
        return (second, first) if m.group(2) == b"Y" else (first, second)
    words = head.split(maxsplit=3)
    if len(words) >= 3 and words[0] in (b"PF", b"Pf") and words[1].isdigit() and words[2].isdigit():
        return int(words[1]), int(words[2])
    return None


# EXIF orientation tag (0x0112) -> the turn from stored to displayed pixels of an [H, W, ...] array,
# the same as PIL's ImageOps.exif_transpose (which only takes PIL images, not 16-bit RGB(A)).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # shown turned 90 degrees clockwise (a phone held upright)
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transverse
    8: lambda a: np.rot90(a, 1),  # shown turned 90 degrees counter-clockwise
}


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file (1 = as stored, also when there is none), from its
    header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format == "PNG" and "exif" not in im.info:  # PIL decodes the whole image to look past IDAT
                exif = Image.Exif()
                exif.load(_png_chunk(path, b"eXIf") or b"")
            else:
                exif = im.getexif()
            value = exif.get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1
    return value if value in _UPRIGHT else 1


def _png_chunk(path: str | Path, kind: bytes) -> bytes | None:
    """The data of the first chunk of type ``kind`` in a PNG file, found by reading the chunks' headers only."""
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        while len(head := f.read(8)) == 8:
            length, name = int.from_bytes(head[:4], "big"), head[4:]
            if name == kind:
                return f.read(length)
            if name == b"IEND":
                return None
            f.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
    return None


def turn_upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` (``[H, W]`` or ``[H, W, C]``, as stored) turned the way EXIF ``orientation`` shows it."""
    return np.ascontiguousarray(_UPRIGHT[orientation](array)) if orientation in _UPRIGHT else array


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(path=path, problem=f"does not exist ({what} expected)", fix="check the path")
    if path.is_dir():
        raise InputError(path=path, problem=f"is a folder, not {what}", fix="pass a file")
    if path.stat().st_size == 0:
        raise InputError(path=path, problem="is empty (0 bytes)", fix=f"pass a valid {what}")


def shrink_factor(width: int, height: int, at_least: int | None) -> int:
    """The largest whole factor by which a ``width`` x ``height`` image can shrink with its shorter side
    still at least ``at_least`` pixels (1: not at all; also for ``None``)."""
    return max(1, min(width, height) // at_least) if at_least else 1


def shrink(arr: np.ndarray, factor: int) -> np.ndarray:
    """``arr`` (``[H, W]`` or ``[H, W, C]``, RGB(A) or grey(+alpha), uint8, uint16 or float) shrunk ``factor``
    times on each side (rounded) by an area filter, in its own dtype. With an alpha channel (C = 2 or 4) that is
    not opaque everywhere the colour is averaged premultiplied by alpha (a transparent pixel's hidden colour
    does not bleed into the edge), then divided by the averaged alpha again."""
    if factor <= 1:
        return arr
    h, w = arr.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    dtype = arr.dtype
    work = arr if dtype in (np.uint8, np.uint16, np.float32) else arr.astype(np.float32)
    top = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), 1.0)
    has_alpha = work.ndim == 3 and work.shape[2] in (2, 4)
    if has_alpha and float(work[..., -1].min()) < top:
        f = work.astype(np.float32)
        a = f[..., -1:] / top
        f[..., :-1] *= a
        out = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
        a = out[..., -1:] / top
        out[..., :-1] = np.where(a > 0, out[..., :-1] / np.maximum(a, 1e-12), 0.0)
    else:
        out = cv2.resize(work, size, interpolation=cv2.INTER_AREA)
    if out.ndim == 2 and arr.ndim == 3:  # OpenCV drops a single channel axis
        out = out[..., None]
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.round(out), 0, top).astype(dtype)
    return out.astype(dtype)


def upright_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image file as a viewer shows it (its EXIF orientation applied), from its
    header; None where PIL does not know the format."""
    size = check_image_file(path)
    if size is None:
        return None
    return size[::-1] if exif_orientation(path) in (5, 6, 7, 8) else size


_ANIMATED_FORMATS = ("GIF", "WEBP", "PNG", "TIFF")  # not MPO: a phone's JPEG often holds a second picture


def frame_count(path: str | Path) -> int:
    """How many frames an animated GIF, WebP or PNG (or pages a TIFF) holds, from the file; 1 for any
    other file (a phone's MPO JPEG with a depth map or thumbnail inside is one picture)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1)) if im.format in _ANIMATED_FORMATS else 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return 1


def say_first_frame(path: str | Path, say: Callable[[str], None] | None = None) -> None:
    """Tell ``say`` (None: a warning) that an animated file is read as its first frame."""
    n = frame_count(path)
    if n > 1:
        message = f"{path} has {n} frames; using the first"
        if say is not None:
            say(message)
        else:
            warnings.warn(message, stacklevel=3)


def _is_jpeg(data: np.ndarray) -> bool:
    return data.size > 3 and bytes(data[:3]) == b"\xff\xd8\xff"


def _decode(path: Path, scale: int = 1) -> np.ndarray:
    """Raw decoded array (uint8 or uint16), RGB(A) channel order, ``[H, W]`` or ``[H, W, C]``; a JPEG at up to
    ``1 / scale`` of its size (1/2, 1/4 or 1/8: libjpeg's scaled decoding, see :func:`read_image`)."""
    data = np.fromfile(path, dtype=np.uint8)
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    if scale >= 2 and _is_jpeg(data):  # 8x8 blocks decoded to 4x4, 2x2 or 1x1 pixels: their means
        reduced = 8 if scale >= 8 else 4 if scale >= 4 else 2
        flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}[reduced] | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        arr = cv2.imdecode(data, flags) if data.size else None
    except cv2.error:  # OpenCV's own size limit or a corrupt header
        arr = None
    if arr is not None:
        if arr.ndim == 3 and arr.shape[2] == 3:
            arr = arr[..., ::-1]  # OpenCV's BGR -> RGB
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., [2, 1, 0, 3]]  # BGRA -> RGBA
        return np.ascontiguousarray(arr)
    try:  # formats OpenCV does not read (GIF, some TIFF variants)
        import imageio.v3 as iio

        arr = np.asarray(iio.imread(path, index=0))
    except Exception as e:  # noqa: BLE001 - any decoder failure means "not an image we can read"
        if "truncated" in str(e):  # a download or copy cut short: the format is fine, the file is not whole
            raise InputError(path=path, problem="is cut short (the image data ends early)",
                             fix="copy or export the file again") from None
        raise InputError(path=path, problem=f"is not a readable image ({type(e).__name__})",
                         fix="pass a PNG or JPEG file") from None
    return arr


def read_image(path: str | Path, alpha: bool = False, upright: bool = False, at_least: int | None = None,
               square: bool = False, say: Callable[[str], None] | None = None) -> Float[Tensor, "H W C"]:
    """Read an image file into a float32 tensor in [0, 1], ``[H, W, 3]`` (``[H, W, 4]`` if ``alpha``
    and the file has an alpha channel; files without alpha get an opaque one when ``alpha=True``).
    ``upright``: apply the file's EXIF orientation; ``square``: keep the centre square (after turning it
    upright, before shrinking it, so the crop is placed to the file's pixel); ``at_least``: shrink a large
    image while its shorter side stays at least that long; ``say`` hears that an animated file gives its
    first frame (see the module's docstring)."""
    path = Path(path)
    size = check_image_file(path, "an image")
    arr = _decode(path, shrink_factor(*size, at_least) if size else 1)
    say_first_frame(path, say)
    if upright:
        arr = turn_upright(arr, exif_orientation(path))
    if square:
        h, w = arr.shape[:2]
        side = min(h, w)
        arr = arr[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    if at_least:
        arr = shrink(arr, shrink_factor(arr.shape[1], arr.shape[0], at_least))
    if arr.dtype == np.uint8:
        img = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        img = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        img = arr.astype(np.float32)
    else:
        raise InputError(path=path, problem=f"has unsupported pixel type {arr.dtype}",
                         fix="save it as 8- or 16-bit PNG")
    if img.ndim == 2:
        img = img[..., None]
    c = img.shape[2]
    if c in (1, 2):  # grey or grey+alpha
        grey = np.repeat(img[..., :1], 3, axis=2)
        img = np.concatenate([grey, img[..., 1:2]], 2) if c == 2 else grey
    elif c not in (3, 4):
        raise InputError(path=path, problem=f"has {c} channels", fix="pass an RGB or RGBA image")
    if alpha and img.shape[2] == 3:
        img = np.concatenate([img, np.ones_like(img[..., :1])], 2)
    if not alpha:
        img = img[..., :3]
    return torch.from_numpy(np.ascontiguousarray(img))


#: a square image (explore's start image, stylize's style image) is read shrunk to no less than this many
#: times its output size on its shorter side (the side of its centre square); images under twice that are read whole
SQUARE_READ_MARGIN = 4


def read_square_image(path: str | Path, size: int, say: Callable[[str], None] | None = None, who: str = "vdm3d"
                      ) -> tuple[Float[Tensor, "size size 3"], dict[str, list[int]]]:
    """A picture as ``[size, size, 3]`` in [0, 1]: upright (its EXIF orientation applied), its centre square,
    resized with area filtering, and the crop for a manifest, ``{"source_size": [width, height], "crop_box":
    [left, top, right, bottom]}`` in the upright file's pixels.

    Transparent pixels are composited over white, as the object job does (a cut-out's transparent pixels often
    hold black, which a video model would take for a black wall or a dark style), and ``say`` hears so; it also
    hears when the crop drops more than half of the image (``who`` names the job that keeps the square) and when
    an animated file gives its first frame. A large image is read shrunk first (:func:`read_image`'s
    ``at_least``, :data:`SQUARE_READ_MARGIN`)."""
    rgba = read_image(path, alpha=True, upright=True, at_least=SQUARE_READ_MARGIN * size, square=True,
                      say=say).numpy()
    alpha = rgba[..., 3:]
    transparent = bool(alpha.min() < 1.0)
    img = rgba[..., :3] * alpha + (1.0 - alpha) if transparent else rgba[..., :3]
    if transparent and say is not None:
        say(f"{path}: transparent pixels composited over white")
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    width, height = upright_size(path) or (img.shape[1], img.shape[0])  # the file's own size
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    if 2 * side * side < width * height and say is not None:
        say(f"{path} is {width}x{height}: {who} uses its centre {side}x{side} square "
            f"({100 * (1 - side / max(width, height)):.0f}% of the image is cropped away)")
    crop = {"source_size": [width, height], "crop_box": [x0, y0, x0 + side, y0 + side]}
    return torch.from_numpy(img).float().clamp(0, 1), crop


def _to_numpy(image) -> np.ndarray:
    if torch.is_tensor(image):
        image = image.detach().cpu().numpy()
    return np.asarray(image)


def encode_image(image, suffix: str = ".png", bits: Literal[8, 16] = 8, jpeg_quality: int = 95) -> bytes:
    """Encode ``[H, W]``, ``[H, W, 1|3|4]`` floats in [0, 1] (or uint8/uint16 as is) to file bytes."""
    arr = _to_numpy(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"write_image: expected an image [H, W], [H, W, 3] or [H, W, 4], got shape "
                         f"{tuple(arr.shape)}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("write_image: the image has NaN or inf values; clean it before saving.")
        top = 65535 if bits == 16 else 255
        arr = np.round(np.clip(arr, 0.0, 1.0) * top).astype(np.uint16 if bits == 16 else np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(f"write_image: unsupported dtype {arr.dtype}; pass floats in [0, 1], uint8 or uint16.")
    if arr.ndim == 3:
        arr = arr[..., [2, 1, 0]] if arr.shape[2] == 3 else arr[..., [2, 1, 0, 3]]  # RGB(A) -> BGR(A)
    suffix = suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    if suffix in (".jpg", ".jpeg") and arr.dtype == np.uint16:
        arr = (arr // 257).astype(np.uint8)
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(arr), params)
    if not ok:
        raise InputError(f"write_image: OpenCV could not encode a {suffix} image; use .png.")
    return buf.tobytes()


def write_image(path: str | Path, image, bits: Literal[8, 16] = 8, jpeg_quality: int = 95) -> Path:
    """Write an image atomically. Floats are clipped to [0, 1] and quantized to ``bits``; the format
    follows the suffix (``.png`` recommended; ``.jpg`` is always 8 bit)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _IMAGE_SUFFIXES:
        raise InputError(path=path, problem=f"has an unsupported image suffix {suffix!r}",
                         fix="use .png or .jpg")
    atomic_write_bytes(path, encode_image(image, suffix, bits, jpeg_quality))
    return path


# -- depth ---------------------------------------------------------------------------------------
def write_depth(path: str | Path, depth: Float[Tensor, "H W"] | np.ndarray,
                scale: float | int = DEPTH_PNG_SCALE) -> Path:
    """Write z-depth ``[H, W]``: ``.npy`` float32 exact, or ``.png`` 16-bit ``round(depth * scale)``
    (0 = no depth). Non-finite or negative depths are stored as 0 (no depth) in both formats."""
    path = Path(path)
    d = _to_numpy(depth).astype(np.float32)
    if d.ndim != 2:
        raise InputError(path=path, field="depth", problem=f"must be [H, W], got shape {tuple(d.shape)}",
                         fix="squeeze the channel axis")
    d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, d, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    elif suffix == ".png":
        q = np.round(d.astype(np.float64) * scale)
        if q.max(initial=0) > 65535:
            raise InputError(path=path, field="depth",
                             problem=f"exceeds the 16-bit PNG range ({float(d.max()):.4g} > {65535 / scale:.4g})",
                             fix="lower scale or save as .npy")
        ok, buf = cv2.imencode(".png", q.astype(np.uint16))
        if not ok:
            raise InputError(path=path, problem="could not be encoded as a 16-bit PNG", fix="save as .npy")
        atomic_write_bytes(path, buf.tobytes())
    else:
        raise InputError(path=path, problem=f"has an unsupported depth suffix {suffix!r}", fix="use .npy or .png")
    return path


def read_depth(path: str | Path, scale: float | int = DEPTH_PNG_SCALE) -> Float[Tensor, "H W"]:
    """Read z-depth written by :func:`write_depth` (``.npy`` or 16-bit ``.png``), float32 ``[H, W]``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        check_image_file(path, "a depth map")
    else:
        _check_file(path, "a depth map")
    if suffix == ".npy":
        try:
            d = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise InputError(path=path, problem=f"is not a readable .npy array ({type(e).__name__})",
                             fix="write it with numpy.save") from None
    elif suffix == ".png":
        try:
            d = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            d = None
        if d is None:
            raise InputError(path=path, problem="is not a readable PNG", fix="pass a 16-bit depth PNG")
        if d.dtype != np.uint16 or d.ndim != 2:
            raise InputError(path=path, problem=f"is a {d.dtype} image with shape {tuple(d.shape)}, not a "
                             "16-bit single-channel depth PNG", fix="write depth with vdm3d.io.images.write_depth")
        d = d.astype(np.float32) / scale
    else:
        raise InputError(path=path, problem=f"has an unsupported depth suffix {suffix!r}", fix="use .npy or .png")
    if d.ndim != 2:
        raise InputError(path=path, field="depth", problem=f"must be [H, W], got shape {tuple(d.shape)}",
                         fix="save a 2D array")
    return torch.from_numpy(np.ascontiguousarray(d.astype(np.float32)))
