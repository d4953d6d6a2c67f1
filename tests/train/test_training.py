"""`vdm3d train vae|video|depth` end to end on tiny settings: the loss goes down, files are complete."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vdm3d.models.tiny import DenoiserConfig, DepthConfig, VAEConfig, load_tiny
from vdm3d.train.datasets import ObjectSetConfig, RoomSetConfig
from vdm3d.train.images import DepthTaskConfig, VAETaskConfig
from vdm3d.train.loop import LoopConfig
from vdm3d.train.video import VideoTaskConfig

pytestmark = pytest.mark.slow

OBJ = ObjectSetConfig(count=3, views=18, resolution=32)
ROOM = RoomSetConfig(count=2, paths=1, frames=4, resolution=32)


def _losses(run) -> list[float]:
    return [v for _, v in json.loads((run / "checkpoints" / "state.json").read_text())["losses"]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train all three models for a few steps into one temporary folder (module scope: shared)."""
    from vdm3d.train.run import train_depth, train_vae, train_video

    root = tmp_path_factory.mktemp("train")
    mp = pytest.MonkeyPatch()
    mp.setenv("VDM3D_CACHE", str(root / "cache"))
    try:
        loop = LoopConfig(steps=40, lr=2e-3, warmup=5, log_every=10, checkpoint_every=20, cpu=True)
        train_vae(root / "vae", objects=OBJ, rooms=ROOM, model=VAEConfig(channels=(8, 16)),
                  task=VAETaskConfig(batch=8, crop=16), loop=loop, heldout=1, heldout_rooms=1)
        video_loop = LoopConfig(steps=30, lr=1e-3, warmup=3, log_every=10, checkpoint_every=30, cpu=True)
        train_video(root / "video", vae=root / "vae" / "vae.json", objects=OBJ, rooms=ROOM,
                    model=DenoiserConfig(channels=(16, 16), map_features=4, emb_dim=16, max_frames=8),
                    task=VideoTaskConfig(batch=2, frames=4), loop=video_loop)
        train_depth(root / "depth", rooms=ROOM, model=DepthConfig(channels=(8, 8, 16, 16)),
                    task=DepthTaskConfig(batch=4), loop=loop, heldout=1)
        yield root
    finally:
        mp.undo()


def test_vae_and_depth_losses_go_down(trained):
    for name in ("vae", "depth"):
        losses = _losses(trained / name)
        assert len(losses) == 4
        assert losses[-1] < 0.8 * losses[0], (name, losses)
    card = json.loads((trained / "vae" / "vae.json").read_text())["card"]
    for key in ("data", "seed", "steps", "train_seconds", "hardware", "heldout", "command"):
        assert key in card
    assert card["steps"] == 40 and card["heldout"]["psnr_db"] > 10
    assert (trained / "vae" / "manifest.json").is_file()


def test_video_loss_on_a_fixed_batch_goes_down(trained, monkeypatch):
    from vdm3d.models.tiny import TinyVideoBackbone, VideoDenoiser
    from vdm3d.train.datasets import load_or_build
    from vdm3d.train.video import VideoTasks, video_loss

    monkeypatch.setenv("VDM3D_CACHE", str(trained / "cache"))
    for name in ("vae", "video"):
        (trained / "weights").mkdir(exist_ok=True)
        for ext in (".json", ".safetensors"):
            src = trained / name / f"{name}{ext}"
            (trained / "weights" / f"{name}{ext}").write_bytes(src.read_bytes())
    bb = load_tiny("video", weights_dir=trained / "weights")
    torch.manual_seed(0)  # the initialization the training run started from (seed 0)
    init = TinyVideoBackbone(bb.vae, VideoDenoiser(bb.denoiser.config), resolution=bb.resolution, frames=4)
    tasks = VideoTasks(bb, load_or_build(OBJ, None), load_or_build(ROOM, None), VideoTaskConfig(batch=2, frames=4))

    def mean_loss(backbone):
        total = 0.0
        for k in range(6):
            with torch.no_grad():
                loss, _ = video_loss(backbone, tasks, np.random.default_rng(k), torch.Generator().manual_seed(k), "cpu")
            total += loss.item()
        return total / 6

    assert mean_loss(bb) < 0.9 * mean_loss(init)


