"""Training V3D's scene model (:mod:`vdm3d.models.tiny.v3d`) on procedural rooms.

* **Data** (:class:`V3dRoomSetConfig`): per training room, one path of ``frames`` views at
  ``step`` metres per frame (the framing of ``vdm3d eval complete``'s held-out rooms: 64 px, 60 deg),
  with exact depth; seeds from the training range only (:data:`vdm3d.train.datasets.SEED_OFFSETS`),
  so the evaluation's held-out rooms are never seen.
* **Samples**: a clip of ``clip`` frames spread evenly between two path frames ``a`` and ``b``
  (``span`` frames apart), and 1-4 posed input views. With probability ``endpoints`` the inputs
  contain ``a`` and ``b`` (the complete job's path between two input views), plus random other
  frames; the reference (the base model's reference image and the origin of the Plucker rays) is the
  first input. ``near`` and ``far`` of the depth planes come from the inputs' depth percentiles, as
  the job takes them from the baseline's depth.
* **Loss**: the EDM-weighted denoising loss of the video model (:func:`vdm3d.train.video.sample_sigma`);
  with probability ``null_prob`` the reference and the reprojected features are dropped together
  (the null branch for classifier-free guidance), with ``scene_drop`` the features alone.

The weights start from the shipped ``video`` model (the new stem's last convolution at zero, so the
first step is the video model exactly) and are saved as ``v3d_scene``; no other model changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.diffusion.parameterizations import edm_loss_weight
from vdm3d.geometry.reproject import depth_range
from vdm3d.models.tiny.backbone import SIGMA_DATA, assemble, reference_rays, relative_plucker
from vdm3d.models.tiny.v3d import V3dCondition, V3dSceneBackbone, V3dSceneConfig
from vdm3d.train.datasets import (ROOM_FOV_DEG, SEED_OFFSETS, Split, _as_uint8, _key, _to_np, cache_dir,
                                  cached_set, refuse_scored_split)
from vdm3d.train.loop import LoopConfig
from vdm3d.train.video import VideoTaskConfig, encode_all, sample_sigma

@dataclasses.dataclass(frozen=True)
class V3dRoomSetConfig:
    """Room paths for the V3D scene model: ``count`` rooms, one path of ``frames`` views each."""

    count: int = 160
    """number of rooms"""
    frames: int = 25
    """views per path"""
    step: float = 0.12
    """metres per frame (``vdm3d eval complete``'s rooms: 0.12)"""
    resolution: int = 64
    """image side in pixels"""
    split: Split = "train"
    """train, val or heldout (disjoint seed ranges)"""


def build_v3d_rooms(cfg: V3dRoomSetConfig, progress: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Render the set (rgb uint8, z-depth float16, c2w, K), skipping rooms without a free path."""
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.geometry.mesh_render import render_buffers

    r = cfg.resolution
    out: dict[str, list] = {"rgb": [], "depth": [], "c2w": []}
    K = None
    done, seed = 0, SEED_OFFSETS[cfg.split] - 1
    while done < cfg.count:
        seed += 1
        scene = make_room(seed)
        try:
            cams = room_path(scene, cfg.frames, seed * 16 + 5, width=r, height=r, fov_deg=ROOM_FOV_DEG, step=cfg.step)
        except ValueError:
            continue
        buf = render_buffers(scene, cams, ssaa=3)
        out["rgb"].append(_as_uint8(buf.rgb))
        out["depth"].append(_to_np(buf.depth).astype(np.float16))
        out["c2w"].append(_to_np(cams.c2w).astype(np.float32))
        K = _to_np(cams.Ks[0]).astype(np.float32)
        done += 1
        if progress and done % 20 == 0:
            progress(f"v3d rooms {done}/{cfg.count} (seed {seed})")
    return {**{k: np.stack(v) for k, v in out.items()}, "K": K}


def load_or_build_v3d_rooms(cfg: V3dRoomSetConfig, progress: Callable[[str], None] | None = print):
    path = cache_dir() / f"v3drooms-{cfg.split}-{cfg.count}-{cfg.resolution}-{_key(cfg, 'vdm3d.train.v3d')}.npz"
    n, f, r = cfg.count, cfg.frames, cfg.resolution
    expect = {"rgb": (n, f, r, r, 3), "depth": (n, f, r, r), "c2w": (n, f, 4, 4), "K": (3, 3)}
    return cached_set(path, lambda: build_v3d_rooms(cfg, progress), expect)


@dataclasses.dataclass(frozen=True)
class V3dTaskConfig:
    """How V3D training samples are drawn."""

    batch: int = 4
    """videos per step"""
    clip: int = 8
    """frames per clip (the job's clip length)"""
    span: tuple[int, int] = (7, 16)
    """range of path frames between the clip's first and last frame"""
    max_views: int = 4
    """most input views per sample (1 to this)"""
    endpoints: float = 0.7
    """probability that the inputs include the clip's first and last path frames"""
    null_prob: float = 0.1
    """probability of dropping the reference and the reprojected features (CFG's null branch)"""
    scene_drop: float = 0.05
    """probability of dropping the reprojected features alone"""
    p_mean: float = 0.5
    """mean of ln(sigma)"""
    p_std: float = 1.5
    """standard deviation of ln(sigma)"""


class V3dTasks:
    """The room set encoded once; draws (x0, condition) batches with the encoder in the graph."""

    def __init__(self, backbone: V3dSceneBackbone, rooms: dict[str, np.ndarray], cfg: V3dTaskConfig):
        self.backbone, self.rooms, self.cfg = backbone, rooms, cfg
        self.latents = encode_all(backbone.vae, rooms["rgb"])  # [N, P, C, h, w]
        self.sigma_cfg = VideoTaskConfig(batch=cfg.batch, frames=cfg.clip, per_frame_sigma=0.0,
                                         p_mean=cfg.p_mean, p_std=cfg.p_std)

    def draw(self, rng: np.random.Generator) -> tuple[int, np.ndarray, list[int]]:
        """One sample: room, clip frame indices, input frame indices (the reference first)."""
        cfg = self.cfg
        n, p = self.rooms["rgb"].shape[:2]
        i = int(rng.integers(n))
        span = int(rng.integers(cfg.span[0], min(cfg.span[1], p - 1) + 1))
        a = int(rng.integers(p - span))
        clip = np.rint(np.linspace(a, a + span, cfg.clip)).astype(int)
        if rng.random() < 0.5:
            clip = clip[::-1].copy()
        k = int(rng.integers(1, cfg.max_views + 1))
        if rng.random() < cfg.endpoints:
            inputs = [int(clip[0]), int(clip[-1])][:k]
        else:
            lo, hi = max(0, min(clip) - 4), min(p - 1, max(clip) + 4)
            inputs = [int(rng.integers(lo, hi + 1))]
        while len(inputs) < k:
            inputs.append(int(rng.integers(p)))
        return i, clip, inputs

    def sample(self, rng: np.random.Generator, device) -> tuple[Tensor, V3dCondition]:
        cfg, bb, rooms = self.cfg, self.backbone, self.rooms
        b, f, v, c = cfg.batch, cfg.clip, cfg.max_views, bb.latent_channels
        res = rooms["rgb"].shape[-2]
        K = torch.from_numpy(rooms["K"]).float()
        draws = [self.draw(rng) for _ in range(b)]
        x0 = torch.stack([self.latents[i, clip] for i, clip, _ in draws])  # [B, F, C, h, w]
        h, w = x0.shape[-2:]
        tgt_c2w = torch.stack([torch.from_numpy(rooms["c2w"][i, clip]) for i, clip, _ in draws])
        targets = Cameras(K.expand(b, f, 3, 3), tgt_c2w, res, res)
        images = torch.zeros(b, v, res, res, 3)
        src_c2w = torch.eye(4).repeat(b, v, 1, 1)
        mask = torch.zeros(b, v)
        ranges = torch.zeros(b, 2)
        for k, (i, _, inputs) in enumerate(draws):
            images[k, :len(inputs)] = torch.from_numpy(rooms["rgb"][i, inputs]).float() / 255
            src_c2w[k, :len(inputs)] = torch.from_numpy(rooms["c2w"][i, inputs])
            mask[k, :len(inputs)] = 1
            ranges[k] = torch.tensor(depth_range(torch.from_numpy(rooms["depth"][i, inputs].astype(np.float32))))
        sources = Cameras(K.expand(b, v, 3, 3), src_c2w, res, res)
        ref_c2w = src_c2w[:, 0]
        null = torch.from_numpy(rng.random(b) < cfg.null_prob)
        drop_scene = null | torch.from_numpy(rng.random(b) < cfg.scene_drop)
        ref_lat = torch.stack([self.latents[i, inputs[0]] for i, _, inputs in draws])
        ref_lat = ref_lat * (~null).float()[:, None, None, None]
        static = assemble(b, f, h, w, c, ref_latent=ref_lat, plucker=relative_plucker(targets, ref_c2w, (h, w)))
        static[:, :, c] *= (~null).float()[:, None, None, None]
        scene = bb.denoiser.scene_condition(images.to(device), sources.to(device), targets.to(device),
                                            ranges.to(device), mask.to(device))
        scene = scene * (~drop_scene).float().to(device)[:, None, None, None, None]
        cond = V3dCondition(static.to(device), None, reference_rays(targets, (h, w)).to(device), scene)
        return x0.to(device), cond


def v3d_loss(backbone: V3dSceneBackbone, tasks: V3dTasks, rng: np.random.Generator, gen: torch.Generator,
             device) -> tuple[Tensor, dict[str, float]]:
    """The EDM-weighted denoising loss on a batch of room clips."""
    x0, cond = tasks.sample(rng, device)
    b, f = x0.shape[:2]
    sigma = sample_sigma(b, f, tasks.sigma_cfg, rng, gen).to(device)
    eps = torch.randn(x0.shape, generator=gen).to(device)
    s = sigma[:, :, None, None, None]
    denoised = backbone.denoise(x0 + s * eps, sigma, cond)
    loss = (edm_loss_weight(s, SIGMA_DATA) * (denoised - x0) ** 2).mean()
    return loss, {"loss_v3d": loss.item()}


@torch.no_grad()
def heldout_frames(model: V3dSceneBackbone, rooms: int = 8, steps: int = 10, cfg_scale: float = 2.0,
                   seed: int = 0) -> dict[str, float]:
    """Frame PSNR on held-out rooms (never trained on): clips between two path frames 11 apart, the two
    photos as inputs, the 6 inner frames scored against exact renders. Rows: the model; the model with its
    reprojected features dropped (the video model's reference + cameras alone); the nearer input photo
    copied (no generation)."""
    from vdm3d.cameras.trajectory import Trajectory
    from vdm3d.jobs.complete_v3d_generate import V3dConfig, generate_v3d_clip
    from vdm3d.metrics.image import psnr
    from vdm3d.views import Views

    data = load_or_build_v3d_rooms(V3dRoomSetConfig(count=rooms, split="heldout"), progress=None)
    res = data["rgb"].shape[-2]
    K = torch.from_numpy(data["K"]).float()
    scores: dict[str, list[float]] = {"v3d": [], "no_features": [], "nearest_photo": []}
    clip_idx = [int(j) for j in np.rint(np.linspace(6, 17, 8))]
    for i in range(rooms):
        rgb = torch.from_numpy(data["rgb"][i]).float() / 255
        cams = Cameras(K.expand(len(rgb), 3, 3), torch.from_numpy(data["c2w"][i]), res, res)
        inputs = Views(rgb[[6, 17]], cams[[6, 17]])
        truth = rgb[clip_idx[1:-1]]
        near, far = depth_range(torch.from_numpy(data["depth"][i, [6, 17]].astype(np.float32)))
        median = float(np.median(data["depth"][i, [6, 17]][data["depth"][i, [6, 17]] > 0]))
        path = Trajectory(cams[clip_idx], 8.0)
        for name, scale in (("v3d", 1.0), ("no_features", 0.0)):
            net = model.denoiser
            saved = net.feature_stem[-1].weight.clone(), net.feature_stem[-1].bias.clone()
            net.feature_stem[-1].weight.mul_(scale)
            net.feature_stem[-1].bias.mul_(scale)
            try:
                pseudo, _ = generate_v3d_clip(model, inputs, path, 0, (near, far), median,
                                              V3dConfig(steps=steps, cfg_scale=cfg_scale), seed=seed + i)
            finally:
                net.feature_stem[-1].weight.copy_(saved[0])
                net.feature_stem[-1].bias.copy_(saved[1])
            scores[name].append(float(psnr(pseudo.images, truth).mean()))
        copy = torch.stack([rgb[6] if abs(j - 6) <= abs(j - 17) else rgb[17] for j in clip_idx[1:-1]])
        scores["nearest_photo"].append(float(psnr(copy, truth).mean()))
    return {k: round(float(np.mean(v)), 3) for k, v in scores.items()} | {"rooms": rooms, "steps": steps}


def train_v3d(out: Path, init: Path | None = None, rooms: V3dRoomSetConfig = V3dRoomSetConfig(),
              task: V3dTaskConfig = V3dTaskConfig(), model: V3dSceneConfig = V3dSceneConfig(),
              loop: LoopConfig = LoopConfig(steps=3000, lr=3e-4, warmup=50, ema_decay=0.99, checkpoint_every=50),
              name: str = "v3d_scene", half: bool = True, resume: bool = False, overwrite: bool = False) -> dict:
    """Train V3D's scene model (reprojected input features) from a copy of the shipped video model.

    Args:
        out: run folder (model files, checkpoints, manifest.json).
        init: the video model to start from (default: the shipped ``video.json``).
        rooms: the room-path training set (training seeds only).
        task: how clips and input views are drawn.
        model: encoder, depth planes and feature stem (the video part takes ``init``'s shape).
        loop: optimization settings (steps, lr, EMA, checkpoints, time limit).
        name: file name of the new model (never ``video``: other jobs keep theirs).
        half: store the weights as float16 (half the size).
        resume: continue a stopped run from its checkpoint.
        overwrite: replace an existing ``out``.
    """
    config = locals().copy()
    refuse_scored_split("--rooms.split", rooms.split)
    from vdm3d.models.tiny.v3d import from_video
    from vdm3d.train.run import FineTune, fine_tune

    def build(video, meta, vae) -> FineTune:
        data = load_or_build_v3d_rooms(rooms)
        torch.manual_seed(loop.seed)
        net = from_video(video, model)
        res = data["rgb"].shape[-2]
        backbone = V3dSceneBackbone(vae, net, resolution=(res, res), frames=task.clip)
        tasks = V3dTasks(backbone, data, task)

        def step(m, rng, gen, dev):
            backbone.denoiser = m
            return v3d_loss(backbone, tasks, rng, gen, dev)
        return FineTune(net, step, "v3d_scene", {"rooms": dataclasses.asdict(rooms), "task": dataclasses.asdict(task)},
                        {"resolution": [res, res], "frames": task.clip})

    result = fine_tune(out, init, name, loop, config, build, resume=resume, overwrite=overwrite, half=half)
    print(f"V3D scene model in {out}/{name}.json (use it with `vdm3d complete SCENE --method v3d --v3d.model "
          f"{out}/{name}.json`)")
    return result


__all__ = ["V3dRoomSetConfig", "V3dTaskConfig", "V3dTasks", "build_v3d_rooms",
           "load_or_build_v3d_rooms", "train_v3d", "v3d_loss"]
