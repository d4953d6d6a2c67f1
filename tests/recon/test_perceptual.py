"""The perceptual term: the weight-free MS-SSIM pyramid, and LPIPS-AlexNet loaded from local weights."""

import pytest
import torch
from safetensors.torch import save_file

from vdm3d.errors import MissingWeightsError
from vdm3d.recon.perceptual import LPIPSAlex, make_perceptual, ms_ssim_pyramid_loss, ssim_map


def test_ms_ssim_is_zero_for_equal_images_and_grows_with_blur():
    x = torch.rand(2, 32, 32, 3)
    assert float(ms_ssim_pyramid_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    blurred = torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 3, 1, 1).permute(0, 2, 3, 1)
    noisy = (x + 0.02 * torch.randn_like(x)).clamp(0, 1)
    assert 0 < float(ms_ssim_pyramid_loss(noisy, x)) < float(ms_ssim_pyramid_loss(blurred, x)) < 1


def test_ssim_of_a_constant_shift_matches_the_closed_form():
    # for y = x + c with x constant per window: variance terms vanish, SSIM = (2 mx my + c1)/(mx^2 + my^2 + c1)
    x = torch.full((1, 1, 16, 16), 0.4)
    y = x + 0.2
    c1 = 0.01 ** 2
    want = (2 * 0.4 * 0.6 + c1) / (0.4 ** 2 + 0.6 ** 2 + c1)
    torch.testing.assert_close(ssim_map(x, y), torch.full_like(x, want), atol=2e-4, rtol=0)  # float32 variances


def test_ms_ssim_has_gradients():
    x = torch.rand(1, 16, 16, 3, requires_grad=True)
    ms_ssim_pyramid_loss(x, torch.rand(1, 16, 16, 3)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lpips_from_local_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VDM3D_LPIPS_WEIGHTS", str(tmp_path / "none.safetensors"))
    loss, name = make_perceptual("auto")
    assert name == "ms-ssim-pyramid"
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
