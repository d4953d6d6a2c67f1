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


def test_telea_samples_noise_the_inpainted_warp_in_the_holes_and_the_true_latents_elsewhere():
    import numpy as np

    from vdm3d.geometry.holes import telea_fill
    from vdm3d.models.registry import load_backbone
    from vdm3d.train.explore import ExploreTasks, telea_warps
    from vdm3d.train.video import encode_all

    rng = np.random.default_rng(0)
    n, f, r = 2, 4, 32
    rgb = rng.integers(0, 255, (n, f, r, r, 3), dtype=np.uint8)
    valid = np.ones((n, f, r, r), bool)
    valid[:, 1:, 8:24, 4:20] = False  # a hole in every frame after the first
    warped = np.where(valid[..., None], rgb, 0).astype(np.uint8)
    c2w = np.tile(np.eye(4, dtype=np.float32), (n, f, 1, 1))
    c2w[:, :, 0, 3] = np.arange(f) * 0.05
    K = np.array([[r, 0, r / 2], [0, r, r / 2], [0, 0, 1]], np.float32)
    rooms = {"rgb": rgb, "warped": warped, "valid": valid, "c2w": c2w, "K": K}
    # the fill is the job's: Telea on the eroded validity (erode_px 0 here: the validity as given)
    filled = telea_warps(warped, torch.from_numpy(valid))
    want = telea_fill(torch.from_numpy(warped[0, 1:2]).float() / 255, torch.from_numpy(valid[0, 1:2]))[0]
    assert np.array_equal(filled[0, 1], (want * 255).round().numpy().astype(np.uint8))
    assert np.array_equal(filled[valid], warped[valid])  # known pixels untouched
    backbone = load_backbone("tiny-explore")
    tasks = ExploreTasks(backbone, rooms, ExploreTaskConfig(batch=4, telea=1.0, telea_strengths=(0.5,),
                                                            strengths=(0.1,), erode_px=0, slot_drop=0.0))
    x0, start, _, sigma, _ = tasks.sample(np.random.default_rng(1), torch.Generator().manual_seed(1), "cpu")
    hole = ~tasks.token_valid[:, 1:, :].expand(-1, -1, x0.shape[2], -1, -1)  # [N, F-1, C, h, w] (batch 4 of 2 rooms)
    telea_lat = encode_all(backbone.vae, filled)
    # every sample is a Telea sample: its holes start from the fill's latents at sigma_5 (strength 0.5 of 10 steps),
    # its valid tokens from the true latents at sigma_9 (strength 0.1)
    for b in range(4):
        i = next(j for j in range(n) if torch.equal(x0[b], encode_all(backbone.vae, rgb[j:j + 1])[0]))
        h = hole[i]
        assert torch.equal(start[b, 1:][h], telea_lat[i, 1:][h]) and torch.equal(start[b, 1:][~h], x0[b, 1:][~h])
        assert torch.allclose(sigma[b, 1:][h[:, :1]], tasks.sigmas[5]) and torch.allclose(sigma[b, 1:][~h[:, :1]],
                                                                                          tasks.sigmas[9])
