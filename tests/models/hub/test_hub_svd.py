"""SVD adapter against diffusers' own StableVideoDiffusionPipeline (same weights, same noise)."""

from __future__ import annotations

import inspect

import torch

from hub_helpers import SIZE, reference_image, two_steps
from vdm3d.diffusion.schedules import EdmSchedule
from vdm3d.protocols import Conditioning


def test_matches_diffusers_pipeline_two_steps_with_cfg(tiny_svd):
    from diffusers import StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    bb = tiny_svd
    pipe = StableVideoDiffusionPipeline(
        vae=bb.vae,
        image_encoder=bb.image_encoder,
        unet=bb.unet,
        scheduler=bb.scheduler,
        feature_extractor=CLIPImageProcessor(),
    )
    pipe.set_progress_bar_config(disable=True)
    ref = reference_image()
    shape = (1, 2, bb.latent_channels, SIZE // bb.spatial_factor, SIZE // bb.spatial_factor)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = pipe(
            ref.permute(0, 3, 1, 2),
            height=SIZE,
            width=SIZE,
            num_frames=2,
            num_inference_steps=2,
            min_guidance_scale=2.0,
            max_guidance_scale=2.0,
            fps=7,
            motion_bucket_id=127,
            noise_aug_strength=0.02,
            latents=noise.clone(),
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        ).frames
    # the pipeline's Karras sigmas are EdmSchedule(2): [700, 0.002, 0]
    torch.testing.assert_close(bb.scheduler.sigmas.float(), EdmSchedule(2).sigmas())
    got = two_steps(
        bb, EdmSchedule(2).sigmas(), shape, Conditioning(reference=ref, extras={"seed": 0}), scale=2.0
    )
    # the first step starts at sigma 700: float32 rounding of x (~700) is ~5e-5, the two loops round
    # differently (scheduler: x + d * dt; vdm3d: x0 + s' * eps), hence 1e-3 on O(1) outputs
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


def test_denoiser_is_sgm_v_scaling(tiny_svd):
    """D(x, s) = x/(s^2+1) - s/sqrt(s^2+1) * F(x/sqrt(s^2+1), ln(s)/4) (VScalingWithEDMcNoise)."""
    bb = tiny_svd
    cond = bb.condition(Conditioning(reference=reference_image()))
    h = SIZE // bb.spatial_factor
    x = torch.randn(2, 2, bb.latent_channels, h, h, generator=torch.Generator().manual_seed(5)) * 3
    s = torch.tensor([3.0, 0.5])
    with torch.no_grad():
        got = bb.denoise(x, s, cond)
        sv = s.view(2, 1, 1, 1, 1)
        inp = torch.cat([x / (sv**2 + 1).sqrt(), cond.image_latents.expand(2, 2, -1, -1, -1)], dim=2)
        v = bb.unet(
            inp,
            0.25 * s.log(),
            encoder_hidden_states=cond.image_embeds.expand(2, -1, -1),
            added_time_ids=cond.added_time_ids.expand(2, -1),
        ).sample
    torch.testing.assert_close(got, x / (sv**2 + 1) - sv / (sv**2 + 1).sqrt() * v, rtol=1e-5, atol=1e-5)


def test_null_branch_zeroes_image_conditions(tiny_svd):
    null = tiny_svd.condition(Conditioning(reference=reference_image()), null=True)
    assert null.image_embeds.abs().max() == 0 and null.image_latents.abs().max() == 0
    assert torch.equal(null.added_time_ids, torch.tensor([[6.0, 127.0, 0.02]]))


def test_cfg_branches_in_one_call_match_two_calls(tiny_svd):
    """Both CFG branches joined on the batch: one UNet call gives the two-call result."""
    from vdm3d.diffusion.guiders import CFG
    from vdm3d.diffusion.samplers import sample

    bb = tiny_svd
    shape = (1, 2, bb.latent_channels, SIZE // bb.spatial_factor, SIZE // bb.spatial_factor)
    cond = Conditioning(reference=reference_image(), extras={"seed": 0})
    calls = []
    hook = bb.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            runs = [sample(bb, EdmSchedule(2).sigmas(), cond=cond, shape=shape, guider=CFG(scale=2.0),
                           generator=torch.Generator().manual_seed(0), batch_guidance=b) for b in (True, False)]
    finally:
        hook.remove()
    assert len(calls) == 2 + 4
    assert runs[0].abs().max() > 0.1
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-4, atol=1e-4)


def test_decode_passes_num_frames_through_a_wrapper_without_functools_wraps(tiny_svd, monkeypatch):
    """diffusers before 0.42 wraps the VAE's ``decode`` (``apply_forward_hook``) without functools.wraps, so
    its signature hides ``num_frames``; AutoencoderKLTemporalDecoder still needs it (it was called without
    and raised TypeError). Here the decode is wrapped that way and must give what the plain one gives."""
    import types

    bb = tiny_svd
    h = SIZE // bb.spatial_factor
    z = torch.randn(1, 2, bb.latent_channels, h, h, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = bb.decode(z)
    method = inspect.unwrap(type(bb.vae).decode)

    def wrapper(self, *args, **kwargs):  # diffusers' apply_forward_hook before 0.42
        return method(self, *args, **kwargs)

    monkeypatch.setattr(bb.vae, "decode", types.MethodType(wrapper, bb.vae))
    assert list(inspect.signature(bb.vae.decode).parameters) == ["args", "kwargs"]
    with torch.no_grad():
        torch.testing.assert_close(bb.decode(z), expected, rtol=0, atol=0)
