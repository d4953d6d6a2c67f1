"""Loss terms against closed forms; checkpoints refuse what they did not write."""

from __future__ import annotations

import json

import pytest
import torch

from vdm3d.errors import InputError
from vdm3d.recon import losses
from vdm3d.recon.checkpoint import load_state, save_state
from vdm3d.recon.trainer import FitState


def test_l1_weighted_mean_closed_form():
    pred = torch.zeros(1, 2, 2, 3)
    target = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 2, 2, 1).expand(1, 2, 2, 3)
    w = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    torch.testing.assert_close(losses.l1_loss(pred, target, w), torch.tensor((0.1 + 3 * 0.4) / 4))
    torch.testing.assert_close(losses.l1_loss(pred, target), torch.tensor(0.25))


def test_dssim_zero_on_identity_and_weights_gate_regions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 24, 24, 3, generator=g)
    assert float(losses.dssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    y = x.clone()
    y[:, :, 12:] = torch.rand(1, 24, 12, 3, generator=g)  # right half wrong
    w = torch.zeros(1, 24, 24)
    w[:, :, :7] = 1  # weights only where the 11x11 windows see the unchanged left part
    assert float(losses.dssim_loss(y, x, w)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.dssim_loss(y, x)) > 0.1


def test_pearson_depth_ignores_scale_and_shift_and_invalid_pixels():
    g = torch.Generator().manual_seed(0)
    d = torch.rand(2, 8, 8, generator=g) + 1
    target = 3 * d + 5
    target[:, 0, 0] = 0  # invalid: no depth there
    pred = d.clone()
    pred[:, 0, 0] = 100  # whatever is rendered at invalid pixels must not matter
    assert float(losses.depth_loss(pred, target, mode="pearson")) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.depth_loss(-pred, target, mode="pearson")) == pytest.approx(2.0, abs=1e-5)
    assert float(losses.depth_loss(pred, d.masked_fill(target == 0, 0), mode="l1")) == pytest.approx(0.0, abs=1e-7)


def test_opacity_and_alpha_losses():
    torch.testing.assert_close(losses.opacity_loss(torch.zeros(5)), torch.tensor(0.5))
    a = torch.ones(1, 2, 2)
    torch.testing.assert_close(losses.alpha_loss(a * 0.25, a), torch.tensor(0.75))


def test_checkpoint_round_trip_and_foreign_folder(tmp_path):
    state = FitState(7, {"means": torch.randn(4, 3)}, {"means": {"exp_avg": torch.randn(4, 3), "step": torch.tensor(7.0)}},
                     {"grad2d": torch.rand(4), "count": torch.ones(4), "scene_scale": 2.5, "resets": 1},
                     torch.Generator().manual_seed(3).get_state(), 2.5)
    back = load_state(save_state(tmp_path / "c", state))
    assert back.step == 7 and back.scene_scale == 2.5 and back.strategy["resets"] == 1
    assert torch.equal(back.params["means"], state.params["means"])
    assert torch.equal(back.moments["means"]["exp_avg"], state.moments["means"]["exp_avg"])
    assert torch.equal(back.strategy["grad2d"], state.strategy["grad2d"]) and torch.equal(back.generator, state.generator)
    from safetensors.torch import load_file, save_file

    meta = json.loads((tmp_path / "c" / "state.json").read_text())  # the state is in the tensors' metadata too
    tensors = load_file(tmp_path / "c" / "state.safetensors")
    save_file(tensors, tmp_path / "c" / "state.safetensors", metadata={"state": json.dumps({**meta, "format": "other"})})
    with pytest.raises(InputError, match="state.safetensors: format is 'other' v1"):
        load_state(tmp_path / "c")
    with pytest.raises(InputError, match="no complete checkpoint"):
        load_state(tmp_path / "nothing")
