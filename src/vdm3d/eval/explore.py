"""`vdm3d eval explore`: the explore job on held-out procedural rooms against exact frames and three baselines.

Each room (seeds from the held-out range, :data:`vdm3d.train.datasets.SEED_OFFSETS`) is walked along a
**loop**: a smooth path through free space (:func:`vdm3d.data.procedural.rooms.room_path`) of
``frames / 2`` frames, then the same path backwards, so the last frame returns to the start pose.
Every frame has an exact render. The job starts from the exact first frame; the scene's scale is given
to every method alike as the first frame's median true depth (``--depth-median``, standing in for a
metric depth estimator).

Scores, per method:

* PSNR and SSIM against the exact frames, over all frames and per ``segment``-frame segment (drift);
* revisit consistency: the returning frames (the last ``revisit`` frames, at the poses of the first
  ``revisit`` frames) against the first ones of the same video, PSNR;
* where it is lost: PSNR on the pixels that came from the cache's valid render and on the holes
  (frame 0 left out), and the fraction of hole pixels; and, once per run, the PSNR of the true frames
  after the tiny VAE's round trip, the ceiling of any decoded pixel.

Methods, in the same run and with the same settings otherwise: the job (spatio-temporal noise, the
cache); ``cache + warp + inpaint`` (the cache rendered and its holes filled by OpenCV Telea, no
generation); ``no cache`` (each chunk conditioned on the previous chunk's last frame only);
``uniform noise`` (one noise level for every non-context token).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch

from vdm3d.eval.checkpoints import FROM_CHECKPOINT, CaseCheckpoints
from vdm3d.io.progress import StageLog
from vdm3d.io.runs import RunFolder, atomic_write_json
from vdm3d.metrics.image import psnr, ssim
from vdm3d.options import SEED, Range

#: the job's options per method; the generative baselines start their holes from noise, as defined in issue 12
METHODS = {"job": {}, "inpaint": {"fill": "inpaint"}, "no-cache": {"use_cache": False, "hole_init": "noise"},
           "uniform": {"noise": "uniform", "hole_init": "noise"}}


def loop_path(seed: int, frames: int, size: int, step: float):
    """A room and a loop of ``frames`` cameras through it (out and back), or None when the room has no
    free path of that length."""
    from vdm3d.cameras.camera import Cameras
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.train.datasets import ROOM_FOV_DEG

    scene = make_room(seed)
    half = frames // 2
    try:
        out = room_path(scene, half, seed * 16, width=size, height=size, fov_deg=ROOM_FOV_DEG, step=step)
    except ValueError:
        return None
    back = out[torch.arange(half - 1, -1, -1)]
    cams = Cameras(torch.cat([out.Ks, back.Ks]), torch.cat([out.c2w, back.c2w]), size, size)
    return scene, cams


def masked_psnr(video: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB) over the pixels of ``mask`` ``[F, H, W]`` of all frames together (nan when it is empty)."""
    if not bool(mask.any()):
        return float("nan")
    mse = ((video.clamp(0, 1) - truth) ** 2).mean(-1)[mask].mean()
    return float(-10 * torch.log10(mse.clamp_min(1e-12)))


def score(video: torch.Tensor, truth: torch.Tensor, segment: int, revisit: int,
          valid: torch.Tensor | None = None) -> dict[str, Any]:
    """Scores of one video (see the module docstring); with ``valid`` ``[F, H, W]`` (where the frame
    came from the cache's valid render) also the PSNR on those pixels and on the holes, frame 0 left out."""
    p = psnr(video.clamp(0, 1), truth)  # [F]
    s = ssim(video.clamp(0, 1), truth)
    segs = [(i, min(i + segment, len(p))) for i in range(0, len(p), segment)]
    n = len(video)
    back = video[torch.arange(n - 1, n - 1 - revisit, -1)]  # frame n-1-j returns to the pose of frame j
    rev = psnr(back.clamp(0, 1), video[:revisit].clamp(0, 1))
    return {"psnr": float(p.mean()), "ssim": float(s.mean()),
            "psnr_segments": [round(float(p[a:b].mean()), 3) for a, b in segs],
            "ssim_segments": [round(float(s[a:b].mean()), 4) for a, b in segs],
            "revisit_psnr": float(rev.mean()),
            "psnr_valid": masked_psnr(video[1:], truth[1:], valid[1:].bool()) if valid is not None else float("nan"),
            "psnr_holes": masked_psnr(video[1:], truth[1:], ~valid[1:].bool()) if valid is not None else float("nan"),
            "hole_fraction": float((~valid[1:].bool()).float().mean()) if valid is not None else float("nan")}


