"""The perceptual term: the weight-free MS-SSIM pyramid, and LPIPS-AlexNet loaded from local weights."""

import pytest
import torch
from safetensors.torch import save_file

from vdm3d.errors import MissingWeightsError
from vdm3d.recon.perceptual import LPIPSAlex, make_perceptual, ms_ssim_substitute


def test_ms_ssim_substitute_is_zero_for_equal_images_and_grows_with_blur():
    x = torch.rand(2, 64, 64, 3)
    assert float(ms_ssim_substitute(x, x)) == pytest.approx(0.0, abs=1e-5)
    blurred = torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 3, 1, 1).permute(0, 2, 3, 1)
    noisy = (x + 0.02 * torch.randn_like(x)).clamp(0, 1)
    assert 0 < float(ms_ssim_substitute(noisy, x)) < float(ms_ssim_substitute(blurred, x)) < 1


def test_lpips_from_local_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VDM3D_LPIPS_WEIGHTS", str(tmp_path / "none.safetensors"))
    loss, name = make_perceptual("auto")
    assert name == "ms-ssim"
    with pytest.raises(MissingWeightsError, match="LPIPS weights are not present"):
        make_perceptual("lpips")
    net = LPIPSAlex()
    state = {k: torch.randn_like(v) * 0.05 for k, v in net.state_dict().items() if k not in ("shift", "scale")}
    state.update({f"lin{k}": torch.rand_like(net.state_dict()[f"lin{k}"]) for k in range(5)})
    path = tmp_path / "lpips.safetensors"
    save_file(state, str(path))
    monkeypatch.setenv("VDM3D_LPIPS_WEIGHTS", str(path))
    loss, name = make_perceptual("auto")
    assert name == "lpips-alex"
    x = torch.rand(2, 64, 64, 3)
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, torch.rand_like(x))) > 0
