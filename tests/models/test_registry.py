"""The model registry and `vdm3d models`: names, cards, default folders, offline errors."""

from __future__ import annotations

import pytest
import torch

from vdm3d.errors import ConfigError, MissingWeightsError, UnsafeCheckpointError
from vdm3d.models import registry


def test_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        registry.load_backbone("sv4d")
    for name in ("svd-xt", "sv3d-p", "cogvideox-5b-i2v", "wan2.1-t2v-1.3b", "flux-dev-controlnet-hed"):
        assert name in str(err.value)


def test_tiny_models_are_listed_first():
    from vdm3d.models.tiny import available

    tiny = [f"tiny-{n}" for n in available()]
    assert registry.names() == tiny + list(registry.HUB) + list(registry.DEPTH)
    for name in tiny:
        assert registry.info(name)["kind"] == "tiny" and registry.installed(name) == "package"


def test_default_folder_follows_the_environment(models_dir):
    assert registry.default_folder("svd-xt") == models_dir / "svd-xt"
    card = registry.info("svd-xt")
    assert card["folder"] == str(models_dir / "svd-xt") and card["installed"] == "no"
    assert card["hub_id"] == "stabilityai/stable-video-diffusion-img2vid-xt"
    assert card["process"] == "edm / v-prediction" and "--local-dir" in card["download"]


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated:UserWarning")
def test_missing_hub_weights_give_one_sentence_naming_repo_and_folder(models_dir):
    if registry.installed("svd-xt"):
        pytest.skip("SVD-XT is in this machine's Hugging Face cache")
    with pytest.raises(MissingWeightsError) as err:
        registry.load_backbone("svd-xt")
    msg = str(err.value)
    assert "stabilityai/stable-video-diffusion-img2vid-xt" in msg and str(models_dir / "svd-xt") in msg
    assert msg.endswith(".") and "\n" not in msg
    with pytest.raises(MissingWeightsError, match="worldwarp"):  # no diffusers repo: the notes say what to do
        registry.load_backbone("worldwarp")


def test_missing_weights_say_what_the_download_does_not_bring(models_dir):
    """``stylize --backbone hub``: `hf download black-forest-labs/FLUX.1-dev` brings no controlnet/, so the
    sentence carries the note that `vdm3d models info flux-dev-controlnet-hed` shows."""
    if registry.installed("flux-dev-controlnet-hed"):
        pytest.skip("FLUX.1-dev is in this machine's Hugging Face cache")
    with pytest.raises(MissingWeightsError) as err:
        registry.load_backbone("flux-dev-controlnet-hed")
    msg = str(err.value)
    assert "hf download black-forest-labs/FLUX.1-dev" in msg and registry.info("flux-dev-controlnet-hed")["notes"] in msg
    assert msg.endswith(".") and "\n" not in msg


def test_load_from_the_default_folder_with_registry_settings(models_dir):
    from vdm3d.models.hub.wan import WanBackbone, tiny_components

    WanBackbone(tiny_components(0)).save_pretrained(models_dir / "wan2.1-t2v-1.3b")
    assert registry.installed("wan2.1-t2v-1.3b") == str(models_dir / "wan2.1-t2v-1.3b")
    bb = registry.load_backbone("wan2.1-t2v-1.3b", frames=5, max_text_tokens=8)
    assert isinstance(bb, WanBackbone) and bb.name == "wan2.1-t2v-1.3b"
    assert bb.frames == 5 and bb.resolution == (480, 832)  # registry settings, then the override
    with pytest.raises(ConfigError, match="unknown settings"):
        registry.load_backbone("wan2.1-t2v-1.3b", frams=5)


