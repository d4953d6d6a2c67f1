"""`vdm3d models convert`: a pickle checkpoint becomes safetensors with the same tensors, only when trusted."""

import pytest
import torch

from vdm3d.cli.main import main
from vdm3d.errors import UnsafeCheckpointError
from vdm3d.models.weights import load_state_dict


def test_convert_keeps_every_tensor_and_needs_trust(tmp_path, capsys):
    state = {"blocks.0.weight": torch.randn(3, 4), "blocks.0.bias": torch.arange(3.0), "step": torch.tensor(7)}
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(UnsafeCheckpointError, match="vdm3d models convert .*model.ckpt .*model.safetensors --trust-pickle"):
        load_state_dict(ckpt)
    assert main(["models", "convert", str(ckpt), str(tmp_path / "mine.safetensors")]) == 2  # refused untrusted
    # the sentence asks for the flag on this command, not another command with another output path (QA)
    assert capsys.readouterr().err == (f"error: {ckpt}: pickle checkpoints can run code when loaded, so they are "
                                       "refused; if you trust its source, run the same command with --trust-pickle.\n")
    assert not (tmp_path / "mine.safetensors").exists()
    assert not (tmp_path / "model.safetensors").exists()
    assert main(["models", "convert", str(ckpt), str(tmp_path / "model.safetensors"), "--trust-pickle"]) == 0
    assert "3 tensors" in capsys.readouterr().out
    out = load_state_dict(tmp_path / "model.safetensors")
    assert out.keys() == state.keys() and all(torch.equal(out[k], state[k]) for k in state)
    assert main(["models", "convert", str(ckpt), str(tmp_path / "model.safetensors"), "--trust-pickle"]) == 2
    assert main(["models", "convert", str(ckpt), str(tmp_path / "model.bin"), "--trust-pickle"]) == 2
