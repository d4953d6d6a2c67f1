"""SV3D (Stability AI): SVD's UNet with per-frame camera embeddings, through diffusers.

SV3D_p conditions every frame on its camera: the ``vector`` input of sgm's ``VideoUNet`` is
``[emb_256(cond_aug), emb_512(polar_rad), emb_512(azimuth_rad)]`` (1280 values, sinusoidal
``ConcatTimestepEmbedderND`` embeddings of the raw values), projected by the ``label_emb`` MLP and
added to the time embedding, per frame. diffusers' ``UNetSpatioTemporalConditionModel`` embeds its
``added_time_ids`` once per video with one width, so :class:`SV3DUNet` subclasses it and replaces
the first stage of ``forward``: ids of shape ``[B, F, 3]`` (cond_aug, polar, azimuth) are embedded per
frame, with ``addition_time_embed_dim`` (256) for cond_aug and ``(projection_dim - 256) / 2`` (512)
for the angles, so a converted SV3D checkpoint loads into the unchanged diffusers weight names
(``add_embedding.linear_1`` is ``label_emb.0``). SV3D_u has ``projection_dim = 256`` (no cameras).
The blocks after the embedding are the parent's modules, called in the parent's order.

First stage: SV3D decodes with the per-frame image decoder (``AutoencoderKL``, as the
``chenguolin/sv3d-diffusers`` conversion ships it); the VAE class is read from the saved config.

Cameras: SV3D's frames are an orbit around the object at the origin; ``polar = 90 deg - elevation``
(absolute) and azimuth relative to the input view, which is the **last** frame. The cameras slot
takes OpenCV c2w cameras in a world with the object at the origin and ``up`` = +z
(:func:`polar_azimuth_from_cameras`); ``Conditioning.extras["polars_rad"]`` / ``["azimuths_rad"]``
(``[B, F]`` or ``[F]``) give the angles directly. The null branch keeps the cameras (sgm zeroes only
the image embeddings).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError
from vdm3d.models.hub.base import Component
from vdm3d.models.hub.svd import SVDBackbone, SVDSettings, tiny_components as svd_tiny_components
from vdm3d.protocols import Conditioning

try:
    from diffusers import UNetSpatioTemporalConditionModel
    from diffusers.models.embeddings import get_timestep_embedding
    from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput
except ImportError:  # pragma: no cover - diffusers is a dependency
    UNetSpatioTemporalConditionModel = object  # type: ignore[misc,assignment]


class SV3DUNet(UNetSpatioTemporalConditionModel):
    """SVD UNet whose added ids are per frame and whose camera angles get their own embedding width."""

    @property
    def camera_embed_dim(self) -> int:
        return (
            int(self.config.projection_class_embeddings_input_dim) - int(self.config.addition_time_embed_dim)
        ) // 2

    def embed_added_ids(self, ids: Float[Tensor, "B F K"]) -> Float[Tensor, "BF D"]:
        """``[cond_aug, polar, azimuth]`` per frame -> the projected vector embedding ``[B*F, D]``."""
        flat = ids.flatten(0, 1)  # [B*F, K]
        parts = [
            get_timestep_embedding(
                flat[:, 0],
                int(self.config.addition_time_embed_dim),
                flip_sin_to_cos=True,
                downscale_freq_shift=0,
            )
        ]
        if self.camera_embed_dim > 0:
            if flat.shape[1] < 3:
                raise InputError(
                    "SV3D_p needs [cond_aug, polar, azimuth] per frame; give cameras or "
                    "extras polars_rad/azimuths_rad."
                )
            for k in (1, 2):
                parts.append(
                    get_timestep_embedding(
                        flat[:, k], self.camera_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0
                    )
                )
        vector = torch.cat(parts, dim=-1).to(self.dtype)
        return self.add_embedding(vector)

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor,
        encoder_hidden_states: Tensor,
        added_time_ids: Tensor,
        return_dict: bool = True,
    ):
        B, Fr = sample.shape[:2]
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(B)
        emb = self.time_embedding(self.time_proj(t).to(sample.dtype))  # [B, D]
        if added_time_ids.ndim == 2:  # one set of ids per video
            added_time_ids = added_time_ids[:, None].expand(B, Fr, added_time_ids.shape[-1])
        emb = emb.repeat_interleave(Fr, dim=0) + self.embed_added_ids(added_time_ids)  # [B*F, D]
        context = encoder_hidden_states.repeat_interleave(Fr, dim=0)
        h = self.conv_in(sample.flatten(0, 1))
        only_images = torch.zeros(B, Fr, dtype=h.dtype, device=h.device)
        skips = [h]
        for block in self.down_blocks:
            kwargs = (
                {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
            )
            h, res = block(hidden_states=h, temb=emb, image_only_indicator=only_images, **kwargs)
            skips.extend(res)
        h = self.mid_block(
            hidden_states=h, temb=emb, encoder_hidden_states=context, image_only_indicator=only_images
        )
        odd = any(n % 2**self.num_upsamplers for n in sample.shape[-2:])
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            res, skips = tuple(skips[-n:]), skips[:-n]
            kwargs = (
                {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
            )
            size = skips[-1].shape[2:] if (odd and i < len(self.up_blocks) - 1) else None
            h = block(
                hidden_states=h,
                temb=emb,
                res_hidden_states_tuple=res,
                upsample_size=size,
                image_only_indicator=only_images,
                **kwargs,
            )
        h = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        out = h.unflatten(0, (B, Fr))
        return UNetSpatioTemporalConditionOutput(sample=out) if return_dict else (out,)


def polar_azimuth_from_cameras(
    cameras: Cameras, up: tuple[float, float, float] = (0.0, 0.0, 1.0)
) -> tuple[Float[Tensor, "*B F"], Float[Tensor, "*B F"]]:
    """SV3D angles of orbit cameras around the origin: polar from ``up`` (rad) and azimuth (rad, in
    [0, 2 pi)) measured from the last frame (the input view), counter-clockwise about ``up``."""
    centers = cameras.centers  # [..., F, 3]
    up_t = torch.tensor(up, dtype=centers.dtype, device=centers.device)
    up_t = up_t / up_t.norm()
    r = centers.norm(dim=-1).clamp_min(1e-12)
    polar = torch.arccos((centers @ up_t / r).clamp(-1.0, 1.0))
    # a right-handed basis of the horizontal plane, with e1 along the last camera's direction
    flat = centers - (centers @ up_t)[..., None] * up_t
    e1 = flat[..., -1:, :] / flat[..., -1:, :].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    e2 = torch.cross(up_t.expand_as(e1), e1, dim=-1)
    azimuth = torch.atan2((flat * e2).sum(-1), (flat * e1).sum(-1)) % (2 * math.pi)
    return polar, azimuth


@dataclasses.dataclass(frozen=True)
class SV3DSettings(SVDSettings):
    frames: int = 21
    height: int = 576
    width: int = 576
    fps_id: int = 0
    motion_bucket_id: int = 0
    noise_aug_strength: float = 1e-5
    """sgm's cond_aug for SV3D"""
    default_elevation_deg: float = 10.0
    """elevation of the orbit when neither cameras nor angles are given"""