def test_pickle_only_folder_needs_the_trust_flag(models_dir, tmp_path):
    from vdm3d.models.hub.wan import WanBackbone, tiny_components

    folder = tmp_path / "pickled"
    WanBackbone(tiny_components(0)).save_pretrained(folder)
    sub = folder / "transformer"
    state = {
        k: v
        for k, v in __import__("safetensors.torch", fromlist=["load_file"])
        .load_file(str(sub / "diffusion_pytorch_model.safetensors"))
        .items()
    }
    (sub / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(state, sub / "diffusion_pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="--trust-pickle"):
        registry.load_backbone("wan2.1-t2v-1.3b", path=folder)
    bb = registry.load_backbone("wan2.1-t2v-1.3b", path=folder, trust_pickle=True)
    assert torch.equal(bb.transformer.proj_out.weight, state["proj_out.weight"])


def test_cli_list_and_info(models_dir, capsys):
    import importlib.util  # noqa: F401 - cli.main uses importlib.util

    from vdm3d.cli.main import main

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "sv3d-p" in out and "not installed" in out and str(models_dir) in out
    assert main(["models", "info", "cogvideox-5b-i2v"]) == 0
    out = capsys.readouterr().out
    assert "THUDM/CogVideoX-5b-I2V" in out and "vp / v-prediction" in out
    assert main(["models", "info", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_a_trained_model_file_loads_as_a_backbone_with_the_shipped_vae(tmp_path):
    """``--inbetween-model runs/train/x/stylize_inbetween.json``: a `vdm3d train` run's folder holds the model
    file and its weights but no VAE, so the shipped VAE decodes; the network is the file's own (one tensor
    changed from the shipped one here). A missing file is named in one sentence."""
    import shutil

    from vdm3d.errors import InputError
    from vdm3d.models.registry import load_backbone
    from vdm3d.models.tiny import WEIGHTS_DIR

    from safetensors.torch import load_file, save_file

    shutil.copy(WEIGHTS_DIR / "stylize_inbetween.json", tmp_path / "stylize_inbetween.json")
    weights = load_file(str(WEIGHTS_DIR / "stylize_inbetween.safetensors"))
    changed = next(iter(weights))
    weights[changed] = weights[changed] + 1  # the run's own network differs from the shipped one in one tensor
    save_file(weights, str(tmp_path / "stylize_inbetween.safetensors"))
    trained, shipped = load_backbone(str(tmp_path / "stylize_inbetween.json")), load_backbone("tiny-stylize_inbetween")
    mine, theirs = trained.denoiser.state_dict(), shipped.denoiser.state_dict()
    assert [k for k in mine if not torch.equal(mine[k], theirs[k])] == [changed]
    torch.testing.assert_close(mine[changed], theirs[changed] + 1, atol=1e-3, rtol=0)  # stored as float16
    for (k, a), (_, b) in zip(trained.vae.state_dict().items(), shipped.vae.state_dict().items(), strict=True):
        assert torch.equal(a, b), k  # decoded by the shipped VAE
    with pytest.raises(InputError, match="does not exist"):
        load_backbone(str(tmp_path / "other.json"))
    # a run's manifest hashes the model files it loads, the shipped ones too (a retrain copied into the
    # package does not change its version), with the VAE that decodes them (the shipped one for this run)
    shipped = [WEIGHTS_DIR / f for f in ("orbit.json", "orbit.safetensors", "vae.json", "vae.safetensors")]
    assert registry.model_files("tiny-orbit", None, str(tmp_path / "stylize_inbetween.json")) == [
        *shipped, tmp_path / "stylize_inbetween.json", tmp_path / "stylize_inbetween.safetensors"]


def test_a_trained_depth_file_is_the_estimator_every_depth_flag_loads(tmp_path, capsys):
    """``--depth runs/d/depth.json`` (explore, complete) and ``--depth-model`` (object): the network of a
    `vdm3d train depth` run (one tensor changed from the shipped ``depth`` here) is the one loaded, through
    the one loader the jobs share; the files go into the manifest; a missing file or a model of another
    kind is one sentence with exit status 2."""
    import shutil

    from safetensors.torch import load_file, save_file

    from vdm3d.cli.main import main
    from vdm3d.errors import InputError
    from vdm3d.jobs.explore import ExploreConfig, load_models
    from vdm3d.models.registry import load_depth
    from vdm3d.models.tiny import WEIGHTS_DIR

    shutil.copy(WEIGHTS_DIR / "depth.json", tmp_path / "depth.json")
    weights = load_file(str(WEIGHTS_DIR / "depth.safetensors"))
    changed = next(iter(weights))
    weights[changed] = weights[changed] + 1
    save_file(weights, str(tmp_path / "depth.safetensors"))
    trained, shipped = load_depth(str(tmp_path / "depth.json")), load_depth("tiny-depth")
    mine, theirs = trained.state_dict(), shipped.state_dict()
    assert [k for k in mine if not torch.equal(mine[k], theirs[k])] == [changed]
    torch.testing.assert_close(mine[changed], theirs[changed] + 1, atol=1e-3, rtol=0)  # stored as float16
    _, explore_depth = load_models(ExploreConfig(image=tmp_path / "x.png", depth=str(tmp_path / "depth.json"),
                                                 fill="inpaint"))
    assert torch.equal(explore_depth.state_dict()[changed], mine[changed])
    assert registry.model_files(str(tmp_path / "depth.json")) == [tmp_path / "depth.json", tmp_path / "depth.safetensors"]
    with pytest.raises(InputError, match="does not exist"):
        load_depth(str(tmp_path / "other.json"))
    with pytest.raises(ConfigError, match="not a depth estimator"):
        load_depth(str(WEIGHTS_DIR / "orbit.json"))
    code = main(["explore", "--image", "../shared/data/photos/coffee.png", "--move", "dolly-in",
                 "--depth", str(tmp_path / "missing.json"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.json" in err[0], err
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()


def test_hub_weights_are_fingerprinted_for_the_manifest(models_dir, tmp_path, monkeypatch):
    """`model_files("sv3d-p")` gives a small record of where the weights load from and their fingerprint
    (configs hashed whole; large weight files by size, safetensors header and sampled blocks), so the run's
    manifest hashes it: same-shape weights swapped in the same folder change it, other files do not."""
    import json

    from vdm3d.io.runs import file_sha256
    from vdm3d.models.hub.sv3d import SV3DBackbone, tiny_components

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert registry.model_files("sv3d-p") == []  # not there: the load says so, nothing to record
    folder = models_dir / "sv3d-p"
    SV3DBackbone(tiny_components(0)).save_pretrained(folder)
    monkeypatch.setattr(registry, "_WHOLE", 1024)  # treat the tiny weights as large files
    *shipped, record = registry.model_files("sv3d-p", "tiny-video", None)
    assert [f.name for f in shipped] == ["video.json", "video.safetensors", "vae.json", "vae.safetensors"]
    data = json.loads(record.read_text())
    assert data["model"] == "sv3d-p" and data["source"] == str(folder)
    unet = data["files"]["unet/diffusion_pytorch_model.safetensors"]
    assert set(unet) == {"size", "header_sha256", "sampled_sha256"}
    assert data["files"]["unet/config.json"]["sha256"] == file_sha256(folder / "unet" / "config.json")
    before = file_sha256(record)
    assert file_sha256(registry.model_files("sv3d-p")[0]) == before  # the same weights: the same record
    SV3DBackbone(tiny_components(1)).save_pretrained(tmp_path / "other")  # same shapes, other values
    for f in ("unet/diffusion_pytorch_model.safetensors",):
        (folder / f).write_bytes((tmp_path / "other" / f).read_bytes())
    [again] = registry.model_files("sv3d-p")
    assert again == record and file_sha256(again) != before
    new = json.loads(again.read_text())["files"]["unet/diffusion_pytorch_model.safetensors"]
    assert new["header_sha256"] == unet["header_sha256"] and new["sampled_sha256"] != unet["sampled_sha256"]


def test_a_folder_given_for_a_hub_model_is_what_is_fingerprinted(models_dir, tmp_path, monkeypatch):
    """stylize's --anchor-path loads the weights from another folder: its manifest hashes that folder's
    fingerprint (a record of its own), not the default place's, and a missing folder gives nothing."""
    import json

    from vdm3d.io.runs import file_sha256
    from vdm3d.models.hub.sv3d import SV3DBackbone, tiny_components

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    SV3DBackbone(tiny_components(0)).save_pretrained(models_dir / "sv3d-p")
    mine = tmp_path / "my sv3d"
    SV3DBackbone(tiny_components(1)).save_pretrained(mine)
    [default] = registry.model_files("sv3d-p")
    [given] = registry.model_files("sv3d-p", folders={"sv3d-p": mine})
    assert given != default and json.loads(given.read_text())["source"] == str(mine.resolve())
    config = mine / "unet" / "config.json"
    assert json.loads(given.read_text())["files"]["unet/config.json"]["sha256"] == file_sha256(config)
    assert registry.model_files("sv3d-p", folders={"sv3d-p": tmp_path / "absent"}) == []


def test_cli_list_shows_the_weights_place_whole(models_dir, capsys):
    from vdm3d.cli.main import main
    from vdm3d.models.hub.wan import WanBackbone, tiny_components

    WanBackbone(tiny_components(0)).save_pretrained(models_dir / "wan2.1-t2v-1.3b")
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"weights: {models_dir / 'wan2.1-t2v-1.3b'}\n" in out and "weights: not installed\n" in out


def test_tiny_alone_names_each_jobs_embedded_models(capsys):
    """`vdm3d models info tiny` said "unknown model" although every job takes --backbone tiny."""
    from vdm3d.cli.main import main

    assert main(["models", "info", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "names each job's own embedded models" in err and "tiny-orbit (object)" in err
    for model in ("tiny-orbit", "tiny-explore", "tiny-depth", "tiny-video", "tiny-stylize_anchor",
                  "tiny-stylize_inbetween"):
        assert model in err and model in registry.names()
