"""Model folders as a download leaves them (each part ``save_pretrained``, no ``vdm3d_adapter.json``), and the
ways they go wrong: another model's weights in the folder, a missing part, fp16-only files, pickle-only files,
``VDM3D_MODELS`` set to the model folder itself. Each is one sentence naming the folder and the fix (or a load
that works), never a traceback or "download 10 GB again"."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hub_helpers import copy_folder, one_sentence
from vdm3d.errors import InputError, MissingWeightsError, UnsafeCheckpointError
from vdm3d.models import registry
from vdm3d.models.hub.base import ADAPTER_FILE

SIZE = 32


def _download_layout(backbone, folder: Path) -> Path:
    """``backbone`` saved as a hub download looks: its parts and a model_index.json, no adapter file."""
    backbone.save_pretrained(folder)
    (folder / ADAPTER_FILE).unlink()
    index = {"_class_name": "Pipeline"}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        cfg = next((json.loads(c.read_text()) for c in (sub / "config.json", sub / "scheduler_config.json")
                    if c.is_file()), {})
        index[sub.name] = (["diffusers", cfg["_class_name"]] if "_class_name" in cfg else
                           ["transformers", (cfg.get("architectures") or ["PreTrainedTokenizerFast"])[0]])
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from vdm3d.models.hub import cogvideox, flux, sv3d, svd, wan

    root = tmp_path_factory.mktemp("models")
    return {
        "sv3d-p": _download_layout(sv3d.SV3DBackbone(sv3d.tiny_components(0)), root / "sv3d-p"),
        "svd-xt": _download_layout(svd.SVDBackbone(svd.tiny_components(0)), root / "svd-xt"),
        "wan": _download_layout(wan.WanBackbone(wan.tiny_components(0)), root / "wan"),
        "cogvideox": _download_layout(cogvideox.CogVideoXBackbone(cogvideox.tiny_components(0, frames=9)),
                                      root / "cogvideox"),
        "flux": _download_layout(flux.FluxBackbone(flux.tiny_components(0)), root / "flux"),
    }


# ------------------------------------------------------------------ 1. another model's weights
def test_a_cogvideox_folder_given_as_wan_is_named_not_a_traceback(folders):
    with pytest.raises(InputError) as err:
        registry.load_backbone("wan2.1-t2v-1.3b", folders["cogvideox"])
    msg = one_sentence(err)
    assert (f"{folders['cogvideox']}/transformer holds a CogVideoXTransformer3DModel, not the "
            "WanTransformer3DModel that wan2.1-t2v-1.3b needs") in msg


def test_a_wan_folder_given_as_flux_is_named(folders):
    with pytest.raises(InputError, match="holds a WanTransformer3DModel, not the FluxTransformer2DModel") as err:
        registry.load_backbone("flux-dev-controlnet-hed", folders["wan"])
    one_sentence(err)


def test_an_svd_unet_in_the_sv3d_p_slot_is_refused_by_its_camera_width(folders):
    """SVD's UNet config is the class SV3D's diffusers conversions use too, so the class name passes; its
    vector input (3 x addition_time_embed_dim: fps, motion, augmentation) is SVD's, not SV3D_p's."""
    with pytest.raises(InputError) as err:
        registry.load_backbone("sv3d-p", folders["svd-xt"])
    msg = one_sentence(err)
    cfg = json.loads((folders["svd-xt"] / "unet" / "config.json").read_text())
    assert cfg["_class_name"] == "UNetSpatioTemporalConditionModel"
    assert f"projection_class_embeddings_input_dim is {cfg['projection_class_embeddings_input_dim']}" in msg
    assert "SVD's layout" in msg and "sv3d-p" in msg
    with pytest.raises(InputError, match="not SV3D_u's 8"):  # SV3D_p's camera UNet where SV3D_u goes
        registry.load_backbone("sv3d-u", folders["sv3d-p"])
    with pytest.raises(InputError, match="holds a SV3DUNet, not the UNetSpatioTemporalConditionModel"):
        registry.load_backbone("svd-xt", folders["sv3d-p"])


def test_an_sv3d_unet_saved_as_svds_class_loads(folders, tmp_path):
    """The conversions of SV3D save its UNet as SVD's class (or their own subclass): both load."""
    folder = copy_folder(folders["sv3d-p"], tmp_path, "sv3d-p")
    for name in ("UNetSpatioTemporalConditionModel", "SV3DUNetSpatioTemporalConditionModel"):
        cfg = json.loads((folder / "unet" / "config.json").read_text())
        (folder / "unet" / "config.json").write_text(json.dumps({**cfg, "_class_name": name}))
        bb = registry.load_backbone("sv3d-p", folder)
        assert bb.unet.camera_embed_dim == 12 and "cameras" in bb.slots


