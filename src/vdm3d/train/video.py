"""Training the tiny latent video denoiser on a task mixture.

Each step draws one task for the whole batch:

* ``orbit`` (SV3D): an object's reference view and 8 target views at azimuth offsets
  ``40, 80, ..., 320`` deg (or, with probability ``random_orbit``, 8 other views in random order),
  conditioned on the reference latent and the targets' Plucker rays relative to the reference, and
  (with probability ``orbit_maps``, the object job's orbit model) the reference carried into each
  target by its inflated silhouette in the maps slot;
* ``warp`` (ViewCrafter/WorldWarp): a room path whose first frame is forward-warped into all frames;
  conditioned on the first frame, cameras and the maps (warped RGB, validity);
* ``inbetween`` (VideoFrom3D): the same room paths, conditioned on the first and last frames
  (keyframes) and per-frame edge maps, cameras kept half of the time.

Condition dropout for classifier-free guidance: with probability ``null_prob`` everything but the
cameras is dropped (the null branch of :meth:`TinyVideoBackbone.condition`). Noise levels are
log-normal (EDM); with probability ``per_frame_sigma`` each frame gets its own level, so the model
accepts per-frame/per-token noise (WorldWarp's spatio-temporal schedule). The loss is the EDM
weighted MSE on the denoised latent, i.e. a unit-weight MSE on the network's v output.

VAE latents of every frame and warped frame are computed once before training (the VAE is frozen).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import numpy as np
import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.diffusion.parameterizations import edm_loss_weight
from vdm3d.geometry.inflate import carried_maps, depth_layers, proxy_maps
from vdm3d.io.foreground import mask_from_background
from vdm3d.models.tiny.backbone import (SIGMA_DATA, TinyCondition, TinyVideoBackbone, assemble, reference_rays,
                                        relative_plucker)
from vdm3d.models.tiny.vae import TinyVAE
from vdm3d.options import Range

TASKS = ("orbit", "warp", "inbetween")
ORBIT_STRIDE = 2  # with 18 views: targets 40 deg apart, 8 of them, none equal to the reference


@dataclasses.dataclass(frozen=True)
class VideoTaskConfig:
    """Task mixture and diffusion-training settings of the video model."""

    batch: Annotated[int, Range(1)] = 8
    """videos per step"""
    frames: Annotated[int, Range(1)] = 8
    """frames per video"""
    mixture: Annotated[tuple[float, float, float], Range(0, 1)] = (0.6, 0.25, 0.15)
    """probabilities of the orbit, warp and inbetween tasks"""
    random_orbit: Annotated[float, Range(0, 1)] = 0.25
    """probability that an orbit sample uses 8 random other views instead of the fixed offsets"""
    null_prob: Annotated[float, Range(0, 1)] = 0.1
    """probability of dropping every condition except the cameras (classifier-free guidance)"""
    slot_drop: Annotated[float, Range(0, 1)] = 0.1
    """probability of dropping each of reference / maps / keyframes on its own"""
    per_frame_sigma: Annotated[float, Range(0)] = 0.25
    """probability that each frame gets its own noise level"""
    p_mean: Annotated[float, Range()] = 0.5
    """mean of ln(sigma) (latents have unit variance; shifted up from EDM's image default so that more
    steps train the noise levels where the reference decides the layout)"""
    p_std: Annotated[float, Range(0, open_min=True)] = 1.5
    """standard deviation of ln(sigma)"""
    half_stride: Annotated[float, Range(0, 1)] = 0.0
    """probability that a fixed-offset orbit sample starts half a stride later (offsets 20, 60, ..., 300 deg
    instead of 40, ..., 320): the object job's interleaved chunks of its 18-view orbit ask for both"""
    orbit_maps: Annotated[float, Range(0, 1)] = 0.0
    """probability that an orbit sample also gets the reference carried into each target by its inflated
    silhouette (the maps slot, :func:`vdm3d.geometry.inflate.proxy_maps`; the object job's orbit model)"""
    orbit_carry: Literal["inflate", "depth", "depth+back"] = "inflate"
    """what carries the reference into the targets for those maps: the balloon inflated from its silhouette,
    or the z-depth of the reference in the object set's ``depth`` (exact, or an object-depth model's
    estimate): its visible surface alone, or with the balloon's back (:func:`vdm3d.geometry.inflate.depth_layers`)"""
    depth_noise: Annotated[float, Range(0)] = 0.0
    """with a depth carry: standard deviation of a smooth random error added to that depth, in units of the
    object's extent (:func:`vdm3d.models.tiny.depth.object_extent`), so the model learns not to trust it blindly"""


