"""Procedural datasets on disk: one folder per case, written by worker processes, resumable.

Layout of ``OUT/case_000123/`` (every file is a pure function of ``(kind, seed, index)`` and the
options, so the same command writes the same bytes):

* ``images/000.png ...``: RGB frames, 8 bit, composited over the background;
* ``depth/000.npy ...``: z-depth, float32, exact (0 where nothing is hit);
* ``buffers.npz``: ``alpha`` uint8 ``[V, H, W]`` (0/255, or coverage with ``ssaa``), ``normals``
  float16 ``[V, H, W, 3]`` (world, facing the camera), ``edges`` uint8 ``[V, H, W]``, ``instance``
  uint16 ``[V, H, W]``;
* ``transforms.json``: nerfstudio cameras (OpenGL c2w) with ``depth_file_path`` per frame;
* ``trajectory.json``: the vdm3d trajectory file (OpenCV c2w);
* ``mesh.glb``: the textured scene, glTF y-up like every GLB vdm3d writes (the z-up world turned at
  the edge by :data:`~vdm3d.cameras.world.Z_UP_TO_Y_UP`, ``(x, y, z) -> (x, z, -y)``), so every mesh
  reader (stylize, view, ``trajectory validate|preview``) turns it back under the case's cameras;
  ``scene.json``: seed, light, parts and layout (``up`` is the world's, in which the cameras live).

A case is written into a hidden ``.case_000123.tmp`` folder and renamed when complete, so a case
folder that exists is complete: an interrupted run continued with ``--resume`` skips it.
Cases are spread over ``workers`` processes (spawned, each with its own GL context and one
llvmpipe thread).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from vdm3d.cameras.world import Z_UP_TO_Y_UP
from vdm3d.errors import ConfigError
from vdm3d.options import SEED, Range

CASE_FORMAT = "case_{:06d}"


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """What to render."""

    kind: Literal["objects", "rooms"] = "objects"
    """objects: 1-4 textured primitives on an orbit; rooms: furnished rooms with a path inside"""
    count: Annotated[int, Range(1)] = 100
    """number of cases (worlds)"""
    resolution: Annotated[int, Range(8)] = 64
    """frame width and height in pixels"""
    views: Annotated[int, Range(1)] = 21
    """frames per case (orbit views for objects, path frames for rooms)"""
    seed: Annotated[int, SEED] = 0
    """base seed; case i uses a seed derived from (seed, i)"""
    workers: Annotated[int, Range(0)] = 2
    """worker processes (1 renders in this process)"""
    fov_deg: Annotated[float | None, Range(0, 180, open_min=True, open_max=True)] = None
    """horizontal field of view; default 40 for objects, 70 for rooms"""
    ssaa: Annotated[int, Range(1)] = 1
    """odd supersampling factor for colour and alpha (geometry buffers stay exact)"""
    mesh: bool = True
    """also write mesh.glb (the textured scene)"""

    def check(self) -> None:
        if self.count < 1 or self.views < 1 or self.resolution < 4 or self.workers < 1:
            raise ConfigError("data make: --count, --views and --workers must be >= 1 and --resolution >= 4.")
        if self.ssaa < 1 or self.ssaa % 2 == 0:
            raise ConfigError(f"data make: --ssaa must be an odd integer (1, 3, 5), got {self.ssaa}.")


def case_seed(seed: int, index: int) -> int:
    """A 31-bit seed for case ``index`` of a dataset with base ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0] & 0x7FFFFFFF)


def build_case(cfg: DatasetConfig, index: int):
    """The scene, cameras and ground-truth buffers of one case (no files)."""
    from vdm3d.data.procedural.cameras import random_object_cameras
    from vdm3d.data.procedural.objects import make_object
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.geometry.mesh_render import render_buffers

    s = case_seed(cfg.seed, index)
    r = cfg.resolution
    if cfg.kind == "objects":
        scene = make_object(s)
        cams = random_object_cameras(cfg.views, s, width=r, height=r, fov_deg=cfg.fov_deg or 40.0)
    else:
        scene = make_room(s)
        cams = room_path(scene, cfg.views, s, width=r, height=r, fov_deg=cfg.fov_deg or 70.0)
    return scene, cams, render_buffers(scene, cams, ssaa=cfg.ssaa)


