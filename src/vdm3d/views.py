"""Views: images with their cameras, the currency between generation, reconstruction and rendering.

Video generation returns Views; reconstruction consumes Views; rendering returns Views. A video is
Views with a frame rate. Everything is batched over the first axis ``N`` (views or frames).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError

Origin = Literal["input", "generated", "rendered"]


@dataclasses.dataclass(frozen=True)
class Views:
    """``N`` images in [0, 1] with cameras and optional per-view maps."""

    images: Float[Tensor, "N H W 3"]
    cameras: Cameras
    alphas: Float[Tensor, "N H W"] | None = None
    depths: Float[Tensor, "N H W"] | None = None
    confidence: Float[Tensor, "N H W"] | None = None
    origin: tuple[Origin, ...] = ()
    fps: float | None = None

    def __post_init__(self) -> None:
        n, h, w, c = self.images.shape
        if c != 3:
            raise InputError(f"Views: images must be [N, H, W, 3], got {tuple(self.images.shape)}.")
        if self.cameras.shape != (n,):
            raise InputError(f"Views: {n} images but cameras of batch shape {tuple(self.cameras.shape)}.")
        if (self.cameras.width, self.cameras.height) != (w, h):
            raise InputError(f"Views: images are {w}x{h} but cameras are {self.cameras.width}x{self.cameras.height}.")
        for name in ("alphas", "depths", "confidence"):
            m = getattr(self, name)
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
