"""`vdm3d eval orbit|warp|depth`: the harness scores against exact renders and its baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdm3d.eval.backbones import COMMANDS, depth, orbit, telea


def test_commands_are_registered():
    assert set(COMMANDS) == {"orbit", "warp", "depth"}
    assert COMMANDS["depth"] is depth


def test_telea_fills_a_hole_in_a_smooth_ramp_closely():
    x = np.linspace(0, 1, 64)
    img = np.stack([np.tile(x, (64, 1)), np.tile(x[:, None], (1, 64)), np.full((64, 64), 0.5)], -1)
    u8 = (img * 255).round().astype(np.uint8)
    valid = np.ones((64, 64), bool)
    valid[20:30, 25:40] = False
    holed = u8 * valid[..., None]
    out = telea(holed, valid)
    assert np.array_equal(out[valid], u8[valid])  # known pixels untouched
    err = np.abs(out[~valid].astype(float) - u8[~valid].astype(float)).mean()
    assert err < 8.0  # a few grey levels on a linear ramp
    assert np.abs(holed[~valid].astype(float) - u8[~valid].astype(float)).mean() > 50


@pytest.mark.slow
def test_orbit_harness_matches_an_independent_copy_baseline(tmp_path, monkeypatch):
    from vdm3d.metrics.image import psnr
    from vdm3d.train.datasets import ObjectSetConfig, load_or_build
    from vdm3d.train.video import ORBIT_STRIDE

    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path))
    result = orbit(objects=2, batch=2, steps=2)
    data = load_or_build(ObjectSetConfig(count=2, split="heldout"))
    rgb = torch.from_numpy(data["rgb"]).float() / 255
    idx = ORBIT_STRIDE * (1 + torch.arange(8))
    copy = psnr(rgb[:, :1].expand(2, 8, *rgb.shape[2:]), rgb[:, idx]).mean().item()
    assert abs(result["psnr_copy_input_db"] - copy) < 1e-3
    assert result["views_per_object"] == 8 and result["objects"] == 2
    assert result["psnr_vae_ceiling_db"] > result["psnr_copy_input_db"]
    assert np.isfinite(result["psnr_model_db"])


def test_a_train_runs_model_file_works_wherever_a_name_does(tmp_path, monkeypatch, capsys):
    """`--model runs/x/NAME.json` (what `vdm3d train` writes) scores the same weights as the name, and
    --record writes into that file's card; a wrong model is refused naming it as given."""
    import json
    import shutil

    from vdm3d.cli.main import main
    from vdm3d.models.tiny import WEIGHTS_DIR

    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "runs" / "depth"
    run.mkdir(parents=True)
    for suffix in (".json", ".safetensors"):
        shutil.copy(WEIGHTS_DIR / f"depth{suffix}", run / f"depth{suffix}")
    shipped_card = (WEIGHTS_DIR / "depth.json").read_text()
    by_name = depth(model="depth", rooms=1)
    by_file = depth(model=str(run / "depth.json"), rooms=1, record=True)
    assert by_file["abs_rel"] == by_name["abs_rel"]
    assert json.loads((run / "depth.json").read_text())["card"]["heldout"]["depth"]["abs_rel"] == by_name["abs_rel"]
    assert (WEIGHTS_DIR / "depth.json").read_text() == shipped_card
    capsys.readouterr()
    for given, says in ((str(run / "nope.json"), "the model file does not exist"),
                        ("bogus", "no tiny model of that name is shipped; choose one of: depth, ")):
        for sub in ("orbit", "warp", "depth"):
            assert main(["eval", sub, "--model", given]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: --model {given}: {says}") and err.count("\n") == 1, err
            assert ".json.json" not in err and "Traceback" not in err
    assert main(["eval", "depth", "--model", str(run / "depth.json"), "--weights-dir", str(run)]) == 2
    assert "drop --weights-dir" in capsys.readouterr().err


def test_an_eval_manifest_records_its_arguments_only(tmp_path):
    """`eval depth`'s recorded config held `depth_metrics: <function ... at 0x...>` (an import that joined
    the locals), so `vdm3d rerun` reported a difference that was not there."""
    import json

    from vdm3d.eval.backbones import depth as eval_depth

    eval_depth(rooms=1, out=tmp_path / "ev")
    config = json.loads((tmp_path / "ev" / "manifest.json").read_text())["config"]
    assert "depth_metrics" not in config and not any("<function" in str(v) for v in config.values())
    assert config["rooms"] == 1


def test_eval_explore_split_takes_the_named_splits_only(capsys):
    """`--split foo` was a KeyError traceback (exit 1) and `--split train` scored training rooms."""
    from vdm3d.cli.main import main

    for bad in ("foo", "train"):
        assert main(["eval", "explore", "--split", bad]) == 2
        assert capsys.readouterr().err.strip().endswith(f"--split takes one of heldout, val, not '{bad}'; pass one of them.")