class SV3DBackbone(SVDBackbone):
    """SV3D_p (cameras) / SV3D_u (fixed orbit): EDM v-prediction, per-frame camera embeddings."""

    COMPONENTS: ClassVar[dict[str, Component]] = {
        **SVDBackbone.COMPONENTS,
        # the diffusers conversions save SV3D's UNet as their own subclass or as SVD's class
        "unet": Component("vdm3d.models.hub.sv3d.SV3DUNet",
                          accepts=("UNetSpatioTemporalConditionModel", "SV3DUNetSpatioTemporalConditionModel")),
    }
    Settings: ClassVar[type] = SV3DSettings

    @classmethod
    def check_configs(cls, configs, settings, folder, what):
        """The UNet's vector input is ``addition_time_embed_dim`` (cond_aug) plus two camera-angle
        embeddings: SV3D_p 1280 = 256 + 2 x 512, SV3D_u 256 (no cameras). SVD's 768 = 3 x 256 (fps,
        motion, augmentation) would silently put 256-wide "camera" sinusoids in SVD's id slots."""
        unet = configs.get("unet") or {}
        proj, add = unet.get("projection_class_embeddings_input_dim"), unet.get("addition_time_embed_dim")
        if proj is None or add is None:
            return
        proj, add = int(proj), int(add)
        static = settings.get("trained_orbit") == "sv3d-static"  # SV3D_u's registry entry
        if static and proj != add:
            problem = f"{proj}, not SV3D_u's {add} (addition_time_embed_dim alone: no camera input)"
        elif not static and proj == 3 * add:
            problem = f"{proj} = 3 x {add}, SVD's layout (fps, motion bucket, noise augmentation), not SV3D_p's 1280"
        elif not static and proj == add:
            problem = f"{proj}, SV3D_u's (no camera input), not SV3D_p's 1280 (cameras)"
        elif not static and ((proj - add) % 2 or proj < add):
            problem = f"{proj}, which is not {add} + 2 x a camera width (SV3D_p has 1280 = 256 + 2 x 512)"
        else:
            return
        raise InputError(f"{folder}/unet holds a UNet whose projection_class_embeddings_input_dim is {problem}, "
                         f"so it is not the UNet {what} needs; put {what}'s own weights in {folder} "
                         f"(`vdm3d models info {what}` says where they come from).")

    def __init__(
        self, components: dict[str, Any], settings: SV3DSettings | None = None, *, name: str | None = None
    ):
        super().__init__(components, settings, name=name or "sv3d")
        self.slots = (
            frozenset({"reference", "cameras"})
            if self.unet.camera_embed_dim > 0
            else frozenset({"reference"})
        )

    def default_angles(self, frames: int) -> tuple[Tensor, Tensor]:
        """SV3D's default orbit: constant elevation, azimuths ``linspace(0, 360, F+1)[1:]`` re-referenced
        to the last frame (which is the input view, azimuth 0)."""
        polar = torch.full(
            (frames,), math.radians(90.0 - self.settings.default_elevation_deg), dtype=torch.float64
        )
        az_deg = torch.linspace(0, 360, frames + 1, dtype=torch.float64)[1:] % 360
        az = torch.deg2rad((az_deg - az_deg[-1]) % 360)
        return polar, az

    def _added_ids(self, batch: int, cond: Conditioning) -> Tensor:
        frames = self.frames
        if "polars_rad" in cond.extras and "azimuths_rad" in cond.extras:
            polar = torch.as_tensor(cond.extras["polars_rad"], dtype=torch.float64)
            az = torch.as_tensor(cond.extras["azimuths_rad"], dtype=torch.float64)
        elif cond.cameras is not None:
            polar, az = polar_azimuth_from_cameras(cond.cameras.to(dtype=torch.float64))
        else:
            polar, az = self.default_angles(frames)
        polar, az = torch.broadcast_tensors(polar, az)
        if polar.ndim == 1:
            polar, az = polar.expand(batch, -1), az.expand(batch, -1)
        aug = torch.full_like(polar, self.settings.noise_aug_strength)
        return torch.stack([aug, polar, az], dim=-1).to(self.device, self.dtype)  # [B, F, 3]

    def denoise(self, x, sigma, cond):
        if cond.added_time_ids.ndim == 3 and cond.added_time_ids.shape[1] != x.shape[1]:
            raise InputError(
                f"{self.name}: {cond.added_time_ids.shape[1]} cameras for {x.shape[1]} latent "
                "frames; give one camera per frame."
            )
        return super().denoise(x, sigma, cond)


def tiny_components(seed: int = 0, *, cameras: bool = True) -> dict[str, Any]:
    """A tiny random SV3D (8-wide sinusoids for cond_aug, 12-wide for each angle) with a per-frame VAE."""
    from diffusers import AutoencoderKL

    comps = svd_tiny_components(
        seed, addition_dim=8, projection_dim=8 + 2 * 12 if cameras else 8, unet_cls=SV3DUNet
    )
    torch.manual_seed(seed + 1)
    comps["vae"] = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 16),
        layers_per_block=1,
        norm_num_groups=8,
    )
    return comps
