"""The stylize fine-tunes: the training set's warps and noise are what the job computes, and a few
steps of each task move the weights of a copy of the video model, saved in float16 under a new name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vdm3d.models.tiny.checkpoint import load_model
from vdm3d.train.loop import LoopConfig
from vdm3d.train.stylize import DEFAULT_VIDEO, StylizeSetConfig, StylizeTaskConfig, build_stylize_set, train_stylize

pytest.importorskip("moderngl")


@pytest.fixture(scope="module")
def small_set():
    return build_stylize_set(StylizeSetConfig(objects=2, rooms=1, frames=4, noise_draws=1), progress=None)


def test_set_holds_identity_warps_and_unit_noise(small_set):
    d = small_set
    assert d["rgb"].shape == (3, 4, 64, 64, 3) and d["style"].shape == (3, 64, 64, 3)
    v = d["valid0"][:, 0]  # frame 0 warped into itself: every pixel with a surface, unchanged
    assert v.mean() > 0.2
    diff = np.abs(d["warp0"][:, 0].astype(int) - d["rgb"][:, 0].astype(int)).mean(-1)
    assert diff[v].mean() < 2.0
    noise = d["noise"].astype(np.float32)
    assert noise.shape == (3, 1, 4, 4, 16, 16) and abs(noise.std() - 1.0) < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("task", ["anchor", "inbetween"])
def test_a_few_steps_fine_tune_a_copy(tmp_path, monkeypatch, small_set, task):
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    import vdm3d.train.stylize as st

    monkeypatch.setattr(st, "load_or_build_stylize", lambda cfg, progress=print: small_set)
    train_stylize(tmp_path / "run", task=task, data=StylizeSetConfig(objects=2, rooms=1, frames=4),
                  tasks=StylizeTaskConfig(batch=1), loop=LoopConfig(steps=2, lr=1e-3, warmup=1, ema_decay=0.0,
                                                                      log_every=1, threads=1))
    tuned, meta = load_model(tmp_path / "run" / f"stylize_{task}.json")
    base, _ = load_model(DEFAULT_VIDEO)
    assert meta["name"] == f"stylize_{task}" and meta["vae"] == "vae" and meta["task"] == f"stylize-{task}"
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "run" / f"stylize_{task}.safetensors"))
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    moved = sum(float((a - b).abs().max()) > 1e-3 for a, b in zip(tuned.state_dict().values(), base.state_dict().values())
                if a.is_floating_point())
    assert moved > 10  # the copy was trained; the shipped video model file is untouched
    assert Path(DEFAULT_VIDEO).with_suffix(".safetensors").is_file()
