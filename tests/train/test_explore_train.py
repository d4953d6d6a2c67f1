"""`vdm3d train explore` through the shared fine-tune driver: its own float16 file, a card, resume."""

from __future__ import annotations

import json

import pytest
import torch

from vdm3d.models.tiny import WEIGHTS_DIR
from vdm3d.train.datasets import RoomSetConfig
from vdm3d.train.explore import ExploreTaskConfig, train_explore
from vdm3d.train.loop import LoopConfig

pytest.importorskip("moderngl")

ROOMS = RoomSetConfig(count=1, paths=1, frames=8, resolution=32)


@pytest.mark.slow
def test_train_explore_writes_its_own_half_precision_model_and_resumes(tmp_path):
    before = (WEIGHTS_DIR / "explore.safetensors").read_bytes()
    loop = LoopConfig(steps=2, lr=1e-3, warmup=1, ema_decay=0.0, log_every=1, checkpoint_every=2, threads=1)
    assert train_explore(tmp_path / "run", rooms=ROOMS, task=ExploreTaskConfig(batch=1), loop=loop) == {"steps": 2}
    assert (WEIGHTS_DIR / "explore.safetensors").read_bytes() == before  # the shipped file is untouched
    meta = json.loads((tmp_path / "run" / "explore.json").read_text())
    assert meta["kind"] == "video" and meta["vae"] == "vae" and meta["resolution"] == [32, 32]
    assert meta["card"]["data"]["stored"] == "float16" and meta["card"]["data"]["rooms"]["count"] == 1
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(tmp_path / "run" / "explore.safetensors").values()} == {torch.float16}
    # --resume with more steps continues from the finished run's checkpoint
    more = LoopConfig(steps=3, lr=1e-3, warmup=1, ema_decay=0.0, log_every=1, checkpoint_every=1, threads=1)
    assert train_explore(tmp_path / "run", rooms=ROOMS, task=ExploreTaskConfig(batch=1), loop=more,
                         resume=True) == {"steps": 3}
