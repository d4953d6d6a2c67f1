"""CogVideoX-I2V: VP v-prediction at the scheduler's timesteps, keyframe layout, widened patch embed."""

from __future__ import annotations

import torch

from hub_helpers import SIZE, reference_image
from vdm3d.models.hub.cogvideox import (
    CogVideoXBackbone,
    CogVideoXSettings,
    tiny_components,
    widen_patch_embed,
)
from vdm3d.protocols import Conditioning


def test_timestep_from_sigma_inverts_alphas_cumprod(tiny_cogvideox):
    ab = tiny_cogvideox.scheduler.alphas_cumprod
    t = torch.tensor([0, 10, 250, 500, 900, 990])
    sigma = ((1 - ab[t]) / ab[t]).sqrt()
    torch.testing.assert_close(
        tiny_cogvideox.timestep_from_sigma(sigma.double()), t.double(), rtol=0, atol=1e-6
    )


def test_denoiser_is_vp_v_prediction(tiny_cogvideox):
    """At a training timestep t: x_t = sqrt(ab) x0 + sqrt(1-ab) eps, and x0 = sqrt(ab) x_t - sqrt(1-ab) v."""
    bb = tiny_cogvideox
    cond = bb.condition(Conditioning(reference=reference_image(), text="a red house"))
    t = 400
    ab = bb.scheduler.alphas_cumprod[t].float()
    sigma = ((1 - ab) / ab).sqrt()
    x = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(4)) * sigma
    with torch.no_grad():
        got = bb.denoise(x, sigma.reshape(1), cond)
        x_t = x * ab.sqrt()
        v = bb.transformer(
            hidden_states=torch.cat([x_t, cond.image_latents], dim=2),
            encoder_hidden_states=cond.text,
            timestep=torch.tensor([float(t)]),
            image_rotary_emb=bb._rotary(3, 4, 4),
        ).sample
    torch.testing.assert_close(got, ab.sqrt() * x_t - (1 - ab).sqrt() * v, rtol=1e-4, atol=1e-4)


def test_keyframes_fill_their_latent_frames(tiny_cogvideox):
    bb = tiny_cogvideox
    start, end = reference_image(1), reference_image(2)
    cond = bb.condition(Conditioning(keyframes={0: start, 8: end}, text=""))
    lat = cond.image_latents  # 9 frames -> 3 latent frames: [E(start), 0, E(end)]
    assert lat.shape == (1, 3, 4, 4, 4)
    torch.testing.assert_close(lat[:, 0], bb.encode(start[:, None])[:, 0])
    torch.testing.assert_close(lat[:, 2], bb.encode(end[:, None])[:, 0])
    assert lat[:, 1].abs().max() == 0


def test_null_branch_changes_only_the_prompt(tiny_cogvideox):
    c = tiny_cogvideox.condition(
        Conditioning(reference=reference_image(), text="a red house", negative_text="car")
    )
    n = tiny_cogvideox.condition(
        Conditioning(reference=reference_image(), text="a red house", negative_text="car"), null=True
    )
    assert torch.equal(c.image_latents, n.image_latents) and not torch.equal(c.text, n.text)


def test_widened_patch_embed_starts_as_the_original_and_survives_save_load(tmp_path):
    plain = CogVideoXBackbone(
        tiny_components(0, frames=9), CogVideoXSettings(frames=9, height=SIZE, width=SIZE, max_text_tokens=8)
    )
    comps = tiny_components(0, frames=9)
    widen_patch_embed(comps["transformer"], 4)
    wide = CogVideoXBackbone(comps, CogVideoXSettings(frames=9, height=SIZE, width=SIZE, max_text_tokens=8))
    assert "maps" in wide.slots and "maps" not in plain.slots
    maps = torch.rand(1, 9, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(6))
    x = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(7)) * 2
    with torch.no_grad():
        c_wide = wide.condition(Conditioning(reference=reference_image(), maps=maps))
        c_plain = plain.condition(Conditioning(reference=reference_image()))
        torch.testing.assert_close(
            wide.denoise(x, torch.tensor([2.0]), c_wide),
            plain.denoise(x, torch.tensor([2.0]), c_plain),
            rtol=1e-5,
            atol=1e-5,
        )
        # once trained (non-zero map weights) the maps matter, and the layout survives a round trip
        wide.transformer.patch_embed.proj.weight[:, 8:].normal_(0, 0.1)
        out = wide.denoise(x, torch.tensor([2.0]), c_wide)
        assert (out - plain.denoise(x, torch.tensor([2.0]), c_plain)).abs().max() > 1e-3
        wide.save_pretrained(tmp_path / "ggi")
        loaded = CogVideoXBackbone.from_pretrained(tmp_path / "ggi")
        assert loaded.transformer.config.in_channels == 12
        assert torch.equal(
            loaded.denoise(
                x, torch.tensor([2.0]), loaded.condition(Conditioning(reference=reference_image(), maps=maps))
            ),
            out,
        )


def test_matches_diffusers_cogvideox_i2v_pipeline_two_ddim_steps_with_cfg(monkeypatch):
    """Same weights, same starting noise: vdm3d's loop on the VE form equals the diffusers pipeline's DDIM.

    The pipeline samples the image posterior; both sides use its mode here (the adapter is deterministic).
    Zero-terminal-SNR schedules start at sigma = inf, which the VE loop cannot start from, so this uses
    the plain scaled-linear schedule (the adapter reads whatever ``alphas_cumprod`` it is given)."""
    import diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video as pipe_mod
    from diffusers import CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline

    from hub_helpers import two_steps
    from vdm3d.diffusion.schedules import DdimSchedule

    comps = tiny_components(0, frames=9)
    comps["scheduler"] = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
        snr_shift_scale=3.0,
    )
    bb = CogVideoXBackbone(comps, CogVideoXSettings(frames=9, height=SIZE, width=SIZE, max_text_tokens=8))
    monkeypatch.setattr(
        pipe_mod, "retrieve_latents", lambda out, generator=None, sample_mode="sample": out.latent_dist.mode()
    )
    pipe = CogVideoXImageToVideoPipeline(
        tokenizer=comps["tokenizer"],
        text_encoder=comps["text_encoder"],
        vae=comps["vae"],
        transformer=comps["transformer"],
        scheduler=comps["scheduler"],
    )
    pipe.set_progress_bar_config(disable=True)
    ref = reference_image()
    shape = (1, 3, 4, 4, 4)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = pipe(
            image=ref.permute(0, 3, 1, 2),
            prompt="a red house",
            negative_prompt="",
            height=SIZE,
            width=SIZE,
            num_frames=9,
            num_inference_steps=2,
            guidance_scale=3.0,
            latents=noise.clone(),
            max_sequence_length=8,
            output_type="latent",
        ).frames
    # the sampler's sigmas are the scheduler's own timesteps (999, 499) on its SNR-shifted alphas_cumprod
    ab = comps["scheduler"].alphas_cumprod[comps["scheduler"].timesteps]
    assert comps["scheduler"].timesteps.tolist() == DdimSchedule(2, "trailing").timesteps().tolist()
    sigmas = torch.cat([((1 - ab) / ab).sqrt(), torch.zeros(1)]).float()
    got = two_steps(
        bb, sigmas, shape, Conditioning(reference=ref, text="a red house", negative_text=""), scale=3.0
    )
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
