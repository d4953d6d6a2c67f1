"""`--device cuda` on a machine with a GPU (skipped without one): every adapter on CUDA gives what it gives on
the CPU, in float32 closely and in bfloat16 within its precision, and the object job runs its hub backbone
there. These are the checks a lent GPU runs first (`pytest -m cuda tests/models/hub/test_hub_cuda.py`)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from hub_helpers import CASES, SIZE, latent_shape, two_steps

pytestmark = [pytest.mark.cuda, pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", list(CASES))
def test_an_adapter_on_cuda_gives_what_it_gives_on_the_cpu(case, dtype, request):
    fixture, schedule, frames, make_cond = CASES[case]
    bb = request.getfixturevalue(fixture)
    gpu = copy.deepcopy(bb).to("cuda", dtype)
    shape, sigmas, cond = latent_shape(bb, frames), schedule.sigmas(), make_cond()
    want = two_steps(bb, sigmas, shape, cond)
    got = two_steps(gpu, sigmas, shape, cond)
    assert got.device.type == "cpu" and got.dtype == torch.float32
    tolerance = 1e-3 if dtype == torch.float32 else 0.05
    assert (got - want).abs().mean() < tolerance * want.abs().mean(), f"{case} on cuda ({dtype}) strays"
    with torch.no_grad():
        video, gpu_video = bb.decode(want), gpu.decode(want)
    assert gpu_video.device.type == "cpu" and (gpu_video - video).abs().mean() < 10 * tolerance


def test_the_object_job_runs_its_hub_backbone_on_cuda(tmp_path, monkeypatch, capsys):
    from vdm3d.cli.main import main
    from vdm3d.models.hub import svd

    models = tmp_path / "models"
    svd.SVDBackbone(svd.tiny_components(0), svd.V3D_SETTINGS, name="v3d").save_pretrained(models / "v3d")
    monkeypatch.setenv("VDM3D_MODELS", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    image = __import__("pathlib").Path(__file__).resolve().parents[3] / "src" / "vdm3d" / "assets" / "spot.png"
    out = tmp_path / "run"
    fast = ["--resolution", str(SIZE), "--steps", "2", "--fit-steps", "3", "--carve-resolution", "16",
            "--num-points", "64", "--max-gaussians", "200", "--mesh-resolution", "16", "--mesh-views", "4",
            "--turntable-frames", "2", "--texture", "vertex", "--perceptual", "ms-ssim"]
    assert main(["object", "--image", str(image), "--out", str(out), "--preset", "v3d", "--device", "cuda",
                 *fast]) == 0, capsys.readouterr().err
    (where,) = json.loads((out / "manifest.json").read_text())["backends"]["backbone_device"]
    assert where.startswith("cuda:0 (") and where.endswith(("bfloat16", "float16")), where
