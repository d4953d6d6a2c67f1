"""Pickles run code when loaded: vdm3d refuses them unless trusted, and a trusted one is announced
with a warning that names the file before it is unpickled in full; a broken one, on the converter's
path or the hub path, is one sentence, not a traceback."""

from __future__ import annotations

import argparse

import pytest
import torch

from vdm3d.errors import InputError, UnsafeCheckpointError
from vdm3d.models.weights import load_state_dict


def test_a_trusted_pickle_that_needs_the_full_unpickler_is_announced(tmp_path, capsys):
    path = tmp_path / "lightning.ckpt"
    # hyper-parameters as a Namespace (as Lightning saves them): beyond what weights_only=True reads
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(path)
    state = load_state_dict(path, trust_pickle=True)
    torch.testing.assert_close(state["w"], torch.ones(2))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {path}: unpickling in full because --trust-pickle")


def test_a_tensor_only_pickle_loads_safely_without_a_warning(tmp_path, capsys):
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(3)}, path)
    assert list(load_state_dict(path, trust_pickle=True)) == ["w"]
    assert capsys.readouterr().err == ""  # weights_only=True ran no code


def test_a_checkpoints_bookkeeping_beside_the_weights_is_left_out_and_said(tmp_path, capsys):
    """``{"w": tensor, "step": 1200}`` (a training script's checkpoint) converts to its tensors, with one note
    naming what was left out; it used to be refused as "no flat name -> tensor state dict"."""
    path = tmp_path / "train.pt"
    torch.save({"w": torch.ones(2), "step": 1200, "epoch": 3}, path)
    state = load_state_dict(path, trust_pickle=True)
    assert list(state) == ["w"]
    assert capsys.readouterr().err.strip() == f"note: {path}: left out 2 entries that are not tensors (epoch, step)"
    torch.save({"step": 1200}, path)
    with pytest.raises(InputError, match="holds no flat name -> tensor state dict"):
        load_state_dict(path, trust_pickle=True)


@pytest.mark.parametrize("content", [b"\x00\x01 not a checkpoint", b"\x80\x04 truncated pickle"])
def test_a_broken_trusted_pickle_is_one_sentence(tmp_path, content):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=str(path)):
        load_state_dict(path, trust_pickle=True)


def test_the_hub_path_warns_and_gives_our_error_for_a_broken_pickle(tmp_path, capsys):
    from diffusers import AutoencoderKL

    from vdm3d.errors import MissingWeightsError
    from vdm3d.models.hub.base import Component, _load_component

    vae = AutoencoderKL(block_out_channels=(8,), layers_per_block=1, norm_num_groups=8, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))
    vae.save_pretrained(tmp_path / "vae", safe_serialization=False)
    weights = tmp_path / "vae" / "diffusion_pytorch_model.bin"
    assert weights.is_file()
    good = _load_component(Component("diffusers.AutoencoderKL"), str(tmp_path), "vae", allow_download=False,
                           trust_pickle=True, torch_dtype=None, missing=lambda: MissingWeightsError("missing."))
    assert isinstance(good, AutoencoderKL)
    assert f"warning: {weights}: unpickling in full" in capsys.readouterr().err
    weights.write_bytes(weights.read_bytes()[:200])  # cut short
    with pytest.raises(InputError, match="the weights could not be loaded"):
        _load_component(Component("diffusers.AutoencoderKL"), str(tmp_path), "vae", allow_download=False,
                        trust_pickle=True, torch_dtype=None, missing=lambda: MissingWeightsError("missing."))
