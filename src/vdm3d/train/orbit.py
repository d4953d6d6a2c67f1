"""`vdm3d train orbit`: the object job's own orbit model, fine-tuned from the shipped video model.

The shipped ``video`` model learned orbits beside room warps and inbetweens, from the reference view
alone. The object job's model continues from it on the orbit task only, with the reference also
carried into every target (the maps slot) by its inflated silhouette
(:func:`vdm3d.geometry.inflate.proxy_maps`) or by its depth (``--task.orbit-carry depth``: exact, or
the object-depth network's estimate with ``--depth-model``, :mod:`vdm3d.train.object_depth`), so that
nearby views start from the input's own pixels. It is written as its own model (``orbit``, float16), so the
jobs that load ``video`` (complete) and the models fine-tuned from it keep their outputs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from safetensors.torch import load_file

from vdm3d.models.tiny.backbone import TinyVideoBackbone
from vdm3d.train.datasets import ObjectSetConfig, load_object_depth, load_or_build, refuse_scored_split
from vdm3d.train.loop import LoopConfig
from vdm3d.train.object_depth import estimated_object_depth
from vdm3d.train.run import FineTune, checkpoint_state, fine_tune, fine_tune_init, load_fine_tune_init
from vdm3d.train.video import VideoTaskConfig, VideoTasks, video_loss

ORBIT_TASK = VideoTaskConfig(mixture=(1.0, 0.0, 0.0), orbit_maps=0.8, half_stride=0.5)


def train_orbit(out: Path, init: Path | None = None, objects: ObjectSetConfig = ObjectSetConfig(count=1000),
                task: VideoTaskConfig = ORBIT_TASK,
                loop: LoopConfig = LoopConfig(steps=3000, lr=3e-4, warmup=100, ema_decay=0.998),
                depth_model: Path | None = None,
                name: str = "orbit", resume: bool = False, overwrite: bool = False) -> dict:
    """Fine-tune a copy of the shipped tiny video model on orbits with the inflated-silhouette maps.

    Args:
        out: run folder (model files, checkpoints, manifest.json).
        init: the video model to start from (default: the shipped ``video.json``).
        objects: the object-orbit training set (training seeds only).
        task: orbit settings; ``orbit_maps`` is the share of samples that get the proxy maps,
            ``orbit_carry`` what carries the reference into them (the inflated balloon, or a depth).
        depth_model: with a depth carry, an object-depth model (`vdm3d train object-depth`) whose estimate
            of every training view's depth carries it, as the job carries its input; default: the exact depth.
        loop: optimization settings (steps, lr, EMA, checkpoints, time limit).
        name: file name of the new model (never ``video``: other jobs keep theirs).
        resume: continue a stopped run from its checkpoint.
        overwrite: replace an existing ``out``.
    """
    config = locals().copy()
    refuse_scored_split("--objects.split", objects.split)

    def build(net, meta, vae) -> FineTune:
        obj = load_or_build(objects)
        if task.orbit_carry != "inflate":
            obj["depth"] = (estimated_object_depth(depth_model, obj) if depth_model is not None
                            else load_object_depth(objects))
        res = obj["rgb"].shape[-2]
        backbone = TinyVideoBackbone(vae, net, resolution=(res, res), frames=task.frames)
        tasks = VideoTasks(backbone, obj, None, task)

        def step(m, rng, gen, dev):
            backbone.denoiser = m  # the prepared (possibly wrapped) module
            return video_loss(backbone, tasks, rng, gen, dev)
        carry = ("inflated-silhouette" if task.orbit_carry == "inflate" else
                 f"{task.orbit_carry} ({'estimated by ' + str(depth_model) if depth_model else 'exact'})")
        return FineTune(net, step, "video", {"objects": dataclasses.asdict(objects), "task": dataclasses.asdict(task),
                                             "depth_model": None if depth_model is None else str(depth_model)},
                        {"resolution": [res, res], "frames": task.frames, "orbit_maps": carry})

    result = fine_tune(out, init, name, loop, config, build, resume=resume, overwrite=overwrite)
    print(f"orbit model in {out}/{name}.json (use it with `vdm3d object --backbone {out}/{name}.json`; measure it "
          f"with `vdm3d eval object --backbone ...`)")
    return result


def checkpoint_backbone(run: Path, init: Path | None = None, frames: int = ORBIT_TASK.frames) -> TinyVideoBackbone:
    """The EMA weights of a run's last checkpoint as a backbone, to score a run while it trains.

    ``init`` is the model the run started from (default: the shipped ``video.json``): it gives the
    network's shape and the VAE."""
    net, meta, vae = load_fine_tune_init(fine_tune_init(init, "orbit"))
    tensors = load_file(str(checkpoint_state(run, "train orbit")))
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "model."
    net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    res = tuple(meta.get("resolution", (64, 64)))
    backbone = TinyVideoBackbone(vae, net, name="tiny-orbit-checkpoint", resolution=res, frames=frames)
    backbone.requires_grad_(False)
    return backbone.eval()