def test_a_config_the_class_cannot_build_from_is_one_sentence(folders, tmp_path):
    """A transformer config of the right class whose fields do not fit (here patch_size an int where Wan
    takes three) raises TypeError inside diffusers: one sentence naming the sub-folder."""
    folder = copy_folder(folders["wan"], tmp_path, "wan")
    cfg = json.loads((folder / "transformer" / "config.json").read_text())
    (folder / "transformer" / "config.json").write_text(json.dumps({**cfg, "patch_size": 2}))
    with pytest.raises(InputError) as err:
        registry.load_backbone("wan2.1-t2v-1.3b", folder)
    assert f"{folder}/transformer: the weights could not be loaded (TypeError" in one_sentence(err)


# ------------------------------------------------------------------ 2. missing parts, fp16, VDM3D_MODELS
def test_a_missing_sub_folder_is_named(folders, tmp_path):
    folder = copy_folder(folders["sv3d-p"], tmp_path, "sv3d-p")
    shutil.rmtree(folder / "image_encoder")
    with pytest.raises(MissingWeightsError) as err:
        registry.load_backbone("sv3d-p", folder)
    msg = one_sentence(err)
    assert f"{folder} exists but has no image_encoder/;" in msg and "weights not found" not in msg
    assert f"`hf download chenguolin/sv3d-diffusers --local-dir {folder}`" in msg
    shutil.rmtree(folder / "unet")
    (folder / "unet").mkdir()
    with pytest.raises(MissingWeightsError, match=r"has no image_encoder/; its unet/ holds no config.json"):
        registry.load_backbone("sv3d-p", folder)


def test_another_models_layout_is_named(folders):
    with pytest.raises(MissingWeightsError) as err:
        registry.load_backbone("sv3d-p", folders["wan"])
    msg = one_sentence(err)
    # the fix is to give sv3d-p's folder, never to download sv3d-p into the Wan folder
    assert msg.startswith(f"{folders['wan']} holds a model with a WanTransformer3DModel (scheduler/, text_encoder/, "
                          "tokenizer/, transformer/, vae/), not sv3d-p, which needs unet/, image_encoder/; give the "
                          f"folder of sv3d-p instead (its weights go in {registry.default_folder('sv3d-p')}: `hf "
                          f"download chenguolin/sv3d-diffusers --local-dir {registry.default_folder('sv3d-p')}`)"), msg
    assert f"--local-dir {folders['wan']}" not in msg


def test_fp16_only_files_load_as_the_fp16_variant(folders, tmp_path, capfd):
    """``hf download ... --include "*fp16*"`` leaves ``*.fp16.safetensors`` only: they load (in the
    dtype of the rest), and diffusers prints nothing of its own."""
    folder = copy_folder(folders["sv3d-p"], tmp_path, "sv3d-p")
    for f in folder.rglob("*.safetensors"):
        state = load_file(f)
        from safetensors.torch import save_file

        # metadata as save_pretrained writes it (and the hub's files carry): transformers before 5 refuses a
        # safetensors file without it (pyproject allows 4.46)
        half = f.with_name(f.name.replace(".safetensors", ".fp16.safetensors"))
        save_file({k: v.half() for k, v in state.items()}, half, metadata={"format": "pt"})
        f.unlink()
    capfd.readouterr()
    bb = registry.load_backbone("sv3d-p", folder)
    assert capfd.readouterr().err == ""
    ref = registry.load_backbone("sv3d-p", folders["sv3d-p"])
    for ours, full in ((bb.unet, ref.unet), (bb.vae, ref.vae), (bb.image_encoder, ref.image_encoder)):
        for (name, a), b in zip(ours.state_dict().items(), full.state_dict().values()):
            assert a.dtype == torch.float32, name
            if b.is_floating_point():
                torch.testing.assert_close(a, b.half().float(), rtol=0, atol=0)


