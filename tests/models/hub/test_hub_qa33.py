"""What the hub QA pass of session 33 found, each as a folder a user could have: a text-free folder given a
prompt (F1), a missing scheduler/ (F1), another variant's folder in a slot (F2), broken files inside a folder
(F4), another model's folder given by path (F5). Each refusal is one sentence naming the folder and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hub_helpers import copy_folder, one_sentence
from vdm3d.errors import InputError, MissingWeightsError
from vdm3d.models import registry
from vdm3d.protocols import Conditioning

SIZE = 32


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Tiny random folders as vdm3d's save_pretrained writes them (with vdm3d_adapter.json)."""
    from vdm3d.models.hub import cogvideox, flux, sv3d, svd, wan

    root = tmp_path_factory.mktemp("qa33")
    return {
        "flux": flux.FluxBackbone(flux.tiny_components(0), flux.FluxSettings(
            height=SIZE, width=SIZE, max_text_tokens=8, clip_tokens=8)).save_pretrained(root / "flux"),
        "wan": wan.WanBackbone(wan.tiny_components(0), wan.WanSettings(
            frames=5, height=SIZE, width=SIZE, max_text_tokens=8)).save_pretrained(root / "wan"),
        "cogvideox": cogvideox.CogVideoXBackbone(cogvideox.tiny_components(0, frames=9), cogvideox.CogVideoXSettings(
            frames=9, height=SIZE, width=SIZE, max_text_tokens=8)).save_pretrained(root / "cogvideox"),
        "sv3d-u": sv3d.SV3DBackbone(sv3d.tiny_components(0, cameras=False), sv3d.SV3DSettings(
            frames=2, height=SIZE, width=SIZE, trained_orbit="sv3d-static"), name="sv3d-u").save_pretrained(
            root / "sv3d-u"),
        "svd": svd.SVDBackbone(svd.tiny_components(0), svd.SVDSettings(
            frames=2, height=SIZE, width=SIZE), name="svd").save_pretrained(root / "svd"),
    }


def _image(seed=1):
    return torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ F1: no text encoder
@pytest.mark.parametrize("name, entry, subs, repo", [
    ("flux", "flux-dev-controlnet-hed", ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"),
     "black-forest-labs/FLUX.1-dev"),
    ("wan", "worldwarp", ("text_encoder", "tokenizer"), "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"),
    ("cogvideox", "videofrom3d-ggi", ("text_encoder", "tokenizer"), "THUDM/CogVideoX-5b-I2V"),
])
def test_a_prompt_for_a_folder_without_text_encoder_is_refused(saved, tmp_path, name, entry, subs, repo):
    folder = copy_folder(saved[name], tmp_path, name)
    for sub in subs:
        shutil.rmtree(folder / sub)
    if name == "cogvideox":  # the GGI slot takes a widened transformer: load it as the plain I2V entry
        entry = "cogvideox-5b-i2v"
        repo = "THUDM/CogVideoX-5b-I2V"
    bb = registry.load_backbone(entry, folder)
    listed = " and ".join(s + "/" for s in subs) if len(subs) < 3 else \
        ", ".join(s + "/" for s in subs[:-1]) + " and " + subs[-1] + "/"
    with pytest.raises(InputError) as err:
        bb.condition(Conditioning(text="a toy", reference=_image()))
    assert one_sentence(err) == (
        f"{folder} has no {listed}, so {entry} cannot read the prompt 'a toy'; add the {listed} sub-folders of "
        f"the repository {repo} to {folder}, or pass no prompt.")
    with pytest.raises(InputError, match="cannot read the negative prompt 'blurry'"):
        bb.condition(Conditioning(text="", negative_text="blurry", reference=_image()), null=True)
    # an empty prompt keeps the documented fallback: no text encoder, zero text embedding
    cond = bb.condition(Conditioning(text="", reference=_image()))
    assert float(cond.text.abs().max()) == 0.0
    if name == "flux":
        assert float(cond.pooled.abs().max()) == 0.0


def test_a_folder_with_its_text_encoder_still_reads_the_prompt(saved):
    bb = registry.load_backbone("flux-dev-controlnet-hed", saved["flux"])
    a = bb.condition(Conditioning(text="a red chair"))
    b = bb.condition(Conditioning(text="a blue car"))
    assert float((a.text - b.text).abs().max()) > 0.1


def test_a_missing_scheduler_is_one_note(saved, tmp_path, capfd):
    folder = copy_folder(saved["svd"], tmp_path, "svd")
    shutil.rmtree(folder / "scheduler")
    capfd.readouterr()
    bb = registry.load_backbone("svd", folder)
    err = capfd.readouterr().err
    assert err == (f"note: {folder}/scheduler is absent, so svd uses the EDM sigma range 0.002 to 700 of the "
                   "published SVD scheduler.\n")
    assert bb.sigma_range == (0.002, 700.0)
    registry.load_backbone("svd", saved["svd"])
    assert capfd.readouterr().err == ""