def test_a_trained_depth_model_loads_and_predicts_relative_depth(trained):
    from vdm3d.models.tiny.checkpoint import load_model

    depth, meta = load_model(trained / "depth" / "depth.json")
    assert meta["card"]["steps"] == 40
    out = depth.predict(torch.rand(2, 32, 32, 3))
    assert out.shape == (2, 32, 32) and torch.all(out > 0)
    assert torch.allclose(out.flatten(1).median(1).values, torch.ones(2), atol=0.05)


def test_resume_on_a_finished_run_continues_to_more_steps(trained, monkeypatch):
    from vdm3d.train.run import train_depth

    monkeypatch.setenv("VDM3D_CACHE", str(trained / "cache"))
    before = _losses(trained / "depth")
    loop = LoopConfig(steps=50, lr=2e-3, warmup=5, log_every=10, checkpoint_every=20, cpu=True)
    train_depth(trained / "depth", rooms=ROOM, model=DepthConfig(channels=(8, 8, 16, 16)),
                task=DepthTaskConfig(batch=4), loop=loop, heldout=1, resume=True)
    after = _losses(trained / "depth")
    assert after[:4] == before and len(after) == 5  # history kept, one more window of 10 steps
    card = json.loads((trained / "depth" / "depth.json").read_text())["card"]
    assert card["steps"] == 50


def test_an_interrupted_trainer_resumes_with_the_same_command(trained, tmp_path, monkeypatch):
    """The run's recorded options are the command's own: a trainer that put its start time (or functions it
    imported) among them had every ``--resume`` refused as "started with other options"."""
    from vdm3d.train import run as train_run

    monkeypatch.setenv("VDM3D_CACHE", str(trained / "cache"))
    loop = LoopConfig(steps=20, lr=2e-3, warmup=5, log_every=10, checkpoint_every=10, cpu=True)
    args = dict(rooms=ROOM, model=DepthConfig(channels=(8, 8, 16, 16)), task=DepthTaskConfig(batch=4), loop=loop,
                heldout=1)

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C during the final scoring, after the last checkpoint

    monkeypatch.setattr(train_run, "depth_metrics", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run.train_depth(tmp_path / "depth", **args)
    assert (tmp_path / ".depth.partial" / "checkpoints").is_dir()
    monkeypatch.undo()
    monkeypatch.setenv("VDM3D_CACHE", str(trained / "cache"))
    train_run.train_depth(tmp_path / "depth", **args, resume=True)
    assert (tmp_path / "depth" / "depth.json").is_file()


def test_checkpoint_state_finds_a_finished_or_running_run(tmp_path):
    from vdm3d.errors import InputError
    from vdm3d.train.run import checkpoint_state

    running = tmp_path / ".run.partial" / "checkpoints"  # RunFolder writes here until the run finishes
    running.mkdir(parents=True)
    (running / "state.safetensors").write_bytes(b"")
    assert checkpoint_state(tmp_path / "run") == running / "state.safetensors"
    done = tmp_path / "done" / "checkpoints"
    done.mkdir(parents=True)
    (done / "state.safetensors").write_bytes(b"")
    assert checkpoint_state(tmp_path / "done") == checkpoint_state(done) == done / "state.safetensors"
    with pytest.raises(InputError, match="nothing: holds no checkpoints/state.safetensors; pass the --out folder "
                                         "of a `vdm3d train stylize` run"):
        checkpoint_state(tmp_path / "nothing", "train stylize")


def test_a_video_model_trained_on_its_own_vae_keeps_it_beside_and_loads_with_it(trained):
    """`vdm3d train video --vae runs/vae/vae.json` copies that VAE beside its model, so the run's model file,
    loaded where a model name goes, decodes with the VAE it was trained on and not the shipped one."""
    from vdm3d.models.registry import load_backbone

    backbone = load_backbone(str(trained / "video" / "video.json"))
    own = load_tiny("vae", weights_dir=trained / "vae")
    for (k, a), (_, b) in zip(backbone.vae.state_dict().items(), own.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