def vae_round_trip_psnr(model: str, frames: torch.Tensor, chunk: int = 8) -> float:
    """Mean PSNR of ``frames`` ``[F, H, W, 3]`` encoded and decoded by the tiny model's VAE, ``chunk`` at a time."""
    from vdm3d.models.registry import load_backbone

    bb = load_backbone(model if model.endswith(".json") else f"tiny-{model}")  # a name, or a train run's file
    with torch.no_grad():
        out = torch.cat([bb.decode(bb.encode(frames[i:i + chunk][None]))[0][: len(frames[i:i + chunk])]
                         for i in range(0, len(frames), chunk)])
    return float(psnr(out.clamp(0, 1), frames).mean())


def explore(rooms: Annotated[int, Range(1)] = 10, skip_rooms: Annotated[int, Range(0)] = 0, frames: Annotated[int, Range(1)] = 200,
            resolution: Annotated[int, Range(8)] = 64, step: Annotated[float, Range(0, open_min=True)] = 0.03,
            segment: Annotated[int, Range(1)] = 50,
            revisit: Annotated[int, Range(0)] = 10, methods: tuple[str, ...] = tuple(METHODS),
            model: str = "explore",
            steps: Annotated[int, Range(1)] = 10, strength: Annotated[float, Range(0, 1)] = 0.1,
            fit_steps: Annotated[int, Range(0)] = 60, chunk: Annotated[int, Range(1)] = 8,
            samples: Annotated[int, Range(1)] = 2, keep_valid: bool = True, rim_px: Annotated[int, Range(0)] = 2,
            mean_steps: Annotated[int, Range(0)] = 1, nearest_sources: Annotated[int, Range(0)] = 16,
            hole_init: Literal["noise", "telea"] = "telea",
            hole_strength: Annotated[float, Range(0, 1, open_min=True)] = 0.5, residual: bool = True,
            shrink: Annotated[float, Range(0)] = 16.0, max_correction: Annotated[float, Range(0, open_min=True)] = 0.03,
            cache_update: Literal["all", "new"] = "all", replay: Annotated[int, Range(0)] = 16,
            replay_pick: Literal["random", "nearest"] = "random",
            valid_depth: Literal["estimate", "render"] = "estimate",
            source_depth: Literal["stored", "render"] = "stored",
            camera_accuracy: bool = False, seed: Annotated[int, SEED] = 0,
            split: Literal["heldout", "val"] = "heldout", out: Path | None = None,
            overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """The explore job and its baselines on held-out room loops (see the module docstring).

    Args:
        rooms: rooms to walk (seeds that have a free path; cluttered rooms are skipped).
        skip_rooms: leave out the first N such rooms (to split a long evaluation into runs whose per-room
            results add up to one).
        frames: frames per loop (half out, half back).
        resolution: frame side in pixels.
        step: metres per frame along the path.
        segment: frames per drift segment.
        revisit: returning frames scored against the first ones.
        methods: which of job, inpaint, no-cache, uniform to run.
        model: the tiny video model of the job (explore: its own fine-tune; video: the shipped one; or the
            ``.json`` model file of a `vdm3d train` run).
        steps: sampler steps.
        strength: noise on warped tokens.
        fit_steps: cache fitting steps per chunk.
        chunk: frames per chunk.
        samples: draws averaged per chunk (the job's ``--samples``).
        keep_valid: paste the valid render back (the job's ``--keep-valid``).
        rim_px: hole rim interpolated rather than generated, pixels (the job's ``--rim-px``).
        mean_steps: a draw is the mean of the first N steps' x0 predictions (the job's ``--mean-steps``).
        nearest_sources: earlier frames nearest the chunk that count as validity sources (the job's
            ``--nearest-sources``; every method alike).
        hole_init: what the job's hole tokens start from (the job's ``--hole-init``).
        hole_strength: noise on the job's hole tokens with ``--hole-init telea`` (the job's ``--hole-strength``).
        residual: the model's change to the Telea fill added in pixel space (the job's ``--residual``).
        shrink: the job's change to the fill shrunk where its draws disagree (the job's ``--shrink``).
        max_correction: the job's change to the fill capped per pixel (the job's ``--max-correction``).
        cache_update: which Gaussians the job's cache fit moves (the job's ``--cache-update``; every method alike).
        replay: earlier frames refitted in each cache update (the job's ``--replay``; every method alike).
        replay_pick: which earlier frames are refitted (the job's ``--replay-pick``; every method alike).
        valid_depth: a new frame's depth on its valid pixels, the aligned estimate or the cache's render (the
            job's ``--valid-depth``; every method alike).
        source_depth: the source views' depth in the validity check, stored with each frame or the current
            cache's render (the job's ``--source-depth``; every method alike).
        camera_accuracy: also recover each video's cameras with COLMAP and score them against the path
            (:mod:`vdm3d.metrics.colmap_poses`; the true frames are scored too, as the reference). Slow: a
            minute or more per video on one core.
        seed: generator seed of every run.
        split: heldout (test seeds) or val (for choosing settings).
        out: optional run folder for the numbers (JSON); each finished room is checkpointed there.
        overwrite: replace ``out`` if it exists.
        resume: continue the interrupted evaluation in ``out``: its finished rooms are loaded, not run again.
    """
    config = dict(locals())  # the arguments only (before the imports below join the locals)
    from vdm3d.cameras.trajectory import Trajectory
    from vdm3d.cameras.trajectory_file import save_trajectory
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.io.images import write_image
    from vdm3d.jobs.explore import ExploreConfig, run_explore
    from vdm3d.metrics.colmap_poses import camera_accuracy as colmap_accuracy
    from vdm3d.train.datasets import SEED_OFFSETS

    unknown = set(methods) - set(METHODS)
    if unknown:
        from vdm3d.errors import ConfigError
        raise ConfigError(f"--methods {sorted(unknown)} unknown; choose from {', '.join(METHODS)}.")
    if resume and out is None:
        from vdm3d.errors import ConfigError
        raise ConfigError("--resume continues the interrupted evaluation in its run folder; give that folder as "
                          "--out (without --out nothing is checkpointed).")
    results: dict[str, list] = {m: [] for m in methods}
    chunk_times: dict[str, list] = {m: [] for m in methods}
    vae_psnr: list[float] = []
    truth_cams: list[dict] = []
    seed_room, done, skipped = SEED_OFFSETS[split] + 500_000, 0, 0
    t0, say = time.time(), StageLog()  # "[room/rooms]" lines with an ETA
    with tempfile.TemporaryDirectory(prefix="vdm3d-eval-explore-") as tmp, \
            (RunFolder(out, config=config, seed=seed, overwrite=overwrite, resume=resume) if out is not None
             else contextlib.nullcontext()) as run, \
            _say_what_is_left_when_interrupted(lambda: done, rooms, skip_rooms):
        tmp, finished = Path(tmp), CaseCheckpoints(run)  # with --out, each room's scores as it ends, for --resume
        while done < rooms:
            seed_room += 1
            found = loop_path(seed_room, frames, resolution, step)
            if found is None:
                continue
            if skipped < skip_rooms:
                skipped += 1
                continue
            saved = finished.load(done, f"room {seed_room}")
            if saved is not None:  # finished before an interruption: its scores, not run again
                room = saved.result
                vae_psnr.append(room["vae_psnr"])
                if camera_accuracy:
                    truth_cams.append(room["truth_camera"])
                for m in methods:
                    results[m].append(room["methods"][m])
                    chunk_times[m].append(room["chunks_s"][m])
                    say(f"[{done + 1}/{rooms}] room {done} ({seed_room}) {m:>9}: "
                        f"{_room_line(results[m][-1], chunk_times[m][-1], camera_accuracy)} {FROM_CHECKPOINT}")
                done += 1
                continue
            scene, cams = found
            buf = render_buffers(scene, cams, ssaa=3)
            truth, depth0 = buf.rgb.float(), buf.depth[0].float()
            image = tmp / f"room{done}.png"
            write_image(image, truth[0])
            path = tmp / f"room{done}.json"
            save_trajectory(path, Trajectory(cams, 12.0))
            median = float(depth0[depth0 > 0].median())
            vae_psnr.append(vae_round_trip_psnr(model, truth))
            if camera_accuracy:
                truth_cams.append(colmap_accuracy(truth, cams))
                say(f"[{done + 1}/{rooms}] room {done} ({seed_room}) true frames: COLMAP {_cam_line(truth_cams[-1])}")
            for m in methods:
                cfg = ExploreConfig(image=image, path=path, out=tmp / f"{m}{done}", resolution=resolution,
                                    fov_deg=float(cams.fov_x_deg[0]), depth_median=median, model=model, steps=steps,
                                    strength=strength, fit_steps=fit_steps, chunk=chunk, samples=samples,
                                    keep_valid=keep_valid, rim_px=rim_px, mean_steps=mean_steps,
                                    nearest_sources=nearest_sources, cache_update=cache_update, replay=replay,
                                    replay_pick=replay_pick, valid_depth=valid_depth,
                                    source_depth=source_depth, seed=seed,
                                    **{"hole_init": hole_init, "hole_strength": hole_strength, "residual": residual,
                                       "shrink": shrink, "max_correction": max_correction, **METHODS[m]})
                res = run_explore(cfg, progress=None)
                results[m].append(score(res.video.images, truth, segment, revisit, res.video.confidence))
                if camera_accuracy:
                    results[m][-1].update({f"camera_{k}": v for k, v in colmap_accuracy(res.video.images, cams).items()})
                chunk_times[m].append(res.timings["chunks_s"])
                say(f"[{done + 1}/{rooms}] room {done} ({seed_room}) {m:>9}: "
                    + _room_line(results[m][-1], chunk_times[m][-1], camera_accuracy))
            finished.save(done, f"room {seed_room}", {
                "vae_psnr": vae_psnr[-1], "truth_camera": truth_cams[-1] if camera_accuracy else None,
                "methods": {m: results[m][-1] for m in methods}, "chunks_s": {m: chunk_times[m][-1] for m in methods}})
            done += 1
        summary = {m: {"psnr": round(float(np.mean([r["psnr"] for r in rs])), 3),
                       "ssim": round(float(np.mean([r["ssim"] for r in rs])), 4),
                       "revisit_psnr": round(float(np.mean([r["revisit_psnr"] for r in rs])), 3),
                       **{k: round(float(np.nanmean([r[k] for r in rs])), 3) if not all(np.isnan([r[k] for r in rs]))
                          else float("nan") for k in ("psnr_valid", "psnr_holes", "hole_fraction") + CAMERA_KEYS
                          if k in rs[0]},
                       "psnr_segments": np.mean([r["psnr_segments"] for r in rs], 0).round(3).tolist(),
                       "ssim_segments": np.mean([r["ssim_segments"] for r in rs], 0).round(4).tolist(),
                       "seconds_per_run": round(float(np.mean([sum(t) for t in chunk_times[m]])), 1)}
                   for m, rs in results.items()}
        truth_camera = {k: round(float(np.nanmean([r[k[7:]] for r in truth_cams])), 3) for k in CAMERA_KEYS} \
            if truth_cams else None
        print(table(summary, rooms, frames, resolution, segment, split, truth_camera))
        print(f"the true frames after the VAE's round trip (the ceiling of decoded pixels): PSNR {np.mean(vae_psnr):.2f} dB")
        result = {"task": "explore", "rooms": rooms, "frames": frames, "split": split, "summary": summary,
                  "vae_round_trip_psnr": round(float(np.mean(vae_psnr)), 3), "camera_truth": truth_camera,
                  "per_room": results, "seconds": round(time.time() - t0, 1), "config": config}
        if run is not None:
            atomic_write_json(run.path / "explore.json", _nan_to_none(result))
    return result


def _room_line(r: dict[str, Any], chunks_s: list[float], camera_accuracy: bool) -> str:
    """One method's scores on one room, as its progress line shows them."""
    return (f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, revisit {r['revisit_psnr']:.2f} dB, valid px "
            f"{r['psnr_valid']:.2f} dB, holes {r['psnr_holes']:.2f} dB ({r['hole_fraction']:.1%}), {sum(chunks_s):.0f} s"
            + (f", COLMAP {_cam_line({k[7:]: r[k] for k in CAMERA_KEYS})}" if camera_accuracy else ""))


def interrupted_outcome(done: int, rooms: int, skip_rooms: int) -> str:
    """What an interrupted evaluation without ``--out`` leaves: no checkpoint (the runs live in a temporary
    folder, deleted on exit), the finished rooms' printed lines, and the --skip-rooms/--rooms that evaluate
    the rest as a separate run. With ``--out`` the run folder's own outcome replaces it: the finished rooms'
    checkpoint is kept, and ``--resume`` continues."""
    left = ("no room was finished, so nothing was kept; run the same command again to start over" if done == 0 else
            f"{done} of {rooms} rooms were finished (their lines are above); the same command with "
            f"--skip-rooms {skip_rooms + done} --rooms {rooms - done} evaluates the rest")
    return f"eval explore keeps no checkpoint (its runs were in a temporary folder, now deleted): {left}"


@contextlib.contextmanager
def _say_what_is_left_when_interrupted(done, rooms: int, skip_rooms: int):
    """Ctrl-C or SIGTERM: replace the inner run's "the checkpoint in <temp>/... is kept; ... --resume" (untrue
    here) by :func:`interrupted_outcome`, which the CLI prints (inside ``--out``'s RunFolder, whose outcome then
    replaces this one). ``done`` is called for the finished rooms."""
    try:
        yield
    except KeyboardInterrupt as e:
        e.outcome = interrupted_outcome(done(), rooms, skip_rooms)
        raise


def _num(x: float, fmt: str) -> str:
    return "-" if x != x else format(x, fmt)


def _nan_to_none(x):
    """JSON has no NaN: an empty split (no valid pixels without the cache) is written as null."""
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and x != x else x


NAMES = {"job": "explore (cache + ST noise)", "inpaint": "cache + warp + Telea inpainting",
         "no-cache": "generation without the cache", "uniform": "uniform noise"}


CAMERA_KEYS = ("camera_registered", "camera_rotation_deg", "camera_translation", "camera_translation_rel")


def _cam_line(r: dict) -> str:
    return (f"registered {r['registered']:.0%}, rotation {r['rotation_deg']:.2f} deg, translation "
            f"{r['translation']:.3f} ({r['translation_rel']:.3f} of the path)")


def table(summary: dict, rooms: int, frames: int, resolution: int, segment: int, split: str = "heldout",
          truth_camera: dict | None = None) -> str:
    nseg = len(next(iter(summary.values()))["psnr_segments"])
    segs = " | ".join(f"PSNR {i * segment}-{min((i + 1) * segment, frames) - 1}" for i in range(nseg))
    where = "held-out" if split == "heldout" else split
    lines = [f"explore on {rooms} {where} room loops x {frames} frames, {resolution}x{resolution}",
             f"| method | PSNR | SSIM | revisit PSNR | {segs} | PSNR valid px | PSNR hole px | holes | s / run |",
             "|" + "---|" * (8 + nseg)]
    for m, s in summary.items():
        seg = " | ".join(f"{v:.2f}" for v in s["psnr_segments"])
        lines.append(f"| {NAMES.get(m, m)} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['revisit_psnr']:.2f} | {seg} | "
                     f"{_num(s['psnr_valid'], '.2f')} | {_num(s['psnr_holes'], '.2f')} | {_num(s['hole_fraction'], '.1%')} | "
                     f"{s['seconds_per_run']:.0f} |")
    if truth_camera is not None:
        lines += ["", "camera accuracy (COLMAP's poses of the frames against the path, after a similarity alignment)",
                  "| frames | registered | rotation (deg) | translation | translation / path extent |",
                  "|---|---|---|---|---|"]
        for m, s in [*summary.items(), ("truth", truth_camera)]:
            lines.append(f"| {NAMES.get(m, 'the true frames (reference)')} | {_num(s['camera_registered'], '.0%')} | "
                         f"{_num(s['camera_rotation_deg'], '.2f')} | {_num(s['camera_translation'], '.3f')} | "
                         f"{_num(s['camera_translation_rel'], '.3f')} |")
    return "\n".join(lines)


COMMANDS = {"explore": explore}
