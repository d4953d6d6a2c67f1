"""Densify/prune policy on synthetic gradients: who is cloned, split, pruned; optimizer rows follow."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vdm3d.cameras.rotations import matrix_from_quat
from vdm3d.splat.strategy import DensifyPolicy


def _params(n: int, log_scale: float = math.log(0.001), opacity: float = 0.5):
    g = torch.Generator().manual_seed(1)
    p = {
        "means": torch.randn(n, 3, generator=g),
        "quats": torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
        "log_scales": torch.full((n, 3), log_scale),
        "opacity_logits": torch.full((n,), math.log(opacity / (1 - opacity))),
        "sh0": torch.rand(n, 1, 3, generator=g),
    }
    p["log_scales"] = p["log_scales"] + 0.01 * torch.arange(n).unsqueeze(-1)  # tell rows apart
    params = {k: nn.Parameter(v) for k, v in p.items()}
    opt = torch.optim.Adam([{"params": [v], "name": k, "lr": 1e-3} for k, v in params.items()])
    # one real Adam step so every parameter has moments to carry
    sum((v ** 2).sum() for v in params.values()).backward()
    opt.step()
    opt.zero_grad()
    return params, opt


def _grads(n, hot, value, width=100, height=80):
    """Pixel-space gradients whose normalized-device norm is exactly ``value`` for rows in ``hot``."""
    v = torch.zeros(1, n, 2)
    v[0, hot, 0] = value / (width / 2)
    return v


def test_accumulate_counts_only_visible_and_normalizes_to_ndc():
    policy = DensifyPolicy()
    state = policy.initial_state(3, scene_scale=1.0)
    v = torch.tensor([[[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]],
                      [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])  # [B=2, N=3, 2]
    radii = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    new = policy.accumulate(state, v, radii, width=10, height=20)
    # row 0: view 0 (3*5, 4*10) -> norm sqrt(225 + 1600); view 1 zero. row 1 only view 1: 5. row 2: 2*10.
    torch.testing.assert_close(new["grad2d"], torch.tensor([math.sqrt(1825.0), 5.0, 20.0]))
    torch.testing.assert_close(new["count"], torch.tensor([2.0, 1.0, 1.0]))
    assert state["count"].sum() == 0  # the input state is untouched


def test_refine_clones_small_splits_large_and_prunes_transparent():
    n = 6
    params, opt = _params(n)
    with torch.no_grad():
        params["log_scales"][3] = math.log(0.5)  # large: above 0.01 * scene_scale
        params["opacity_logits"][5] = -10.0  # nearly transparent -> pruned
    before = {k: v.detach().clone() for k, v in params.items()}
    m_before = {k: opt.state[v]["exp_avg"].clone() for k, v in params.items()}
    policy = DensifyPolicy()
    state = policy.initial_state(n, scene_scale=1.0)
    state = policy.accumulate(state, _grads(n, [1, 3], 0.001), torch.ones(1, n), 100, 80)
    state, report = policy.refine(params, opt, state, torch.Generator().manual_seed(0))
    assert report == {"cloned": 1, "split": 1, "pruned": 1, "reset": 0}
    # 6 + 1 clone + 1 net from the split - 1 pruned; order: survivors [0, 1, 2, 4], the clone of 1,
    # then the two children of 3
    m = params["means"].detach()
    assert m.shape == (7, 3)
    torch.testing.assert_close(m[:4], before["means"][[0, 1, 2, 4]])
    torch.testing.assert_close(m[4], before["means"][1])  # the clone is exact
    torch.testing.assert_close(params["log_scales"][5:].detach(),
                               (before["log_scales"][3] - math.log(1.6)).expand(2, 3))
    torch.testing.assert_close(params["sh0"][4:].detach(), before["sh0"][[1, 3, 3]])
    # optimizer: same objects, moments kept for survivors and zero for new rows
    for k, v in params.items():
        assert opt.param_groups[[g["name"] for g in opt.param_groups].index(k)]["params"][0] is v
        torch.testing.assert_close(opt.state[v]["exp_avg"][:4], m_before[k][[0, 1, 2, 4]])
        assert opt.state[v]["exp_avg"][4:].abs().sum() == 0
    assert state["grad2d"].shape == (7,) and state["grad2d"].sum() == 0


def test_split_children_follow_the_parent_covariance():
    # many copies of one anisotropic, rotated Gaussian, all split: children sample N(mu, Sigma)
    n = 4000
    params, opt = _params(n)
    q = torch.nn.functional.normalize(torch.tensor([0.9, 0.3, -0.2, 0.25]), dim=0)
    scales = torch.tensor([0.3, 0.1, 0.05])
    with torch.no_grad():
        params["means"][:] = torch.tensor([1.0, -2.0, 0.5])
        params["quats"][:] = q
        params["log_scales"][:] = scales.log()
    policy = DensifyPolicy()
    state = policy.accumulate(policy.initial_state(n, 1.0), _grads(n, list(range(n)), 1.0), torch.ones(1, n), 100, 80)
    state, report = policy.refine(params, opt, state, torch.Generator().manual_seed(0))
    assert report["split"] == n and params["means"].shape == (2 * n, 3)
    x = params["means"].detach().double()
    R = matrix_from_quat(q.double())
    sigma = R @ torch.diag(scales.double() ** 2) @ R.T
    cov = torch.cov(x.T)
    assert (x.mean(0) - torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)).abs().max() < 0.02
    assert (cov - sigma).abs().max() < 0.006, (cov, sigma)


def test_max_gaussians_keeps_the_largest_gradients():
    n = 10
    params, opt = _params(n)
    policy = DensifyPolicy(max_gaussians=12)
    grads = torch.zeros(1, n, 2)
    grads[0, :, 0] = torch.linspace(0.001, 0.01, n) / 50  # all above threshold, increasing
    state = policy.accumulate(policy.initial_state(n, 1.0), grads, torch.ones(1, n), 100, 80)
    before = params["means"].detach().clone()
    state, report = policy.refine(params, opt, state)
    assert report["cloned"] == 2 and params["means"].shape[0] == 12
    torch.testing.assert_close(params["means"][10:].detach(), before[[8, 9]])


def test_reset_opacity_clamps_and_zeroes_moments_then_enables_size_pruning():
    n = 4
    params, opt = _params(n, opacity=0.9)
    with torch.no_grad():
        params["opacity_logits"][0] = -6.0  # below the cap: untouched
        params["log_scales"][2] = math.log(0.5)  # larger than 0.1 * scene_scale
    policy = DensifyPolicy(prune_opacity=0.005)
    state = policy.initial_state(n, scene_scale=1.0)
    state = policy.reset_opacity(params, opt, state)
    opa = torch.sigmoid(params["opacity_logits"].detach())
    torch.testing.assert_close(opa[1:], torch.full((3,), 0.01))
    assert abs(float(params["opacity_logits"].detach()[0]) + 6.0) < 1e-6
    assert opt.state[params["opacity_logits"]]["exp_avg"].abs().sum() == 0
    assert state["resets"] == 1
    state, report = policy.refine(params, opt, state)  # no gradients: only pruning
    assert report["pruned"] == 2  # row 0 (opacity 0.0025) and row 2 (too large)
    assert params["means"].shape[0] == 2


@pytest.mark.parametrize("step,expect", [(98, 0), (99, 1), (199, 1), (1000, 0)])
def test_step_schedule(step, expect):
    policy = DensifyPolicy(refine_start=100, refine_stop=1000, refine_every=100, reset_every=0)
    params, opt = _params(3, opacity=0.001)  # every Gaussian would be pruned when refinement runs
    state = policy.initial_state(3, 1.0)
    state, report = policy.step(params, opt, state, step)
    assert (report["pruned"] == 3) == bool(expect)

