"""Time one denoiser call of every hub adapter on CPU, at a tiny and at a small-but-real configuration.

"small" keeps each model's real layer widths (attention heads x head dim, text width, VAE latent
channels, patch sizes) but only 1-2 blocks, and a small latent (a few frames at 32x32-ish latent
pixels), so the per-block cost is the real one while memory stays under ~2 GB. Weights are random:
this measures speed, not quality.

For each adapter the table gives the wall time of ``denoise`` (median of ``--repeats`` calls after a
warm-up) and, measured inside the same calls with forward hooks, the time spent in the network itself;
``overhead`` = denoise / network is the cost of the VE <-> native conversion, conditioning
broadcast and (un)packing that the adapter adds (the reference measured in the same run).

Run: ``.venv/bin/python benchmarks/backbones.py [--sizes tiny small] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch

from vdm3d.protocols import Conditioning


# --------------------------------------------------------------------------------------------- builders
def build_svd(small: bool, sv3d: bool = False):
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from vdm3d.models.hub import sv3d as sv3d_mod
    from vdm3d.models.hub import svd as svd_mod

    if not small:
        if sv3d:
            return (
                sv3d_mod.SV3DBackbone(
                    sv3d_mod.tiny_components(0), sv3d_mod.SV3DSettings(frames=2, height=32, width=32)
                ),
                32,
                2,
            )
        return (
            svd_mod.SVDBackbone(
                svd_mod.tiny_components(0), svd_mod.SVDSettings(frames=2, height=32, width=32)
            ),
            32,
            2,
        )
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(0)
    cls = sv3d_mod.SV3DUNet if sv3d else UNetSpatioTemporalConditionModel
    unet = cls(
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(320, 640),
        layers_per_block=1,
        cross_attention_dim=1024,
        num_attention_heads=(5, 10),
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=1280 if sv3d else 768,
    )
    vae = AutoencoderKLTemporalDecoder(
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
    )
    clip = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=64,
            projection_dim=1024,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=128,
            image_size=224,
            patch_size=14,
        )
    )
    comps = {
        "unet": unet,
        "vae": vae,
        "image_encoder": clip,
        "scheduler": EulerDiscreteScheduler(prediction_type="v_prediction", timestep_type="continuous"),
    }
    size, frames = 256, 4
    if sv3d:
        return (
            sv3d_mod.SV3DBackbone(comps, sv3d_mod.SV3DSettings(frames=frames, height=size, width=size)),
            size,
            frames,
        )
    return (
        svd_mod.SVDBackbone(comps, svd_mod.SVDSettings(frames=frames, height=size, width=size)),
        size,
        frames,
    )


def build_cogvideox(small: bool):
    from vdm3d.models.hub import cogvideox as m

    if not small:
        return (
            m.CogVideoXBackbone(
                m.tiny_components(0, frames=9),
                m.CogVideoXSettings(frames=9, height=32, width=32, max_text_tokens=8),
            ),
            32,
            9,
        )
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=8,
        block_out_channels=(8, 8, 8, 8),
        scaling_factor=0.7,
    )
    tr = CogVideoXTransformer3DModel(
        num_attention_heads=48,
        attention_head_dim=64,
        in_channels=32,
        out_channels=16,
        time_embed_dim=512,
        text_embed_dim=4096,
        num_layers=2,
        sample_width=40,
        sample_height=30,
        sample_frames=9,
        max_text_seq_length=226,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    comps = {
        "transformer": tr,
        "vae": vae,
        "scheduler": CogVideoXDDIMScheduler(
            prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing"
        ),
    }
    return m.CogVideoXBackbone(comps, m.CogVideoXSettings(frames=9, height=240, width=320)), (240, 320), 9


def build_wan(small: bool):
    from vdm3d.models.hub import wan as m

    if not small:
        return (
            m.WanBackbone(
                m.tiny_components(0), m.WanSettings(frames=5, height=32, width=32, max_text_tokens=8)
            ),
            32,
            5,
        )
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    tr = WanTransformer3DModel(
        num_attention_heads=12,
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        ffn_dim=8960,
        num_layers=2,
    )  # Wan2.1-1.3B widths, 2 of 30 blocks
    comps = {"transformer": tr, "vae": vae, "scheduler": FlowMatchEulerDiscreteScheduler(shift=5.0)}
    return (
        m.WanBackbone(comps, m.WanSettings(frames=9, height=240, width=320, max_text_tokens=512)),
        (240, 320),
        9,
    )


def build_flux(small: bool):
    from vdm3d.models.hub import flux as m

    if not small:
        return (
            m.FluxBackbone(
                m.tiny_components(0), m.FluxSettings(height=32, width=32, max_text_tokens=8, clip_tokens=8)
            ),
            32,
            2,
        )
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    torch.manual_seed(0)
    dims = dict(
        in_channels=64,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )
    # FLUX.1 widths with 1 of 19 double and 1 of 38 single blocks (~0.5 B weights, 2 GB); a ControlNet
    # block would add another 1.4 GB, so the small run leaves it out (the tiny run includes one)
    comps = {
        "transformer": FluxTransformer2DModel(num_layers=1, num_single_layers=1, **dims),
        "vae": AutoencoderKL(
            latent_channels=16,
            norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            scaling_factor=0.3611,
            shift_factor=0.1159,
        ),
    }
    return m.FluxBackbone(comps, m.FluxSettings(height=512, width=512, max_text_tokens=128)), 512, 1


BUILDERS = {
    "svd": (build_svd, lambda H, W, F: Conditioning(reference=torch.rand(1, H, W, 3))),
    "sv3d": (
        lambda small: build_svd(small, sv3d=True),
        lambda H, W, F: Conditioning(reference=torch.rand(1, H, W, 3)),
    ),
    "cogvideox-i2v": (build_cogvideox, lambda H, W, F: Conditioning(reference=torch.rand(1, H, W, 3))),
    "wan (per-token sigma)": (build_wan, lambda H, W, F: Conditioning(text="")),
    "flux (+ controlnet when tiny)": (
        build_flux,
        lambda H, W, F: Conditioning(text="", maps=torch.rand(1, F, H, W, 3)),
    ),
}


# --------------------------------------------------------------------------------------------- timing
def time_denoise(bb, cond_enc, x, sigma, repeats: int) -> tuple[float, float]:
    """Median wall time of ``denoise`` and of the networks inside it (UNet/transformer + ControlNet)."""
    nets = [
        m for k, m in bb.components.items() if k in ("unet", "transformer", "controlnet") and m is not None
    ]
    spent = [0.0]
    handles = []
    for net in nets:
        t_start: list[float] = []
        handles.append(net.register_forward_pre_hook(lambda *_, t=t_start: t.append(time.perf_counter())))
        handles.append(
            net.register_forward_hook(
                lambda *_, t=t_start: spent.__setitem__(0, spent[0] + time.perf_counter() - t[-1])
            )
        )
    walls, net_times = [], []
    try:
        with torch.no_grad():
            bb.denoise(x, sigma, cond_enc)  # warm-up
            for _ in range(repeats):
                spent[0] = 0.0
                t0 = time.perf_counter()
                bb.denoise(x, sigma, cond_enc)
                walls.append(time.perf_counter() - t0)
                net_times.append(spent[0])
    finally:
        for h in handles:
            h.remove()
    return statistics.median(walls), statistics.median(net_times)


def run(sizes: list[str], repeats: int) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, batch 1")
    print("| adapter | config | params (M) | latent [B,F,C,h,w] | denoise (ms) | network (ms) | overhead |")
    print("|---|---|---|---|---|---|---|")
    for name, (build, make_cond) in BUILDERS.items():
        for size in sizes:
            bb, px, frames = build(size == "small")
            H, W = (px, px) if isinstance(px, int) else px
            net = bb.components.get("unet") or bb.components.get("transformer")
            params = sum(p.numel() for p in net.parameters()) / 1e6
            if bb.components.get("controlnet") is not None:
                params += sum(p.numel() for p in bb.controlnet.parameters()) / 1e6
            cond = make_cond(H, W, frames)
            if "maps" not in bb.slots:
                cond = Conditioning(text=cond.text, reference=cond.reference)
            with torch.no_grad():
                enc = bb.condition(cond)
            fl = (frames - 1) // bb.temporal_factor + 1
            shape = (1, fl, bb.latent_channels, H // bb.spatial_factor, W // bb.spatial_factor)
            x = torch.randn(shape) * 2
            sigma = torch.tensor([2.0])
            if bb.per_element_sigma:  # WorldWarp-style: the first latent frame is clean context
                sigma = torch.full((1, fl, 1, shape[3], shape[4]), 2.0)
                sigma[:, 0] = 0.0
            wall, net_s = time_denoise(bb, enc, x, sigma, repeats)
            print(
                f"| {name} | {size} | {params:.2f} | {list(shape)} | {wall * 1e3:.1f} | {net_s * 1e3:.1f} | "
                f"{wall / net_s:.2f}x |",
                flush=True,
            )
            del bb, enc, x
            gc.collect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=["tiny", "small"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    run(args.sizes, args.repeats)


if __name__ == "__main__":
    main()
