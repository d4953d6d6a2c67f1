"""`vdm3d train orbit`: orbit samples carry the inflated-silhouette maps, and the fine-tune writes its own
float16 model without touching the one it started from."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from vdm3d.geometry.inflate import proxy_maps
from vdm3d.models.tiny import DenoiserConfig, TinyVideoBackbone, VAEConfig, VideoDenoiser, load_tiny
from vdm3d.models.tiny.checkpoint import save_model
from vdm3d.models.tiny.vae import TinyVAE
from vdm3d.train.datasets import ObjectSetConfig, load_or_build
from vdm3d.train.loop import LoopConfig
from vdm3d.train.video import VideoTaskConfig, VideoTasks

OBJ = ObjectSetConfig(count=2, views=18, resolution=32)


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    vae = TinyVAE(VAEConfig(channels=(8, 8)))
    net = VideoDenoiser(DenoiserConfig(channels=(16, 16), map_features=4, emb_dim=16, max_frames=8,
                                       attention="views", reference_frame=True))
    folder = tmp_path / "weights"
    save_model(folder, "vae", "vae", vae, {"steps": 0})
    save_model(folder, "video", "video", net, {"steps": 0}, extra={"vae": "vae", "frames": 4, "resolution": [32, 32]})
    return folder


def test_orbit_samples_carry_the_proxy_maps(weights):
    bb = load_tiny("video", weights_dir=weights)
    objects = load_or_build(OBJ, None)
    tasks = VideoTasks(bb, objects, None, VideoTaskConfig(batch=2, frames=4, mixture=(1.0, 0.0, 0.0),
                                                          orbit_maps=1.0, null_prob=0.0, random_orbit=0.0))
    rng = np.random.default_rng(3)
    task, x0, cond = tasks.sample(np.random.default_rng(3), "cpu")
    assert task == "orbit" and cond.maps is not None and cond.maps.shape == (2, 4, 32, 32, 5)
    # the same draws again, by hand: the maps are the reference carried into the targets
    rng.choice(3, p=tasks.mixture)
    rng.random(2)
    i, ref = rng.integers(2, size=2), rng.integers(18, size=2)
    idx = np.stack([(r + 2 * (1 + np.arange(4))) % 18 for r in ref])
    rgb = objects["rgb"][i, ref].astype(np.float32) / 255
    from vdm3d.io.foreground import mask_from_background

    alphas = torch.from_numpy(np.stack([mask_from_background(im, np.ones(3, np.float32)) for im in rgb]))
    ref_cams = tasks._cams(objects["c2w"][i, ref], objects["K"], 32)
    targets = tasks._cams(objects["c2w"][i[:, None], idx], objects["K"], 32)
    torch.testing.assert_close(cond.maps, proxy_maps(torch.from_numpy(rgb), alphas, ref_cams, targets))
    assert float(cond.maps[..., 3].mean()) > 0.05  # something landed
    c = bb.latent_channels
    map_slot = cond.static[:, :, c + 8:2 * c + 8]  # [ref c, flag, plucker 6, flag, map c, ...]
    torch.testing.assert_close(map_slot, bb.encode(cond.maps[..., :3]))


def test_half_stride_targets_start_half_a_stride_later(weights):
    bb = load_tiny("video", weights_dir=weights)
    objects = load_or_build(OBJ, None)
    cfg = VideoTaskConfig(batch=3, frames=4, mixture=(1.0, 0.0, 0.0), null_prob=0.0, random_orbit=0.0, half_stride=1.0)
    tasks = VideoTasks(bb, objects, None, cfg)
    _, x0, _ = tasks.sample(np.random.default_rng(5), "cpu")
    rng = np.random.default_rng(5)  # the same draws by hand: task, null, objects, references
    rng.choice(3, p=tasks.mixture)
    rng.random(3)
    i, ref = rng.integers(2, size=3), rng.integers(18, size=3)
    idx = np.stack([(r + 1 + 2 * np.arange(4)) % 18 for r in ref])  # offsets 20, 60, 100, 140 deg
    torch.testing.assert_close(x0, tasks.obj_lat[i[:, None], idx])


def test_a_running_orbit_fine_tune_is_scored_from_its_checkpoint(weights, tmp_path):
    from vdm3d.train.loop import EMA, save_state
    from vdm3d.train.orbit import checkpoint_backbone

    net = load_tiny("video", weights_dir=weights).denoiser
    ema = EMA(net, 0.9)
    for v in ema.shadow.values():
        if v.dtype.is_floating_point:
            v.add_(0.5)  # the EMA weights differ from the model's
    opt = torch.optim.AdamW(net.parameters())
    save_state(tmp_path / ".run.partial" / "checkpoints", net, ema, opt, 7, {})
    bb = checkpoint_backbone(tmp_path / "run", init=weights / "video.json")
    for k, v in bb.denoiser.state_dict().items():
        torch.testing.assert_close(v, ema.shadow[k])
    with pytest.raises(Exception, match="checkpoint"):
        checkpoint_backbone(tmp_path / "nothing", init=weights / "video.json")


@pytest.mark.slow
def test_train_orbit_writes_its_own_half_precision_model(weights, tmp_path):
    from vdm3d.train.orbit import train_orbit

    before = (weights / "video.safetensors").read_bytes()
    train_orbit(tmp_path / "run", init=weights / "video.json", objects=OBJ,
                task=VideoTaskConfig(batch=2, frames=4, mixture=(1.0, 0.0, 0.0), orbit_maps=0.8),
                loop=LoopConfig(steps=3, lr=1e-3, warmup=1, log_every=1, checkpoint_every=3, cpu=True))
    assert (weights / "video.safetensors").read_bytes() == before
    meta = json.loads((tmp_path / "run" / "orbit.json").read_text())
    assert meta["kind"] == "video" and meta["card"]["data"]["task"]["orbit_maps"] == 0.8
    for name in ("vae.json", "vae.safetensors"):
        (tmp_path / "run" / name).write_bytes((weights / name).read_bytes())
    model = load_tiny("orbit", weights_dir=tmp_path / "run")
    assert isinstance(model, TinyVideoBackbone)
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(tmp_path / "run" / "orbit.safetensors").values()} == {torch.float16}
    with pytest.raises(Exception, match="video"):
        train_orbit(tmp_path / "bad", init=weights / "video.json", name="video", objects=OBJ)


def test_depth_carried_orbit_samples(weights):
    """``orbit_carry="depth"``: the maps are the reference carried by the set's depth; ``depth_noise`` bends
    that depth smoothly (the maps change, their coverage barely)."""
    from vdm3d.geometry.inflate import carried_maps, depth_layers
    from vdm3d.train.datasets import load_object_depth

    bb = load_tiny("video", weights_dir=weights)
    objects = {**load_or_build(OBJ, None), "depth": load_object_depth(OBJ, None)}
    cfg = VideoTaskConfig(batch=2, frames=4, mixture=(1.0, 0.0, 0.0), orbit_maps=1.0, null_prob=0.0,
                          random_orbit=0.0, orbit_carry="depth")
    _, _, cond = VideoTasks(bb, objects, None, cfg).sample(np.random.default_rng(3), "cpu")
    rng = np.random.default_rng(3)  # the same draws by hand
    rng.choice(3, p=[1.0, 0.0, 0.0])
    rng.random(2)
    i, ref = rng.integers(2, size=2), rng.integers(18, size=2)
    idx = np.stack([(r + 2 * (1 + np.arange(4))) % 18 for r in ref])
    tasks = VideoTasks(bb, objects, None, cfg)
    ref_cams = tasks._cams(objects["c2w"][i, ref], objects["K"], 32)
    targets = tasks._cams(objects["c2w"][i[:, None], idx], objects["K"], 32)
    depth = torch.from_numpy(objects["depth"][i, ref].astype(np.float32))
    rgb = torch.from_numpy(objects["rgb"][i, ref]).float() / 255
    torch.testing.assert_close(cond.maps, carried_maps(rgb, depth_layers(depth, ref_cams), ref_cams, targets))
    noisy = dataclasses.replace(cfg, depth_noise=0.2)
    _, _, cond2 = VideoTasks(bb, objects, None, noisy).sample(np.random.default_rng(3), "cpu")
    assert float((cond2.maps[..., :3] - cond.maps[..., :3]).abs().mean()) > 1e-3
    assert abs(float(cond2.maps[..., 3].mean() - cond.maps[..., 3].mean())) < 0.05


def test_object_depth_batches_keep_the_relief_under_zoom():
    """At zoom 1 the target is the exact relief; shrinking the image keeps the relief at the object's
    centre (it is measured in object extents) and shrinks the silhouette by the zoom squared."""
    from vdm3d.models.tiny.depth import relief_from_depth
    from vdm3d.train.datasets import load_object_depth
    from vdm3d.train.object_depth import ObjectDepthTaskConfig, object_depth_batch

    objects = {**load_or_build(OBJ, None), "depth": load_object_depth(OBJ, None)}
    one = object_depth_batch(objects, ObjectDepthTaskConfig(batch=64, min_zoom=1.0), np.random.default_rng(0))
    half = object_depth_batch(objects, ObjectDepthTaskConfig(batch=64, min_zoom=0.5), np.random.default_rng(0))
    rng = np.random.default_rng(0)
    i, j = rng.integers(2, size=64), rng.integers(18, size=64)
    depth = torch.from_numpy(objects["depth"][i, j].astype(np.float32))
    from vdm3d.cameras.camera import Cameras

    cams = Cameras(torch.from_numpy(objects["K"]).expand(64, 3, 3), torch.from_numpy(objects["c2w"][i, j]), 32, 32)
    relief = relief_from_depth(depth, torch.isfinite(depth).float(), cams)
    images, inside, target = one
    same = [k for k in range(64) if torch.equal(inside[k], torch.isfinite(depth[k]).float())]
    assert len(same) >= 20  # the unflipped ones (the flipped ones are mirrored)
    for k in same[:5]:
        torch.testing.assert_close(target[k], relief[k], atol=1e-4, rtol=0)
        torch.testing.assert_close(images[k], torch.from_numpy(objects["rgb"][i[k], j[k]]).float() / 255, atol=1e-4, rtol=0)
    ratio = float(half[1].sum() / one[1].sum())
    assert 0.3 < ratio < 0.75  # zoom in [0.5, 1]: mean zoom^2 is 0.58
    assert abs(float(half[2][half[1] > 0].mean() - one[2][one[1] > 0].mean())) < 0.1