def test_models_env_set_to_the_model_folder_itself_is_said(folders, monkeypatch, tmp_path):
    monkeypatch.setenv("VDM3D_MODELS", str(folders["sv3d-p"]))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as err:
        registry.load_backbone("sv3d-p")
    msg = one_sentence(err)
    assert f"$VDM3D_MODELS is {folders['sv3d-p']}, which is itself a model folder" in msg
    assert f"set VDM3D_MODELS={folders['sv3d-p'].parent} " in msg


# ------------------------------------------------------------------ 3. pickle-only parts
def test_the_pickle_refusal_gives_a_command_that_works(folders, tmp_path):
    from vdm3d.cli.main import main

    folder = copy_folder(folders["sv3d-p"], tmp_path, "sv3d-p")
    st = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(st)
    st.unlink()
    torch.save(state, folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError) as err:
        registry.load_backbone("sv3d-p", folder)
    msg = one_sentence(err)
    command = msg.split("`")[1]
    assert command == (f"vdm3d models convert {folder}/unet/diffusion_pytorch_model.bin "
                       f"{folder}/unet/diffusion_pytorch_model.safetensors --trust-pickle")
    assert main(command.split()[1:]) == 0  # the command as the sentence gives it
    bb = registry.load_backbone("sv3d-p", folder)
    assert torch.equal(bb.unet.conv_in.weight, state["conv_in.weight"])


