"""The embedded tiny video backbone: :class:`TinyVAE` + :class:`VideoDenoiser` behind the protocol.

Noise process and parameterization: EDM (variance exploding, ``x = x0 + sigma * eps``) with
SV3D's v-scaling (:func:`vdm3d.diffusion.parameterizations.edm_precondition`, ``kind="v"``,
``sigma_data = 1`` because the VAE normalizes its latents to unit variance). The noise level enters
the network as a per-latent-pixel map, so ``sigma`` may vary per batch, frame or latent pixel
(``per_element_sigma = True``), which WorldWarp's spatio-temporal noise needs.

Conditions (:class:`~vdm3d.protocols.Conditioning`):

* ``reference`` ``[B, H, W, 3]``: the input view, encoded once and given to every frame;
* ``cameras`` ``[B, F]``: target cameras. Rays are expressed in the reference camera's frame: pass
  ``extras["reference_c2w"]`` (``[B, 4, 4]``) with cameras in any world frame, or cameras that are
  already relative to the reference (then the reference is the identity);
* ``maps`` ``[B, F, H, W, 5]``: :data:`MAP_CHANNELS` = warped RGB (zero in holes), validity, edges;
* ``keyframes`` ``{index: [B, H, W, 3]}``: known frames (start/end of an inbetween).

The unconditional branch (``null=True``) keeps the cameras and drops everything else, as SV3D does.
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.cameras.camera import Cameras, rigid_inverse
from vdm3d.diffusion.parameterizations import edm_precondition
from vdm3d.errors import InputError
from vdm3d.models.batching import join_batch
from vdm3d.protocols import Conditioning
from vdm3d.models.tiny.denoiser import MAP_CHANNELS, VideoDenoiser
from vdm3d.models.tiny.vae import TinyVAE

SIGMA_DATA = 1.0
#: noise level given to the prepended (clean) reference frame
REFERENCE_SIGMA = 0.002


@dataclasses.dataclass(frozen=True)
class TinyCondition:
    """An encoded condition: static per-frame channels plus the raw pixel maps (for the learned stem)."""

    static: Float[Tensor, "B F Cs h w"]
    maps: Float[Tensor, "B F H W Cm"] | None
    reference_rays: Float[Tensor, "B 6 h w"] | None = None
    """Plucker rays of the reference camera in its own frame (for the prepended reference frame)"""


def relative_plucker(cameras: Cameras, reference_c2w: Tensor | None, size: tuple[int, int]) -> Tensor:
    """Plucker rays ``[B, F, 6, h, w]`` of cameras ``[B, F]`` in the reference camera's frame."""
    h, w = size
    c2w = cameras.c2w
    if reference_c2w is not None:
        c2w = rigid_inverse(reference_c2w)[:, None] @ c2w
    rel = Cameras(cameras.Ks, c2w, cameras.width, cameras.height).resize(w, h)
    return rel.plucker().permute(0, 1, 4, 2, 3)


def reference_rays(cameras: Cameras, size: tuple[int, int]) -> Tensor:
    """Plucker rays ``[B, 6, h, w]`` of the reference camera in its own frame (identity pose), with the
    intrinsics of the first target camera of ``cameras [B, F]``."""
    h, w = size
    Ks = cameras.Ks[:, 0]
    eye = torch.eye(4, dtype=Ks.dtype, device=Ks.device).expand(Ks.shape[0], 4, 4)
    ref = Cameras(Ks, eye, cameras.width, cameras.height).resize(w, h)
    return ref.plucker().permute(0, 3, 1, 2)


