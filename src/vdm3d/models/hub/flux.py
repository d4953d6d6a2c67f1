"""FLUX with a ControlNet (VideoFrom3D's anchor views from edge maps), through diffusers.

Components (``black-forest-labs/FLUX.1-dev`` plus a diffusers-format FLUX ControlNet such as a HED
one): ``transformer`` (``FluxTransformer2DModel``), ``controlnet`` (``FluxControlNetModel``, optional),
``vae`` (``AutoencoderKL``, 16 channels; latents ``(z - shift) * scale``), ``text_encoder`` (CLIP,
pooled) + ``tokenizer``, ``text_encoder_2`` (T5) + ``tokenizer_2``, ``scheduler``
(``FlowMatchEulerDiscreteScheduler``).

FLUX is an image model: the latent "video" ``[B, F, C, h, w]`` is ``F`` independent images (anchor
views), run as a batch of ``B * F``; ``sigma`` may differ per frame but not within one
(``per_element_sigma`` is False). Process: rectified flow with ``x_t = (1 - t) x0 + t eps``, the network
predicts ``u = eps - x0`` at time ``t`` in [0, 1] (the transformer scales it by 1000 itself).
Latents enter as 2x2 packed tokens with ``(0, row, col)`` position ids.

Control: the ``maps`` slot (``[B, F, H, W, 3]`` edge images in [0, 1], one per frame) drives the
ControlNet with weight ``control_weight`` (VideoFrom3D: 0.8). InstantX-style ControlNets (no
``input_hint_block``) take the VAE latents of the map, packed; XLabs-style ones take the map in
[-1, 1] and repeat their block residuals. The distilled guidance (FLUX-dev: 4.0) enters when the
transformer has ``guidance_embeds``. The null branch swaps the prompt for ``negative_text`` and keeps
the control (true CFG as in VideoFrom3D).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.diffusion.parameterizations import ve_to_native, x0_from_prediction
from vdm3d.errors import ConfigError, InputError
from vdm3d.models.hub.base import Component, HubBackbone, expand_sigma, signed_to_images, uniform_sigma
from vdm3d.protocols import Conditioning


@dataclasses.dataclass(frozen=True)
class FluxSettings:
    height: int = 1024
    width: int = 1024
    guidance: float = 4.0
    """distilled guidance value (only for transformers with guidance embeddings)"""
    control_weight: float = 0.8
    """ControlNet conditioning scale"""
    max_text_tokens: int = 512
    clip_tokens: int = 77


@dataclasses.dataclass
class FluxCondition:
    text: Float[Tensor, "B L D"]
    pooled: Float[Tensor, "B P"]
    control: Tensor | None  # [B, F, ...] packed latents or pixels, per frame


def pack(latents: Float[Tensor, "N C h w"]) -> Float[Tensor, "N T D"]:
    """2x2 patches to tokens: ``[N, C, h, w] -> [N, (h/2)(w/2), 4C]`` (row-major tokens)."""
    N, C, h, w = latents.shape
    return (
        latents.view(N, C, h // 2, 2, w // 2, 2)
        .permute(0, 2, 4, 1, 3, 5)
        .reshape(N, (h // 2) * (w // 2), 4 * C)
    )


def unpack(tokens: Float[Tensor, "N T D"], h: int, w: int) -> Float[Tensor, "N C h w"]:
    N, _, D = tokens.shape
    C = D // 4
    return tokens.view(N, h // 2, w // 2, C, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(N, C, h, w)


def image_ids(h: int, w: int, device, dtype) -> Float[Tensor, "T 3"]:
    """Position ids ``(0, row, col)`` of the packed tokens of an ``h x w`` latent."""
    rows = torch.arange(h // 2, device=device, dtype=dtype)[:, None].expand(h // 2, w // 2)
    cols = torch.arange(w // 2, device=device, dtype=dtype)[None, :].expand(h // 2, w // 2)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)


class FluxBackbone(HubBackbone):
    """FLUX (+ ControlNet) as a per-frame image backbone: rectified flow."""

    COMPONENTS: ClassVar[dict[str, Component]] = {
        "transformer": Component("diffusers.FluxTransformer2DModel"),
        "controlnet": Component("diffusers.FluxControlNetModel", required=False),
        "vae": Component("diffusers.AutoencoderKL"),
        "scheduler": Component("diffusers.FlowMatchEulerDiscreteScheduler", required=False),
        "text_encoder": Component("transformers.CLIPTextModel", required=False),
        "tokenizer": Component("vdm3d.models.hub.base.Tokenizer", required=False),
        "text_encoder_2": Component("transformers.T5EncoderModel", required=False),
        "tokenizer_2": Component("vdm3d.models.hub.base.Tokenizer", required=False),
    }
    Settings: ClassVar[type] = FluxSettings
    prediction = "flow"
    process = "flow"
    per_element_sigma = False
    temporal_factor = 1
    frames = None

    def __init__(
        self, components: dict[str, Any], settings: FluxSettings | None = None, *, name: str | None = None
    ):
        super().__init__(components, settings, name=name or "flux")
        vcfg = self.vae.config
        self.latent_channels = int(vcfg.latent_channels)
        self.spatial_factor = 2 ** (len(vcfg.block_out_channels) - 1)
        self.scaling_factor = float(vcfg.scaling_factor)
        self.shift_factor = float(vcfg.shift_factor or 0.0)
        self.resolution = (self.settings.height, self.settings.width)
        self.slots = frozenset({"text"} | ({"maps"} if self.controlnet is not None else set()))
        if int(self.transformer.config.in_channels) != 4 * self.latent_channels:
            raise ConfigError(
                f"{self.name}: transformer in_channels {self.transformer.config.in_channels} must be "
                f"4x the VAE latent channels {self.latent_channels} (2x2 packing)."
            )

    # ------------------------------------------------------------------ latents
    def _encode_frames(self, images: Float[Tensor, "N H W 3"]) -> Tensor:
        x = images.permute(0, 3, 1, 2).to(self.device, self.dtype) * 2.0 - 1.0
        return (self.vae.encode(x).latent_dist.mode() - self.shift_factor) * self.scaling_factor

    def encode(self, images: Float[Tensor, "B F H W 3"]) -> Float[Tensor, "B F C h w"]:
        return self._encode_frames(images.flatten(0, 1)).unflatten(0, images.shape[:2])

    def decode(self, latents: Float[Tensor, "B F C h w"]) -> Float[Tensor, "B F H W 3"]:
        z = latents.flatten(0, 1).to(self.dtype) / self.scaling_factor + self.shift_factor
        out = self.vae.decode(z).sample.unflatten(0, latents.shape[:2])  # [B, F, 3, H, W]
        return signed_to_images(out)

    # ------------------------------------------------------------------ conditioning
    def _prompt(self, prompt: str) -> tuple[Tensor, Tensor]:
        tcfg = self.transformer.config
        if self.text_encoder_2 is not None:
            tok = self.tokenizer_2(
                [prompt],
                padding="max_length",
                max_length=self.settings.max_text_tokens,
                truncation=True,
                return_tensors="pt",
            )
            text = self.text_encoder_2(tok.input_ids.to(self.device)).last_hidden_state
        else:
            text = torch.zeros(
                1, self.settings.max_text_tokens, int(tcfg.joint_attention_dim), device=self.device
            )
        if self.text_encoder is not None:
            tok = self.tokenizer(
                [prompt],
                padding="max_length",
                max_length=self.settings.clip_tokens,
                truncation=True,
                return_tensors="pt",
            )
            pooled = self.text_encoder(tok.input_ids.to(self.device)).pooler_output
        else:
            pooled = torch.zeros(1, int(tcfg.pooled_projection_dim), device=self.device)
        return text.to(self.dtype), pooled.to(self.dtype)

    def condition(self, cond: Conditioning, *, null: bool = False) -> FluxCondition:
        text, pooled = self._prompt((cond.negative_text or "") if null else (cond.text or ""))
        control = None
        if cond.maps is not None:
            if self.controlnet is None:
                raise InputError(
                    f"{self.name}: no controlnet/ folder is loaded, so edge maps cannot be used; "
                    "add a FLUX ControlNet or give no maps."
                )
            maps = cond.maps[..., :3]
            B, Fr = maps.shape[:2]
            if self.controlnet.input_hint_block is None:
                control = pack(self._encode_frames(maps.flatten(0, 1)))
            else:
                control = maps.flatten(0, 1).permute(0, 3, 1, 2).to(self.device, self.dtype) * 2.0 - 1.0
            control = control.unflatten(0, (B, Fr))
        return FluxCondition(text=text, pooled=pooled, control=control)

    # ------------------------------------------------------------------ denoiser
    def denoise(
        self, x: Float[Tensor, "B F C h w"], sigma: Tensor, cond: FluxCondition
    ) -> Float[Tensor, "B F C h w"]:
        B, Fr, C, h, w = x.shape
        s = uniform_sigma(expand_sigma(sigma, x), x, "frame", self.name).reshape(B, Fr, 1, 1, 1)
        x_native, t = ve_to_native(x, s, "flow")
        N = B * Fr
        tokens = pack(x_native.flatten(0, 1).to(self.dtype))
        t_flat = t.reshape(N).to(self.dtype)
        # one prompt per sample (or one for all), repeated for the sample's frames: [B*F, ...]
        text = cond.text.expand(B, *cond.text.shape[1:]).repeat_interleave(Fr, 0)
        pooled = cond.pooled.expand(B, *cond.pooled.shape[1:]).repeat_interleave(Fr, 0)
        ids = image_ids(h, w, x.device, self.dtype)
        txt_ids = torch.zeros(text.shape[1], 3, device=x.device, dtype=self.dtype)
        guidance = (
            torch.full((N,), self.settings.guidance, device=x.device, dtype=self.dtype)
            if self.transformer.config.guidance_embeds
            else None
        )
        # what the transformer and its ControlNet both take (each with its own guidance embedding)
        inputs = dict(hidden_states=tokens, timestep=t_flat, pooled_projections=pooled, encoder_hidden_states=text,
                      txt_ids=txt_ids, img_ids=ids, return_dict=False)
        extra: dict[str, Any] = {}
        if cond.control is not None:
            control = (
                cond.control
                if cond.control.shape[0] == B
                else cond.control.expand(B, *cond.control.shape[1:])
            )
            if control.shape[1] != Fr:
                raise InputError(
                    f"{self.name}: {control.shape[1]} control maps for {Fr} frames; give one per frame."
                )
            c_guidance = (
                torch.full((N,), self.settings.guidance, device=x.device, dtype=self.dtype)
                if self.controlnet.config.guidance_embeds
                else None
            )
            blocks, single = self.controlnet(
                controlnet_cond=control.flatten(0, 1),
                conditioning_scale=self.settings.control_weight,
                guidance=c_guidance,
                **inputs,
            )
            extra = {
                "controlnet_block_samples": blocks,
                "controlnet_single_block_samples": single,
                "controlnet_blocks_repeat": self.controlnet.input_hint_block is not None,
            }
        raw = self.transformer(guidance=guidance, **inputs, **extra)[0]
        raw = unpack(raw, h, w).unflatten(0, (B, Fr)).to(x.dtype)
        return x0_from_prediction(raw, x_native, t, "flow", "flow")


def tiny_components(seed: int = 0, *, controlnet: bool = True) -> dict[str, Any]:
    """A tiny random FLUX-dev + InstantX-style ControlNet layout (real diffusers/transformers classes)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxControlNetModel,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from vdm3d.models.hub.base import tiny_tokenizer

    torch.manual_seed(seed)
    dims = dict(
        patch_size=1,
        in_channels=16,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=16,
        guidance_embeds=True,
        axes_dims_rope=[4, 6, 6],
    )
    transformer = FluxTransformer2DModel(num_layers=1, num_single_layers=1, **dims)
    comps: dict[str, Any] = {"transformer": transformer}
    if controlnet:
        net = FluxControlNetModel(num_layers=1, num_single_layers=1, **dims)
        with torch.no_grad():  # ControlNets start with zeroed outputs; a tiny test one should steer
            for pname, param in net.named_parameters():
                if pname.startswith(
                    ("controlnet_blocks", "controlnet_single_blocks", "controlnet_x_embedder")
                ):
                    param.normal_(0.0, 0.2)
        comps["controlnet"] = net
    comps["vae"] = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        scaling_factor=0.5,
        shift_factor=0.1,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    comps["text_encoder"] = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            projection_dim=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=1,
        )
    )
    comps["text_encoder_2"] = T5EncoderModel(
        T5Config(vocab_size=32, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    )
    comps["tokenizer"] = tiny_tokenizer()
    comps["tokenizer_2"] = tiny_tokenizer()
    comps["scheduler"] = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True
    )
    return comps
