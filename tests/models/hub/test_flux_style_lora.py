"""The FLUX style LoRA (SAG's distribution alignment) on tiny random FLUX + ControlNet weights: a few
training steps with peft move the output toward the style image, the LoRA is cached per style image
and base model, and the second call loads it instead of training."""

from __future__ import annotations

import pytest
import torch

from vdm3d.errors import ConfigError

pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")


def _backbone():
    from vdm3d.models.hub.flux import FluxBackbone, FluxSettings, tiny_components

    return FluxBackbone(tiny_components(0, single_layers=5),
                        FluxSettings(height=32, width=32, max_text_tokens=8, clip_tokens=8))


def _style():
    y, x = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    return torch.stack([x, 0.5 * (x + y), (y > 0.5).float()], -1)  # a ramp and a hard edge


def _x0(backbone, style):
    from vdm3d.models.hub.flux import image_edges
    from vdm3d.protocols import Conditioning

    img = torch.nn.functional.interpolate(style.permute(2, 0, 1)[None], size=(32, 32), mode="bilinear",
                                          antialias=True)[0].permute(1, 2, 0)
    edge = torch.nn.functional.interpolate(image_edges(style)[None, None], size=(32, 32), mode="bilinear")
    maps = edge[0, 0, ..., None].expand(32, 32, 3)[None, None]
    with torch.no_grad():
        x0 = backbone.encode(img[None, None])
        cond = backbone.condition(Conditioning(text="", maps=maps))
        g = torch.Generator().manual_seed(3)
        sigma = torch.tensor([1.0])
        pred = backbone.denoise(x0 + sigma * torch.randn(x0.shape, generator=g), sigma, cond)
    return pred, x0


def test_style_lora_trains_on_the_style_caches_and_reloads(tmp_path):
    from vdm3d.models.hub import flux

    settings = flux.StyleLoraSettings(steps=12, lr=2e-3, warmup=1, rank=4)
    style = _style()
    plain = _backbone()
    before, x0 = _x0(plain, style)

    tuned = _backbone()
    path, trained = flux.apply_style_lora(tuned, style, base_id="tiny-flux", settings=settings,
                                          cache_dir=tmp_path, say=lambda _m: None)
    assert trained and path.is_file() and path.parent == tmp_path
    names = [n for n, _ in tuned.transformer.named_parameters() if "lora_" in n]
    blocks = tuple(f"single_transformer_blocks.{i}." for i in (1, 2, 3, 4))
    assert names and all(n.startswith(blocks) for n in names)
    assert any("lora_" in n for n, _ in tuned.controlnet.named_parameters())
    after, _ = _x0(tuned, style)
    # the LoRA changed the output, toward the style image's latent (the training target)
    assert float((after - before).abs().max()) > 1e-3
    assert float(((after - x0) ** 2).mean()) < float(((before - x0) ** 2).mean())

    again = _backbone()
    path2, trained2 = flux.apply_style_lora(again, style, base_id="tiny-flux", settings=settings,
                                            cache_dir=tmp_path, say=lambda _m: None)
    assert path2 == path and not trained2  # a cache hit: nothing trained
    torch.testing.assert_close(_x0(again, style)[0], after)
    with pytest.raises(ConfigError, match="already carries a LoRA"):
        flux.apply_style_lora(again, style, base_id="tiny-flux", settings=settings, cache_dir=tmp_path,
                              say=lambda _m: None)
    # another style image or another base model is another LoRA
    other = flux.style_lora_key(style.flip(0), "tiny-flux@32x32", settings)
    assert other != path.stem and flux.style_lora_key(style, "other-flux@32x32", settings) != path.stem
    assert flux.style_lora_key(style, "tiny-flux@32x32", settings) == path.stem
