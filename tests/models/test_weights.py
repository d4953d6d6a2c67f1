"""Safe checkpoint loading: safetensors always, pickle only with the trust flag."""

from __future__ import annotations

import pytest
import torch

from vdm3d.errors import InputError, MissingWeightsError, UnsafeCheckpointError
from vdm3d.models.weights import is_missing_weights, load_state_dict, missing_weights_error, save_state_dict


def _state():
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(3, 4, generator=g), "b.bias": torch.arange(5, dtype=torch.float64)}


def test_safetensors_round_trip(tmp_path):
    state = _state()
    path = save_state_dict(state, tmp_path / "m.safetensors")
    loaded = load_state_dict(path)
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_pickle_refused_without_trust_and_named_flag(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    torch.save({"state_dict": _state()}, path)
    with pytest.raises(UnsafeCheckpointError, match="--trust-pickle") as err:
        load_state_dict(path)
    assert str(path) in str(err.value) and str(err.value).count(". ") == 0  # one sentence
    loaded = load_state_dict(path, trust_pickle=True)  # Lightning-style wrapper unwrapped
    assert torch.equal(loaded["a.weight"], _state()["a.weight"])


def test_missing_corrupt_and_unknown_files(tmp_path):
    with pytest.raises(MissingWeightsError, match="not found"):
        load_state_dict(tmp_path / "absent.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(InputError, match="bad.safetensors"):
        load_state_dict(bad)
    odd = tmp_path / "m.npz"
    odd.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown checkpoint format"):
        load_state_dict(odd)
    not_state = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_state)
    with pytest.raises(InputError, match="state dict"):
        load_state_dict(not_state, trust_pickle=True)


def test_offline_cause_chain_is_recognised():
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        try:
            raise LocalEntryNotFoundError("cannot find the requested files in the disk cache")
        except LocalEntryNotFoundError as inner:
            raise OSError("We couldn't connect to 'https://huggingface.co'") from inner
    except OSError as outer:
        assert is_missing_weights(outer)
    assert not is_missing_weights(ValueError("shape mismatch"))
    msg = str(
        missing_weights_error(
            "svd", "stabilityai/x", hub_id="stabilityai/x", folder="/m/svd", files=("unet/", "vae/")
        )
    )
    assert "stabilityai/x" in msg and "/m/svd" in msg and msg.endswith(".") and "unet/" in msg
