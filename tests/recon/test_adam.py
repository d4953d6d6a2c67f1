"""The fitting loop's Adam against torch.optim.Adam: the same parameters and moments, step for step."""

import pytest
import torch

from vdm3d.recon import adam as adam_module
from vdm3d.recon.adam import Adam


@pytest.mark.parametrize("fused", [True, False])
def test_adam_matches_torch_optim_adam(fused, monkeypatch):
    monkeypatch.setattr(adam_module, "_FUSED", fused and adam_module._FUSED)
    gen = torch.Generator().manual_seed(0)
    start = {"a": torch.randn(50, 3, generator=gen), "b": torch.randn(50, generator=gen)}
    lrs = {"a": 0.05, "b": 0.3}
    ours = {k: torch.nn.Parameter(v.clone()) for k, v in start.items()}
    ref = {k: torch.nn.Parameter(v.clone()) for k, v in start.items()}
    opt = Adam([{"params": [p], "name": k, "lr": lrs[k]} for k, p in ours.items()], eps=1e-15)
    opt_ref = torch.optim.Adam([{"params": [p], "name": k, "lr": lrs[k]} for k, p in ref.items()], eps=1e-15)
    for step in range(20):
        grads = {k: torch.randn(v.shape, generator=gen) * (step + 1) for k, v in start.items()}
        for params, optimizer in ((ours, opt), (ref, opt_ref)):
            for k, p in params.items():
                p.grad = grads[k].clone()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    for k in start:
        torch.testing.assert_close(ours[k].detach(), ref[k].detach(), atol=1e-6, rtol=1e-5)
        assert set(opt.state[ours[k]]) == set(opt_ref.state[ref[k]]) == {"step", "exp_avg", "exp_avg_sq"}
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(opt.state[ours[k]][key], opt_ref.state[ref[k]][key].to(opt.state[ours[k]][key].dtype),
                                       atol=1e-6, rtol=1e-5)
        assert ours[k].grad is None
