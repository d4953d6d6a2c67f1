"""`vdm3d models convert --layout v3d|worldwarp`: published checkpoints renamed to the diffusers layout.

The source layouts are written here by hand from the official code (sgm's VideoUNet in heheyas/V3D,
the original Wan2.1 model), independently of the mapping under test; the converted folder must load
strictly and reproduce the outputs of the model whose weights went into the checkpoint."""

from __future__ import annotations

import re

import pytest
import torch

from vdm3d.cli.main import main
from vdm3d.models.hub.layouts import sgm_unet_names, wan_diffusers_name

SIZE = 32

# The SVD-XT UNet config (stabilityai/stable-video-diffusion-img2vid-xt unet/config.json, the block part).
SVD_XT = {"down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
          "up_block_types": ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3,
          "layers_per_block": 2}


def test_sgm_names_of_the_full_svd_unet():
    """The sgm names of SVD-XT's resampling convs and some block tensors, as sgm's VideoUNet lays them out
    (input_blocks: conv_in, then per level 2 resnets [+ attention] and a Downsample `op`; output_blocks: per
    level 3 resnets [+ attention], the last with an Upsample `conv`)."""
    wanted = {
        "down_blocks.0.downsamplers.0.conv.weight": "input_blocks.3.0.op.weight",
        "down_blocks.2.downsamplers.0.conv.bias": "input_blocks.9.0.op.bias",
        "down_blocks.3.resnets.1.temporal_res_block.conv1.weight": "input_blocks.11.0.time_stack.in_layers.2.weight",
        "down_blocks.1.attentions.0.temporal_transformer_blocks.0.ff_in.net.0.proj.weight":
            "input_blocks.4.1.time_stack.0.ff_in.net.0.proj.weight",
        "up_blocks.0.upsamplers.0.conv.weight": "output_blocks.2.1.conv.weight",
        "up_blocks.1.upsamplers.0.conv.weight": "output_blocks.5.2.conv.weight",
        "up_blocks.2.upsamplers.0.conv.weight": "output_blocks.8.2.conv.weight",
        "up_blocks.3.attentions.2.proj_out.weight": "output_blocks.11.1.proj_out.weight",
        "up_blocks.3.resnets.2.spatial_res_block.conv_shortcut.weight": "output_blocks.11.0.skip_connection.weight",
        "mid_block.resnets.1.temporal_res_block.time_emb_proj.weight": "middle_block.2.time_stack.emb_layers.1.weight",
        "mid_block.attentions.0.time_pos_embed.linear_2.bias": "middle_block.1.time_pos_embed.2.bias",
        "add_embedding.linear_2.weight": "label_emb.0.2.weight",
        "time_embedding.linear_1.bias": "time_embed.0.bias",
        "conv_norm_out.weight": "out.0.weight",
    }
    assert sgm_unet_names(SVD_XT, list(wanted)) == wanted


def _tiny_svd(seed):
    from vdm3d.models.hub.svd import tiny_components

    return tiny_components(seed)


def test_sgm_names_of_the_tiny_unet_cover_every_tensor_once():
    unet = _tiny_svd(0)["unet"]
    names = sgm_unet_names(unet.config, list(unet.state_dict()))
    assert len(set(names.values())) == len(names)  # one sgm tensor per diffusers tensor
    assert names["down_blocks.0.resnets.0.spatial_res_block.conv1.weight"] == "input_blocks.1.0.in_layers.2.weight"
    assert names["down_blocks.0.downsamplers.0.conv.weight"] == "input_blocks.2.0.op.weight"
    assert names["up_blocks.0.upsamplers.0.conv.weight"] == "output_blocks.1.1.conv.weight"
    assert names["up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight"] == \
        "output_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"
    assert all(re.match(r"(input_blocks|middle_block|output_blocks|time_embed|label_emb|out)\.", s)
               for s in names.values())


