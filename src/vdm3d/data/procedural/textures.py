"""Procedural textures: checker, stripes and noise images that tile seamlessly.

Every texture is an ``uint8 [S, S, 3]`` image (row 0 is the top of the image, as stored in PNG files)
drawn from a ``numpy.random.Generator``, so a seed fixes it bit for bit. All three kinds are periodic
in both directions (integer numbers of checks and stripe periods, noise synthesised in the Fourier
domain), so the wrap-around seam of a parametric surface (``u = 0`` meets ``u = 1``) is invisible and
room surfaces can repeat them.

Colours are drawn in HSV with moderate saturation and value, so that shading stays visible and no
texture is pure black or white.
"""

from __future__ import annotations

import colorsys
from typing import Literal

import numpy as np

TextureKind = Literal["checker", "stripes", "noise"]
KINDS: tuple[TextureKind, ...] = ("checker", "stripes", "noise")


def random_color(rng: np.random.Generator, saturation=(0.3, 0.9), value=(0.35, 0.95)) -> np.ndarray:
    """One RGB colour in [0, 1], ``float32 [3]``, uniform hue."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _second_color(rng: np.random.Generator, c1: np.ndarray) -> np.ndarray:
    """A second colour visibly different from ``c1`` (luminance or hue shift)."""
    for _ in range(16):
        c2 = random_color(rng)
        if np.abs(c2 - c1).sum() > 0.45:
            return c2
    return np.clip(1.0 - c1, 0.05, 0.95).astype(np.float32)


def _blend(t: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Mix two colours by ``t in [0, 1]`` (``[S, S]``) into ``uint8 [S, S, 3]``."""
    img = c1[None, None, :] * (1.0 - t[..., None]) + c2[None, None, :] * t[..., None]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def checker(size: int, c1: np.ndarray, c2: np.ndarray, n: int) -> np.ndarray:
    """``n x n`` checks over the image (``n`` even keeps the wrap seamless)."""
    i = (np.arange(size) * n) // size
    t = ((i[:, None] + i[None, :]) % 2).astype(np.float32)
    return _blend(t, c1, c2)


def stripes(size: int, c1: np.ndarray, c2: np.ndarray, ku: int, kv: int, softness: float) -> np.ndarray:
    """Stripes along the integer wave vector ``(ku, kv)`` periods per image; ``softness`` in [0, 1]
    goes from hard-edged bands (0) to a sinusoid (1)."""
    x = (np.arange(size) + 0.5) / size
    phase = 2 * np.pi * (ku * x[None, :] + kv * x[:, None])
    s = np.sin(phase)
    if softness < 1.0:
        k = 1.0 / max(softness, 0.02)
        s = np.tanh(k * s) / np.tanh(k)
    return _blend(0.5 + 0.5 * s, c1, c2)


def noise(size: int, c1: np.ndarray, c2: np.ndarray, rng: np.random.Generator, beta: float,
          contrast: float) -> np.ndarray:
    """Periodic fractal noise: white noise shaped by ``1 / f^beta`` in the Fourier domain, normalised,
    then pushed through a logistic with ``contrast`` (large: two-tone blobs, small: smooth clouds)."""
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = np.fft.rfft2(white) / f ** beta
    spec[0, 0] = 0.0
    field = np.fft.irfft2(spec, s=(size, size))
    field = (field - field.mean()) / (field.std() + 1e-12)
    t = 1.0 / (1.0 + np.exp(-contrast * field))
    return _blend(t.astype(np.float32), c1, c2)


def random_texture(rng: np.random.Generator, size: int = 128, kind: TextureKind | None = None,
                   base: np.ndarray | None = None) -> tuple[np.ndarray, TextureKind]:
    """A random texture image ``uint8 [size, size, 3]`` and its kind.

    ``base`` fixes the first colour (for example a part colour); the kind is drawn uniformly unless
    given.
    """
    if kind is None:
        kind = KINDS[int(rng.integers(len(KINDS)))]
    c1 = random_color(rng) if base is None else np.asarray(base, dtype=np.float32)
    c2 = _second_color(rng, c1)
    if kind == "checker":
        img = checker(size, c1, c2, n=2 * int(rng.integers(2, 7)))
    elif kind == "stripes":
        ku = int(rng.integers(0, 6))
        kv = int(rng.integers(0 if ku else 1, 6))
        img = stripes(size, c1, c2, ku, kv, softness=float(rng.uniform(0.05, 1.0)))
    elif kind == "noise":
        img = noise(size, c1, c2, rng, beta=float(rng.uniform(1.0, 2.2)), contrast=float(rng.uniform(1.0, 6.0)))
    else:  # pragma: no cover - guarded by the Literal
        raise ValueError(f"unknown texture kind {kind!r}")
    return img, kind


#: Rec. 601 luma weights: the grey a texture's pattern is read from
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def repaint(texture: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """The pattern of ``texture`` (``uint8 [S, S, 3]``, two tones mixed, as :func:`random_texture` makes)
    in two other colours: its luma stretched to [0, 1] is the mix of ``c1`` (darker tone) and ``c2``."""
    lum = texture.astype(np.float32) @ LUMA
    lo, hi = float(lum.min()), float(lum.max())
    t = (lum - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(lum)
    return _blend(t, np.asarray(c1, np.float32), np.asarray(c2, np.float32))


def light_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The two tones of a part in the light palette: a near-white or pastel tone (saturation 0-0.35, value
    0.8-1) and, half of the time, a dark one (value 0.05-0.45: a white cow's patches, a mug's print),
    otherwise a second light tone."""
    light = random_color(rng, saturation=(0.0, 0.35), value=(0.8, 1.0))
    if rng.random() < 0.5:
        return random_color(rng, saturation=(0.0, 0.6), value=(0.05, 0.45)), light
    return random_color(rng, saturation=(0.0, 0.35), value=(0.8, 1.0)), light