@torch.no_grad()
def encode_all(vae: TinyVAE, images: np.ndarray, chunk: int = 256) -> Tensor:
    """VAE latents of ``uint8 [..., H, W, 3]`` images, same leading shape, float32."""
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    out = [vae.encode(torch.from_numpy(flat[i:i + chunk]).float() / 255) for i in range(0, len(flat), chunk)]
    z = torch.cat(out)
    return z.reshape(*lead, *z.shape[1:])


class VideoTasks:
    """Holds the encoded sets and draws batches ``(x0, cond)`` for each task."""

    def __init__(self, backbone: TinyVideoBackbone, objects: dict[str, np.ndarray] | None,
                 rooms: dict[str, np.ndarray] | None, cfg: VideoTaskConfig):
        self.cfg, self.backbone = cfg, backbone
        vae = backbone.vae
        self.objects, self.rooms = objects, rooms
        self.obj_lat = encode_all(vae, objects["rgb"]) if objects is not None else None
        if rooms is not None:
            self.room_lat = encode_all(vae, rooms["rgb"])
            self.warp_lat = encode_all(vae, rooms["warped"])
        mix = np.array(cfg.mixture, dtype=np.float64)
        if objects is None:
            mix[0] = 0
        if rooms is None:
            mix[1:] = 0
        self.mixture = mix / mix.sum()

    def _cams(self, c2w: np.ndarray, K: np.ndarray, res: int) -> Cameras:
        c2w_t = torch.from_numpy(np.ascontiguousarray(c2w)).float()
        Ks = torch.from_numpy(K).float().expand(*c2w_t.shape[:-2], 3, 3)
        return Cameras(Ks, c2w_t, res, res)

    @torch.no_grad()
    def proxy(self, objects: np.ndarray, refs: np.ndarray, targets: Cameras, res: int,
              rng: np.random.Generator | None = None) -> Tensor:
        """Each reference view carried into its targets (by its inflated silhouette, or by its depth as
        ``orbit_carry`` says), ``[B, F, H, W, 5]``."""
        rgb = self.objects["rgb"][objects, refs].astype(np.float32) / 255  # [B, H, W, 3] on white
        ref_cams = self._cams(self.objects["c2w"][objects, refs], self.objects["K"], res)
        if self.cfg.orbit_carry == "inflate":
            alphas = torch.from_numpy(np.stack([mask_from_background(im, np.ones(3, np.float32)) for im in rgb]))
            return proxy_maps(torch.from_numpy(rgb), alphas, ref_cams, targets)
        depth = torch.from_numpy(self.objects["depth"][objects, refs].astype(np.float32))
        if self.cfg.depth_noise > 0 and rng is not None:
            depth = perturb_depth(depth, ref_cams, self.cfg.depth_noise, rng)
        layers = depth_layers(depth, ref_cams, back=self.cfg.orbit_carry == "depth+back")
        return carried_maps(torch.from_numpy(rgb), layers, ref_cams, targets)

    def sample(self, rng: np.random.Generator, device) -> tuple[str, Tensor, TinyCondition]:
        cfg, bb = self.cfg, self.backbone
        task = TASKS[int(rng.choice(3, p=self.mixture))]
        b, f, c = cfg.batch, cfg.frames, bb.latent_channels
        null = rng.random(b) < cfg.null_prob
        keep = lambda: torch.from_numpy(~(null | (rng.random(b) < cfg.slot_drop))).float()  # noqa: E731
        if task == "orbit":
            n, v = self.obj_lat.shape[:2]
            i = rng.integers(n, size=b)
            ref = rng.integers(v, size=b)
            idx = np.stack([(r + ORBIT_STRIDE * (1 + np.arange(f))) % v for r in ref])
            if cfg.half_stride > 0:  # drawn only when asked, so the video model's batches stay as they were
                idx = (idx - ORBIT_STRIDE // 2 * (rng.random(b) < cfg.half_stride)[:, None]) % v
            rand = rng.random(b) < cfg.random_orbit
            for k in np.nonzero(rand)[0]:
                others = np.array([j for j in range(v) if j != ref[k]])
                idx[k] = rng.choice(others, size=f, replace=False)
            x0 = self.obj_lat[i[:, None], idx]  # [B, F, C, h, w]
            res = self.objects["rgb"].shape[-2]
            cams = self._cams(self.objects["c2w"][i[:, None], idx], self.objects["K"], res)
            ref_c2w = torch.from_numpy(self.objects["c2w"][i, ref]).float()
            h, w = x0.shape[-2:]
            plucker = relative_plucker(cams, ref_c2w, (h, w))
            ref_lat = self.obj_lat[i, ref] * keep()[:, None, None, None]
            maps = map_latent = None
            if cfg.orbit_maps > 0:
                use = torch.from_numpy(~null & (rng.random(b) < cfg.orbit_maps)).float()[:, None, None, None, None]
                maps = self.proxy(i, ref, cams, res, rng if cfg.depth_noise > 0 else None) * use  # [B, F, H, W, 5]
                map_latent = self.backbone.encode(maps[..., :3]) * use
            static = assemble(b, f, h, w, c, ref_latent=ref_lat, plucker=plucker, map_latent=map_latent)
            static[:, :, c] *= keep_flag(ref_lat)
            return task, x0.to(device), TinyCondition(static.to(device), None if maps is None else maps.to(device),
                                                      reference_rays(cams, (h, w)).to(device))
        n = self.room_lat.shape[0]
        i = rng.integers(n, size=b)
        x0 = self.room_lat[i, :f]
        res = self.rooms["rgb"].shape[-2]
        h, w = x0.shape[-2:]
        cams = self._cams(self.rooms["c2w"][i, :f], self.rooms["K"], res)
        ref_c2w = torch.from_numpy(self.rooms["c2w"][i, 0]).float()
        plucker = relative_plucker(cams, ref_c2w, (h, w))
        maps = torch.zeros(b, f, res, res, 5)
        if task == "warp":
            km, kr = keep(), keep()
            maps[..., :3] = torch.from_numpy(self.rooms["warped"][i, :f]).float() / 255
            maps[..., 3] = torch.from_numpy(self.rooms["valid"][i, :f]).float()
            maps = maps * km[:, None, None, None, None]
            ref_lat = self.room_lat[i, 0] * kr[:, None, None, None]
            static = assemble(b, f, h, w, c, ref_latent=ref_lat, plucker=plucker,
                              map_latent=self.warp_lat[i, :f] * km[:, None, None, None, None])
            static[:, :, c] *= keep_flag(ref_lat)
        else:
            km, kk = keep(), keep()
            maps[..., 4] = torch.from_numpy(self.rooms["edges"][i, :f]).float() / 255
            maps = maps * km[:, None, None, None, None]
            key_mask = torch.zeros(b, f)
            key_mask[:, 0] = key_mask[:, f - 1] = kk
            if rng.random() < 0.5:
                plucker = None
            static = assemble(b, f, h, w, c, plucker=plucker, key_latent=x0.clone(), key_mask=key_mask)
        rays = reference_rays(cams, (h, w)).to(device)
        return task, x0.to(device), TinyCondition(static.to(device), maps.to(device), rays)


def perturb_depth(depth: Tensor, cameras: Cameras, noise: float, rng: np.random.Generator, cells: int = 4) -> Tensor:
    """``depth [B, H, W]`` (``inf``: no surface) plus a smooth random field (``cells x cells`` normal draws,
    bicubic up to the image) of standard deviation ``noise`` object extents: the kind of low-frequency
    error a small depth network makes."""
    from vdm3d.models.tiny.depth import object_extent

    b, h, w = depth.shape
    field = torch.from_numpy(rng.standard_normal((b, 1, cells, cells))).float()
    field = torch.nn.functional.interpolate(field, size=(h, w), mode="bicubic", align_corners=True)[:, 0]
    alpha = torch.isfinite(depth).float()
    return depth + noise * object_extent(alpha, cameras)[:, None, None] * field


def keep_flag(ref_lat: Tensor) -> Tensor:
    """1 where a reference latent was kept, 0 where dropped (``[B, 1, 1, 1]`` for the flag channel)."""
    return (ref_lat.flatten(1).abs().sum(1) > 0).float()[:, None, None, None]


def sample_sigma(b: int, f: int, cfg: VideoTaskConfig, rng: np.random.Generator, gen: torch.Generator) -> Tensor:
    """Training noise levels ``[B, F]`` (shared per video, or per frame with ``per_frame_sigma``)."""
    per_video = (cfg.p_mean + cfg.p_std * torch.randn(b, 1, generator=gen)).exp()
    per_frame = (cfg.p_mean + cfg.p_std * torch.randn(b, f, generator=gen)).exp()
    mask = torch.from_numpy(rng.random(b) < cfg.per_frame_sigma)[:, None]
    return torch.where(mask, per_frame, per_video.expand(b, f))


def video_loss(backbone: TinyVideoBackbone, tasks: VideoTasks, rng: np.random.Generator, gen: torch.Generator,
               device) -> tuple[Tensor, dict[str, float]]:
    """One EDM training loss on a batch of the task mixture."""
    task, x0, cond = tasks.sample(rng, device)
    b, f = x0.shape[:2]
    sigma = sample_sigma(b, f, tasks.cfg, rng, gen).to(device)
    eps = torch.randn(x0.shape, generator=gen).to(device)
    s = sigma[:, :, None, None, None]
    denoised = backbone.denoise(x0 + s * eps, sigma, cond)
    weight = edm_loss_weight(s, SIGMA_DATA)
    loss = (weight * (denoised - x0) ** 2).mean()
    return loss, {f"loss_{task}": loss.item()}