# ------------------------------------------------------------------ F2: another variant in a slot
def test_an_sv3d_u_folder_in_the_sv3d_p_slot_is_refused(saved, tmp_path):
    """The folder's vdm3d_adapter.json (trained_orbit sv3d-static) used to replace the sv3d-p entry's settings,
    so the camera-width check tested SV3D_u's layout, passed, and the run recorded sv3d-p."""
    folder = copy_folder(saved["sv3d-u"], tmp_path, "sv3d-p")
    with pytest.raises(InputError) as err:
        registry.load_backbone("sv3d-p", folder)
    assert one_sentence(err) == (
        f"{folder} holds sv3d-u, trained on the sv3d-static orbit (its vdm3d_adapter.json says so), not sv3d-p, "
        f"which has no trained orbit; use it as sv3d-u (put it in {registry.default_folder('sv3d-u')}) or put "
        f"sv3d-p's own weights in {folder}.")
    # without the adapter file the entry's expectations hold too: the UNet width check refuses it
    (folder / "vdm3d_adapter.json").unlink()
    with pytest.raises(InputError, match="projection_class_embeddings_input_dim is 8, SV3D_u's"):
        registry.load_backbone("sv3d-p", folder)
    # in its own slot it loads, held to its orbit
    bb = registry.load_backbone("sv3d-u", saved["sv3d-u"])
    assert bb.trained_orbit == "sv3d-static" and "cameras" not in bb.slots


def test_an_svd_folder_saved_by_vdm3d_in_the_v3d_slot_is_refused(saved, tmp_path):
    """V3D's UNet has SVD's shapes, so only the adapter file can tell them apart."""
    folder = copy_folder(saved["svd"], tmp_path, "v3d")
    with pytest.raises(InputError) as err:
        registry.load_backbone("v3d", folder)
    assert one_sentence(err) == (
        f"{folder} holds svd, with no trained orbit (its vdm3d_adapter.json says so), not v3d, which is trained on "
        f"the v3d orbit; use it as svd (put it in {registry.default_folder('svd')}) or put v3d's own weights in "
        f"{folder}.")


# ------------------------------------------------------------------ F4: broken files inside a folder
def _unet_config(folder: Path) -> Path:
    return folder / "unet" / "config.json"


def test_a_truncated_safetensors_file_is_named_with_its_sizes(saved, tmp_path):
    folder = copy_folder(saved["svd"], tmp_path, "svd")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    whole = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: whole // 2])
    with pytest.raises(InputError) as err:
        registry.load_backbone("svd", folder)
    assert one_sentence(err) == f"{weights} is truncated ({whole // 2} of {whole} bytes); download it again."
    weights.write_bytes(b"\x05")
    with pytest.raises(InputError, match=r"is truncated \(1 of at least 8 bytes\)"):
        registry.load_backbone("svd", folder)


def test_invalid_json_in_a_config_is_said_not_taken_for_a_missing_config(saved, tmp_path):
    folder = copy_folder(saved["svd"], tmp_path, "svd")
    text = _unet_config(folder).read_text()
    _unet_config(folder).write_text(text + "}{")
    line = text.count("\n") + 1
    col = len(text.rsplit("\n", 1)[-1]) + 1
    with pytest.raises(InputError) as err:
        registry.load_backbone("svd", folder)
    assert one_sentence(err) == (f"{_unet_config(folder)} is not valid JSON (line {line}, column {col}: Extra "
                                  "data); correct it or download it again.")


def test_a_config_field_of_the_wrong_type_is_named(saved, tmp_path):
    folder = copy_folder(saved["svd"], tmp_path, "svd")
    cfg = json.loads(_unet_config(folder).read_text())
    _unet_config(folder).write_text(json.dumps({**cfg, "in_channels": "eight"}))
    with pytest.raises(InputError) as err:
        registry.load_backbone("svd", folder)
    assert one_sentence(err) == (f"{_unet_config(folder)}: in_channels is \"eight\", not an integer (the class "
                                  "default is 8); correct it or download the file again.")


def test_a_config_that_disagrees_with_its_weights_names_the_tensor(saved, tmp_path):
    folder = copy_folder(saved["svd"], tmp_path, "svd")
    cfg = json.loads(_unet_config(folder).read_text())
    _unet_config(folder).write_text(json.dumps({**cfg, "in_channels": cfg["in_channels"] - 1}))
    with pytest.raises(InputError) as err:
        registry.load_backbone("svd", folder)
    out = cfg["block_out_channels"][0]
    assert one_sentence(err) == (
        f"{_unet_config(folder)} does not match the weights beside it: conv_in.weight is [{out}, {cfg['in_channels']}, "
        f"3, 3] in the weights but the config builds [{out}, {cfg['in_channels'] - 1}, 3, 3]; correct the config "
        "field that sets that size, or download config.json and the weights again.")


