"""Wan: flow matching in VE form, latent normalisation, and per-token timesteps (WorldWarp)."""

from __future__ import annotations

import torch

from hub_helpers import SIZE
from vdm3d.diffusion.schedules import FlowSchedule
from vdm3d.protocols import Conditioning


def _x(seed=8, scale=2.0):
    return torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(seed)) * scale


def test_denoiser_is_flow_matching(tiny_wan):
    """x_t = x / (1 + s), t = s / (1 + s), x0 = x_t - t u with u the network output at timestep 1000 t."""
    bb = tiny_wan
    cond = bb.condition(Conditioning(text="a red house"))
    x, s = _x(), torch.tensor([1.5])
    t = s / (1 + s)
    with torch.no_grad():
        got = bb.denoise(x, s, cond)
        x_t = x / (1 + s)
        u = bb.transformer(x_t.permute(0, 2, 1, 3, 4), 1000 * t, cond.text).sample.permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(got, x_t - t * u, rtol=1e-5, atol=1e-5)


def test_latents_are_normalised_with_the_config_statistics(tiny_wan):
    video = torch.rand(1, 5, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        z = tiny_wan.encode(video)
        raw = (
            tiny_wan.vae.encode(video.permute(0, 4, 1, 2, 3) * 2 - 1)
            .latent_dist.mode()
            .permute(0, 2, 1, 3, 4)
        )
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, 1, 4, 1, 1)
    std = torch.tensor([1.5, 0.8, 1.2, 1.0]).view(1, 1, 4, 1, 1)
    torch.testing.assert_close(z, (raw - mean) / std)


def test_token_timesteps_follow_patch_order(tiny_wan):
    x = _x()
    t5 = torch.rand(1, 2, 1, 4, 4, generator=torch.Generator().manual_seed(10))
    tokens = tiny_wan.token_timesteps(t5, x)
    # patch 1x2x2: token (f, i, j) takes the time at latent pixel (f, 2i, 2j), tokens in (f, i, j) order
    expected = (
        torch.stack([t5[0, f, 0, 2 * i, 2 * j] for f in range(2) for i in range(2) for j in range(2)]) * 1000
    )
    torch.testing.assert_close(tokens[0], expected)


def test_uniform_per_token_timesteps_equal_the_scalar_path(tiny_wan):
    """Forcing the [B, tokens] path with one value everywhere must reproduce the stock [B] path."""
    bb = tiny_wan
    cond = bb.condition(Conditioning(text="a red house"))
    x = _x()
    with torch.no_grad():
        scalar = bb.transformer(x.permute(0, 2, 1, 3, 4), torch.tensor([600.0]), cond.text).sample
        per_token = bb.transformer(x.permute(0, 2, 1, 3, 4), torch.full((1, 8), 600.0), cond.text).sample
    torch.testing.assert_close(per_token, scalar, rtol=1e-5, atol=1e-5)


def test_per_token_noise_levels_reach_the_tokens(tiny_wan):
    """Tokens at sigma 0 (known context) and tokens at high sigma in one call: the clean tokens' x0
    stays at x (t = 0 means x0 = x exactly), the noisy ones are denoised."""
    bb = tiny_wan
    cond = bb.condition(Conditioning(text="a red house"))
    x = _x()
    sigma = torch.full((1, 2, 1, 4, 4), 4.0)
    sigma[:, 0] = 0.0  # first latent frame is clean context
    with torch.no_grad():
        out = bb.denoise(x, sigma, cond)
        uniform = bb.denoise(x, torch.tensor([4.0]), cond)
    assert torch.equal(out[:, 0], x[:, 0])
    assert (out[:, 1] - uniform[:, 1]).abs().max() > 1e-4  # the clean frame's timestep changed the others


def test_worldwarp_style_schedule_keeps_context_frozen(tiny_wan):
    """A per-element schedule through vdm3d's sampler: frame 0 at sigma 0 throughout stays bitwise equal."""
    bb = tiny_wan
    base = FlowSchedule(2, shift=5.0).sigmas()  # [3]
    sched = base.view(3, 1, 1, 1, 1, 1).repeat(1, 1, 2, 1, 4, 4)
    sched[:, :, 0] = 0.0
    clean = _x(seed=11, scale=1.0)
    from vdm3d.diffusion.guiders import CFG
    from vdm3d.diffusion.samplers import sample

    with torch.no_grad():
        out = sample(
            bb,
            sched,
            cond=Conditioning(text="a red house"),
            x_init=clean,
            generator=torch.Generator().manual_seed(0),
            guider=CFG(scale=2.0),
        )
    assert torch.equal(out[:, 0], clean[:, 0]) and torch.isfinite(out).all()
    assert (out[:, 1] - clean[:, 1]).abs().mean() > 1e-3


def test_matches_diffusers_wan_pipeline_two_flow_steps_with_cfg(tiny_wan, monkeypatch):
    """Same weights and starting noise as WanPipeline (FlowMatchEuler, shift 5, CFG 4). The pipeline
    starts at t = 1 exactly; the VE loop starts at t = 1 - 1e-5 (sigma must be finite), hence 1e-3."""
    import types

    import diffusers.pipelines.wan.pipeline_wan as pipe_mod
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    if not hasattr(pipe_mod, "ftfy"):  # diffusers before 0.37 (pyproject allows 0.35) cleans the prompt with
        # ftfy whether or not it is installed; these plain ASCII prompts are what ftfy.fix_text returns for them
        monkeypatch.setattr(pipe_mod, "ftfy", types.SimpleNamespace(fix_text=lambda text: text), raising=False)

    from hub_helpers import two_steps
    from vdm3d.diffusion.parameterizations import FLOW_T_MAX, sigma_from_t

    bb = tiny_wan
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    pipe = WanPipeline(
        tokenizer=bb.tokenizer,
        text_encoder=bb.text_encoder,
        vae=bb.vae,
        transformer=bb.transformer,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    shape = (1, 2, 4, 4, 4)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = pipe(
            prompt="a red house",
            negative_prompt="a car",
            height=SIZE,
            width=SIZE,
            num_frames=5,
            num_inference_steps=2,
            guidance_scale=4.0,
            latents=noise.permute(0, 2, 1, 3, 4).clone(),
            max_sequence_length=8,
            output_type="latent",
        ).frames.permute(0, 2, 1, 3, 4)
    t = scheduler.sigmas.double().clamp_max(FLOW_T_MAX)  # flow times after set_timesteps(2), ending at 0
    got = two_steps(
        bb, sigma_from_t(t).float(), shape, Conditioning(text="a red house", negative_text="a car"), scale=4.0
    )
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
