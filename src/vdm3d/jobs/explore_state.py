"""The explore job's chunk layout and its resumable state (what a checkpoint after each chunk holds).

Chunks (:func:`chunk_plans`): frame 0 is the input image. Each chunk has ``chunk`` frames: the last
``context`` frames already made (fewer at the very start, when only the image exists), then up to
``chunk - context`` new ones; a short last chunk is padded by repeating its last camera so that every
chunk costs the same and fixed-length backbones (Wan: 4k + 1 frames) always get their length. The
padded frames are generated and thrown away.

State (:class:`ExploreState`): the frames and aligned depths made so far, which of their pixels came
from the cache's valid render, the Gaussian cache, the random generator and the next chunk's index. :func:`save_state` writes it after every chunk as one
safetensors file (the chunk index in its metadata) replaced atomically, so a run killed at any moment resumes
from the last finished chunk and, the generator's state included, produces the same video.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError
from vdm3d.io.runs import atomic_write_bytes
from vdm3d.splat.gaussians import Gaussians

STATE_FILE = "state.safetensors"


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    index: int
    frame_ids: tuple[int, ...]
    """path indices of the chunk's frames (context first; padding repeats the last new frame)"""
    context: int
    new: int


def chunk_plans(total: int, chunk: int, context: int) -> list[ChunkPlan]:
    """The chunks that make frames ``1 .. total - 1`` of a path of ``total`` frames."""
    plans, done = [], 1
    while done < total:
        ctx = min(context, done)
        new = min(chunk - ctx, total - done)
        ids = list(range(done - ctx, done + new))
        ids += [ids[-1]] * (chunk - len(ids))
        plans.append(ChunkPlan(len(plans), tuple(ids), ctx, new))
        done += new
    return plans


@dataclasses.dataclass
class ExploreState:
    next_chunk: int
    frames: Tensor  # [N, H, W, 3] made so far, frame 0 = the input image
    depths: Tensor  # [N, H, W] aligned z-depth
    cache: Gaussians | None
    generator: torch.Generator
    valid: Tensor | None = None  # [N, H, W] bool: the pixel came from the cache's valid render (frame 0: all)

    def source_indices(self, count: int, nearest: int = 0, path: Cameras | None = None,
                       targets: Cameras | None = None, scale: float = 1.0) -> list[int]:
        """Frames that serve as source views of the validity check: the first, the ``count - 1`` latest
        and the ``nearest`` earlier frames whose cameras come closest to one of ``targets`` (``path`` holds
        the cameras of every frame made so far), so that a path returning to a place finds what was made there."""
        n = len(self.frames)
        chosen = [0] + list(range(max(1, n - (count - 1)), n))
        if nearest <= 0 or path is None or targets is None:
            return chosen
        rest = torch.tensor([i for i in range(n) if i not in chosen], dtype=torch.long)
        if not len(rest):
            return chosen
        d = pose_distance(path[rest], targets, scale).amin(1)  # [R]
        near = rest[torch.argsort(d, stable=True)[:nearest]]
        return sorted(chosen + near.tolist())


def pose_distance(a: Cameras, b: Cameras, scale: float) -> Tensor:
    """``[A, B]``: distance between the camera centres over ``scale`` plus ``1 - cos`` of the angle between
    the viewing directions (two cameras that see the same part of a scene score near 0)."""
    ca, cb = a.c2w[:, :3, 3].double(), b.c2w[:, :3, 3].double()
    za, zb = a.c2w[:, :3, 2].double(), b.c2w[:, :3, 2].double()
    return torch.cdist(ca, cb) / scale + 1 - za @ zb.T


def save_state(folder: Path, state: ExploreState) -> None:
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {"frames": state.frames.contiguous(), "depths": state.depths.contiguous(),
               "generator": state.generator.get_state()}
    if state.valid is not None:
        tensors["valid"] = state.valid.to(torch.uint8).contiguous()
    if state.cache is not None:
        tensors.update({f"cache.{k}": v.detach().contiguous() for k, v in state.cache.parameters().items()})
    atomic_write_bytes(folder / STATE_FILE, save(tensors, metadata={
        "format": "vdm3d.explore.state", "version": "1", "next_chunk": str(state.next_chunk)}))


def load_state(folder: Path) -> ExploreState:
    from safetensors import safe_open

    path = Path(folder) / STATE_FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise InputError(path=path, problem=f"is an unreadable checkpoint ({type(e).__name__})",
                         fix="run again without --resume, or with --overwrite") from None
    if meta.get("format") != "vdm3d.explore.state":
        raise InputError(path=path, problem="is not an explore checkpoint", fix="run again without --resume")
    cache = None
    if "cache.means" in t:
        cache = Gaussians.from_parameters({k[6:]: v for k, v in t.items() if k.startswith("cache.")})
    gen = torch.Generator()
    gen.set_state(t["generator"])
    valid = t["valid"].bool() if "valid" in t else None
    return ExploreState(int(meta["next_chunk"]), t["frames"], t["depths"], cache, gen, valid)
