"""Views: images with their cameras, the currency between generation, reconstruction and rendering.

Video generation returns Views; reconstruction consumes Views; rendering returns Views. A video is
Views with a frame rate. Everything is batched over the first axis ``N`` (views or frames).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float, Shaped, UInt8
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError

Origin = Literal["input", "generated", "rendered"]

#: how far a float image or colour may stray outside [0, 1] (rounding in blends and resampling) before it is
#: refused as being on another scale (0..255 floats are the usual mistake)
RANGE_SLACK = 1e-3


def unit_range(values, where: str, uint8_to: torch.dtype = torch.float32) -> Tensor:
    """``values`` (colours or images, a tensor or numpy array) as a float tensor in [0, 1]: uint8 is
    divided by 255 in ``uint8_to``, floats keep their dtype; other dtypes, and floats outside [0, 1]
    (0..255 floats, say), are refused in one sentence that starts with ``where`` (e.g. ``"Views: images"``).
    Costs one min and max."""
    if isinstance(values, np.ndarray):
        values = torch.as_tensor(values)
    elif not torch.is_tensor(values):
        raise InputError(f"{where} must be a torch tensor or numpy array, got {type(values).__name__}.")
    if values.dtype == torch.uint8:
        return values.to(uint8_to) / 255.0
    if not values.is_floating_point():
        kind = str(values.dtype).removeprefix("torch.")
        raise InputError(f"{where} are {kind}; pass floats in [0, 1] or uint8 in 0..255.")
    if values.numel():
        lo, hi = (float(x) for x in torch.aminmax(values.detach()))
        if lo < -RANGE_SLACK or hi > 1.0 + RANGE_SLACK:
            on_255 = 1.0 < hi <= 255.0 + RANGE_SLACK and lo >= -RANGE_SLACK
            hint = "divide by 255" if on_255 else "rescale them"
            raise InputError(f"{where} must be floats in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; {hint} "
                             "(or pass uint8).")
    return values


def image_batch(images, where: str) -> Tensor:
    """``images`` as a float batch ``[N, H, W, 3]`` in [0, 1] (see :func:`unit_range`); one image
    ``[H, W, 3]`` and channels-first ``[N, 3, H, W]`` are refused in one sentence that says what to pass."""
    images = unit_range(images, f"{where}: images")
    shape = tuple(images.shape)
    if images.dim() == 4 and shape[-1] == 3:
        return images
    if images.dim() == 3 and shape[-1] == 3:
        fix = "one image: pass images[None]"
    elif images.dim() == 4 and shape[1] == 3:
        fix = "channels first: pass images.permute(0, 2, 3, 1)"
    elif images.dim() == 3 and shape[0] == 3:
        fix = "one channels-first image: pass images.permute(1, 2, 0)[None]"
    else:
        fix = "RGB last"
    raise InputError(f"{where}: images must be [N, H, W, 3], got {list(shape)} ({fix}).")


@dataclasses.dataclass(frozen=True)
class Views:
    """``N`` images in [0, 1] with cameras and optional per-view maps.

    ``images`` are floats ``[N, H, W, 3]`` in [0, 1], or uint8 (divided by 255 into float32); numpy arrays are
    taken as tensors. Floats outside [0, 1] (0..255, say) and other layouts are refused (:func:`image_batch`).
    """

    # uint8 and numpy are accepted and kept as a float tensor
    images: Float[Tensor, "N H W 3"] | UInt8[Tensor, "N H W 3"] | Shaped[np.ndarray, "N H W 3"]
    cameras: Cameras
    alphas: Float[Tensor, "N H W"] | Float[np.ndarray, "N H W"] | None = None  # numpy is kept as a tensor
    depths: Float[Tensor, "N H W"] | Float[np.ndarray, "N H W"] | None = None
    confidence: Float[Tensor, "N H W"] | Float[np.ndarray, "N H W"] | None = None
    origin: tuple[Origin, ...] = ()
    fps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", image_batch(self.images, "Views"))
        n, h, w, _ = self.images.shape
        if not isinstance(self.cameras, Cameras):
            raise InputError(f"Views: cameras must be Cameras, got {type(self.cameras).__name__}.")
        if self.cameras.shape != (n,):
            raise InputError(f"Views: {n} images but cameras of batch shape {tuple(self.cameras.shape)}.")
        if (self.cameras.width, self.cameras.height) != (w, h):
            raise InputError(f"Views: images are {w}x{h} but cameras are {self.cameras.width}x{self.cameras.height}.")
        for name in ("alphas", "depths", "confidence"):
            m = getattr(self, name)
            if isinstance(m, np.ndarray):
                m = torch.as_tensor(m)
                object.__setattr__(self, name, m)
            if m is not None and tuple(m.shape) != (n, h, w):
                raise InputError(f"Views: {name} must be [{n}, {h}, {w}], got {tuple(m.shape)}.")
        if not self.origin:
            object.__setattr__(self, "origin", ("input",) * n)
        elif len(self.origin) != n:
            raise InputError(f"Views: {n} images but {len(self.origin)} origin labels.")
        else:
            object.__setattr__(self, "origin", tuple(self.origin))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def __getitem__(self, index) -> "Views":
        idx = torch.arange(len(self))[index]
        idx = idx.reshape(-1)
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return Views(self.images[idx], self.cameras[idx], pick(self.alphas), pick(self.depths),
                     pick(self.confidence), tuple(self.origin[i] for i in idx.tolist()), self.fps)

    def to(self, *args, **kwargs) -> "Views":
        mv = lambda t: None if t is None else t.to(*args, **kwargs)  # noqa: E731
        return dataclasses.replace(self, images=mv(self.images), cameras=self.cameras.to(*args, **kwargs),
                                   alphas=mv(self.alphas), depths=mv(self.depths), confidence=mv(self.confidence))

    def with_origin(self, origin: Origin) -> "Views":
        return dataclasses.replace(self, origin=(origin,) * len(self))

    @staticmethod
    def cat(views: Sequence["Views"]) -> "Views":
        """Concatenate; optional maps are kept only when every part has them."""
        def join(name: str):
            parts = [getattr(v, name) for v in views]
            return None if any(p is None for p in parts) else torch.cat(parts)
        return Views(torch.cat([v.images for v in views]), Cameras.cat([v.cameras for v in views]),
                     join("alphas"), join("depths"), join("confidence"),
                     tuple(o for v in views for o in v.origin), views[0].fps)
