"""Wan2.1 text-to-video with per-token timesteps (the WorldWarp backbone), through diffusers.

Components (the layout of ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``): ``transformer``
(``WanTransformer3DModel``, patch ``1x2x2``), ``vae`` (``AutoencoderKLWan``: 8x spatial, causal 4x
temporal; latents are normalised with the config's ``latents_mean``/``latents_std``),
``text_encoder`` (umT5) + ``tokenizer``, ``scheduler`` (``FlowMatchEulerDiscreteScheduler``: only its
``num_train_timesteps`` matters here, the shift belongs to the sampler's schedule).

Process: rectified flow, ``x_t = (1 - t) x0 + t eps``, the network predicts ``u = eps - x0`` at
timestep ``1000 t``. From VE: ``t = s / (1 + s)``, input ``x / (1 + s)`` (elementwise).

**Per-token timesteps** (WorldWarp's ST-Diff): ``denoise`` accepts ``sigma`` of shape
``[B, Fl, 1, h, w]``. The transformer gives every ``1x2x2`` patch token its own time embedding and
block modulation. WorldWarp patched Wan's forward for this; diffusers >= 0.35 accepts a timestep of
shape ``[B, tokens]`` natively (added for Wan 2.2 TI2V), which is used here: the token timestep is the
noise level at the patch's first latent pixel (WorldWarp's ``t[..., ::2, ::2]``), in the token order
of the patch embedding (frame, row, column). When ``sigma`` is one value per sample, the plain ``[B]``
timestep path runs (identical to the stock pipeline).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.diffusion.parameterizations import ve_to_native, x0_from_prediction
from vdm3d.errors import InputError
from vdm3d.models.hub.base import Component, HubBackbone, expand_sigma, images_to_signed, signed_to_images
from vdm3d.protocols import Conditioning


@dataclasses.dataclass(frozen=True)
class WanSettings:
    frames: int = 81
    height: int = 480
    width: int = 832
    max_text_tokens: int = 512


@dataclasses.dataclass
class WanCondition:
    text: Float[Tensor, "B L D"]


class WanBackbone(HubBackbone):
    """Wan2.1 T2V: rectified flow, per-token noise levels."""

    TEXT_REPO: ClassVar[str | None] = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    NO_SCHEDULER: ClassVar[str | None] = "1000 training timesteps, as the published Wan2.1 scheduler"
    COMPONENTS: ClassVar[dict[str, Component]] = {
        "transformer": Component("diffusers.WanTransformer3DModel"),
        "vae": Component("diffusers.AutoencoderKLWan"),
        "scheduler": Component("diffusers.FlowMatchEulerDiscreteScheduler", required=False),
        "text_encoder": Component("transformers.UMT5EncoderModel", required=False),
        "tokenizer": Component("vdm3d.models.hub.base.Tokenizer", required=False),
    }
    Settings: ClassVar[type] = WanSettings
    prediction = "flow"
    process = "flow"
    per_element_sigma = True
    slots = frozenset({"text"})

    def __init__(
        self, components: dict[str, Any], settings: WanSettings | None = None, *, name: str | None = None
    ):
        super().__init__(components, settings, name=name or "wan2.1-t2v")
        vcfg = self.vae.config
        self.latent_channels = int(vcfg.z_dim)
        self.spatial_factor = 2 ** (len(vcfg.dim_mult) - 1)
        self.temporal_factor = 2 ** sum(bool(b) for b in vcfg.temperal_downsample)
        self.resolution = (self.settings.height, self.settings.width)
        self.frames = self.settings.frames
        self._mean = torch.tensor(vcfg.latents_mean, dtype=torch.float32).view(1, 1, -1, 1, 1)
        self._std = torch.tensor(vcfg.latents_std, dtype=torch.float32).view(1, 1, -1, 1, 1)
        cfg = self.scheduler.config if self.scheduler is not None else {}
        self.num_train_timesteps = int(cfg.get("num_train_timesteps", 1000))

    # ------------------------------------------------------------------ latents
    def encode(self, images: Float[Tensor, "B F H W 3"]) -> Float[Tensor, "B Fl C h w"]:
        video = images_to_signed(images.to(self.device, self.dtype)).permute(0, 2, 1, 3, 4)
        z = self.vae.encode(video).latent_dist.mode().permute(0, 2, 1, 3, 4)  # [B, Fl, C, h, w]
        return (z - self._mean.to(z)) / self._std.to(z)

    def decode(self, latents: Float[Tensor, "B Fl C h w"]) -> Float[Tensor, "B F H W 3"]:
        z = latents * self._std.to(latents) + self._mean.to(latents)
        video = self.vae.decode(z.permute(0, 2, 1, 3, 4).to(self.dtype)).sample
        return signed_to_images(video.permute(0, 2, 1, 3, 4))

    # ------------------------------------------------------------------ conditioning
    def _text(self, prompt: str, batch: int, *, negative: bool = False) -> Tensor:
        """umT5 embeddings of ``prompt``; a folder without ``text_encoder/`` (no text encoder: zero text
        embedding) takes only the empty prompt, as zeros, and refuses any other."""
        L, dim = self.settings.max_text_tokens, int(self.transformer.config.text_dim)
        missing = self.missing_text(("text_encoder", "tokenizer"))
        self.refuse_prompt(prompt, missing, negative=negative)
        if missing:
            return torch.zeros(batch, L, dim, device=self.device, dtype=self.dtype)
        tokens = self.tokenizer(
            [prompt] * batch,
            padding="max_length",
            max_length=L,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        mask = tokens.attention_mask.to(self.device)
        emb = self.text_encoder(tokens.input_ids.to(self.device), mask).last_hidden_state
        return (emb * mask[..., None]).to(self.dtype)  # Wan zeroes the padded positions

    def condition(self, cond: Conditioning, *, null: bool = False) -> WanCondition:
        prompt = (cond.negative_text or "") if null else (cond.text or "")
        return WanCondition(text=self._text(prompt, 1, negative=null))

    # ------------------------------------------------------------------ denoiser
    def token_timesteps(self, t5: Tensor, x: Tensor) -> Tensor:
        """Per-token timesteps ``[B, tokens]`` from per-latent-pixel flow times ``[B, Fl, 1, h, w]``."""
        pt, ph, pw = self.transformer.config.patch_size
        full = t5.expand(x.shape[0], x.shape[1], 1, x.shape[3], x.shape[4])
        return (full[:, ::pt, 0, ::ph, ::pw] * self.num_train_timesteps).flatten(1)

    def denoise(
        self, x: Float[Tensor, "B Fl C h w"], sigma: Tensor, cond: WanCondition
    ) -> Float[Tensor, "B Fl C h w"]:
        B = x.shape[0]
        s5 = expand_sigma(sigma, x)
        if s5.shape[2] != 1:
            raise InputError(
                f"{self.name}: sigma varies over latent channels ({tuple(s5.shape)}); give one "
                "value per latent pixel ([B, Fl, 1, h, w])."
            )
        x_native, t = ve_to_native(x, s5, "flow")
        flat = t.expand(B, *t.shape[1:]).flatten(1)
        if torch.equal(flat, flat[:, :1].expand_as(flat)):
            timestep = flat[:, 0] * self.num_train_timesteps  # [B]: the stock path
        else:
            timestep = self.token_timesteps(t, x)
        text = cond.text if cond.text.shape[0] == B else cond.text.expand(B, *cond.text.shape[1:])
        raw = self.transformer(
            hidden_states=x_native.permute(0, 2, 1, 3, 4).to(self.dtype),
            timestep=timestep.to(self.dtype),
            encoder_hidden_states=text,
            return_dict=False,
        )[0]
        return x0_from_prediction(raw.permute(0, 2, 1, 3, 4).to(x.dtype), x_native, t, "flow", "flow")


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """A tiny random Wan2.1 layout (real diffusers/transformers classes)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from vdm3d.models.hub.base import tiny_tokenizer

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.8, 1.2, 1.0],
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=1,
        rope_max_seq_len=32,
    )
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=32, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": scheduler,
        "text_encoder": text_encoder,
        "tokenizer": tiny_tokenizer(),
    }
