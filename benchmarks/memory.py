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

**measured** (``--part measured``, for a lent GPU): the same full-size models built on the device with random
weights in bf16, and for each candidate plan one CFG denoiser call (batch 2) and one decode at the job's default
workload, timed, with the device's peak (``torch.cuda.max_memory_allocated``) beside the planner's estimate; a
JSON of the rows goes to ``--json``. ``--tiny`` runs the same on the tiny configs, which is how it is checked on
a CPU (peaks from torch's profiler there).

Run: ``.venv/bin/python benchmarks/memory.py [--part full tiny measured] [--models sv3d-p ...] [--device cuda]``.
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


def _materialized(build, device: torch.device, dtype: torch.dtype):
    """``build()`` with its own random initialisation, made on ``device`` directly (torch's device context: no
    CPU copy, buffers such as position ids as the classes make them), then cast to ``dtype``. Values do not
    matter for memory and time."""
    with torch.device(device):
        bb = build()
    for module in bb.components.values():
        if isinstance(module, torch.nn.Module):
            module.to(dtype)
    return bb


def _tiny_builders() -> dict:
    from vdm3d.models.hub.sv3d import SV3DBackbone, SV3DSettings
    from vdm3d.models.hub.sv3d import tiny_components as sv3d_tiny
    from vdm3d.models.hub.svd import SVDBackbone, SVDSettings
    from vdm3d.models.hub.svd import tiny_components as svd_tiny

    return {"svd-xt": lambda: SVDBackbone(svd_tiny(0), SVDSettings(frames=4, height=64, width=64), name="svd-xt"),
            "sv3d-p": lambda: SV3DBackbone(sv3d_tiny(0), SV3DSettings(frames=4, height=64, width=64), name="sv3d-p")}


def _condition(bb):
    """What the model's job gives it: the reference image (image models), an empty prompt (text models)."""
    from vdm3d.protocols import Conditioning

    h, w = bb.resolution
    if "reference" in bb.slots:
        return Conditioning(reference=torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(0)), text="")
    maps = torch.rand(1, 1, h, w, 3) if "maps" in bb.slots else None
    return Conditioning(text="", maps=maps)


def measured(models: list[str], device: torch.device, tiny_configs: bool, json_path: str | None) -> list[dict]:
    """One CFG denoiser call (batch 2, joined as the sampler joins it on a GPU) and one decode per candidate
    plan, each on a freshly built model: peak device memory and seconds against the planner's estimate."""
    import json
    import time

    builders = _tiny_builders() if tiny_configs else {k: v[0] for k, v in FULL.items()}
    dtype = torch.float32 if tiny_configs else torch.bfloat16
    cuda = device.type == "cuda"
    rows = []
    print(f"measured on {device}{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''}, "
          f"{str(dtype).removeprefix('torch.')}, {'tiny configs' if tiny_configs else 'full size, random weights'}")
    print("| model | plan | denoise (s) | decode (s) | peak measured (GB) | peak estimated (GB) | estimated / measured |")
    print("|---|---|---|---|---|---|---|")
    for name in models:
        probe = _meta(builders[name])
        for plan in M.candidate_plans(probe, device):
            bb = _materialized(builders[name], device, dtype)
            M.apply(bb, plan, device)
            h, w = bb.resolution
            work = M.Workload(bb.frames or 1, h, w, dtype_bytes=torch.finfo(dtype).bits // 8)
            est = M.estimate(bb, work, plan, device)
            latent = (1, bb.frames or 1, bb.latent_channels, h // bb.spatial_factor, w // bb.spatial_factor)
            if bb.temporal_factor > 1:
                latent = (1, ((bb.frames or 1) - 1) // bb.temporal_factor + 1, *latent[2:])
            x = torch.randn(latent, generator=torch.Generator().manual_seed(0))
            seconds, peaks = [], []
            with torch.no_grad():
                cond = bb.condition(_condition(bb))
                joined = bb.concat_conditions([cond, bb.condition(_condition(bb), null=True)], 1)
                for call in (lambda: bb.denoise(torch.cat([x, x]), torch.tensor([1.0, 1.0]), joined),
                             lambda: bb.decode(x)):
                    if cuda:
                        torch.cuda.synchronize(device)
                        torch.cuda.reset_peak_memory_stats(device)
                        t0 = time.perf_counter()
                        call()
                        torch.cuda.synchronize(device)
                        seconds.append(time.perf_counter() - t0)
                        peaks.append(torch.cuda.max_memory_allocated(device))
                    else:
                        t0 = time.perf_counter()
                        peaks.append(M.measure_peak(call))
                        seconds.append(time.perf_counter() - t0)
            peak = max(peaks) if cuda else max(peaks) + sum(t for t, _ in M.component_weights(bb, work.dtype_bytes).values())
            row = {"model": name, "plan": plan.label, "denoise_s": round(seconds[0], 3), "decode_s": round(seconds[1], 3),
                   "peak_measured": peak, "peak_estimated": est.peak}
            rows.append(row)
            print(f"| {name} | {plan.label} | {seconds[0]:.2f} | {seconds[1]:.2f} | {peak / M.GB:.3f} | "
                  f"{est.peak / M.GB:.3f} | {est.peak / max(peak, 1):.2f} |", flush=True)
            del bb, cond, joined
            if cuda:
                torch.cuda.empty_cache()
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"device": str(device), "dtype": str(dtype), "rows": rows}, f, indent=1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["full", "tiny"], choices=["full", "tiny", "measured"])
    parser.add_argument("--budget-gb", type=float, default=24.0)
    parser.add_argument("--models", nargs="+", default=["sv3d-p", "svd-xt"], choices=list(FULL),
                        help="measured: the models to build (full size: about 1 min each on an H200)")
    parser.add_argument("--device", default="cuda", help="measured: where (cuda; cpu with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="measured: the tiny configs instead of full size")
    parser.add_argument("--json", default=None, help="measured: also write the rows here")
    args = parser.parse_args()
    if "full" in args.part:
        full(args.budget_gb)
    if "tiny" in args.part:
        tiny()
    if "measured" in args.part:
        measured(args.models, torch.device(args.device), args.tiny, args.json)


if __name__ == "__main__":
    main()
