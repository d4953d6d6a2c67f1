"""FLUX + ControlNet: token packing against diffusers' pipeline helpers, per-frame images, control."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hub_helpers import SIZE
from vdm3d.models.hub.flux import FluxBackbone, image_ids, pack, unpack
from vdm3d.protocols import Conditioning


pytestmark = pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")


def _maps(seed=3):
    return torch.rand(1, 2, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(seed))


def test_packing_matches_the_flux_pipeline():
    from diffusers import FluxPipeline

    z = torch.randn(3, 4, 6, 8)
    torch.testing.assert_close(pack(z), FluxPipeline._pack_latents(z, 3, 4, 6, 8), rtol=0, atol=0)
    assert torch.equal(unpack(pack(z), 6, 8), z)
    ids = FluxPipeline._prepare_latent_image_ids(3, 3, 4, "cpu", torch.float32)
    assert torch.equal(image_ids(6, 8, "cpu", torch.float32), ids)


def test_frames_are_independent_images(tiny_flux):
    """Per-frame sigma on a 2-frame latent equals denoising each frame alone."""
    bb = tiny_flux
    x = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(12)) * 2
    maps = _maps()
    with torch.no_grad():
        both = bb.denoise(x, torch.tensor([[3.0, 0.5]]), bb.condition(Conditioning(text="a tree", maps=maps)))
        for f, s in enumerate((3.0, 0.5)):
            alone = bb.denoise(
                x[:, f : f + 1],
                torch.tensor([s]),
                bb.condition(Conditioning(text="a tree", maps=maps[:, f : f + 1])),
            )
            torch.testing.assert_close(both[:, f : f + 1], alone, rtol=1e-5, atol=1e-5)


def test_control_weight_zero_equals_no_controlnet(tiny_flux):
    bb = tiny_flux
    off = FluxBackbone(
        {k: v for k, v in bb.components.items() if k != "controlnet"},
        dataclasses.replace(bb.settings),
        name="flux",
    )
    zero = FluxBackbone(
        dict(bb.components), dataclasses.replace(bb.settings, control_weight=0.0), name="flux"
    )
    x = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(13)) * 2
    with torch.no_grad():
        a = zero.denoise(x, torch.tensor([1.0]), zero.condition(Conditioning(text="a tree", maps=_maps())))
        b = off.denoise(x, torch.tensor([1.0]), off.condition(Conditioning(text="a tree")))
        c = bb.denoise(x, torch.tensor([1.0]), bb.condition(Conditioning(text="a tree", maps=_maps())))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert (c - b).abs().max() > 1e-4  # with weight 0.8 the edge maps steer the prediction
    assert "maps" not in off.slots and "maps" in bb.slots


def test_latents_use_shift_and_scale(tiny_flux):
    img = torch.rand(1, 1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        z = tiny_flux.encode(img)
        raw = tiny_flux.vae.encode(img[:, 0].permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode()
    torch.testing.assert_close(z[:, 0], (raw - 0.1) * 0.5)


def test_matches_diffusers_flux_controlnet_pipeline_two_steps(tiny_flux, monkeypatch):
    """Same weights and noise as FluxControlNetPipeline (dynamic shift, distilled guidance 4, control 0.8).

    Without true CFG: the pipeline reuses the positive ControlNet residuals for its negative pass, while
    XLabs/VideoFrom3D (and this adapter) rerun the ControlNet with the negative prompt."""
    import diffusers.pipelines.flux.pipeline_flux_controlnet as pipe_mod
    from diffusers import FluxControlNetPipeline

    from vdm3d.diffusion.parameterizations import FLOW_T_MAX, sigma_from_t
    from vdm3d.diffusion.samplers import sample

    bb = tiny_flux
    monkeypatch.setattr(
        pipe_mod, "retrieve_latents", lambda out, generator=None, sample_mode="sample": out.latent_dist.mode()
    )
    for tok in (bb.tokenizer, bb.tokenizer_2):
        monkeypatch.setattr(tok, "model_max_length", 8)
    pipe = FluxControlNetPipeline(
        scheduler=bb.scheduler,
        vae=bb.vae,
        text_encoder=bb.text_encoder,
        tokenizer=bb.tokenizer,
        text_encoder_2=bb.text_encoder_2,
        tokenizer_2=bb.tokenizer_2,
        transformer=bb.transformer,
        controlnet=bb.controlnet,
    )
    pipe.set_progress_bar_config(disable=True)
    edges = _maps()[:, :1]
    noise = torch.randn(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # tensors skip the pipeline's preprocessing: give what it makes of an image, [-1, 1]
        packed = pipe(
            prompt="a red house",
            control_image=edges[:, 0].permute(0, 3, 1, 2) * 2 - 1,
            height=SIZE,
            width=SIZE,
            num_inference_steps=2,
            guidance_scale=4.0,
            controlnet_conditioning_scale=0.8,
            latents=pack(noise[:, 0]),
            max_sequence_length=8,
            output_type="latent",
        ).images
    expected = unpack(packed, 4, 4)[:, None]
    t = pipe.scheduler.sigmas.double().clamp_max(FLOW_T_MAX)  # the shifted flow times the pipeline used
    with torch.no_grad():
        got = sample(
            bb,
            sigma_from_t(t).float(),
            cond=Conditioning(text="a red house", maps=edges),
            noise=noise,
            generator=torch.Generator().manual_seed(0),
        )
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