def write_case(root: Path, cfg: DatasetConfig, index: int) -> Path:
    """Render case ``index`` and write its folder under ``root`` (atomically, by rename)."""
    import torch

    from vdm3d.cameras.io_transforms import write_transforms_json
    from vdm3d.cameras.trajectory import Trajectory
    from vdm3d.cameras.trajectory_file import save_trajectory
    from vdm3d.io.images import encode_image

    final = root / CASE_FORMAT.format(index)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "depth").mkdir()
    scene, cams, b = build_case(cfg, index)
    names = []
    for j in range(len(cams)):
        name = f"images/{j:03d}.png"
        (tmp / name).write_bytes(encode_image(b.rgb[j]))
        buf = io.BytesIO()
        np.save(buf, b.depth[j].numpy().astype(np.float32), allow_pickle=False)
        (tmp / f"depth/{j:03d}.npy").write_bytes(buf.getvalue())
        names.append(name)
    with open(tmp / "buffers.npz", "wb") as f:
        np.savez_compressed(f, alpha=np.round(b.alpha.numpy() * 255).astype(np.uint8),
                            normals=b.normals.numpy().astype(np.float16),
                            edges=(b.edges.numpy() > 0).astype(np.uint8),
                            instance=b.instance.numpy().astype(np.uint16))
    frames = [{"depth_file_path": f"depth/{j:03d}.npy"} for j in range(len(cams))]
    fps = 24.0 if cfg.kind == "rooms" else 8.0
    write_transforms_json(tmp / "transforms.json", cams, names, extras={"top": {"fps": fps}, "frames": frames})
    s = case_seed(cfg.seed, index)
    traj = Trajectory(cams.to(torch.float32), fps=fps,
                      provenance={"generator": f"vdm3d.data.procedural.{cfg.kind}", "seed": cfg.seed,
                                  "index": index, "case_seed": s})
    save_trajectory(tmp / "trajectory.json", traj)
    if cfg.mesh:  # glTF is +y up by specification: turn the z-up world once, here at the edge
        scene.transformed(Z_UP_TO_Y_UP).export(tmp / "mesh.glb")
    info = {"kind": cfg.kind, "seed": cfg.seed, "index": index, "case_seed": s, "up": [0, 0, 1],
            "mesh_frame": "glTF y-up",
            "light": dataclasses.asdict(scene.light), "background": list(scene.background),
            "parts": [{"name": p.name, "instance_id": p.instance_id, "faces": len(p.faces)} for p in scene.parts],
            "meta": scene.meta}
    (tmp / "scene.json").write_text(json.dumps(info, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, final)
    return final


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def _init_worker() -> None:
    if hasattr(signal, "SIGINT"):  # Ctrl-C is the parent's to handle (see _workers_ignore_ctrl_c)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["LP_NUM_THREADS"] = "1"  # llvmpipe: one thread per worker process
    import torch

    torch.set_num_threads(1)


def _work(args) -> int:
    root, cfg, index = args
    write_case(Path(root), cfg, index)
    return index


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Start worker processes inside this block with SIGINT ignored from their first instruction.

    Ctrl-C in a terminal reaches the whole process group: a spawned worker still importing torch (before
    any initializer runs) printed its KeyboardInterrupt traceback, and later ones a ``Process
    SpawnPoolWorker-N:`` line, before the parent's one sentence. The parent alone handles Ctrl-C (its run
    folder keeps the finished cases) and stops the workers. An ignored signal stays ignored across exec, and
    Python then installs no Ctrl-C handler of its own. SIGINT is also blocked in the parent's main thread
    meanwhile, so a Ctrl-C that lands here waits for the block's end; but if the parent has other threads
    (torch's, numba's), the kernel may hand it to one of them while it is ignored, and then it is lost: a
    window of the few milliseconds the pool takes to start its workers."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def pending_cases(root: Path, count: int) -> list[int]:
    """Indices whose case folder does not exist yet (complete cases are skipped on resume)."""
    return [i for i in range(count) if not (root / CASE_FORMAT.format(i)).is_dir()]


def render_dataset(root: Path, cfg: DatasetConfig, progress: bool = True) -> dict:
    """Write all missing cases of ``cfg`` under ``root``; returns counts and timing."""
    cfg.check()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    todo = pending_cases(root, cfg.count)
    start = time.perf_counter()
    cpu0 = _cpu_seconds()
    bar = None
    if progress:  # a bar on a terminal, plain lines with an ETA in a log or a pipe, as every job
        from vdm3d.io.progress import StepProgress

        bar = StepProgress(cfg.count, f"data {cfg.kind}", initial=cfg.count - len(todo), unit="case")
    jobs = [(str(root), cfg, i) for i in todo]
    if cfg.workers == 1 or len(todo) <= 1:
        for job in jobs:
            _work(job)
            if bar:
                bar.update(1)
    else:
        ctx = mp.get_context("spawn")  # a forked GL context is unusable; each worker makes its own
        with _workers_ignore_ctrl_c():
            pool = ctx.Pool(min(cfg.workers, len(todo)), initializer=_init_worker)
        with pool:
            for _ in pool.imap_unordered(_work, jobs):
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    return {"rendered": len(todo), "skipped": cfg.count - len(todo), "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu, 3),
            "images_per_second": round(len(todo) * cfg.views / seconds, 2) if todo else None}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished workers (user + system), to tell work from waiting
    on a machine shared with other jobs."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
