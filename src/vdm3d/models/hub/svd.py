"""Stable Video Diffusion (image-to-video) and V3D through diffusers.

Components (the layout of ``stabilityai/stable-video-diffusion-img2vid[-xt]``): ``unet``
(``UNetSpatioTemporalConditionModel``), ``vae`` (``AutoencoderKLTemporalDecoder``, or a per-frame
``AutoencoderKL``; read from the saved config), ``image_encoder`` (``CLIPVisionModelWithProjection``)
and ``scheduler`` (``EulerDiscreteScheduler``, kept for its config: EDM sigmas, v-prediction).

Process (sgm's ``VScalingWithEDMcNoise``): EDM with v-prediction, so in the VE space of the
samplers the network is called as ``F(c_in x, c_noise)`` with ``c_in = 1/sqrt(s^2+1)``,
``c_noise = ln(s)/4`` and ``x0 = x/(s^2+1) - s/sqrt(s^2+1) F`` (:mod:`vdm3d.diffusion.parameterizations`).

Conditioning (as in the SVD pipeline and sgm's configs):

* the CLIP image embedding of the reference goes to cross-attention (one token);
* the VAE posterior mode of the reference, noise-augmented with ``noise_aug_strength`` (SVD 0.02,
  SV3D 1e-5), is concatenated on channels to every latent frame (UNet ``in_channels = 2 C``);
* ``added_time_ids = [fps_id, motion_bucket_id, noise_aug_strength]`` are embedded sinusoidally and
  added to the time embedding. V3D is an SVD fine-tune with ``fps_id=1, motion_bucket_id=300,
  noise_aug_strength=0.02``, 18 frames at 512^2 (:data:`V3D_SETTINGS`).

The unconditional branch (``null=True``) zeroes the image embedding and the image latents and keeps
the added ids, like the pipeline and sgm's ``force_uc_zero_embeddings``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from vdm3d.diffusion.parameterizations import edm_precondition, ve_to_native, x0_from_prediction
from vdm3d.errors import ConfigError, InputError
from vdm3d.models.hub.base import (
    Component,
    HubBackbone,
    expand_sigma,
    images_to_signed,
    signed_to_images,
    uniform_sigma,
)
from vdm3d.protocols import Conditioning

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class SVDSettings:
    frames: int = 25
    """frames per video (SVD 14, SVD-XT 25, V3D 18, SV3D 21)"""
    height: int = 576
    width: int = 1024
    fps_id: int = 6
    """first added time id (the pipeline's ``fps - 1``)"""
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    """std of the Gaussian noise added to the reference before VAE encoding (also an added id)"""
    decode_chunk: int = 14
    """frames decoded at a time (memory)"""
    trained_orbit: str | None = None
    """the camera path a fine-tune without camera input was trained to generate (V3D: ``v3d``, 18 views
    every 20 degrees, input first; SV3D_u: ``sv3d-static``, 21 views, input last); None for SVD"""


V3D_SETTINGS = SVDSettings(
    frames=18, height=512, width=512, fps_id=1, motion_bucket_id=300, noise_aug_strength=0.02,
    trained_orbit="v3d",
)


@dataclasses.dataclass
class SVDCondition:
    image_embeds: Float[Tensor, "B 1 D"]
    image_latents: Float[Tensor, "B 1 C h w"]
    added_time_ids: Tensor  # [B, 3] (SVD) or [B, F, 3] (SV3D: per-frame cameras)


class SVDBackbone(HubBackbone):
    """SVD / SVD-XT / V3D image-to-video backbone (EDM, v-prediction)."""

    NO_SCHEDULER: ClassVar[str | None] = "the EDM sigma range 0.002 to 700 of the published SVD scheduler"
    COMPONENTS: ClassVar[dict[str, Component]] = {
        "unet": Component("diffusers.UNetSpatioTemporalConditionModel"),
        "vae": Component("diffusers.AutoModel"),
        "image_encoder": Component("transformers.CLIPVisionModelWithProjection"),
        "scheduler": Component("diffusers.EulerDiscreteScheduler", required=False),
    }
    Settings: ClassVar[type] = SVDSettings
    slots = frozenset({"reference"})
    prediction = "v"
    process = "edm"
    per_element_sigma = False
    temporal_factor = 1

    @classmethod
    def check_configs(cls, configs, settings, folder, what):
        """SVD's UNet embeds three ids (fps, motion bucket, noise augmentation), each
        ``addition_time_embed_dim`` wide: ``projection_class_embeddings_input_dim`` is three times that
        (768 = 3 x 256); SV3D's UNets, saved as the same class, have 1280 (SV3D_p) or 256 (SV3D_u)."""
        unet = configs.get("unet") or {}
        proj, add = unet.get("projection_class_embeddings_input_dim"), unet.get("addition_time_embed_dim")
        if proj is not None and add is not None and int(proj) != 3 * int(add):
            raise InputError(
                f"{folder}/unet holds a UNet whose projection_class_embeddings_input_dim is {proj}, not the "
                f"{3 * int(add)} (3 x addition_time_embed_dim {add}: fps, motion bucket, noise augmentation) of "
                f"the SVD UNet that {what} needs, so it is another model's (SV3D_p has 1280, SV3D_u 256); put "
                f"{what}'s own weights in {folder} or load that folder as its own model (sv3d-p, sv3d-u).")

    def __init__(
        self, components: dict[str, Any], settings: SVDSettings | None = None, *, name: str | None = None
    ):
        super().__init__(components, settings, name=name or "svd")
        vae_cfg = self.vae.config
        self.latent_channels = int(vae_cfg.latent_channels)
        self.spatial_factor = 2 ** (len(vae_cfg.block_out_channels) - 1)
        self.scaling_factor = float(vae_cfg.scaling_factor)
        self.resolution = (self.settings.height, self.settings.width)
        self.frames = self.settings.frames
        self.trained_orbit = self.settings.trained_orbit
        in_ch = int(self.unet.config.in_channels)
        if in_ch != 2 * self.latent_channels:
            raise ConfigError(
                f"{self.name}: unet in_channels {in_ch} must be twice the VAE latent channels "
                f"{self.latent_channels} (noisy latents + image latents)."
            )

    @property
    def sigma_range(self) -> tuple[float, float]:
        """(sigma_min, sigma_max) of the native EDM schedule (from the scheduler config)."""
        cfg = self.scheduler.config if self.scheduler is not None else {}
        return float(cfg.get("sigma_min") or 0.002), float(cfg.get("sigma_max") or 700.0)

    # ------------------------------------------------------------------ latents
    def encode(self, images: Float[Tensor, "B F H W 3"]) -> Float[Tensor, "B F C h w"]:
        B, Fr = images.shape[:2]
        x = images_to_signed(images.to(self.device, self.dtype)).flatten(0, 1)
        z = self.vae.encode(x).latent_dist.mode() * self.scaling_factor
        return z.unflatten(0, (B, Fr))

    def decode(self, latents: Float[Tensor, "B F C h w"]) -> Float[Tensor, "B F H W 3"]:
        B, Fr = latents.shape[:2]
        z = (latents / self.scaling_factor).to(self.dtype)
        from diffusers import AutoencoderKLTemporalDecoder  # loaded already: it is what the backbone holds

        # by class, not decode's signature: diffusers before 0.42 wraps decode without functools.wraps, which
        # hid num_frames (the temporal decoder was then called without it and raised TypeError)
        temporal = isinstance(self.vae, AutoencoderKLTemporalDecoder)
        videos = []
        for b in range(B):
            chunks = []
            for start in range(0, Fr, self.settings.decode_chunk):
                zc = z[b, start : start + self.settings.decode_chunk]
                out = self.vae.decode(zc, num_frames=zc.shape[0]) if temporal else self.vae.decode(zc)
                chunks.append(out.sample)
            videos.append(torch.cat(chunks))
        return signed_to_images(torch.stack(videos))

    # ------------------------------------------------------------------ conditioning
    def _generator(self, cond: Conditioning) -> torch.Generator:
        gen = cond.extras.get("generator")
        if gen is None:
            gen = torch.Generator(device="cpu").manual_seed(int(cond.extras.get("seed", 0)))
        return gen

    def _clip_embeds(self, reference: Float[Tensor, "B H W 3"]) -> Tensor:
        size = int(self.image_encoder.config.image_size)
        img = reference.permute(0, 3, 1, 2).to(self.device, self.dtype)
        img = F.interpolate(img, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
        return self.image_encoder(pixel_values=(img.clamp(0, 1) - mean) / std).image_embeds[:, None]

    def _added_ids(self, batch: int, cond: Conditioning) -> Tensor:
        s = self.settings
        ids = torch.tensor(
            [s.fps_id, s.motion_bucket_id, s.noise_aug_strength], dtype=self.dtype, device=self.device
        )
        return ids.expand(batch, 3)

    def condition(self, cond: Conditioning, *, null: bool = False) -> SVDCondition:
        if cond.reference is None:
            raise InputError(
                f"{self.name}: the reference slot is empty; give the input image as "
                "Conditioning(reference=[B, H, W, 3] in [0, 1])."
            )
        ref = cond.reference
        B = ref.shape[0]
        embeds = self._clip_embeds(ref)
        signed = images_to_signed(ref[:, None].to(self.device, self.dtype))[:, 0]
        noise = torch.randn(signed.shape, generator=self._generator(cond), dtype=signed.dtype).to(self.device)
        noisy = signed + self.settings.noise_aug_strength * noise
        latents = self.vae.encode(noisy).latent_dist.mode()[:, None]  # unscaled, as SVD was trained
        if null:
            embeds, latents = torch.zeros_like(embeds), torch.zeros_like(latents)
        return SVDCondition(
            image_embeds=embeds, image_latents=latents, added_time_ids=self._added_ids(B, cond)
        )

    # ------------------------------------------------------------------ denoiser
    def denoise(
        self, x: Float[Tensor, "B F C h w"], sigma: Tensor, cond: SVDCondition
    ) -> Float[Tensor, "B F C h w"]:
        B, Fr = x.shape[:2]
        s = uniform_sigma(expand_sigma(sigma, x), x, "batch", self.name).reshape(B, 1, 1, 1, 1)
        x_native, t = ve_to_native(x, s, "edm")
        _, _, c_in, c_noise = edm_precondition(t, kind="v")
        if cond.image_latents.shape[-2:] != x.shape[-2:]:
            raise InputError(
                f"{self.name}: latents {tuple(x.shape[-2:])} and reference latents "
                f"{tuple(cond.image_latents.shape[-2:])} differ; give a reference image of the "
                "size being generated."
            )
        image_latents = _batch(cond.image_latents, B).expand(B, Fr, *cond.image_latents.shape[2:])
        inp = torch.cat([(x_native * c_in).to(self.dtype), image_latents.to(self.dtype)], dim=2)
        ids = _batch(cond.added_time_ids, B)
        raw = self.unet(
            inp,
            c_noise.reshape(B).to(self.dtype),
            encoder_hidden_states=_batch(cond.image_embeds, B),
            added_time_ids=ids,
            return_dict=False,
        )[0]
        return x0_from_prediction(raw.to(x.dtype), x_native, t, "v", "edm")


def _batch(t: Tensor, B: int) -> Tensor:
    """Broadcast a condition made for one sample (or for all ``B``) over the batch."""
    if t.shape[0] == B:
        return t
    if t.shape[0] == 1:
        return t.expand(B, *t.shape[1:])
    raise InputError(
        f"condition batch {t.shape[0]} does not match latents batch {B}; condition each sample "
        "or give one condition for all."
    )


def tiny_components(
    seed: int = 0,
    *,
    latent_channels: int = 4,
    addition_dim: int = 8,
    projection_dim: int | None = None,
    unet_cls=None,
    width: int = 32,
) -> dict[str, Any]:
    """A tiny random SVD (the real diffusers/transformers classes, a few thousand weights each)."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    unet_cls = unet_cls or UNetSpatioTemporalConditionModel
    unet = unet_cls(
        sample_size=16,
        in_channels=2 * latent_channels,
        out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(width, 2 * width),
        layers_per_block=1,
        cross_attention_dim=16,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=addition_dim,
        projection_class_embeddings_input_dim=projection_dim or 3 * addition_dim,
    )
    vae = AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        block_out_channels=(32, 32),
        layers_per_block=1,
    )
    clip = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=16,
            projection_dim=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=32,
            patch_size=8,
        )
    )
    scheduler = EulerDiscreteScheduler(
        prediction_type="v_prediction",
        timestep_type="continuous",
        sigma_min=0.002,
        sigma_max=700.0,
        use_karras_sigmas=True,
        interpolation_type="linear",
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
    )
    return {"unet": unet, "vae": vae, "image_encoder": clip, "scheduler": scheduler}