def prepend_reference(x: Tensor, sigma: Tensor, static: Tensor, c: int, rays: Tensor | None
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Put the reference view in front of the video as a clean frame.

    ``x [B, F, C, h, w]``, ``sigma [B, F, 1, h, w]``, ``static [B, F, Cs, h, w]`` (layout of
    :func:`assemble`) -> the same with ``F + 1`` frames. The new frame's sample is the reference latent
    (zeros when the reference is absent or dropped), its noise level :data:`REFERENCE_SIGMA`, its
    conditions the reference latent, its own rays (identity pose) and no map or keyframe.
    """
    first = static[:, :1]
    ref_x = first[:, :, :c]
    ray_flag = first[:, :, c + 7:c + 8]
    ray = torch.zeros_like(first[:, :, c + 1:c + 7]) if rays is None else rays[:, None].to(first) * ray_flag
    ref_static = torch.cat([first[:, :, :c + 1], ray, ray_flag, torch.zeros_like(first[:, :, c + 8:])], 2)
    return (torch.cat([ref_x, x], 1), torch.cat([torch.full_like(sigma[:, :1], REFERENCE_SIGMA), sigma], 1),
            torch.cat([ref_static, static], 1))


def assemble(b: int, f: int, h: int, w: int, c: int, *, ref_latent: Tensor | None = None,
             plucker: Tensor | None = None, map_latent: Tensor | None = None,
             key_latent: Tensor | None = None, key_mask: Tensor | None = None,
             like: Tensor | None = None) -> Tensor:
    """Concatenate the static condition channels (zeros and a 0 flag for a missing slot).

    Shapes: ``ref_latent [B, C, h, w]``, ``plucker [B, F, 6, h, w]``, ``map_latent [B, F, C, h, w]``,
    ``key_latent [B, F, C, h, w]`` with ``key_mask [B, F]``; returns ``[B, F, Cs, h, w]``.
    """
    kw = dict(dtype=like.dtype if like is not None else torch.float32,
              device=like.device if like is not None else None)
    zeros = lambda ch: torch.zeros(b, f, ch, h, w, **kw)  # noqa: E731
    ones = lambda: torch.ones(b, f, 1, h, w, **kw)  # noqa: E731
    parts = []
    if ref_latent is None:
        parts += [zeros(c), zeros(1)]
    else:
        parts += [ref_latent[:, None].expand(b, f, c, h, w), ones()]
    parts += [zeros(7)] if plucker is None else [plucker, ones()]
    parts += [zeros(c) if map_latent is None else map_latent]
    if key_latent is None:
        parts += [zeros(c + 1)]
    else:
        parts += [key_latent * key_mask[:, :, None, None, None],
                  key_mask[:, :, None, None, None].expand(b, f, 1, h, w)]
    return torch.cat(parts, 2)


class TinyVideoBackbone(nn.Module):
    """A :class:`~vdm3d.protocols.Backbone` made of the tiny VAE and video denoiser."""

    slots = frozenset({"reference", "cameras", "maps", "keyframes"})
    latent_channels = 4
    temporal_factor = 1
    prediction = "v"
    process = "edm"
    per_element_sigma = True
    map_channels = MAP_CHANNELS

    def __init__(self, vae: TinyVAE, denoiser: VideoDenoiser | nn.Module, *, name: str = "tiny-video",
                 resolution: tuple[int, int] = (64, 64), frames: int | None = 8):
        super().__init__()
        self.vae, self.denoiser = vae, denoiser
        self.name, self.resolution, self.frames = name, tuple(resolution), frames
        self.latent_channels = vae.config.latent_channels
        self.spatial_factor = vae.config.spatial_factor

    # -- latents --------------------------------------------------------------------------------
    def encode(self, images: Float[Tensor, "B F H W 3"]) -> Float[Tensor, "B Fl C h w"]:
        b, f = images.shape[:2]
        z = self.vae.encode(images.reshape(b * f, *images.shape[2:]))
        return z.reshape(b, f, *z.shape[1:])

    def decode(self, latents: Float[Tensor, "B Fl C h w"]) -> Float[Tensor, "B F H W 3"]:
        b, f = latents.shape[:2]
        x = self.vae.decode(latents.reshape(b * f, *latents.shape[2:]))
        return x.reshape(b, f, *x.shape[1:])

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.spatial_factor, width // self.spatial_factor

    # -- conditions -----------------------------------------------------------------------------
    def _frames_of(self, cond: Conditioning) -> int:
        if cond.cameras is not None:
            return cond.cameras.shape[-1]
        if cond.maps is not None:
            return cond.maps.shape[1]
        if self.frames is None:
            raise InputError("Conditioning: the tiny video model needs cameras or maps to know the frame count; "
                             "pass cameras [B, F].")
        return self.frames

    def condition(self, cond: Conditioning, *, null: bool = False) -> TinyCondition:
        """Encode ``cond`` once for a sampling run (``null=True``: cameras only, for CFG)."""
        ref = cond.reference
        batch = [t.shape[0] for t in (ref, cond.maps) if t is not None]
        if cond.cameras is not None:
            batch.append(cond.cameras.shape[0])
        if cond.keyframes:
            batch.append(next(iter(cond.keyframes.values())).shape[0])
        if not batch:
            raise InputError("Conditioning: no condition was given; pass at least cameras or a reference image.")
        b, f = batch[0], self._frames_of(cond)
        height, width = self.resolution if ref is None else ref.shape[1:3]
        if cond.maps is not None:
            height, width = cond.maps.shape[2:4]
        h, w = self.latent_size(height, width)
        c = self.latent_channels
        param = next(self.parameters())
        ref_latent = plucker = map_latent = key_latent = key_mask = maps = rays = None
        if cond.cameras is not None:
            if tuple(cond.cameras.shape) != (b, f):
                raise InputError(f"Conditioning: cameras must have batch shape [{b}, {f}], got "
                                 f"{tuple(cond.cameras.shape)}.")
            plucker = relative_plucker(cond.cameras.to(param), cond.extras.get("reference_c2w"), (h, w))
            rays = reference_rays(cond.cameras.to(param), (h, w))
        if not null:
            if ref is not None:
                ref_latent = self.vae.encode(ref.to(param))
            if cond.maps is not None:
                if cond.maps.shape[-1] != len(MAP_CHANNELS):
                    raise InputError(f"Conditioning: maps must have {len(MAP_CHANNELS)} channels "
                                     f"{MAP_CHANNELS}, got {cond.maps.shape[-1]}; put zeros in unused ones.")
                maps = cond.maps.to(param)
                map_latent = self.encode(maps[..., :3])
            if cond.keyframes:
                key_latent = torch.zeros(b, f, c, h, w, dtype=param.dtype, device=param.device)
                key_mask = torch.zeros(b, f, dtype=param.dtype, device=param.device)
                for i, image in cond.keyframes.items():
                    if not -f <= i < f:
                        raise InputError(f"Conditioning: keyframe index {i} is outside the {f} frames.")
                    key_latent[:, i] = self.vae.encode(image.to(param))
                    key_mask[:, i] = 1
        static = assemble(b, f, h, w, c, ref_latent=ref_latent, plucker=plucker, map_latent=map_latent,
                          key_latent=key_latent, key_mask=key_mask, like=param)
        return TinyCondition(static, maps, rays)

    def concat_conditions(self, conds: list[TinyCondition], batch: int) -> TinyCondition | None:
        """Conditions joined on the batch axis (both CFG branches in one denoiser call). A branch
        without maps gets all-zero maps, which the denoiser treats exactly as absent maps."""
        shapes = {tuple(c.maps.shape[1:]) for c in conds if c.maps is not None}
        if len(shapes) == 1:
            like = next(c.maps for c in conds if c.maps is not None)
            zeros = torch.zeros(1, *like.shape[1:], dtype=like.dtype, device=like.device)
            conds = [c if c.maps is not None else dataclasses.replace(c, maps=zeros) for c in conds]
        return join_batch(conds, batch)

    # -- the denoiser ---------------------------------------------------------------------------
    def denoise(self, x: Float[Tensor, "B Fl C h w"], sigma: Tensor, cond: TinyCondition
                ) -> Float[Tensor, "B Fl C h w"]:
        b, f, c, h, w = x.shape
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        while sigma.dim() < 2:
            sigma = sigma[..., None] if sigma.dim() == 1 else sigma.reshape(1)
        if sigma.dim() == 2:
            sigma = sigma[:, :, None, None, None]
        sigma = sigma.expand(b, f, 1, h, w) if sigma.shape[2] == 1 else sigma[:, :, :1].expand(b, f, 1, h, w)
        c_skip, c_out, c_in, c_noise = edm_precondition(sigma, SIGMA_DATA, "v")
        static = cond.static
        if static.shape[0] != b:
            static = static.expand(b, *static.shape[1:])
        no_maps = self._no_map_features(b, x)  # [B, 1, M, h, w]
        if cond.maps is None:  # absent maps are all-zero maps, exactly as dropped maps in training
            feats = no_maps.expand(b, f, -1, h, w)
        else:
            maps = cond.maps.expand(b, *cond.maps.shape[1:])
            feats = self.denoiser.embed_maps(maps.reshape(b * f, *maps.shape[2:])).reshape(b, f, -1, h, w)
        if not self.denoiser.config.reference_frame:
            return c_skip * x + c_out * self.denoiser(c_in * x, c_noise, torch.cat([static, feats], 2),
                                                      **self._denoiser_kwargs(cond, b, False))
        rays = cond.reference_rays
        if rays is not None and rays.shape[0] != b:
            rays = rays.expand(b, *rays.shape[1:])
        x_all, sigma_all, static = prepend_reference(x, sigma, static, c, rays)
        _, _, c_in_all, c_noise_all = edm_precondition(sigma_all, SIGMA_DATA, "v")
        feats = torch.cat([no_maps, feats], 1)
        raw = self.denoiser(c_in_all * x_all, c_noise_all, torch.cat([static, feats], 2),
                            **self._denoiser_kwargs(cond, b, True))[:, 1:]
        return c_skip * x + c_out * raw

    def _denoiser_kwargs(self, cond: TinyCondition, b: int, reference_frame: bool) -> dict:
        """Extra keyword arguments of the denoiser call (none here; a subclass with more conditions adds
        them, e.g. :class:`vdm3d.models.tiny.v3d.V3dSceneBackbone`)."""
        return {}

    def _no_map_features(self, b: int, like: Tensor) -> Tensor:
        """Map-stem features of all-zero maps, ``[B, 1, M, h, w]`` (absent maps; the reference frame)."""
        h, w = like.shape[-2:]
        zero = torch.zeros(1, h * self.spatial_factor, w * self.spatial_factor, len(MAP_CHANNELS),
                           dtype=like.dtype, device=like.device)
        return self.denoiser.embed_maps(zero)[:, None].expand(b, 1, -1, h, w)
