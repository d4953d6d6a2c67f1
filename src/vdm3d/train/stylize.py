"""Fine-tuning the two embedded stylize models from the shipped tiny video denoiser.

Both start from the weights of ``video`` (:mod:`vdm3d.models.tiny`), which already has slots for a
reference image, pixel maps (warped RGB, validity, edges) and keyframes, and are saved under their own
names, so the other jobs' outputs do not change:

* ``stylize_anchor`` (SAG's image prior): one frame at a time. The target is a textured render of a
  path frame; the condition is the style image (a textured render off the path) in the reference
  slot, the frame's line-art edges in the maps, and, half of the time, frame 0 warped into the frame
  through the exact correspondence (warped RGB + validity), as the job's sparse appearance guidance
  provides for anchor ``i > 0``.
* ``stylize_inbetween`` (GGI): the whole path (8 frames). Keyframes are the first and last frames;
  the maps carry the edge video and, half of the time, the start keyframe warped into every frame;
  the cameras (rays relative to the first frame) half of the time. The training noise is
  Go-with-the-Flow noise warped along the path's exact flow, degraded with fresh noise by
  ``alpha ~ U(0, 1)`` (§5.4: "resampled to 13 frames, degraded with alpha ~ U(0,1)"), so the model
  learns to use noise that moves with the geometry.

The data (:func:`build_stylize_set`) are procedural objects on orbit arcs and rooms on walks
(:mod:`vdm3d.data.procedural.stylize`), from the training seed range only, rendered once and cached
like the other training sets. Weights are stored in float16 (half the bytes; loaded back as float32).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.diffusion.noise_warp import warped_noise
from vdm3d.models.tiny.backbone import SIGMA_DATA, TinyCondition, TinyVideoBackbone, assemble, reference_rays, \
    relative_plucker
from vdm3d.models.tiny.checkpoint import save_model
from vdm3d.options import Range
from vdm3d.train.datasets import SEED_OFFSETS, Split, _key, cache_dir, cached_set, refuse_scored_split
from vdm3d.train.loop import LoopConfig, train
from vdm3d.train.run import DEFAULT_VAE, card
from vdm3d.train.video import encode_all, keep_flag

DEFAULT_VIDEO = DEFAULT_VAE.with_name("video.json")
NOISE_GRID = 2      # noise grid = 2x the 64-px flow; read out at 16x16 (the latent size)
LATENT_FACTOR = 4


@dataclasses.dataclass(frozen=True)
class StylizeSetConfig:
    """Paths with textured renders, edges, a style view, warps of frame 0 and warped noise."""

    objects: Annotated[int, Range(0)] = 300
    """procedural objects on orbit arcs"""
    rooms: Annotated[int, Range(0)] = 150
    """procedural rooms on walks"""
    frames: Annotated[int, Range(1)] = 8
    """frames per path"""
    resolution: Annotated[int, Range(8)] = 64
    """image side in pixels"""
    noise_draws: Annotated[int, Range(1)] = 2
    """warped-noise draws stored per path"""
    split: Split = "train"
    """train, val or heldout (disjoint seed ranges)"""


@dataclasses.dataclass(frozen=True)
class StylizeTaskConfig:
    """Batch and condition-dropout settings of the two fine-tunes."""

    batch: Annotated[int, Range(1)] = 8
    """paths per step (the anchor task draws ``4 x batch`` single frames)"""
    slot_drop: Annotated[float, Range(0, 1)] = 0.1
    """probability of dropping the style / edges / keyframes on their own"""
    warp_prob: Annotated[float, Range(0, 1)] = 0.5
    """probability of giving the warped frame-0 maps"""
    fresh_noise_prob: Annotated[float, Range(0, 1)] = 0.2
    """inbetween: probability of plain fresh noise instead of degraded warped noise"""
    p_mean: Annotated[float, Range()] = 0.5
    """mean of ln(sigma)"""
    p_std: Annotated[float, Range(0, open_min=True)] = 1.5
    """standard deviation of ln(sigma)"""


def build_stylize_set(cfg: StylizeSetConfig, progress=print) -> dict[str, np.ndarray]:
    """Render the set (see the module docstring); arrays are stacked over paths."""
    from vdm3d.data.procedural.stylize import object_case, room_case
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.geometry.path_buffers import render_path

    out: dict[str, list] = {k: [] for k in ("rgb", "edges", "style", "warp0", "valid0", "noise", "c2w", "K")}
    gen = torch.Generator().manual_seed(SEED_OFFSETS[cfg.split] + 17)
    seeds = [("object", SEED_OFFSETS[cfg.split] + i) for i in range(cfg.objects)]
    seeds += [("room", SEED_OFFSETS[cfg.split] + i) for i in range(cfg.rooms * 2)]
    rooms = 0
    for kind, seed in seeds:
        if kind == "room":
            if rooms >= cfg.rooms:
                continue
            try:
                case = room_case(seed, cfg.frames, cfg.resolution)
            except ValueError:
                continue
            rooms += 1
        else:
            case = object_case(seed, cfg.frames, cfg.resolution)
        cams = case.cameras
        tex = render_buffers(case.scene, Cameras.cat([cams, case.style_camera.reshape(1)]), ssaa=3)  # path + style
        geo = render_path(case.scene, cams)
        f = cfg.frames
        warps = [geo.warp(tex.rgb[0], 0, k) for k in range(f)]
        noise = torch.stack([warped_noise(geo.flow, 4, grid_scale=NOISE_GRID, downscale=LATENT_FACTOR, generator=gen)
                             for _ in range(cfg.noise_draws)])
        out["rgb"].append(_u8(tex.rgb[:f]))
        out["style"].append(_u8(tex.rgb[f]))
        out["edges"].append(_u8(geo.edges))
        out["warp0"].append(_u8(torch.stack([w for w, _ in warps])))
        out["valid0"].append(torch.stack([v for _, v in warps]).numpy())
        out["noise"].append(noise.numpy().astype(np.float16))
        out["c2w"].append(cams.c2w.numpy().astype(np.float32))
        out["K"].append(cams.Ks[0].numpy().astype(np.float32))
        done = len(out["rgb"])
        if progress and done % 50 == 0:
            progress(f"stylize set: {done} paths")
    return {k: np.stack(v) for k, v in out.items()}


def _u8(x: Tensor) -> np.ndarray:
    return np.clip(np.rint(x.numpy() * 255), 0, 255).astype(np.uint8)


#: what :func:`build_stylize_set` calls beyond :data:`vdm3d.train.datasets.RENDER_MODULES` (part of its cache key)
STYLIZE_RENDERING = ("vdm3d.data.procedural.stylize", "vdm3d.geometry.path_buffers", "vdm3d.diffusion.noise_warp")


def load_or_build_stylize(cfg: StylizeSetConfig, progress=print) -> dict[str, np.ndarray]:
    key = _key(cfg, "vdm3d.train.stylize", STYLIZE_RENDERING)
    path = cache_dir() / f"stylize-{cfg.split}-{cfg.objects}-{cfg.rooms}-{key}.npz"
    f, r = cfg.frames, cfg.resolution  # paths: the objects and the rooms that had a free path
    expect = {"rgb": (None, f, r, r, 3), "edges": (None, f, r, r), "style": (None, r, r, 3),
              "warp0": (None, f, r, r, 3), "valid0": (None, f, r, r),
              "noise": (None, cfg.noise_draws, f, None, None, None), "c2w": (None, f, 4, 4), "K": (None, 3, 3)}
    return cached_set(path, lambda: build_stylize_set(cfg, progress), expect)


class StylizeTasks:
    """Encoded set + batch drawing for the two tasks."""

    def __init__(self, backbone: TinyVideoBackbone, data: dict[str, np.ndarray], cfg: StylizeTaskConfig):
        self.backbone, self.data, self.cfg = backbone, data, cfg
        vae = backbone.vae
        self.lat = encode_all(vae, data["rgb"])          # [N, F, C, h, w]
        self.style_lat = encode_all(vae, data["style"])  # [N, C, h, w]
        self.warp_lat = encode_all(vae, data["warp0"])   # [N, F, C, h, w]

    def _keep(self, rng: np.random.Generator, b: int) -> Tensor:
        return torch.from_numpy(rng.random(b) >= self.cfg.slot_drop).float()

    def anchor(self, rng: np.random.Generator, device) -> tuple[Tensor, TinyCondition, Tensor | None]:
        d, cfg = self.data, self.cfg
        b = 4 * cfg.batch
        n = rng.integers(len(self.lat), size=b)
        k = rng.integers(self.lat.shape[1], size=b)
        c, (h, w) = self.backbone.latent_channels, self.lat.shape[-2:]
        x0 = self.lat[n, k][:, None]  # [B, 1, C, h, w]
        use_warp = torch.from_numpy((rng.random(b) < cfg.warp_prob) & (k > 0)).float()
        ref = self.style_lat[n] * self._keep(rng, b)[:, None, None, None]
        res = d["rgb"].shape[-2]
        maps = torch.zeros(b, 1, res, res, 5)
        maps[:, 0, ..., :3] = torch.from_numpy(d["warp0"][n, k]).float() / 255 * use_warp[:, None, None, None]
        maps[:, 0, ..., 3] = torch.from_numpy(d["valid0"][n, k]).float() * use_warp[:, None, None]
        maps[:, 0, ..., 4] = torch.from_numpy(d["edges"][n, k]).float() / 255 * self._keep(rng, b)[:, None, None]
        map_lat = (self.warp_lat[n, k] * use_warp[:, None, None, None])[:, None]
        static = assemble(b, 1, h, w, c, ref_latent=ref, map_latent=map_lat)
        static[:, :, c] *= keep_flag(ref)
        return x0.to(device), TinyCondition(static.to(device), maps.to(device), None), None

    def inbetween(self, rng: np.random.Generator, device, index: np.ndarray | None = None
                  ) -> tuple[Tensor, TinyCondition, tuple[Tensor, Tensor]]:
        """A batch of ``cfg.batch`` random paths (or the paths ``index``)."""
        d, cfg = self.data, self.cfg
        n = rng.integers(len(self.lat), size=cfg.batch) if index is None else np.asarray(index)
        b = len(n)
        f = self.lat.shape[1]
        c, (h, w) = self.backbone.latent_channels, self.lat.shape[-2:]
        x0 = self.lat[n]
        res = d["rgb"].shape[-2]
        use_warp = torch.from_numpy(rng.random(b) < cfg.warp_prob).float()
        maps = torch.zeros(b, f, res, res, 5)
        maps[..., :3] = torch.from_numpy(d["warp0"][n]).float() / 255 * use_warp[:, None, None, None, None]
        maps[..., 3] = torch.from_numpy(d["valid0"][n]).float() * use_warp[:, None, None, None]
        maps[..., 4] = torch.from_numpy(d["edges"][n]).float() / 255 * self._keep(rng, b)[:, None, None, None]
        key_mask = torch.zeros(b, f)
        key_mask[:, 0] = self._keep(rng, b)
        key_mask[:, f - 1] = self._keep(rng, b)
        c2w = torch.from_numpy(d["c2w"][n])
        cams = Cameras(torch.from_numpy(d["K"][n])[:, None].expand(b, f, 3, 3), c2w, res, res)
        plucker = relative_plucker(cams, c2w[:, 0], (h, w)) if rng.random() < 0.5 else None
        static = assemble(b, f, h, w, c, plucker=plucker, map_latent=self.warp_lat[n] * use_warp[:, None, None, None, None],
                          key_latent=x0.clone(), key_mask=key_mask)
        draw = rng.integers(d["noise"].shape[1], size=b)
        warped = torch.from_numpy(d["noise"][n, draw].astype(np.float32))  # [B, F, C, h, w]
        alpha = torch.from_numpy(rng.uniform(0, 1, size=b)).float()
        alpha[torch.from_numpy(rng.random(b) < cfg.fresh_noise_prob)] = 1.0
        rays = reference_rays(cams, (h, w))
        return x0.to(device), TinyCondition(static.to(device), maps.to(device), rays.to(device)), \
            (warped, alpha)


def stylize_loss(backbone: TinyVideoBackbone, tasks: StylizeTasks, task: Literal["anchor", "inbetween"],
                 rng: np.random.Generator, gen: torch.Generator, device) -> tuple[Tensor, dict[str, float]]:
    """One EDM training loss (weighted MSE on the denoised latent) on a batch of ``task``."""
    x0, cond, noise = getattr(tasks, task)(rng, device)
    b, f = x0.shape[:2]
    sigma = (tasks.cfg.p_mean + tasks.cfg.p_std * torch.randn(b, 1, generator=gen)).exp().expand(b, f).to(device)
    eps = torch.randn(x0.shape, generator=gen)
    if noise is not None:  # degrade the warped noise: (a new + (1 - a) warped) / sqrt(a^2 + (1 - a)^2)
        warped, a = noise
        a = a[:, None, None, None, None]
        eps = (a * eps + (1 - a) * warped) / (a * a + (1 - a) ** 2).sqrt()
    s = sigma[:, :, None, None, None]
    denoised = backbone.denoise(x0 + s * eps.to(device), sigma, cond)
    weight = (s * s + SIGMA_DATA ** 2) / (s * s * SIGMA_DATA ** 2)
    loss = (weight * (denoised - x0) ** 2).mean()
    return loss, {f"loss_{task}": loss.item()}


def train_stylize(out: Path, task: Literal["anchor", "inbetween"] = "anchor", init: Path = DEFAULT_VIDEO,
                  data: StylizeSetConfig = StylizeSetConfig(), tasks: StylizeTaskConfig = StylizeTaskConfig(),
                  loop: LoopConfig = LoopConfig(steps=1500, lr=2e-4, warmup=50, ema_decay=0.995),
                  name: str | None = None, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Fine-tune a copy of the tiny video denoiser for the stylize job (``anchor`` or ``inbetween``).

    Args:
        out: run folder (model files, checkpoints, manifest.json).
        task: which model: the edge- and style-conditioned anchor prior, or the inbetweening model.
        init: the ``video.json`` whose weights (and VAE) the fine-tune starts from.
        data: the stylize training set.
        tasks: batch and dropout settings.
        loop: optimization settings (steps, lr, EMA, checkpoints, time limit).
        name: file name of the model (default ``stylize_<task>``).
        resume: continue a stopped run from its checkpoint.
        overwrite: replace an existing ``out``.
    """
    settings = locals().copy()  # the command's options only: no clock, no imported functions
    refuse_scored_split("--data.split", data.split)
    from vdm3d.models.tiny import vae_file
    from vdm3d.train.run import fine_tune_init, keep_vae, load_fine_tune_init, training_folder

    name = name or f"stylize_{task}"
    init = fine_tune_init(init, name)
    start = time.time()
    with training_folder(out, settings, loop, resume, overwrite, inputs=(init,)) as run:
        sets = load_or_build_stylize(data)
        net, meta, vae = load_fine_tune_init(init)
        net.requires_grad_(True)
        res = sets["rgb"].shape[-2]
        backbone = TinyVideoBackbone(vae, net, resolution=(res, res), frames=data.frames)
        pool = StylizeTasks(backbone, sets, tasks)
        torch.manual_seed(loop.seed)

        def step(m, rng, gen, dev):
            backbone.denoiser = m
            return stylize_loss(backbone, pool, task, rng, gen, dev)

        summary = train(net, step, loop, run.checkpoint_dir, resume=run.resuming)
        backbone.denoiser = net
        info = {"data": dataclasses.asdict(data), "tasks": dataclasses.asdict(tasks), "init": str(init),
                "stored": "float16"}
        save_model(run.path, name, "video", copy.deepcopy(net).half(),
                   card(summary, info, loop.seed, {}, start, resume),
                   extra={"vae": meta.get("vae", "vae"), "resolution": [res, res], "frames": data.frames,
                          "task": f"stylize-{task}"})
        keep_vae(run.path, vae_file(init, meta))
        run.record(steps=summary["steps"], init=str(init))
    print(f"stylize {task} model in {out}/{name}.json (use it with `vdm3d stylize --{task}-model {out}/{name}.json`; "
          f"measure it with `vdm3d eval stylize --{task}-model ...`)")
    return {"steps": summary["steps"]}
