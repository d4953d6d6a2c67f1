"""The three ``vdm3d train`` commands as functions: build data, train, measure, write the model.

Each writes a run folder (:class:`~vdm3d.io.runs.RunFolder`) holding ``<name>.safetensors`` and
``<name>.json`` (config + model card) plus ``checkpoints/``; ``--resume`` continues a stopped run.
Copy the two model files into ``src/vdm3d/models/tiny/weights/`` to ship them.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
import torch

from vdm3d.errors import ConfigError, InputError
from vdm3d.io.runs import RunFolder, partial_folder
from vdm3d.models.tiny import WEIGHTS_DIR, vae_file
from vdm3d.models.tiny.backbone import TinyVideoBackbone
from vdm3d.models.tiny.checkpoint import load_model, save_model
from vdm3d.models.tiny.denoiser import DenoiserConfig, VideoDenoiser
from vdm3d.models.tiny.depth import DepthConfig, TinyDepth, abs_rel_median_scaled
from vdm3d.models.tiny.vae import TinyVAE, VAEConfig
from vdm3d.options import Range
from vdm3d.train.datasets import ObjectSetConfig, RoomSetConfig, load_or_build, refuse_scored_split
from vdm3d.train.images import DepthTaskConfig, VAETaskConfig, depth_step, image_pool, vae_step
from vdm3d.train.loop import LoopConfig, train
from vdm3d.train.video import VideoTaskConfig, VideoTasks, video_loss

DEFAULT_VAE = Path(__file__).resolve().parents[1] / "models" / "tiny" / "weights" / "vae.json"


def hardware() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


#: the arguments of the running ``vdm3d train`` command after ``train`` (set by :mod:`vdm3d.cli.train`), so a
#: card's command is the subcommand's own however it was started (``vdm3d --threads 1 train ...``, ``vdm3d rerun``)
_train_argv: list[str] | None = None


def set_train_argv(argv: list[str] | None) -> None:
    """Record the arguments of ``vdm3d train`` (``["vae", "--out", ...]``) for the cards of this process."""
    global _train_argv
    _train_argv = None if argv is None else [str(a) for a in argv]


def train_command() -> str:
    """The command that reproduces the current training run (empty when it was not started from the CLI)."""
    return "vdm3d train " + shlex.join(_train_argv) if _train_argv else ""


def card(summary: dict[str, Any], data: dict[str, Any], seed: int, metrics: dict[str, Any],
         wall_start: float, resumed: bool = False) -> dict[str, Any]:
    """The model card of a finished training run. ``train_seconds`` sums the training time of every session
    of a resumed run; the wall time with data building counts this process only, so a run started with
    ``--resume`` (``resumed``) records it as ``wall_seconds_last_session_incl_data`` (it can be shorter
    than the training time)."""
    wall = "wall_seconds_last_session_incl_data" if resumed else "wall_seconds_incl_data"
    return {"data": data, "seed": seed, "steps": summary["steps"], "train_seconds": summary["seconds"],
            wall: round(time.time() - wall_start, 1), "stopped": summary["stopped"],
            "device": summary["device"], "processes": summary["processes"], "hardware": hardware(),
            "command": train_command(),
            "final_losses": summary["losses"][-4:], "heldout": metrics}


def checkpoint_state(run: Path, command: str = "train") -> Path:
    """The checkpoint file of a training run folder, finished or still running (its ``.<name>.partial``
    sibling), or of a ``checkpoints`` folder given directly; ``command`` names the trainer in the error."""
    run = Path(run)
    for folder in (run, run / "checkpoints", partial_folder(run) / "checkpoints"):
        if (folder / "state.safetensors").is_file():
            return folder / "state.safetensors"
    raise InputError(path=run, problem="holds no checkpoints/state.safetensors",
                     fix=f"pass the --out folder of a `vdm3d {command}` run that has written a checkpoint")


def finished_checkpoints(out: Path, resume: bool) -> Path | None:
    """``--resume`` on a finished run (e.g. with more ``--loop.steps``): its checkpoint folder, which the run
    folder copies into its partial folder once the resume is accepted, so training continues from there."""
    out = Path(out)
    done = out / "checkpoints" / "state.json"
    if resume and done.is_file() and not (partial_folder(out) / "checkpoints").is_dir():
        return out / "checkpoints"
    return None


def training_folder(out: Path, config: Any, loop: LoopConfig, resume: bool, overwrite: bool,
                    inputs: tuple[Path, ...] = ()) -> RunFolder:
    """The run folder of a training run, seeded by ``loop.seed``; ``--resume`` on a finished run continues it
    (:func:`finished_checkpoints`), and may change the loop's settings (more steps, another time limit), not
    the data or the model: a refused resume leaves the finished run as it was."""
    from vdm3d.models.registry import model_files

    finished = finished_checkpoints(out, resume)
    # a model file given as input (the init of a fine-tune, a frozen VAE) is hashed with its weights and VAE
    files = [f for p in inputs
             for f in ((model_files(str(p)) or [Path(p)]) if str(p).endswith(".json") else [Path(p)])]
    return RunFolder(out, config=config, seed=loop.seed, overwrite=overwrite or finished is not None,
                     resume=resume, inputs=files, may_change=("loop",), continue_from=finished)


def fine_tune_init(init: Path | None, name: str) -> Path:
    """The model a fine-tune of the shipped video model starts from (explore, stylize, v3d): ``init``, by
    default the shipped ``video.json``. ``name`` must not be ``video``: retraining one job's model never
    replaces the one the other jobs use."""
    if name == "video":
        raise ConfigError("--name video would replace the model every other job uses; pick another name.")
    return Path(init) if init is not None else WEIGHTS_DIR / "video.json"


def load_fine_tune_init(init: Path) -> tuple[torch.nn.Module, dict[str, Any], torch.nn.Module]:
    """The denoiser of ``init``, its metadata, and its VAE frozen (:func:`vdm3d.models.tiny.vae_file`: an
    earlier run's model file works as ``init`` too)."""
    net, meta = load_model(init)
    vae, _ = load_model(vae_file(init, meta))
    vae.requires_grad_(False)
    return net, meta, vae


def keep_vae(folder: Path, vae: Path) -> None:
    """Copy the VAE model file ``vae`` (and its weights) beside a run's model unless it is the shipped one, so
    that loading the run's model file decodes with the VAE it was trained on (:func:`vdm3d.models.tiny.vae_file`)."""
    import shutil

    vae = Path(vae)
    if vae.resolve() != (WEIGHTS_DIR / vae.name).resolve():
        for suffix in (".json", ".safetensors"):
            shutil.copy(vae.with_suffix(suffix), Path(folder) / vae.with_suffix(suffix).name)


@dataclasses.dataclass
class FineTune:
    """What one fine-tune trains: the module, its step loss, and what its model file and card record."""

    net: torch.nn.Module
    step: Callable[..., Any]
    """``step(module, rng, generator, device) -> (loss, logs)`` for :func:`vdm3d.train.loop.train`."""
    kind: str
    data: dict[str, Any]
    """The card's data entry (training set, task settings)."""
    extra: dict[str, Any]
    """Extra fields of the model's JSON (vae, resolution, frames, ...)."""


def fine_tune(out: Path, init: Path | None, name: str, loop: LoopConfig, config: dict[str, Any],
              build: Callable[[torch.nn.Module, dict[str, Any], torch.nn.Module], FineTune], *,
              resume: bool, overwrite: bool, half: bool = True) -> dict[str, Any]:
    """The one driver of the fine-tunes of the shipped video model (explore, orbit, v3d): a run folder,
    the init model, ``build(net, meta, vae)`` for the data, module and loss, the training loop with
    checkpoints and resume, then ``<name>.json`` / ``.safetensors`` with a card (float16 if ``half``)."""
    init = fine_tune_init(init, name)
    start = time.time()
    with training_folder(out, config, loop, resume, overwrite, inputs=(init,)) as run:
        net, meta, vae = load_fine_tune_init(init)
        job = build(net, meta, vae)
        job.net.requires_grad_(True)
        summary = train(job.net, job.step, loop, run.checkpoint_dir, resume=run.resuming)
        data = {"init": str(init), **job.data, "stored": "float16" if half else "float32"}
        model = copy.deepcopy(job.net).half() if half else job.net
        save_model(run.path, name, job.kind, model, card(summary, data, loop.seed, {}, start, resume),
                   extra={"vae": meta.get("vae", "vae"), **job.extra})
        keep_vae(run.path, vae_file(init, meta))
        run.record(steps=summary["steps"], init=str(init))
    return {"steps": summary["steps"]}


def refuse_two_resolutions(objects: ObjectSetConfig, rooms: RoomSetConfig, why: str) -> None:
    """Refuse, before any rendering, an object set and a room set of different image sides for a trainer that
    pools their frames (``why`` says how); they used to meet as a numpy traceback after both were rendered."""
    if objects.resolution != rooms.resolution:
        raise ConfigError(f"--objects.resolution {objects.resolution} and --rooms.resolution {rooms.resolution} "
                          f"must be equal, because {why}; give both the same value.")


def _sets(objects: ObjectSetConfig | None, rooms: RoomSetConfig | None):
    return (load_or_build(objects) if objects is not None and objects.count > 0 else None,
            load_or_build(rooms) if rooms is not None and rooms.count > 0 else None)


@torch.no_grad()
def vae_psnr(vae: TinyVAE, images: np.ndarray) -> float:
    x = torch.from_numpy(images).float() / 255
    y = vae.decode(vae.encode(x))
    mse = ((y - x) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((-10 * mse.log10()).mean())


def train_vae(out: Path, objects: ObjectSetConfig = ObjectSetConfig(), rooms: RoomSetConfig = RoomSetConfig(),
              model: VAEConfig = VAEConfig(), task: VAETaskConfig = VAETaskConfig(),
              loop: LoopConfig = LoopConfig(steps=3000, lr=1e-3), heldout: Annotated[int, Range(0)] = 50,
              heldout_rooms: Annotated[int, Range(0)] = 30,
              name: str = "vae",
              resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train the tiny image VAE on object renders and room frames.

    Args:
        out: run folder (model files, checkpoints, manifest.json).
        objects: the object-orbit training set.
        rooms: the room-sequence training set.
        model: VAE shape.
        task: batch and loss settings.
        loop: optimization settings (steps, lr, EMA, checkpoints, time limit).
        heldout: held-out objects scored at the end.
        heldout_rooms: held-out rooms scored at the end.
        name: file name of the model (``<name>.safetensors`` / ``.json``).
        resume: continue a stopped run from its checkpoint.
        overwrite: replace an existing ``out``.
    """
    settings = locals().copy()  # the command's options only: no clock, no imported functions
    refuse_scored_split("--objects.split", objects.split)
    refuse_scored_split("--rooms.split", rooms.split)
    refuse_two_resolutions(objects, rooms, "the VAE trains on one pool of both sets' images")
    start = time.time()
    with training_folder(out, settings, loop, resume, overwrite) as run:
        obj, room = _sets(objects, rooms)
        pool = image_pool(obj, room)
        torch.manual_seed(loop.seed)
        vae = TinyVAE(model)
        summary = train(vae, lambda m, rng, gen, dev: vae_step(m, pool, task, rng, gen, dev), loop,
                        run.checkpoint_dir, resume=run.resuming)
        # normalize latents to zero mean / unit variance on a training sample
        with torch.no_grad():
            pick = np.random.default_rng(loop.seed).choice(len(pool), size=min(512, len(pool)), replace=False)
            mean, _ = vae.posterior(torch.from_numpy(pool[pick]).float() / 255)
            vae.latent_shift.copy_(mean.mean(dim=(0, 2, 3)))
            vae.latent_scale.copy_(1 / mean.std(dim=(0, 2, 3)).clamp_min(1e-6))
        held = _sets(dataclasses.replace(objects, count=heldout, split="heldout"),
                     dataclasses.replace(rooms, count=heldout_rooms, split="heldout"))
        metrics = {"psnr_db": round(vae_psnr(vae, image_pool(*held)), 2),
                   "images": int(len(image_pool(*held)))}
        data = {"objects": dataclasses.asdict(objects), "rooms": dataclasses.asdict(rooms)}
        save_model(run.path, name, "vae", vae, card(summary, data, loop.seed, metrics, start, resume))
        run.record(metrics=metrics, steps=summary["steps"])
    print(f"held-out VAE reconstruction PSNR {metrics['psnr_db']:.2f} dB; model in {out}/{name}.json")
    return metrics


def train_depth(out: Path, rooms: RoomSetConfig = RoomSetConfig(), model: DepthConfig = DepthConfig(),
                task: DepthTaskConfig = DepthTaskConfig(), loop: LoopConfig = LoopConfig(steps=4000, lr=1e-3),
                heldout: Annotated[int, Range(0)] = 30, name: str = "depth", resume: bool = False,
                overwrite: bool = False) -> dict[str, Any]:
    """Train the tiny monocular depth network on room frames (scale-invariant log loss).

    Args:
        out: run folder (model files, checkpoints, manifest.json).
        rooms: the room-sequence training set.
        model: network shape.
        task: batch settings.
        loop: optimization settings (steps, lr, EMA, checkpoints, time limit).
        heldout: held-out rooms scored at the end.
        name: file name of the model.
        resume: continue a stopped run from its checkpoint.
        overwrite: replace an existing ``out``.
    """
    settings = locals().copy()  # the command's options only: no clock, no imported functions
    refuse_scored_split("--rooms.split", rooms.split)
    start = time.time()
    with training_folder(out, settings, loop, resume, overwrite) as run:
        _, room = _sets(None, rooms)
        torch.manual_seed(loop.seed)
        net = TinyDepth(model)
        summary = train(net, lambda m, rng, gen, dev: depth_step(m, room, task, rng, gen, dev), loop,
                        run.checkpoint_dir, resume=run.resuming)
        _, held = _sets(None, dataclasses.replace(rooms, count=heldout, split="heldout"))
        metrics = depth_metrics(net, held)
        save_model(run.path, name, "depth", net, card(summary, {"rooms": dataclasses.asdict(rooms)}, loop.seed,
                                                      metrics, start, resume))
        run.record(metrics=metrics, steps=summary["steps"])
    print(f"held-out depth AbsRel (median scaled) {metrics['abs_rel']:.4f}; model in {out}/{name}.json")
    return metrics


@torch.no_grad()
def depth_metrics(net: TinyDepth, rooms: dict[str, np.ndarray]) -> dict[str, Any]:
    rgb = torch.from_numpy(rooms["rgb"].reshape(-1, *rooms["rgb"].shape[-3:])).float() / 255
    gt = torch.from_numpy(rooms["depth"].reshape(-1, *rooms["depth"].shape[-2:])).float()
    pred = torch.cat([net.predict(rgb[i:i + 64]) for i in range(0, len(rgb), 64)])
    rel = abs_rel_median_scaled(pred, gt)
    const = abs_rel_median_scaled(torch.ones_like(gt), gt)
    return {"abs_rel": round(float(rel.mean()), 4), "abs_rel_constant_baseline": round(float(const.mean()), 4),
            "images": int(len(rgb))}


def train_video(out: Path, vae: Path = DEFAULT_VAE, objects: ObjectSetConfig = ObjectSetConfig(count=1000),
                rooms: RoomSetConfig = RoomSetConfig(count=300), model: DenoiserConfig = DenoiserConfig(),
                task: VideoTaskConfig = VideoTaskConfig(),
                loop: LoopConfig = LoopConfig(steps=7000, lr=8e-4, warmup=200, ema_decay=0.998),
                name: str = "video", resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train the tiny latent video denoiser on the orbit / warp / inbetween mixture (VAE frozen).

    Args:
        out: run folder (model files, checkpoints, manifest.json).
        vae: the trained VAE's ``vae.json`` (default: the shipped one).
        objects: the object-orbit training set.
        rooms: the room-sequence training set.
        model: denoiser shape.
        task: task mixture, condition dropout and noise-level settings.
        loop: optimization settings (steps, lr, EMA, checkpoints, time limit).
        name: file name of the model.
        resume: continue a stopped run from its checkpoint.
        overwrite: replace an existing ``out``.
    """
    settings = locals().copy()  # the command's options only: no clock, no imported functions
    refuse_scored_split("--objects.split", objects.split)
    refuse_scored_split("--rooms.split", rooms.split)
    refuse_two_resolutions(objects, rooms, "the video model is made for one resolution and trains on both sets")
    start = time.time()
    with training_folder(out, settings, loop, resume, overwrite, inputs=(vae,)) as run:
        obj, room = _sets(objects, rooms)
        vae_model, vae_meta = load_model(vae)
        vae_model.requires_grad_(False)
        torch.manual_seed(loop.seed)
        res = (obj or room)["rgb"].shape[-2]
        backbone = TinyVideoBackbone(vae_model, VideoDenoiser(model), resolution=(res, res), frames=task.frames)
        tasks = VideoTasks(backbone, obj, room, task)
        net = backbone.denoiser

        def step(m, rng, gen, dev):
            backbone.denoiser = m  # the prepared (possibly wrapped) module
            return video_loss(backbone, tasks, rng, gen, dev)

        summary = train(net, step, loop, run.checkpoint_dir, resume=run.resuming)
        backbone.denoiser = net
        data = {"objects": dataclasses.asdict(objects), "rooms": dataclasses.asdict(rooms),
                "task": dataclasses.asdict(task)}
        save_model(run.path, name, "video", net, card(summary, data, loop.seed, {}, start, resume),
                   extra={"vae": Path(vae).stem, "resolution": [res, res], "frames": task.frames})
        keep_vae(run.path, vae)
        run.record(steps=summary["steps"], vae=str(vae))
    print(f"video model in {out}/{name}.json (measure it with `vdm3d eval orbit|warp`)")
    return {"steps": summary["steps"]}
