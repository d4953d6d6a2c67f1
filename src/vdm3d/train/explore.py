"""Fine-tuning a copy of the tiny video model for the explore job: per-token noise levels (WorldWarp).

The shipped ``video`` model saw one noise level per frame (or per video). WorldWarp's sampler puts
different levels on the tokens of one frame: holes of the warped render start from full noise and
follow the whole schedule ("fill") while valid tokens wait at the strength's level ("revise"), and the
context frame stays clean (SEED_SYSTEMS.md §8.5). This task trains exactly those states:

* data: procedural room paths of 8 frames (:func:`vdm3d.train.datasets.build_room_set`), the first
  frame forward-warped into every frame (warped RGB + validity), as the explore job's cache renders;
* per sample, a strength ``s`` in ``strengths`` and a step ``m`` of the sampler's Karras schedule
  (``steps`` steps, ``sigma_max``) give the holes ``sigma_m`` and the valid tokens
  ``sigma_max(m, k)`` with ``k = floor((1 - s) steps)``; with probability ``continuous`` the hole level
  is log-normal instead (``p_mean``, ``p_std``) and valid tokens take ``min(sigma, sigma_k)``; with
  probability ``uniform`` every token shares the hole level (the plain warp task, so nothing is
  forgotten);
* frame 0 is the clean context frame (its latent is given exactly, sigma 0.002) and the reference
  view; the loss (EDM-weighted, as :func:`vdm3d.train.video.video_loss`) skips it;
* the latent validity is the pixel validity eroded by ``erode_px`` and pooled to the 4x4 token grid
  with :func:`vdm3d.geometry.validity.latent_validity`, as at inference.

The weights start from the shipped ``video`` model and are saved under a new name (``explore``), so
no other job's outputs change; they are stored in float16 (half the bytes, loaded back as float32).

The shipped weights were trained for the job's default regime, where the valid tokens are nearly clean
(strengths 0.1-0.3: the job pastes the valid render back, so revising it gains nothing) and the holes
start from full noise; with ``--mean-steps 1`` the job then uses the model's x0 prediction at the first,
highest noise level (the posterior mean of the holes given the valid tokens) instead of sampling.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from torch import Tensor

from vdm3d.diffusion.parameterizations import edm_loss_weight
from vdm3d.diffusion.schedules import EdmSchedule
from vdm3d.geometry.validity import latent_validity, validity_mask
from vdm3d.models.tiny.backbone import SIGMA_DATA, TinyCondition, TinyVideoBackbone, assemble, reference_rays, relative_plucker
from vdm3d.options import Range
from vdm3d.train.datasets import RoomSetConfig
from vdm3d.train.loop import LoopConfig
from vdm3d.train.video import encode_all


@dataclasses.dataclass(frozen=True)
class ExploreTaskConfig:
    """Per-token noise settings of the explore fine-tune."""

    batch: Annotated[int, Range(1)] = 8
    """videos per step"""
    steps: Annotated[int, Range(1)] = 10
    """sampler steps whose states are trained (the job's default)"""
    sigma_max: Annotated[float, Range(0, open_min=True)] = 80.0
    """largest noise level of the sampler's schedule"""
    strengths: Annotated[tuple[float, ...], Range(0, 1)] = (0.5, 0.6, 0.7, 0.8, 0.9)
    """strengths drawn uniformly"""
    continuous: Annotated[float, Range(0, 1)] = 0.3
    """probability of a log-normal hole level instead of a schedule step"""
    uniform: Annotated[float, Range(0, 1)] = 0.2
    """probability that all tokens share one level (the plain warp task)"""
    p_mean: Annotated[float, Range()] = 0.5
    """mean of ln(sigma) for continuous levels"""
    p_std: Annotated[float, Range(0, open_min=True)] = 1.5
    """standard deviation of ln(sigma) for continuous levels"""
    erode_px: Annotated[int, Range(0)] = 1
    """erosion of the pixel validity before pooling to tokens (as the job)"""
    slot_drop: Annotated[float, Range(0, 1)] = 0.05
    """probability of dropping the maps (the model then fills from the reference alone)"""
    telea: Annotated[float, Range(0, 1)] = 0.0
    """probability that a sample is the job's ``--hole-init telea`` state: the hole tokens are the latents
    of the warp with its holes inpainted by Telea, noised to one of ``telea_strengths``, the valid tokens
    at the strength's level; the target is still the true frame, so the model learns to correct the
    cheap fill (0: every hole starts from the true latent plus noise, as before)"""
    telea_strengths: Annotated[tuple[float, ...], Range(0, 1, open_min=True)] = (0.5,)
    """hole strengths of the Telea-initialized samples (the job's ``--hole-strength``)"""
    valid_weight: float = 1.0
    """loss weight of the valid (revised) tokens relative to the holes: the job pastes the valid render
    back after decoding, so the model mostly has to win in the holes (1: every token alike)"""


class ExploreTasks:
    """Room paths encoded once; draws per-token-noise batches."""

    def __init__(self, backbone: TinyVideoBackbone, rooms: dict[str, np.ndarray], cfg: ExploreTaskConfig):
        self.backbone, self.rooms, self.cfg = backbone, rooms, cfg
        self.room_lat = encode_all(backbone.vae, rooms["rgb"])  # [N, F, C, h, w]
        self.warp_lat = encode_all(backbone.vae, rooms["warped"])
        self.sigmas = EdmSchedule(cfg.steps, 0.002, cfg.sigma_max, 7.0).sigmas()
        valid = torch.from_numpy(rooms["valid"])  # [N, F, H, W]
        n, f = valid.shape[:2]
        flat = validity_mask(torch.ones(n * f, *valid.shape[2:]), valid.reshape(n * f, *valid.shape[2:]),
                             0.5, cfg.erode_px)
        self.token_valid = latent_validity(flat, backbone.spatial_factor).reshape(n, f, 1, *self.room_lat.shape[-2:])
        self.token_valid[:, 0] = True
        self.telea_lat = encode_all(backbone.vae, telea_warps(rooms["warped"], flat.reshape(valid.shape))) \
            if cfg.telea > 0 else None

    def token_sigmas(self, rng: np.random.Generator, gen: torch.Generator, b: int) -> tuple[Tensor, Tensor]:
        """Per-sample ``(hole, revise)`` levels ``[B, 2]`` for the fill-and-revise states (see the module
        docstring) and ``[B]`` whether the sample's holes start from the Telea fill."""
        cfg, s = self.cfg, self.sigmas
        out, telea = [], []
        for _ in range(b):
            k = min(math.floor((1 - float(rng.choice(cfg.strengths))) * cfg.steps + 1e-9), cfg.steps - 1)
            telea.append(self.telea_lat is not None and rng.random() < cfg.telea)
            if telea[-1]:
                m = min(math.floor((1 - float(rng.choice(cfg.telea_strengths))) * cfg.steps + 1e-9), cfg.steps - 1)
                hole, revise = float(s[m]), float(s[max(m, k)])
            elif rng.random() < cfg.continuous:
                hole = float(math.exp(cfg.p_mean + cfg.p_std * float(torch.randn(1, generator=gen))))
                revise = min(hole, float(s[k]))
            else:
                m = int(rng.integers(cfg.steps))
                hole, revise = float(s[m]), float(s[max(m, k)])
            if not telea[-1] and rng.random() < cfg.uniform:
                revise = hole
            out.append((hole, revise))
        return torch.tensor(out, dtype=torch.float32), torch.tensor(telea)

    def sample(self, rng: np.random.Generator, gen: torch.Generator, device):
        cfg, bb, rooms = self.cfg, self.backbone, self.rooms
        b, c = cfg.batch, bb.latent_channels
        i = rng.integers(self.room_lat.shape[0], size=b)
        x0 = self.room_lat[i]  # [B, F, C, h, w]
        f, h, w = x0.shape[1], x0.shape[-2], x0.shape[-1]
        res = rooms["rgb"].shape[-2]
        c2w = torch.from_numpy(np.ascontiguousarray(rooms["c2w"][i])).float()
        from vdm3d.cameras.camera import Cameras

        cams = Cameras(torch.from_numpy(rooms["K"]).float().expand(b, f, 3, 3), c2w, res, res)
        plucker = relative_plucker(cams, c2w[:, 0], (h, w))
        keep = torch.from_numpy(rng.random(b) >= cfg.slot_drop).float()[:, None, None, None, None]
        maps = torch.zeros(b, f, res, res, 5)
        maps[..., :3] = torch.from_numpy(rooms["warped"][i]).float() / 255
        maps[..., 3] = torch.from_numpy(rooms["valid"][i]).float()
        maps = maps * keep
        static = assemble(b, f, h, w, c, ref_latent=x0[:, 0], plucker=plucker, map_latent=self.warp_lat[i] * keep)
        cond = TinyCondition(static.to(device), maps.to(device), reference_rays(cams, (h, w)).to(device))
        levels, telea = self.token_sigmas(rng, gen, b)  # [B, 2]: hole, revise; [B]
        valid = self.token_valid[i] & (keep > 0)  # [B, F, 1, h, w]
        sigma = torch.where(valid, levels[:, 1, None, None, None, None], levels[:, 0, None, None, None, None])
        sigma[:, 0] = 0.002  # the clean context frame
        token_weight = torch.where(valid, cfg.valid_weight, 1.0).expand(b, f, 1, h, w).to(device)
        start = x0  # what the noise is added to: the true latents, or in the holes of a Telea sample the fill's
        if bool(telea.any()):
            start = torch.where(telea[:, None, None, None, None] & ~valid, self.telea_lat[i], x0)
        return x0.to(device), start.to(device), cond, sigma.expand(b, f, 1, h, w).contiguous().to(device), token_weight


def telea_warps(warped: np.ndarray, valid: Tensor) -> np.ndarray:
    """``uint8 [N, F, H, W, 3]`` warps with their invalid pixels (``valid`` ``[N, F, H, W]``) inpainted by Telea,
    as the job's ``--hole-init telea`` does to the cache's render (:func:`vdm3d.geometry.holes.telea_fill`)."""
    from vdm3d.geometry.holes import telea_fill

    n, f = warped.shape[:2]
    flat = torch.from_numpy(warped.reshape(n * f, *warped.shape[2:])).float() / 255
    filled = telea_fill(flat, valid.reshape(n * f, *valid.shape[2:]).bool())
    return (filled * 255).round().numpy().astype(np.uint8).reshape(warped.shape)


def explore_loss(backbone: TinyVideoBackbone, tasks: ExploreTasks, rng: np.random.Generator, gen: torch.Generator,
                 device) -> tuple[Tensor, dict[str, float]]:
    """EDM-weighted denoising loss at per-token noise levels; the context frame is given clean and not scored."""
    x0, start, cond, sigma, token_weight = tasks.sample(rng, gen, device)
    eps = torch.randn(x0.shape, generator=gen).to(device)
    x = start + sigma * eps
    x[:, 0] = x0[:, 0]
    denoised = backbone.denoise(x, sigma, cond)
    weight = edm_loss_weight(sigma, SIGMA_DATA) * token_weight
    loss = (weight * (denoised - x0) ** 2)[:, 1:].mean() / token_weight[:, 1:].mean()
    return loss, {"loss_explore": loss.item()}


def train_explore(out: Path, init: Path | None = None, rooms: RoomSetConfig = RoomSetConfig(count=200),
                  task: ExploreTaskConfig = ExploreTaskConfig(),
                  loop: LoopConfig = LoopConfig(steps=4000, lr=2e-4, warmup=50, ema_decay=0.995, checkpoint_every=100),
                  name: str = "explore", resume: bool = False, overwrite: bool = False) -> dict:
    """Fine-tune a copy of the shipped tiny video model on per-token noise levels (the explore job's model).

    Args:
        out: run folder (model files, checkpoints, manifest.json).
        init: the video model to start from (default: the shipped ``video.json``).
        rooms: the room-path training set (default: 200 training rooms, 2 paths of 8 frames each).
        task: per-token noise settings.
        loop: optimization settings (steps, lr, EMA, checkpoints, time limit).
        name: file name of the new model (never ``video``: other jobs keep theirs).
        resume: continue a stopped run from its checkpoint.
        overwrite: replace an existing ``out``.
    """
    config = locals().copy()
    from vdm3d.train.datasets import load_or_build, refuse_scored_split
    refuse_scored_split("--rooms.split", rooms.split)
    from vdm3d.train.run import FineTune, fine_tune

    def build(net, meta, vae) -> FineTune:
        room = load_or_build(rooms)
        res = room["rgb"].shape[-2]
        backbone = TinyVideoBackbone(vae, net, resolution=(res, res), frames=room["rgb"].shape[1])
        tasks = ExploreTasks(backbone, room, task)

        def step(m, rng, gen, dev):
            backbone.denoiser = m
            return explore_loss(backbone, tasks, rng, gen, dev)
        return FineTune(net, step, "video", {"rooms": dataclasses.asdict(rooms), "task": dataclasses.asdict(task)},
                        {"resolution": [res, res], "frames": meta.get("frames", 8)})

    result = fine_tune(out, init, name, loop, config, build, resume=resume, overwrite=overwrite)
    print(f"explore model in {out}/{name}.json (use it with `vdm3d explore --model {out}/{name}.json`; measure it "
          f"with `vdm3d eval explore --model ...`)")
    return result