def _denoise(bb, seed=0):
    from vdm3d.protocols import Conditioning

    g = torch.Generator().manual_seed(seed)
    frames = bb.frames
    fl = (frames - 1) // bb.temporal_factor + 1 if bb.temporal_factor > 1 else frames
    x = torch.randn(1, fl, bb.latent_channels, SIZE // bb.spatial_factor, SIZE // bb.spatial_factor, generator=g)
    with torch.no_grad():
        cond = bb.condition(Conditioning(reference=torch.rand(1, SIZE, SIZE, 3, generator=g), text="a red car"))
        return bb.denoise(x, torch.tensor([2.0]), cond)


def test_v3d_checkpoint_becomes_a_loadable_svd_folder(tmp_path, capsys):
    from vdm3d.models.hub.svd import SVDBackbone
    from vdm3d.models.registry import load_backbone

    base = SVDBackbone(_tiny_svd(0), name="svd-xt").save_pretrained(tmp_path / "svd-xt")
    tuned = _tiny_svd(1)["unet"]  # the "fine-tune": other weights, same config
    names = sgm_unet_names(tuned.config, list(tuned.state_dict()))
    sgm = {"model.diffusion_model." + names[k]: v for k, v in tuned.state_dict().items()}
    sgm["first_stage_model.encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3)  # the rest of an sgm checkpoint
    sgm["conditioner.embedders.3.encoder.weight"] = torch.randn(4)
    torch.save({"state_dict": sgm, "global_step": 1}, tmp_path / "V3D.ckpt")
    out = tmp_path / "models" / "v3d"
    argv = ["models", "convert", str(tmp_path / "V3D.ckpt"), str(out), "--layout", "v3d", "--base", str(base),
            "--trust-pickle"]
    assert main(argv) == 0
    assert "tensors" in capsys.readouterr().out
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file() and (out / "vae").is_symlink()
    # the base's vdm3d_adapter.json says "svd-xt": a V3D folder carrying it would be refused as another variant
    assert (base / "vdm3d_adapter.json").is_file() and not (out / "vdm3d_adapter.json").exists()
    bb = load_backbone("v3d", out, frames=2, height=SIZE, width=SIZE)
    for k, v in tuned.state_dict().items():
        assert torch.equal(bb.unet.state_dict()[k], v), k
    expected = SVDBackbone({**_tiny_svd(0), "unet": tuned}, bb.settings, name="v3d")
    torch.testing.assert_close(_denoise(bb), _denoise(expected), rtol=0, atol=0)
    assert main(argv) == 2  # OUT exists
    del sgm["model.diffusion_model.output_blocks.1.1.conv.weight"]
    torch.save({"state_dict": sgm}, tmp_path / "broken.ckpt")
    assert main([*argv[:2], str(tmp_path / "broken.ckpt"), str(tmp_path / "b"), *argv[4:]]) == 2
    assert "output_blocks.1.1.conv.weight" in capsys.readouterr().err
    assert main(["models", "convert", str(tmp_path / "V3D.ckpt"), str(tmp_path / "c"), "--layout", "v3d",
                 "--trust-pickle"]) == 2  # no --base


def test_overwrite_replaces_only_a_converted_folder(tmp_path, capsys):
    """``--layout ... --overwrite`` deleted whatever folder OUT named once the conversion had worked: a
    mistyped OUT (a home or project folder) lost all its files. Only a folder an earlier conversion wrote (its
    vdm3d_conversion.json) is replaced; another is refused before any work and left as it is."""
    from vdm3d.models.hub.svd import SVDBackbone

    base = SVDBackbone(_tiny_svd(0), name="svd-xt").save_pretrained(tmp_path / "svd-xt")
    unet = _tiny_svd(1)["unet"]
    names = sgm_unet_names(unet.config, list(unet.state_dict()))
    torch.save({"state_dict": {"model.diffusion_model." + names[k]: v for k, v in unet.state_dict().items()}},
               tmp_path / "V3D.ckpt")
    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "thesis.txt").write_text("precious")
    argv = ["models", "convert", str(tmp_path / "V3D.ckpt"), str(home), "--layout", "v3d", "--base", str(base),
            "--trust-pickle", "--overwrite"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().endswith(
        "home: --overwrite replaces only a model folder a conversion wrote (with its vdm3d_conversion.json), and "
        "this one holds other files; choose another output, or empty that folder yourself.")
    assert (home / "docs" / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["V3D.ckpt", "home", "svd-xt"]  # no partial folder
    out = tmp_path / "v3d"
    assert main([*argv[:3], str(out), *argv[4:]]) == 0
    (out / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    assert main([*argv[:3], str(out), *argv[4:]]) == 0  # an earlier conversion: replaced
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def _wan(seed):
    from vdm3d.models.hub.wan import tiny_components

    return tiny_components(seed)


def _original_wan_name(name: str) -> str:
    """The original Wan2.1 name of a diffusers WanTransformer3DModel tensor (hand-written inverse)."""
    top = {"condition_embedder.time_embedder.linear_1": "time_embedding.0",
           "condition_embedder.time_embedder.linear_2": "time_embedding.2",
           "condition_embedder.text_embedder.linear_1": "text_embedding.0",
           "condition_embedder.text_embedder.linear_2": "text_embedding.2",
           "condition_embedder.time_proj": "time_projection.1", "proj_out": "head.head",
           "scale_shift_table": "head.modulation"}
    for d, o in top.items():
        if name == d or name.startswith(d + "."):
            return o + name[len(d):]
    for d, o in ((".attn1.to_out.0.", ".self_attn.o."), (".attn2.to_out.0.", ".cross_attn.o."),
                 (".attn1.to_", ".self_attn."), (".attn2.to_", ".cross_attn."), (".attn1.", ".self_attn."),
                 (".attn2.", ".cross_attn."), (".ffn.net.0.proj.", ".ffn.0."), (".ffn.net.2.", ".ffn.2."),
                 (".norm2.", ".norm3."), (".norm3.", ".norm2.")):
        if d in name:
            return name.replace(d, o)
    return name.replace(".scale_shift_table", ".modulation")


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_worldwarp_checkpoint_becomes_a_loadable_wan_folder(tmp_path, layout):
    from vdm3d.models.hub.wan import WanBackbone
    from vdm3d.models.registry import load_backbone

    settings = {"frames": 5, "height": SIZE, "width": SIZE, "max_text_tokens": 8}
    base = WanBackbone(_wan(0), name="wan2.1-t2v-1.3b").save_pretrained(tmp_path / "wan")
    tuned = _wan(1)["transformer"]
    state = tuned.state_dict()
    if layout == "original":
        state = {_original_wan_name(k): v for k, v in state.items()}
        assert "blocks.0.self_attn.q.weight" in state and "blocks.0.norm3.weight" in state
        assert all(wan_diffusers_name(_original_wan_name(k)) == k for k in tuned.state_dict())
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "worldwarp_latest.ckpt")
    out = tmp_path / "worldwarp"
    assert main(["models", "convert", str(tmp_path / "worldwarp_latest.ckpt"), str(out), "--layout", "worldwarp",
                 "--base", str(base), "--trust-pickle"]) == 0
    bb = load_backbone("worldwarp", out, **settings)
    assert all(torch.equal(bb.transformer.state_dict()[k], v) for k, v in tuned.state_dict().items())
    expected = WanBackbone({**_wan(0), "transformer": tuned}, bb.settings)
    torch.testing.assert_close(_denoise(bb), _denoise(expected), rtol=0, atol=0)
