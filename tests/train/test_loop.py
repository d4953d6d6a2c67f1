"""The shared training loop: resume reproduces an uninterrupted run, EMA, learning-rate schedule."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vdm3d.train.loop import EMA, LoopConfig, lr_at, train


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    w_true = torch.tensor([[1.0, -2.0, 0.5]])

    def step(m, rng: np.random.Generator, gen: torch.Generator, device):
        x = torch.from_numpy(rng.standard_normal((16, 3))).float()
        y = x @ w_true.T + 0.01 * torch.randn(16, 1, generator=gen)
        loss = ((m(x) - y) ** 2).mean()
        return loss, {}

    return model, step


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    cfg = LoopConfig(steps=12, lr=1e-2, warmup=2, ema_decay=0.9, checkpoint_every=6, log_every=3, cpu=True)
    a, step = _problem()
    summary = train(a, step, cfg, tmp_path / "a", log=lambda s: None)
    assert summary["steps"] == 12 and summary["stopped"] == "done"

    b, step = _problem()
    first = train(b, step, cfg, tmp_path / "b", log=lambda s: None, stop_after=5)
    assert first["stopped"] == "stop_after" and first["steps"] == 5
    b2, step = _problem()  # a fresh process would rebuild the model from scratch, then resume
    train(b2, step, cfg, tmp_path / "b", resume=True, log=lambda s: None)
    for (k, pa), (_, pb) in zip(a.state_dict().items(), b2.state_dict().items()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=k)


def test_a_resumed_run_logs_the_losses_of_an_uninterrupted_one(tmp_path):
    """A checkpoint between two log lines (step 5 of windows of 3) used to drop the open window's losses, so the
    resumed run's first mean (step 6) covered step 6 alone: its card's final_losses differed from the real curve."""
    import json

    cfg = LoopConfig(steps=12, lr=1e-2, warmup=2, ema_decay=0.9, checkpoint_every=6, log_every=3, cpu=True)
    a, step = _problem()
    whole = train(a, step, cfg, tmp_path / "a", log=lambda s: None)["losses"]
    assert [s for s, _ in whole] == [3, 6, 9, 12]

    b, step = _problem()
    train(b, step, cfg, tmp_path / "b", log=lambda s: None, stop_after=5)
    b, step = _problem()
    resumed = train(b, step, cfg, tmp_path / "b", resume=True, log=lambda s: None)["losses"]
    assert resumed == whole  # the same floats, not just close
    assert json.loads((tmp_path / "b" / "state.json").read_text())["losses"] == whole

    # a checkpoint written before the window was saved still resumes (its first mean covers the steps since)
    from safetensors import safe_open
    from safetensors.torch import save_file

    c, step = _problem()
    train(c, step, cfg, tmp_path / "c", log=lambda s: None, stop_after=5)
    with safe_open(str(tmp_path / "c" / "state.safetensors"), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["state"]), {k: f.get_tensor(k) for k in f.keys()}
    assert len(meta.pop("window")) == 2  # steps 4 and 5
    save_file(tensors, str(tmp_path / "c" / "state.safetensors"), metadata={"state": json.dumps(meta)})
    (tmp_path / "c" / "state.json").write_text(json.dumps(meta))
    c, step = _problem()
    old = train(c, step, cfg, tmp_path / "c", resume=True, log=lambda s: None)["losses"]
    assert old[0] == whole[0] and old[2:] == whole[2:] and old[1][1] != whole[1][1]
    for (k, pa), (_, pc) in zip(a.state_dict().items(), c.state_dict().items()):
        torch.testing.assert_close(pa, pc, rtol=0, atol=0, msg=k)


def test_a_torn_checkpoint_pair_resumes_from_the_tensors_own_step(tmp_path):
    # A kill between the two writes of save_state leaves step 8's weights beside step 4's state.json; the
    # resume must continue from step 8 (the uninterrupted result), not rerun steps 5-8 on step 8's weights.
    cfg = LoopConfig(steps=12, lr=1e-2, warmup=2, ema_decay=0.9, checkpoint_every=4, log_every=3, cpu=True)
    a, step = _problem()
    train(a, step, cfg, tmp_path / "a", log=lambda s: None)

    b, step = _problem()
    train(b, step, cfg, tmp_path / "b", log=lambda s: None, stop_after=4)
    stale = (tmp_path / "b" / "state.json").read_bytes()
    b, step = _problem()
    train(b, step, cfg, tmp_path / "b", resume=True, log=lambda s: None, stop_after=4)
    (tmp_path / "b" / "state.json").write_bytes(stale)  # the torn pair
    lines: list[str] = []
    b, step = _problem()
    train(b, step, cfg, tmp_path / "b", resume=True, log=lines.append)
    assert lines[0] == "resumed at step 8"
    for (k, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=k)


def test_a_checkpoint_cut_off_before_its_json_is_resumed(tmp_path):
    cfg = LoopConfig(steps=6, lr=1e-2, warmup=2, ema_decay=0.9, checkpoint_every=3, log_every=3, cpu=True)
    a, step = _problem()
    train(a, step, cfg, tmp_path / "a", log=lambda s: None)
    b, step = _problem()
    train(b, step, cfg, tmp_path / "b", log=lambda s: None, stop_after=3)
    (tmp_path / "b" / "state.json").unlink()
    lines: list[str] = []
    b, step = _problem()
    train(b, step, cfg, tmp_path / "b", resume=True, log=lines.append)
    assert lines[0] == "resumed at step 3"
    for (k, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=k)


def test_loss_goes_down_on_a_regression():
    model, step = _problem()
    rng = np.random.default_rng(123)
    gen = torch.Generator().manual_seed(0)
    before = step(model, rng, gen, "cpu")[0].item()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        summary = train(model, step, LoopConfig(steps=60, lr=2e-2, warmup=5, cpu=True, log_every=20), Path(d),
                        log=lambda s: None)
    after = step(model, np.random.default_rng(123), torch.Generator().manual_seed(0), "cpu")[0].item()
    assert after < 0.1 * before
    assert summary["losses"][-1][1] < summary["losses"][0][1]


def test_ema_matches_the_closed_form_average():
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = EMA(m, decay=0.5)
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    expected = 0.0
    for step, v in enumerate(values):
        with torch.no_grad():
            m.weight.fill_(v)
        ema.update(m, step)
        d = min(0.5, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * v
    assert abs(ema.shadow["weight"].item() - expected) < 1e-5


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    cfg = LoopConfig(steps=100, lr=1.0, warmup=10)
    assert abs(lr_at(0, cfg) - 0.1) < 1e-9
    assert abs(lr_at(9, cfg) - 1.0) < 1e-9
    assert abs(lr_at(99, cfg) - 0.1) < 1e-3
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))
