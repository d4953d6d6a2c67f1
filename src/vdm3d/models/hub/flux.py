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

Style alignment (VideoFrom3D's SAG "distribution alignment"): :func:`apply_style_lora` trains a
rank-16 LoRA with peft on the single-stream blocks 1-4 of the transformer and on the ControlNet's
attention, with the rectified-flow loss on random crops of the style image conditioned on its own
edge map, and caches it per style image, base model and settings (:func:`style_lora_key`); a second
run with the same style loads the LoRA instead of training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.diffusion.parameterizations import ve_to_native, x0_from_prediction
from vdm3d.errors import ConfigError, InputError
from vdm3d.io.cache import cache_root
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

    TEXT_REPO: ClassVar[str | None] = "black-forest-labs/FLUX.1-dev"
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

    @classmethod
    def settings_from_configs(cls, components):
        """CLIP's position count (77 for FLUX.1-dev): longer prompts must be cut there."""
        cfg = getattr(components.get("text_encoder"), "config", None)
        length = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        return {"clip_tokens": int(length)} if length else {}

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
    def _prompt(self, prompt: str, *, negative: bool = False) -> tuple[Tensor, Tensor]:
        """T5 token embeddings and CLIP's pooled embedding of ``prompt``. A folder without the text encoders
        (no text encoder: zero text embedding) takes only the empty prompt, as zeros, which is not FLUX's
        embedding of "" (the model never saw zeros in training); a non-empty prompt is refused."""
        tcfg = self.transformer.config
        t5_missing = self.missing_text(("text_encoder_2", "tokenizer_2"))
        clip_missing = self.missing_text(("text_encoder", "tokenizer"))
        self.refuse_prompt(prompt, clip_missing + t5_missing, negative=negative)
        if not t5_missing:
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
        if not clip_missing:
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
        text, pooled = self._prompt((cond.negative_text or "") if null else (cond.text or ""), negative=null)
        control = None
        if cond.maps is not None:
            if self.controlnet is None:
                where = self.source or f"{self.name}'s model folder"
                raise InputError(
                    f"{where} has no controlnet/, so {self.name} cannot take edge maps; put a diffusers FLUX "
                    f"ControlNet in {where}/controlnet (e.g. XLabs-AI/flux-controlnet-hed-diffusers)."
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


@dataclasses.dataclass(frozen=True)
class StyleLoraSettings:
    """The per-style LoRA (VideoFrom3D: rank 16, FLUX single blocks 1-4 + the ControlNet, lr 1e-4
    constant after 10 warm-up steps, 400 steps used at inference)."""

    steps: int = 400
    rank: int = 16
    lr: float = 1e-4
    warmup: int = 10
    single_blocks: tuple[int, ...] = (1, 2, 3, 4)
    min_crop: float = 0.6
    """random square crops of at least this fraction of the style image's shorter side"""
    seed: int = 0


def image_edges(image: Float[Tensor, "H W 3"]) -> Float[Tensor, "H W"]:
    """Soft edges of a photo-like image (the HED substitute for the style image, which has no mesh):
    Sobel gradient magnitude of the blurred luminance, scaled by its 98th percentile, in [0, 1]."""
    import cv2
    import numpy as np

    grey = (image.clamp(0, 1) @ image.new_tensor([0.299, 0.587, 0.114])).numpy().astype(np.float32)
    grey = cv2.GaussianBlur(grey, (3, 3), 0)
    mag = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    scale = max(float(np.percentile(mag, 98)), 1e-6)
    return torch.from_numpy(np.clip(mag / scale, 0.0, 1.0))


def style_lora_key(style: Float[Tensor, "H W 3"], base_id: str, settings: StyleLoraSettings, prompt: str = ""
                   ) -> str:
    """Cache key: the style image's 8-bit pixels, the base model's identity and the LoRA settings."""
    h = hashlib.sha256()
    h.update((style.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes())
    h.update(str(tuple(style.shape)).encode())
    meta = {"base": base_id, "prompt": prompt, **dataclasses.asdict(settings)}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:20]


def _lora_targets(backbone: "FluxBackbone", settings: StyleLoraSettings) -> dict[str, list[str]]:
    """Module names to adapt: attention and MLP projections of the chosen single-stream blocks of
    the transformer (those that exist), and the ControlNet's attention projections."""
    names = {"transformer": [], "controlnet": []}
    linear = torch.nn.Linear
    for name, module in backbone.transformer.named_modules():
        parts = name.split(".")
        if (isinstance(module, linear) and len(parts) >= 3 and parts[0] == "single_transformer_blocks"
                and int(parts[1]) in settings.single_blocks
                and parts[-1] in ("to_q", "to_k", "to_v", "proj_mlp", "proj_out")):
            names["transformer"].append(name)
    if backbone.controlnet is not None:
        for name, module in backbone.controlnet.named_modules():
            if isinstance(module, linear) and name.split(".")[-1] in ("to_q", "to_k", "to_v"):
                names["controlnet"].append(name)
    if not names["transformer"]:
        raise ConfigError(f"{backbone.name}: the transformer has none of the single-stream blocks "
                          f"{list(settings.single_blocks)} for the style LoRA; give blocks it has.")
    return names


def _inject(backbone: "FluxBackbone", settings: StyleLoraSettings) -> dict[str, torch.nn.Module]:
    from peft import LoraConfig, inject_adapter_in_model

    if any("lora_" in n for n, _ in backbone.transformer.named_parameters()):
        raise ConfigError(f"{backbone.name}: this model already carries a LoRA; load it again for another style.")
    modules = {}
    for part, targets in _lora_targets(backbone, settings).items():
        if not targets:
            continue
        module = backbone.components[part]
        config = LoraConfig(r=settings.rank, lora_alpha=settings.rank, target_modules=targets,
                            init_lora_weights=True)
        inject_adapter_in_model(config, module, adapter_name="style")
        modules[part] = module
    return modules


def _train_lora(backbone: "FluxBackbone", modules: dict[str, torch.nn.Module], style: Tensor, edges: Tensor,
                prompt: str, settings: StyleLoraSettings, size: tuple[int, int],
                say: Callable[[str], None]) -> None:
    """Rectified-flow loss on random crops of the style image (control: the crop of its edge map):
    ``|u - u_hat|^2`` with ``u = eps - x0``, written as ``|x0 - x0_hat|^2 / t^2`` through the
    backbone's VE-form denoiser."""
    import torch.nn.functional as tnf

    from vdm3d.protocols import Conditioning

    params = [p for m in modules.values() for n, p in m.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(settings.seed)
    H, W = style.shape[:2]
    out_h, out_w = size
    side = min(H, W)
    for module in modules.values():
        module.train()
    try:
        for step in range(settings.steps):
            frac = settings.min_crop + (1 - settings.min_crop) * float(torch.rand((), generator=gen))
            c = max(8, int(round(side * frac)))
            y = int(torch.randint(0, H - c + 1, (), generator=gen))
            x = int(torch.randint(0, W - c + 1, (), generator=gen))
            crop = torch.cat([style[y:y + c, x:x + c], edges[y:y + c, x:x + c, None]], -1)
            crop = tnf.interpolate(crop.permute(2, 0, 1)[None], size=(out_h, out_w), mode="bilinear",
                                   antialias=True, align_corners=False)[0].permute(1, 2, 0).clamp(0, 1)
            image, edge = crop[..., :3], crop[..., 3:].expand(-1, -1, 3)
            with torch.no_grad():
                x0 = backbone.encode(image[None, None])
                cond = backbone.condition(Conditioning(text=prompt, maps=edge[None, None]))
            t = torch.sigmoid(torch.randn((), generator=gen)).clamp(0.02, 0.98).to(x0)  # logit-normal times
            eps = torch.randn(x0.shape, generator=gen).to(x0)
            sigma = t / (1 - t)
            pred = backbone.denoise(x0 + sigma * eps, sigma.reshape(1), cond)
            loss = ((pred.float() - x0.float()) ** 2).mean() / float(t) ** 2
            for g in opt.param_groups:
                g["lr"] = settings.lr * min(1.0, (step + 1) / max(settings.warmup, 1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if (step + 1) % 50 == 0 or step + 1 == settings.steps:
                say(f"style LoRA: step {step + 1}/{settings.steps}, loss {loss.item():.4f}")
    finally:
        for module in modules.values():
            module.eval()
        for p in params:
            p.requires_grad_(False)


def apply_style_lora(backbone: "FluxBackbone", style: Float[Tensor, "H W 3"], *, base_id: str,
                     settings: StyleLoraSettings = StyleLoraSettings(), prompt: str = "",
                     size: tuple[int, int] | None = None, cache_dir: Path | None = None,
                     say: Callable[[str], None] = print) -> tuple[Path, bool]:
    """Add the per-style LoRA to ``backbone`` (in place): loaded from ``cache_dir`` (default ``style_lora/``
    in :func:`vdm3d.io.cache.cache_root`) when this style, base model (``base_id``), training size
    (``size``, default the backbone's resolution) and settings were trained before, else trained and cached.

    Returns the LoRA file and whether it was trained now (``False``: a cache hit)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    if settings.steps < 1 or settings.rank < 1:
        raise ConfigError(f"style LoRA: steps {settings.steps} and rank {settings.rank} must be at least 1.")
    size = tuple(size or backbone.resolution)
    key = style_lora_key(style, f"{base_id}@{size[0]}x{size[1]}", settings, prompt)
    path = Path(cache_dir or cache_root() / "style_lora").expanduser() / f"{key}.safetensors"
    modules = _inject(backbone, settings)
    if path.is_file():
        stored = load_file(str(path))
        for part, module in modules.items():
            own = {k[len(part) + 1:]: v for k, v in stored.items() if k.startswith(part + ".")}
            set_peft_model_state_dict(module, own, adapter_name="style")
        say(f"style LoRA: loaded {path}")
        return path, False
    _train_lora(backbone, modules, style.float(), image_edges(style.float()), prompt, settings, size, say)
    tensors = {f"{part}.{k}": v.detach().contiguous().cpu()
               for part, module in modules.items()
               for k, v in get_peft_model_state_dict(module, adapter_name="style").items()}
    meta = {"base": base_id, "settings": json.dumps(dataclasses.asdict(settings))}
    _cache_style_lora(path, tensors, meta, settings.steps, say)
    return path, True


def _cache_style_lora(path: Path, tensors: dict[str, Tensor], meta: dict[str, str], steps: int,
                      say: Callable[[str], None]) -> None:
    """Write a trained style LoRA to the cache (:func:`~vdm3d.io.runs.replace_by_writing`): two processes
    training the same style at once each write their own temp file (the last rename wins), and none is left
    half-written. A cache that cannot be written (read-only, a full disk) is a note: the LoRA is in use all
    the same, and is trained again next time."""
    from safetensors import SafetensorError
    from safetensors.torch import save

    from vdm3d.io.runs import disk_full, replace_by_writing

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_by_writing(path, lambda f: f.write(save(tensors, metadata=meta)))
    except (OSError, SafetensorError) as exc:
        if path.is_file():  # another process cached the same LoRA meanwhile: nothing is lost
            say(f"style LoRA: trained {steps} steps; {path} was cached meanwhile by another run")
            return
        reason = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
        fix = ("free space there or pass --style-lora-cache a folder on another disk" if disk_full(exc)
               else "pass --style-lora-cache a writable folder")
        say(f"style LoRA: trained {steps} steps, but the cache folder {path.parent} cannot be written ({reason}), "
            f"so it is used without caching and trained again next time; {fix} to keep it.")
        return
    say(f"style LoRA: trained {steps} steps, cached as {path}")


def tiny_components(seed: int = 0, *, controlnet: bool = True, single_layers: int = 1) -> dict[str, Any]:
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
    transformer = FluxTransformer2DModel(num_layers=1, num_single_layers=single_layers, **dims)
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
