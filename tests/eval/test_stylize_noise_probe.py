"""`vdm3d eval stylize-noise`: the denoising-error probe says whether a denoiser gets information from
flow-warped noise. Checked against analytic answers: a denoiser that returns its input errs by
sigma^2 with any unit noise, and one that reads the noise off the first (key) frame errs by 0 with
noise that stays put and by 2 sigma^2 with fresh noise."""

from __future__ import annotations

import pytest
import torch

from vdm3d.diffusion.noise_warp import warped_noise
from vdm3d.eval.stylize import denoising_errors


def _case():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 5, 4, 16, 16, generator=gen)
    still = torch.zeros(4, 64, 64, 2)  # no motion: Go-with-the-Flow noise stays the same in every frame
    warped = torch.stack([warped_noise(still, 4, grid_scale=2, downscale=4, generator=gen) for _ in range(3)])
    return x0, warped


def test_identity_denoiser_errs_by_sigma_squared_with_any_noise():
    x0, warped = _case()
    errors = denoising_errors(lambda x, s: x, x0, warped, (0.5, 2.0), torch.Generator().manual_seed(1))
    for s, row in errors.items():
        for noise in ("fresh", "warped", "mixed"):
            assert row[noise] == pytest.approx(s * s, rel=0.1)


def test_reading_the_keyframe_noise_pays_only_with_warped_noise():
    x0, warped = _case()
    assert torch.allclose(warped[:, 0], warped[:, -1], atol=1e-5)

    def reads_keyframe(x, s):  # knows the first frame's clean latent, subtracts that frame's noise everywhere
        return x - (x[:, :1] - x0[:, :1])

    errors = denoising_errors(reads_keyframe, x0, warped, (1.0,), torch.Generator().manual_seed(1))[1.0]
    assert errors["warped"] < 1e-8
    assert errors["fresh"] == pytest.approx(2.0, rel=0.1)
    assert errors["warped"] < errors["mixed"] < errors["fresh"]


@pytest.mark.slow
def test_command_scores_the_shipped_model(tmp_path, monkeypatch):
    pytest.importorskip("moderngl")
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    from vdm3d.eval.stylize import stylize_noise

    errors = stylize_noise(objects=1, rooms=0, sigmas=(1.0,), out=tmp_path / "probe")["1.0"]
    assert set(errors) == {"fresh", "warped", "mixed"}
    assert all(0.0 < e < 0.5 for e in errors.values())  # returning the input would err by sigma^2 = 1
    import json  # --out keeps the numbers (the probe printed them only), and its arguments only as the config

    manifest = json.loads((tmp_path / "probe" / "manifest.json").read_text())
    assert manifest["result"]["1.0"] == errors and manifest["config"]["objects"] == 1
    assert "<function" not in json.dumps(manifest["config"]) and (tmp_path / "probe" / "table.md").is_file()


def test_a_folder_without_a_checkpoint_is_one_sentence_and_exit_2(tmp_path, capsys):
    from vdm3d.cli.main import main

    code = main(["eval", "stylize-noise", "--checkpoint", str(tmp_path)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and str(tmp_path) in err[0] and "state.safetensors" in err[0], err