# ------------------------------------------------------------------ F5: another model's folder by path
def test_another_models_folder_says_what_it_holds_and_where_the_right_one_goes(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("VDM3D_MODELS", str(tmp_path / "root"))
    with pytest.raises(MissingWeightsError) as err:
        registry.load_backbone("flux-dev-controlnet-hed", saved["svd"])  # an SVD folder as --anchor-path
    home = tmp_path / "root" / "flux-dev-controlnet-hed"
    assert one_sentence(err).startswith(
        f"{saved['svd']} holds the svd model (image_encoder/, scheduler/, unet/, vae/), not flux-dev-controlnet-hed, "
        f"which needs transformer/; give the folder of flux-dev-controlnet-hed instead (its weights go in {home}: "
        f"`hf download black-forest-labs/FLUX.1-dev --local-dir {home}`)")
    # the same folder in the slot itself: move it out first, then download into the slot
    slot = Path(shutil.copytree(saved["svd"], tmp_path / "root" / "flux-dev-controlnet-hed"))
    with pytest.raises(MissingWeightsError) as err:
        registry.load_backbone("flux-dev-controlnet-hed")
    assert one_sentence(err).startswith(
        f"{slot} holds the svd model (image_encoder/, scheduler/, unet/, vae/), not flux-dev-controlnet-hed, which "
        f"needs transformer/; move that model to its own folder and put flux-dev-controlnet-hed's weights in {slot} "
        f"(`hf download black-forest-labs/FLUX.1-dev --local-dir {slot}`)")


# ------------------------------------------------------------------ F3: models verify, list says incomplete
def test_models_verify_lists_every_problem_and_exits_2(saved, tmp_path, monkeypatch, capsys):
    from vdm3d.cli.main import main

    root = tmp_path / "root"
    monkeypatch.setenv("VDM3D_MODELS", str(root))
    folder = Path(shutil.copytree(saved["svd"], root / "svd"))
    assert main(["models", "verify", "svd"]) == 0
    assert capsys.readouterr().out == (f"svd: {folder} looks complete (configs parse, weights are whole "
                                       "safetensors)\n")
    shutil.rmtree(folder / "image_encoder")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    whole = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:-10])
    vae_cfg = folder / "vae" / "config.json"
    vae_cfg.write_text(vae_cfg.read_text() + "}")
    assert main(["models", "verify", "svd"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{weights} is truncated ({whole - 10} of {whole} bytes); download it again.",
        f"{vae_cfg} is not valid JSON (line {vae_cfg.read_text().count(chr(10)) + 1}, column 1: Extra data); "
        "correct it or download it again.",
        f"{folder} exists but has no image_encoder/; download them from hub repo stabilityai/stable-video-diffusion-"
        f"img2vid (`hf download stabilityai/stable-video-diffusion-img2vid --local-dir {folder}` fetches only what "
        "is missing).",
        f"svd: 3 problems in {folder}; a job would refuse to load it.",
    ]
    # list and info no longer call it installed
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert (f"weights: incomplete (no image_encoder/; `vdm3d models verify svd` checks the rest): {folder}\n"
            in out)
    assert registry.info("svd")["installed"].startswith("incomplete (no image_encoder/;")
    # --path checks another folder (what --anchor-path would give), here SV3D_u weights as sv3d-p
    assert main(["models", "verify", "sv3d-p", "--path", str(saved["sv3d-u"])]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{saved['sv3d-u']} holds sv3d-u, trained on the sv3d-static orbit") and len(out) == 2
    assert main(["models", "verify", "sv3d-p"]) == 2
    assert capsys.readouterr().out.splitlines()[0] == (
        f"sv3d-p: weights not found in {root / 'sv3d-p'} nor in the Hugging Face cache; `hf download "
        f"chenguolin/sv3d-diffusers --local-dir {root / 'sv3d-p'}` puts them there.")


# ------------------------------------------------------------------ F9, F10: the weights' place in the run
def test_the_manifest_names_each_hub_models_folder_and_resume_names_the_weights(saved, tmp_path, monkeypatch):
    import dataclasses

    from vdm3d.io.runs import RunFolder, file_sha256

    @dataclasses.dataclass(frozen=True)
    class Job:
        steps: int = 1

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VDM3D_MODELS", str(tmp_path / "root"))
    folder = Path(shutil.copytree(saved["svd"], tmp_path / "root" / "svd"))
    [record] = registry.model_files("svd")
    with RunFolder(tmp_path / "done", config=Job(), inputs=[record]):
        pass
    manifest = json.loads((tmp_path / "done" / "manifest.json").read_text())
    assert manifest["models"] == {"svd": {"source": str(folder), "fingerprint": file_sha256(record)}}
    assert manifest["models"]["svd"]["fingerprint"] == manifest["inputs"][str(record)]

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(out, config=Job(), inputs=registry.model_files("svd")) as run:
            (run.checkpoint_dir / "state").write_bytes(b"half")
            raise KeyboardInterrupt
    cfg = folder / "unet" / "config.json"
    cfg.write_text(cfg.read_text().replace("\n", " \n", 1))  # the weights folder changes
    with pytest.raises(InputError) as err:
        RunFolder(out, config=Job(), inputs=registry.model_files("svd"), resume=True).__enter__()
    assert one_sentence(err) == (
        f"{out}: svd's weights in {folder} changed since the interrupted run there started; put the original "
        "weights back, or run without --resume (and with --overwrite) to start again.")


# ------------------------------------------------------------------ F6: maps a folder cannot take
def test_maps_for_a_folder_without_controlnet_or_ggi_name_the_folder(saved, tmp_path):
    flux_folder = copy_folder(saved["flux"], tmp_path, "flux")
    shutil.rmtree(flux_folder / "controlnet")
    maps = torch.rand(1, 1, SIZE, SIZE, 3)
    bb = registry.load_backbone("flux-dev-controlnet-hed", flux_folder)
    with pytest.raises(InputError) as err:
        bb.condition(Conditioning(maps=maps))
    assert one_sentence(err) == (
        f"{flux_folder} has no controlnet/, so flux-dev-controlnet-hed cannot take edge maps; put a diffusers FLUX "
        f"ControlNet in {flux_folder}/controlnet (e.g. XLabs-AI/flux-controlnet-hed-diffusers).")
    bb = registry.load_backbone("cogvideox-5b-i2v", saved["cogvideox"])
    c = bb.latent_channels
    with pytest.raises(InputError) as err:
        bb.condition(Conditioning(reference=_image(), maps=torch.rand(1, 9, SIZE, SIZE, 3)))
    assert one_sentence(err) == (
        f"{saved['cogvideox']}/transformer takes no edge-map latents (in_channels {2 * c}, not {3 * c}), so "
        "cogvideox-5b-i2v cannot inbetween from edge maps; give the folder of a GGI model (`vdm3d models info "
        "videofrom3d-ggi` says how to make one).")


# ------------------------------------------------------------------ F7: allow_download that brought nothing
def test_allow_download_that_brought_nothing_says_why(tmp_path, monkeypatch):
    from vdm3d.models import weights

    monkeypatch.setenv("VDM3D_MODELS", str(tmp_path / "root"))
    home = tmp_path / "root" / "sv3d-p"
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets: no network call is made
    assert weights.hub_offline()
    with pytest.raises(MissingWeightsError) as err:
        registry.load_backbone("sv3d-p", allow_download=True)
    assert str(err.value).startswith(
        f"sv3d-p: weights for hub repo chenguolin/sv3d-diffusers are not in {home} and allow_download=True brought "
        "none: HF_HUB_OFFLINE=1 is set, so nothing was downloaded; unset it or download them with `hf download "
        f"chenguolin/sv3d-diffusers --local-dir {home}` on a machine with network access;")
    monkeypatch.setattr(weights, "hub_offline", lambda: False)  # as when the network is down
    with pytest.raises(MissingWeightsError, match=r"brought none: the download from the Hugging Face hub failed "
                                                  r"\(no network, or the repository is gated"):
        registry.load_backbone("sv3d-p", allow_download=True)
    with pytest.raises(MissingWeightsError, match=r"\(or, from Python, load with allow_download=True"):
        registry.load_backbone("sv3d-p")  # without allow_download: the download command, as before


# ------------------------------------------------------------------ the download command of models info
def test_models_info_leaves_out_single_file_checkpoints_and_says_gated(tmp_path, monkeypatch):
    monkeypatch.setenv("VDM3D_MODELS", str(tmp_path / "root"))
    home = tmp_path / "root" / "flux-dev-controlnet-hed"
    assert registry.info("flux-dev-controlnet-hed")["download"] == (
        f"hf download black-forest-labs/FLUX.1-dev --local-dir {home} --exclude flux1-dev.safetensors --exclude "
        "ae.safetensors (a gated repository: accept its licence on https://huggingface.co/black-forest-labs/FLUX.1-dev "
        "and run `hf auth login` first)")
    assert registry.info("svd-xt")["download"].startswith(
        f"hf download stabilityai/stable-video-diffusion-img2vid-xt --local-dir {tmp_path / 'root' / 'svd-xt'} "
        "--exclude svd_xt.safetensors --exclude svd_xt_image_decoder.safetensors (a gated repository")
    assert registry.info("wan2.1-t2v-1.3b")["download"] == (
        f"hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --local-dir {tmp_path / 'root' / 'wan2.1-t2v-1.3b'}")
