"""The memory planner's estimates: full-size backbones (estimated only) and tiny ones (estimated vs measured).

**full**: SVD-XT, SV3D_p, CogVideoX-5B-I2V, Wan2.1-T2V-1.3B and FLUX.1-dev (+ a 2-block HED ControlNet)
are built on PyTorch's ``meta`` device from their published configs (no weights, no memory), at their
default frames and resolution in bf16 with CFG batch 2, and every candidate plan of
:mod:`vdm3d.models.hub.memory` is estimated for a CUDA device, with the plan chosen for a 24 GB budget.
The parameter counts are printed next to the published ones as a check of the configs. These are
estimates: no GPU was available to measure the peaks, so the table says nothing about how close they are.

**tiny**: the tiny random configs of the adapter tests at 64x64, 4 frames (SVD, SV3D), in float32 on
CPU: the estimated activations of one CFG denoiser call and of one decode against the peak of CPU
tensor memory measured by torch's profiler (:func:`~vdm3d.models.hub.memory.measure_peak`), per plan.

Run: ``.venv/bin/python benchmarks/memory.py [--part full tiny]``.
"""

from __future__ import annotations

import argparse

import torch

from vdm3d.models.hub import memory as M

BF16 = 2


def _meta(build):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return build()


def svd_xt(sv3d: bool = False):
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from vdm3d.models.hub import sv3d as sv3d_mod
    from vdm3d.models.hub import svd as svd_mod

    unet_cls = sv3d_mod.SV3DUNet if sv3d else __import__("diffusers").UNetSpatioTemporalConditionModel
    unet = unet_cls(
        sample_size=96, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
        up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
        num_attention_heads=(5, 10, 20, 20), addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=1280 if sv3d else 768, num_frames=21 if sv3d else 25)
    vae_kw = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                  down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2)
    vae = AutoencoderKL(**vae_kw, up_block_types=("UpDecoderBlock2D",) * 4) if sv3d \
        else AutoencoderKLTemporalDecoder(**vae_kw)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32, image_size=224,
        patch_size=14, projection_dim=1024, hidden_act="gelu"))
    comps = {"unet": unet, "vae": vae, "image_encoder": clip, "scheduler": EulerDiscreteScheduler()}
    if sv3d:
        return sv3d_mod.SV3DBackbone(comps, sv3d_mod.SV3DSettings(frames=21, height=576, width=576), name="sv3d-p")
    return svd_mod.SVDBackbone(comps, svd_mod.SVDSettings(frames=25, height=576, width=1024), name="svd-xt")


def _t5_xxl(vocab: int, umt5: bool = False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kw = dict(vocab_size=vocab, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu")
    return UMT5EncoderModel(UMT5Config(**kw)) if umt5 else T5EncoderModel(T5Config(**kw))


def cogvideox_5b():
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    from vdm3d.models.hub.cogvideox import CogVideoXBackbone, CogVideoXSettings

    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, num_layers=42,
        text_embed_dim=4096, time_embed_dim=512, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True)
    vae = AutoencoderKLCogVideoX(latent_channels=16)
    comps = {"transformer": transformer, "vae": vae, "scheduler": CogVideoXDDIMScheduler(),
             "text_encoder": _t5_xxl(32128)}
    return CogVideoXBackbone(comps, CogVideoXSettings(frames=49, height=480, width=720), name="cogvideox-5b-i2v")


def wan_1_3b():
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    from vdm3d.models.hub.wan import WanBackbone, WanSettings

    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
    vae = AutoencoderKLWan(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                           temperal_downsample=[False, True, True])
    comps = {"transformer": transformer, "vae": vae, "scheduler": FlowMatchEulerDiscreteScheduler(),
             "text_encoder": _t5_xxl(256384, umt5=True)}
    return WanBackbone(comps, WanSettings(frames=81, height=480, width=832), name="wan2.1-t2v-1.3b")


def flux_dev():
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxControlNetModel, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from vdm3d.models.hub.flux import FluxBackbone, FluxSettings

    kw = dict(patch_size=1, in_channels=64, attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
              pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))
    transformer = FluxTransformer2DModel(num_layers=19, num_single_layers=38, **kw)
    controlnet = FluxControlNetModel(num_layers=2, num_single_layers=0, **kw)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159)
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, projection_dim=768))
    comps = {"transformer": transformer, "controlnet": controlnet, "vae": vae,
             "scheduler": FlowMatchEulerDiscreteScheduler(), "text_encoder": clip, "text_encoder_2": _t5_xxl(32128)}
    return FluxBackbone(comps, FluxSettings(height=1024, width=1024), name="flux-dev-controlnet-hed")


