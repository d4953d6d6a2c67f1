"""CogVideoX image-to-video (and VideoFrom3D's GGI layout) through diffusers.

Components (the layout of ``THUDM/CogVideoX-5b-I2V``): ``transformer``
(``CogVideoXTransformer3DModel``), ``vae`` (``AutoencoderKLCogVideoX``: 8x spatial, causal 4x
temporal, so ``49`` frames -> ``13`` latent frames), ``text_encoder`` (T5) + ``tokenizer``, and
``scheduler`` (``CogVideoXDDIMScheduler``, whose ``alphas_cumprod`` define the native process).

Process: VP with v-prediction. In VE form the input is ``x / sqrt(1 + s^2)`` and the (continuous)
timestep is where ``sqrt((1 - ab_t) / ab_t) = s`` on the scheduler's table, interpolated in
``log sigma`` (as diffusers' Euler schedulers map sigmas to timesteps).

Transformer input channels, in order (VideoFrom3D §8.9): ``[noisy latents | image latents | map
latents]``. Image latents hold the encoded keyframes at their latent frames and zeros elsewhere
(``keyframes={0: start, 48: end}`` gives GGI's ``[E(start), 0 x 11, E(end)]``; ``reference`` is frame
0). ``maps`` (``[B, F, H, W, 3]`` edge videos in [0, 1]) are VAE-encoded as a video; they need a
transformer whose patch embedding was widened to three latent widths (:func:`widen_patch_embed`,
GGI's ``ch_channel_cnn``: the new input weights start at zero, so the widened model equals the
original until trained). The null branch swaps the prompt for ``negative_text`` (default "") and
keeps the image and map latents, as the diffusers pipeline does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.diffusion.parameterizations import ve_to_native, x0_from_prediction
from vdm3d.errors import ConfigError, InputError
from vdm3d.models.hub.base import (
    Component,
    HubBackbone,
    expand_sigma,
    images_to_signed,
    signed_to_images,
    text_embeddings,
    uniform_sigma,
)
from vdm3d.protocols import Conditioning


@dataclasses.dataclass(frozen=True)
class CogVideoXSettings:
    frames: int = 49
    height: int = 480
    width: int = 720
    max_text_tokens: int = 226
    """T5 sequence length (the transformer's ``max_text_seq_length``)"""


@dataclasses.dataclass
class CogVideoXCondition:
    text: Float[Tensor, "B L D"]
    image_latents: Float[Tensor, "B Fl C h w"]
    map_latents: Tensor | None


class CogVideoXBackbone(HubBackbone):
    """CogVideoX-I2V: VP v-prediction; reference/keyframes as image latents, optional map latents."""

    TEXT_REPO: ClassVar[str | None] = "THUDM/CogVideoX-5b-I2V"
    COMPONENTS: ClassVar[dict[str, Component]] = {
        "transformer": Component("diffusers.CogVideoXTransformer3DModel"),
        "vae": Component("diffusers.AutoencoderKLCogVideoX"),
        "scheduler": Component("diffusers.CogVideoXDDIMScheduler"),
        "text_encoder": Component("transformers.T5EncoderModel", required=False),
        "tokenizer": Component("vdm3d.models.hub.base.Tokenizer", required=False),
    }
    Settings: ClassVar[type] = CogVideoXSettings
    prediction = "v"
    process = "vp"
    per_element_sigma = False

    @classmethod
    def settings_from_configs(cls, components):
        """The T5 sequence length the transformer was trained with (226 for CogVideoX-5B)."""
        cfg = getattr(components.get("transformer"), "config", None)
        length = getattr(cfg, "max_text_seq_length", None) if cfg is not None else None
        return {"max_text_tokens": int(length)} if length else {}

    def __init__(
        self,
        components: dict[str, Any],
        settings: CogVideoXSettings | None = None,
        *,
        name: str | None = None,
    ):
        super().__init__(components, settings, name=name or "cogvideox-i2v")
        vcfg, tcfg = self.vae.config, self.transformer.config
        self.latent_channels = int(vcfg.latent_channels)
        self.spatial_factor = 2 ** (len(vcfg.block_out_channels) - 1)
        self.temporal_factor = int(vcfg.temporal_compression_ratio)
        self.scaling_factor = float(vcfg.scaling_factor)
        self.resolution = (self.settings.height, self.settings.width)
        self.frames = self.settings.frames
        widths = int(tcfg.in_channels) // self.latent_channels
        if widths not in (2, 3) or int(tcfg.in_channels) % self.latent_channels:
            raise ConfigError(
                f"{self.name}: transformer in_channels {tcfg.in_channels} must be 2x (I2V) or 3x "
                f"(I2V + maps) the latent channels {self.latent_channels}."
            )
        self.takes_maps = widths == 3
        self.slots = frozenset({"reference", "keyframes", "text"} | ({"maps"} if self.takes_maps else set()))
        ab = self.scheduler.alphas_cumprod.double().clamp(1e-12, 1.0)
        self._log_sigmas = (((1 - ab) / ab).sqrt().clamp_min(1e-12)).log()  # increasing in t

    def timestep_from_sigma(self, sigma: Tensor) -> Tensor:
        """Continuous training timestep whose VP noise level matches the VE ``sigma``."""
        log_s = sigma.double().clamp_min(1e-12).log()
        table = self._log_sigmas.to(log_s.device)  # on sigma's device: a CPU timestep next to CUDA latents fails
        idx = torch.searchsorted(table, log_s.contiguous()).clamp(1, len(table) - 1)
        lo, hi = table[idx - 1], table[idx]
        w = ((log_s - lo) / (hi - lo)).clamp(0.0, 1.0)
        return (idx - 1 + w).clamp(0, len(table) - 1).to(sigma.dtype)

    # ------------------------------------------------------------------ latents
    def _latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_factor + 1

    def encode(self, images: Float[Tensor, "B F H W 3"]) -> Float[Tensor, "B Fl C h w"]:
        video = images_to_signed(images.to(self.device, self.dtype)).permute(0, 2, 1, 3, 4)  # [B, 3, F, H, W]
        z = self.vae.encode(video).latent_dist.mode()
        z = z / self.scaling_factor if self.vae.config.invert_scale_latents else z * self.scaling_factor
        return z.permute(0, 2, 1, 3, 4)

    def decode(self, latents: Float[Tensor, "B Fl C h w"]) -> Float[Tensor, "B F H W 3"]:
        z = latents.permute(0, 2, 1, 3, 4).to(self.dtype)
        z = z * self.scaling_factor if self.vae.config.invert_scale_latents else z / self.scaling_factor
        video = self.vae.decode(z).sample  # [B, 3, F, H, W]
        return signed_to_images(video.permute(0, 2, 1, 3, 4))

    # ------------------------------------------------------------------ conditioning
    def _text(self, prompt: str, batch: int, *, negative: bool = False) -> Tensor:
        """T5 embeddings of ``prompt``; a folder without ``text_encoder/`` (no text encoder: zero text
        embedding) takes only the empty prompt, as zeros, and refuses any other."""
        tcfg = self.transformer.config
        missing = self.missing_text(("text_encoder", "tokenizer"))
        self.refuse_prompt(prompt, missing, negative=negative)
        if missing:
            return torch.zeros(
                batch,
                self.settings.max_text_tokens,
                int(tcfg.text_embed_dim),
                device=self.device,
                dtype=self.dtype,
            )
        emb, _ = text_embeddings(
            self.tokenizer,
            self.text_encoder,
            [prompt] * batch,
            self.settings.max_text_tokens,
            self.device,
            self.name,
        )
        return emb.to(self.dtype)

    def condition(self, cond: Conditioning, *, null: bool = False) -> CogVideoXCondition:
        keyframes = dict(cond.keyframes or {})
        if cond.reference is not None:
            keyframes.setdefault(0, cond.reference)
        if not keyframes:
            raise InputError(
                f"{self.name}: image-to-video needs a reference image or keyframes; give "
                "Conditioning(reference=[B, H, W, 3]) or keyframes={0: ..., last: ...}."
            )
        B, H, W = next(iter(keyframes.values())).shape[:3]
        frames = int(cond.extras.get("frames", self.frames))  # pixel frames being generated
        n_lat = self._latent_frames(frames)
        h, w = H // self.spatial_factor, W // self.spatial_factor
        image_latents = torch.zeros(
            B, n_lat, self.latent_channels, h, w, device=self.device, dtype=self.dtype
        )
        for f, img in sorted(keyframes.items()):
            f = f % frames
            li = (f + self.temporal_factor - 1) // self.temporal_factor  # causal VAE: frame 0 alone
            image_latents[:, li] = self.encode(img[:, None])[:, 0]
        map_latents = None
        if cond.maps is not None:
            if not self.takes_maps:
                where = self.source or f"{self.name}'s model folder"
                raise InputError(
                    f"{where}/transformer takes no edge-map latents (in_channels "
                    f"{self.transformer.config.in_channels}, not {3 * self.latent_channels}), so {self.name} cannot "
                    "inbetween from edge maps; give the folder of a GGI model (`vdm3d models info videofrom3d-ggi` "
                    "says how to make one)."
                )
            map_latents = self.encode(cond.maps[..., :3])
        elif self.takes_maps:
            raise InputError(
                f"{self.name}: this model was widened for edge maps; give Conditioning(maps=[B, F, H, W, 3])."
            )
        prompt = (cond.negative_text or "") if null else (cond.text or "")
        return CogVideoXCondition(
            text=self._text(prompt, B, negative=null), image_latents=image_latents, map_latents=map_latents
        )

    # ------------------------------------------------------------------ denoiser
    def _rotary(self, n_lat: int, h: int, w: int):
        from diffusers.models.embeddings import get_3d_rotary_pos_embed

        cfg = self.transformer.config
        if not cfg.use_rotary_positional_embeddings:
            return None
        p, p_t = int(cfg.patch_size), cfg.patch_size_t
        gh, gw = h // p, w // p
        base_h, base_w = int(cfg.sample_height) // p, int(cfg.sample_width) // p
        if p_t is None:
            crops = _fit_grid((gh, gw), (base_h, base_w))
            return get_3d_rotary_pos_embed(
                embed_dim=int(cfg.attention_head_dim),
                crops_coords=crops,
                grid_size=(gh, gw),
                temporal_size=n_lat,
                device=self.device,
            )
        return get_3d_rotary_pos_embed(
            embed_dim=int(cfg.attention_head_dim),
            crops_coords=None,
            grid_size=(gh, gw),
            temporal_size=(n_lat + p_t - 1) // p_t,
            grid_type="slice",
            max_size=(base_h, base_w),
            device=self.device,
        )

    def denoise(
        self, x: Float[Tensor, "B Fl C h w"], sigma: Tensor, cond: CogVideoXCondition
    ) -> Float[Tensor, "B Fl C h w"]:
        B, Fl, _, h, w = x.shape
        s = uniform_sigma(expand_sigma(sigma, x), x, "batch", self.name).reshape(B, 1, 1, 1, 1)
        x_native, ab = ve_to_native(x, s, "vp")
        parts = [x_native.to(self.dtype), _batch(cond.image_latents, B)]
        if self.takes_maps:
            parts.append(_batch(cond.map_latents, B))
        if any(p.shape[1:] != x.shape[1:] for p in parts[1:]):
            raise InputError(
                f"{self.name}: latents {tuple(x.shape[1:])} and condition latents differ in size; "
                "condition with images of the size and frame count being generated."
            )
        t = self.timestep_from_sigma(s.reshape(B))
        ofs = x.new_full((B,), 2.0) if self.transformer.config.ofs_embed_dim is not None else None
        raw = self.transformer(
            hidden_states=torch.cat(parts, dim=2),
            encoder_hidden_states=_batch(cond.text, B),
            timestep=t.to(self.dtype),
            ofs=ofs,
            image_rotary_emb=self._rotary(Fl, h, w),
            return_dict=False,
        )[0]
        return x0_from_prediction(raw.to(x.dtype), x_native, ab, "v", "vp")


def _fit_grid(grid: tuple[int, int], base: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a ``grid`` (rows, cols) of patches sits when scaled to fit inside the training grid
    ``base`` keeping its aspect ratio and centred: ``((top, left), (bottom, right))`` in base units.
    CogVideoX 1.0 computes its rotary frequencies over this window, so other sizes reuse the positions
    of the training resolution."""
    (rows, cols), (base_rows, base_cols) = grid, base
    if rows / cols > base_rows / base_cols:  # taller than the base: full height
        fit_rows, fit_cols = base_rows, int(round(base_rows / rows * cols))
    else:
        fit_rows, fit_cols = int(round(base_cols / cols * rows)), base_cols
    top, left = int(round((base_rows - fit_rows) / 2.0)), int(round((base_cols - fit_cols) / 2.0))
    return (top, left), (top + fit_rows, left + fit_cols)


def _batch(t: Tensor, B: int) -> Tensor:
    return t if t.shape[0] == B else t.expand(B, *t.shape[1:])


@torch.no_grad()
def widen_patch_embed(transformer, extra_channels: int) -> None:
    """Add ``extra_channels`` zero-initialised input channels to the patch embedding (in place) and
    record the new ``in_channels`` in the config, so ``save_pretrained`` / ``from_pretrained`` keep it."""
    proj = transformer.patch_embed.proj
    if isinstance(proj, torch.nn.Conv2d):
        new = torch.nn.Conv2d(
            proj.in_channels + extra_channels,
            proj.out_channels,
            proj.kernel_size,
            stride=proj.stride,
            bias=proj.bias is not None,
        )
        new.weight.zero_()
        new.weight[:, : proj.in_channels] = proj.weight
    elif isinstance(proj, torch.nn.Linear):  # CogVideoX 1.5: patches flattened as (C, p_t, p, p)
        cfg = transformer.config
        per_ch = int(cfg.patch_size) ** 2 * int(cfg.patch_size_t)
        c_old = proj.in_features // per_ch
        new = torch.nn.Linear(
            proj.in_features + extra_channels * per_ch, proj.out_features, bias=proj.bias is not None
        )
        new.weight.zero_()
        new.weight.view(proj.out_features, c_old + extra_channels, per_ch)[:, :c_old] = proj.weight.view(
            proj.out_features, c_old, per_ch
        )
    else:  # pragma: no cover
        raise ConfigError(f"patch embedding of type {type(proj).__name__} cannot be widened.")
    if proj.bias is not None:
        new.bias.copy_(proj.bias)
    transformer.patch_embed.proj = new.to(proj.weight.device, proj.weight.dtype)
    transformer.patch_embed.in_channels = getattr(transformer.patch_embed, "in_channels", 0) + extra_channels
    transformer.register_to_config(in_channels=int(transformer.config.in_channels) + extra_channels)


def tiny_components(seed: int = 0, *, frames: int = 5, size: int = 32, maps: bool = False) -> dict[str, Any]:
    """A tiny random CogVideoX-5B-I2V layout (rotary + learned positions, like the real config)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from vdm3d.models.hub.base import tiny_tokenizer

    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        temporal_compression_ratio=4,
        scaling_factor=0.7,
    )
    lat = size // 8
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=16,
        num_layers=1,
        sample_width=lat,
        sample_height=lat,
        sample_frames=frames,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=8,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    if maps:
        widen_patch_embed(transformer, 4)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=32, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    )
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        snr_shift_scale=1.0,
        timestep_spacing="trailing",
        clip_sample=False,
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": scheduler,
        "text_encoder": text_encoder,
        "tokenizer": tiny_tokenizer(),
    }