# ------------------------------------------------------------------ 3b. a LoRA adapter's folder
def lora_folder(folder: Path) -> Path:
    """What `peft`'s ``save_pretrained`` leaves: ``adapter_config.json`` and the adapter's weights, no model."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": "chenguolin/sv3d-diffusers", "r": 16, "lora_alpha": 16,
        "target_modules": ["to_q", "to_k", "to_v"]}))
    save_file({"base_model.model.unet.conv_in.lora_A.weight": torch.zeros(16, 8)},
              folder / "adapter_model.safetensors")
    return folder


def test_a_lora_adapters_folder_is_named_as_one_not_a_model_to_download_into(models_dir, tmp_path, capsys):
    """A peft adapter's folder given as a model was "FOLDER exists but has no unet/, vae/, image_encoder/;
    download them ... --local-dir FOLDER": a model downloaded into the adapter's folder."""
    from vdm3d.cli.main import main

    lora = lora_folder(tmp_path / "my-lora")
    home = models_dir / "sv3d-p"
    with pytest.raises(InputError) as err:
        registry.load_backbone("sv3d-p", lora)
    sentence = (f"{lora} holds a LoRA/peft adapter of chenguolin/sv3d-diffusers (adapter_config.json), not a model, "
                f"and vdm3d loads no adapters; give the folder of sv3d-p itself instead (its weights go in {home}: "
                f"`hf download chenguolin/sv3d-diffusers --local-dir {home}`), or the folder of the model with the "
                "adapter merged into it (peft's merge_and_unload, then save_pretrained).")
    assert one_sentence(err) == sentence
    capsys.readouterr()
    assert main(["models", "verify", "sv3d-p", "--path", str(lora)]) == 2
    assert capsys.readouterr().out.splitlines()[0] == sentence
    # in the model's own folder (a job's --backbone sv3d-p): the adapter goes, the model comes in its place
    lora_folder(home)
    image = Path(__file__).resolve().parents[3] / "src" / "vdm3d" / "assets" / "spot.png"
    assert main(["object", "--backbone", "sv3d-p", "--image", str(image), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        f"error: {home} holds a LoRA/peft adapter of chenguolin/sv3d-diffusers (adapter_config.json), not a model, "
        f"and vdm3d loads no adapters; move the adapter elsewhere and put sv3d-p's weights in {home} (`hf download "
        f"chenguolin/sv3d-diffusers --local-dir {home}`), or the model with the adapter merged into it (peft's "
        "merge_and_unload, then save_pretrained).\n")
    assert not (tmp_path / "run").exists()


def test_a_lora_saved_over_a_part_of_a_model_is_named(folders, tmp_path):
    """peft's save_pretrained of a LoRA on the UNet, written into unet/ in place of the UNet: it said "its unet/
    holds no config.json and weights; download them"."""
    model = copy_folder(folders["sv3d-p"], tmp_path, "sv3d-lora-unet")
    shutil.rmtree(model / "unet")
    lora_folder(model / "unet")
    with pytest.raises(InputError) as err:
        registry.load_backbone("sv3d-p", model)
    assert one_sentence(err) == (
        f"{model / 'unet'} holds a LoRA/peft adapter (adapter_config.json) where sv3d-p's unet belongs, and vdm3d "
        "loads no adapters; put the model's own unet/ there (`hf download chenguolin/sv3d-diffusers --local-dir "
        f"{model}`), or the unet with the adapter merged into it (peft's merge_and_unload, then save_pretrained).")


def test_an_adapter_beside_a_models_weights_is_said_to_be_ignored(folders, tmp_path, capsys):
    """A model folder that also holds an adapter_config.json loaded the model and dropped the adapter without a
    word, so a user who had put their LoRA there got the base model's pictures and no reason why."""
    model = copy_folder(folders["sv3d-p"], tmp_path, "sv3d-with-lora")
    (model / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    capsys.readouterr()
    registry.load_backbone("sv3d-p", model)
    assert capsys.readouterr().err == (
        f"warning: {model / 'adapter_config.json'}: a LoRA/peft adapter beside sv3d-p's weights is not loaded "
        "(vdm3d loads no adapters); merge it into the model first (peft's merge_and_unload, then save_pretrained) "
        "to use it.\n")
    registry.load_backbone("sv3d-p", folders["sv3d-p"])
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ 4. settings from the folder's configs
def test_text_lengths_come_from_the_folders_configs(folders):
    """Without vdm3d_adapter.json the sequence lengths are the model's own (the tiny ones: 8 T5 tokens for
    CogVideoX, 16 CLIP positions for FLUX), not the registry's 226 / 77 (a traceback on the first prompt)."""
    from vdm3d.protocols import Conditioning

    cog = registry.load_backbone("cogvideox-5b-i2v", folders["cogvideox"], frames=9, height=SIZE, width=SIZE)
    assert cog.settings.max_text_tokens == cog.transformer.config.max_text_seq_length == 8
    flux = registry.load_backbone("flux-dev-controlnet-hed", folders["flux"], height=SIZE, width=SIZE,
                                  max_text_tokens=8)
    assert flux.settings.clip_tokens == flux.text_encoder.config.max_position_embeddings == 16
    with torch.no_grad():
        cond = flux.condition(Conditioning(text="a red car"))
    assert cond.pooled.shape == (1, 16)
    given = registry.load_backbone("flux-dev-controlnet-hed", folders["flux"], clip_tokens=8)
    assert given.settings.clip_tokens == 8  # the caller's (or the adapter file's) setting wins


# ------------------------------------------------------------------ 7. diffusers' FluxPosEmbed notice
def test_loading_flux_prints_no_flux_pos_embed_deprecation(folders):
    from vdm3d.models.hub import memory as M

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bb = registry.load_backbone("flux-dev-controlnet-hed", folders["flux"], height=SIZE, width=SIZE)
        M.plan_loaded(bb, "100GB")  # the planner builds the components again on the meta device
    assert not [w for w in caught if "FluxPosEmbed" in str(w.message)]