FULL = {  # name -> (builder, published parameter count of the denoiser, in billions)
    "svd-xt": (svd_xt, 1.52), "sv3d-p": (lambda: svd_xt(sv3d=True), 1.52),
    "cogvideox-5b-i2v": (cogvideox_5b, 5.6), "wan2.1-t2v-1.3b": (wan_1_3b, 1.42),
    "flux-dev-controlnet-hed": (flux_dev, 11.9),
}


def full(budget_gb: float = 24.0) -> None:
    print(f"full size, bf16, CFG batch 2, estimated peak on a CUDA device (GB); plan chosen for {budget_gb:g} GB")
    print("| model | frames x H x W | denoiser params (B) (published) | all weights (GB) | " +
          " | ".join(["none", "chunk", "+ vae-slicing", "+ vae-tiling", "+ model-offload", "+ seq-offload"]) +
          " | chosen |")
    print("|---|---|---|---|" + "---|" * 7)
    for name, (build, published) in FULL.items():
        bb = _meta(build)
        h, w = bb.resolution
        work = M.Workload(bb.frames or 1, h, w, dtype_bytes=BF16)
        key, net = M._denoiser(bb)
        params = M.parameter_count(net)[0] / 1e9
        weights = sum(t for t, _ in M.component_weights(bb, BF16).values()) / M.GB
        choice = M.choose(bb, int(budget_gb * M.GB), work, "cuda")
        peaks = {p.label: e.peak / M.GB for p, e in choice.rows}
        cells = []
        for label in ("none", "chunk", "chunk + vae-slicing", "chunk + vae-slicing + vae-tiling",
                      "model-offload", "seq-offload"):
            hit = [v for k, v in peaks.items() if k == label or (label.endswith("offload") and k.endswith(label))]
            cells.append(f"{hit[0]:.1f}" if hit else "-")
        print(f"| {name} | {bb.frames or 1} x {h} x {w} | {params:.2f} ({published}) | {weights:.1f} | "
              + " | ".join(cells) + f" | {choice.plan.label}{'' if choice.fits else ' (does not fit)'} |")


def tiny() -> None:
    from vdm3d.models.hub.sv3d import SV3DBackbone, SV3DSettings
    from vdm3d.models.hub.sv3d import tiny_components as sv3d_tiny
    from vdm3d.models.hub.svd import SVDBackbone, SVDSettings
    from vdm3d.models.hub.svd import tiny_components as svd_tiny
    from vdm3d.protocols import Conditioning

    builders = {"svd": lambda: SVDBackbone(svd_tiny(0), SVDSettings(frames=4, height=64, width=64)),
                "sv3d": lambda: SV3DBackbone(sv3d_tiny(0), SV3DSettings(frames=4, height=64, width=64))}
    plans = [M.Plan(), M.Plan(chunk=True), M.Plan(chunk=True, vae_slicing=True),
             M.Plan(chunk=True, vae_slicing=True, vae_tiling=True, tile=32)]
    print("tiny configs, 64x64, 4 frames, float32, CPU: activations in MB, estimated / measured (torch profiler)")
    print("| model | plan | denoiser call (CFG batch 2) | decode |")
    print("|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    ref, x, z = torch.rand(1, 64, 64, 3, generator=g), torch.randn(2, 4, 4, 32, 32, generator=g), \
        torch.randn(1, 4, 4, 32, 32, generator=g)
    for name, build in builders.items():
        for plan in plans:
            if plan.vae_tiling and not M.supports(build(), "vae-tiling"):
                continue
            bb = M.apply(build(), plan)
            est = M.estimate(bb, M.Workload(4, 64, 64), plan)
            with torch.no_grad():
                cond = bb.condition(Conditioning(reference=ref))
                d = M.measure_peak(lambda bb=bb: bb.denoise(x, torch.tensor([1.0, 1.0]), cond))
                v = M.measure_peak(lambda bb=bb: bb.decode(z))
            mb = 1024**2
            print(f"| {name} | {plan.label} | {est.denoiser / mb:.1f} / {d / mb:.1f} | {est.vae / mb:.1f} / {v / mb:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["full", "tiny"], choices=["full", "tiny"])
    parser.add_argument("--budget-gb", type=float, default=24.0)
    args = parser.parse_args()
    if "full" in args.part:
        full(args.budget_gb)
    if "tiny" in args.part:
        tiny()


if __name__ == "__main__":
    main()
