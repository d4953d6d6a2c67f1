"""`vdm3d eval stylize`: the stylize job against ground truth, beside three baselines in the same run.

Cases: held-out procedural objects (arcs of their orbit) and rooms (walks), seeds from 1,000,000 on
(outside the training range of the stylize models; ``--split val`` uses the validation range for
choosing settings), plus the textured meshes of
``../shared/data/meshes`` on arcs (:mod:`vdm3d.data.procedural.stylize`). The job sees only the
geometry (the coarse, untextured mesh: depth, normals, edges, flow) and the style image, a textured
render from a view off the path; the ground truth is the textured render along the path.

Methods (same anchors, models, seeds and steps):

* ``job``: anchors with SAG + inbetweening with flow-warped noise + temporal fusion (the full job);
* ``job-no-fusion``: the job's frames before temporal fusion (an ablation: the video model alone);
* ``warp-anchors``: the same anchors, every other frame the nearest anchor warped through the exact
  correspondence (no video model);
* ``per-frame``: every frame generated independently by the image prior (no inbetweening, no SAG);
* ``fresh-noise``: the job with fresh instead of warped starting noise (fused like the job), and
  ``fresh-noise-no-fusion`` its frames before fusion (to compare with ``job-no-fusion``).

Metrics (means over frames, then cases): PSNR and SSIM against the ground truth; edge F-score of the
frames' Canny edges against the mesh's geometric edges (1-pixel tolerance); temporal warp error
(mean absolute difference of frame t and frame t+1 pulled back through the exact flow, on valid
pixels); Hellinger distance of colour histograms to the style image. The ground truth's own warp
error and histogram distance are listed as references.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.data.procedural.stylize import StylizeCase, mesh_case, object_case, room_case
from vdm3d.eval.checkpoints import FROM_CHECKPOINT, CaseCheckpoints
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.geometry.path_buffers import PathBuffers, render_path
from vdm3d.eval.meshes import mesh_files
from vdm3d.io.progress import StageLog
from vdm3d.jobs.stylize import StylizeConfig, anchor_views, arcs, fuse, load_models, stylize_frames
from vdm3d.metrics.image import psnr, ssim
from vdm3d.metrics.video import color_histogram_distance, edge_fscore, warp_error
from vdm3d.options import SEED, Range
from vdm3d.train.datasets import SEED_OFFSETS
DEFAULT_MESHES = ("spot/spot_triangulated.obj:spot/spot_texture.png", "bob/bob_tri.obj", "duck/Duck.glb")
METHODS = ("job", "job-no-fusion", "warp-anchors", "per-frame", "fresh-noise", "fresh-noise-no-fusion")
METRICS = ("psnr", "ssim", "edge_f", "warp_err", "hist_dist")


def eval_cases(procedural: int, frames: int, size: int, meshes: tuple[str, ...], mesh_root: Path,
               split: Literal["heldout", "val"] = "heldout") -> list[StylizeCase]:
    """``procedural`` held-out (or validation) cases, objects and rooms alternating, and the shared
    meshes found."""
    from vdm3d.data.procedural import load_mesh

    cases: list[StylizeCase] = []
    seed = SEED_OFFSETS[split]
    while len(cases) < procedural:
        if len(cases) % 2 == 0:
            cases.append(object_case(seed, frames, size))
        else:
            try:
                cases.append(room_case(seed, frames, size))
            except ValueError:  # no free walk that long in this room: next seed
                seed += 1
                continue
        seed += 1
    for full, texture in mesh_files(meshes, mesh_root):
        scene = load_mesh(full, texture=texture)
        cases.append(mesh_case(scene, full.stem, SEED_OFFSETS[split] + len(cases), frames, size))
    return cases


def warp_nearest_anchor(buffers: PathBuffers, anchors: dict[int, Tensor]) -> Float[Tensor, "F H W 3"]:
    """The no-video-model baseline: every frame is its nearest anchor warped through the exact
    correspondence; holes take the other neighbouring anchor, then the nearest anchor unwarped."""
    keys = sorted(anchors)
    out = []
    for t in range(len(buffers)):
        near = sorted(keys, key=lambda k: (abs(k - t), k))[:2]
        frame = anchors[near[0]].clone()
        filled = torch.zeros(frame.shape[:2], dtype=torch.bool)
        for k in near:
            warped, valid = buffers.warp(anchors[k], k, t)
            take = valid & ~filled
            frame[take] = warped[take]
            filled |= valid
        out.append(frame)
    return torch.stack(out)


def score(frames: torch.Tensor, gt: torch.Tensor, buffers, style: torch.Tensor) -> dict[str, float]:
    return {"psnr": float(psnr(frames, gt).mean()), "ssim": float(ssim(frames, gt).mean()),
            "edge_f": edge_fscore(frames, buffers.edges),
            "warp_err": warp_error(frames, buffers.flow, buffers.flow_valid),
            "hist_dist": color_histogram_distance(frames, style)}


def run_case(case: StylizeCase, config: StylizeConfig, models) -> dict[str, dict[str, float]]:
    truth = render_buffers(case.scene, case.cameras, ssaa=3).rgb
    style = render_buffers(case.scene, case.style_camera, ssaa=3).rgb[0]
    buffers = render_path(case.scene, case.cameras)  # geometry only: the job never sees the textures
    raw, anchors = stylize_frames(config, models, buffers, style, say=lambda _m: None)
    frames = fuse(config, buffers, raw)
    fresh, _ = stylize_frames(dataclasses.replace(config, noise="fresh"), models, buffers, style,
                              anchors=anchors, say=lambda _m: None)
    outputs = {
        "job": frames,
        "job-no-fusion": raw,
        "warp-anchors": warp_nearest_anchor(buffers, anchors),
        "per-frame": torch.stack(list(anchor_views(config, models.anchor, buffers, style,
                                                   list(range(len(buffers))), guided=False).values())),
        "fresh-noise": fuse(config, buffers, fresh),
        "fresh-noise-no-fusion": fresh,
    }
    out = {name: score(v, truth, buffers, style) for name, v in outputs.items()}
    out["ground-truth"] = {"warp_err": warp_error(truth, buffers.flow, buffers.flow_valid),
                           "hist_dist": color_histogram_distance(truth, style),
                           "edge_f": edge_fscore(truth, buffers.edges)}
    out["_frames"] = {"job": frames, "raw": raw, "gt": truth, "style": style}
    return out


def strip_frames(shown: dict[str, Tensor], frames: int) -> dict[str, Tensor]:
    """strip.png (up to 8 frames of a case; rows: ground truth, the job, the job before temporal fusion) and
    the style image, from :func:`run_case`'s ``_frames``."""
    idx = np.linspace(0, frames - 1, min(frames, 8)).round().astype(int)
    return {"strip": torch.cat([torch.cat(list(shown[k][idx]), 1) for k in ("gt", "job", "raw")], 0),
            "style": shown["style"]}


def table(means: dict[str, dict[str, float]]) -> str:
    head = "| method | PSNR (dB) ^ | SSIM ^ | edge F ^ | warp error v | colour-hist distance to style v |"
    rows = [head, "|---|---|---|---|---|---|"]
    for name, m in means.items():
        cell = lambda k, f: f.format(m[k]) if k in m else "-"  # noqa: E731
        rows.append(f"| {name} | {cell('psnr', '{:.2f}')} | {cell('ssim', '{:.3f}')} | {cell('edge_f', '{:.3f}')} | "
                    f"{cell('warp_err', '{:.4f}')} | {cell('hist_dist', '{:.3f}')} |")
    return "\n".join(rows)


BASELINES = ("warp-anchors", "per-frame", "fresh-noise")


def paired(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The job against each baseline case by case (all methods share a case's anchors or seeds): the mean,
    smallest and largest per-case PSNR gain (dB, job minus baseline) and relative warp-error change
    (job / baseline - 1), and the cases the job wins in each."""
    out = {}
    for base in BASELINES:
        gain = np.array([c["job"]["psnr"] - c[base]["psnr"] for c in per_case.values()])
        warp = np.array([c["job"]["warp_err"] / c[base]["warp_err"] - 1 for c in per_case.values()])
        out[base] = {"psnr_gain": float(gain.mean()), "psnr_gain_min": float(gain.min()),
                     "psnr_gain_max": float(gain.max()), "psnr_wins": int((gain > 0).sum()),
                     "warp_change": float(warp.mean()), "warp_change_min": float(warp.min()),
                     "warp_change_max": float(warp.max()), "warp_wins": int((warp < 0).sum()),
                     "cases": len(gain)}
    return out


def paired_table(pairs: dict[str, dict[str, float]]) -> str:
    rows = ["| job vs | PSNR gain, mean (min..max) dB | cases won | warp error change, mean (min..max) "
            "| cases won |", "|---|---|---|---|---|"]
    for base, p in pairs.items():
        gain = f"{p['psnr_gain']:+.3f} ({p['psnr_gain_min']:+.2f}..{p['psnr_gain_max']:+.2f})"
        warp = f"{p['warp_change']:+.1%} ({p['warp_change_min']:+.1%}..{p['warp_change_max']:+.1%})"
        won = f"{p['psnr_wins']}/{p['cases']}", f"{p['warp_wins']}/{p['cases']}"
        rows.append(f"| {base} | {gain} | {won[0]} | {warp} | {won[1]} |")
    return "\n".join(rows)


def stylize(out: Path = Path("runs/eval_stylize"), procedural: Annotated[int, Range(1)] = 10,
            frames: Annotated[int, Range(1)] = 24, resolution: Annotated[int, Range(8)] = 64,
            meshes: tuple[str, ...] = DEFAULT_MESHES, mesh_root: Path = Path("../shared/data/meshes"),
            arc_frames: Annotated[int, Range(1)] = 8, steps: Annotated[int, Range(1)] = 8,
            anchor_model: str = "stylize_anchor",
            inbetween_model: str = "stylize_inbetween",
            guidance_scale: Annotated[float | None, Range(0)] = None,
            keyframe_blend: Annotated[float, Range(0, 1)] = 1.0, fusion_radius: Annotated[int, Range(0)] = 12,
            fusion_tau: Annotated[float, Range(0, open_min=True)] = 6.0,
            noise_alpha: Annotated[float, Range(0, 1)] = 0.5,
            inbetween_eta: Annotated[float, Range(0, 1)] = 0.0,
            split: Literal["heldout", "val"] = "heldout", seed: Annotated[int, SEED] = 0,
            overwrite: bool = False,
            record: bool = False, record_into_package: bool = False, resume: bool = False) -> dict:
    """Score `vdm3d stylize` and its three baselines on held-out cases with ground truth.

    Args:
        out: run folder for results.json, table.md and strip.png (one case's frames; rows: ground truth,
            the job, the job before temporal fusion) with strip_style.png.
        procedural: held-out procedural cases (objects and rooms alternating).
        frames: frames per path.
        resolution: frame size in pixels.
        meshes: shared meshes (path[:texture] relative to --mesh-root); empty to skip.
        mesh_root: folder of the shared meshes.
        arc_frames: frames per arc (the job's --arc-frames).
        steps: sampler steps (the job's --steps).
        anchor_model: the job's --anchor-model (a model name, or the .json model file of a `vdm3d train` run).
        inbetween_model: the job's --inbetween-model (the same).
        guidance_scale: the job's --guidance-scale.
        keyframe_blend: the job's --keyframe-blend.
        fusion_radius: the job's --fusion-radius.
        fusion_tau: the job's --fusion-tau.
        noise_alpha: the job's --noise-alpha.
        inbetween_eta: the job's --inbetween-eta (the fresh-noise baseline's steps then add fresh noise).
        split: heldout (test seeds) or val (for choosing settings without touching the test seeds).
        seed: sampling seed.
        overwrite: replace an existing run folder.
        record: also write the means into both models' cards (``card.heldout["stylize"]``, or
            ``"val_stylize"`` for the validation split): the .json files of `vdm3d train` runs as given,
            a shipped model's card only with --record-into-package.
        record_into_package: let --record write into the cards shipped inside the installed package.
        resume: continue the interrupted evaluation in --out: its finished cases are loaded, not run again.
    """
    params = locals().copy()  # the arguments only, before the imports below join the locals (rerun compares them)
    from vdm3d.io.images import write_image
    from vdm3d.io.runs import RunFolder, atomic_write_json

    config = StylizeConfig(resolution=resolution, arc_frames=arc_frames, steps=steps, anchor_model=anchor_model,
                           inbetween_model=inbetween_model, guidance_scale=guidance_scale, keyframe_blend=keyframe_blend,
                           fusion_radius=fusion_radius, fusion_tau=fusion_tau, noise_alpha=noise_alpha,
                           inbetween_eta=inbetween_eta, seed=seed)
    cards = card_files((anchor_model, inbetween_model), record_into_package) if record else []
    cases = eval_cases(procedural, frames, resolution, meshes, mesh_root, split)  # after: a refusal costs nothing
    models = load_models(config)
    with RunFolder(out, config=params, seed=seed, overwrite=overwrite, resume=resume,
                   may_change=("record", "record_into_package")) as run:  # --record changes no number
        per_case = {}
        finished = CaseCheckpoints(run)  # each case's scores (and case 1's strip) as it finishes, for --resume
        say = StageLog()  # "[i/n] case" lines with an ETA
        for i, case in enumerate(cases, 1):
            t = time.time()
            saved = finished.load(i - 1, case.name)
            if saved is None:
                res = run_case(case, config, models)
                arrays = strip_frames(res.pop("_frames"), frames) if i == 1 else {}
                finished.save(i - 1, case.name, res, arrays)
            else:
                res, arrays = saved.result, saved.arrays
            if i == 1:  # the first case's frames are the strip
                write_image(run.path / "strip.png", arrays["strip"])
                write_image(run.path / "strip_style.png", arrays["style"])
            per_case[case.name] = res
            say(f"[{i}/{len(cases)}] {case.name}: " + ", ".join(f"{m} psnr={res[m]['psnr']:.2f} warp={res[m]['warp_err']:.4f}"
                                               for m in METHODS)
                + (f" {FROM_CHECKPOINT}" if saved else f" ({time.time() - t:.0f}s)"))
        names = list(METHODS) + ["ground-truth"]
        means = {n: {k: float(np.mean([c[n][k] for c in per_case.values()])) for k in METRICS
                     if k in next(iter(per_case.values()))[n]} for n in names}
        pairs = paired(per_case)
        text = table(means) + "\n\n" + paired_table(pairs)
        print(text)
        (run.path / "table.md").write_text(text + "\n")
        atomic_write_json(run.path / "results.json", {"cases": per_case, "means": means, "paired": pairs,
                                                      "frames": frames, "arcs": arcs(frames, arc_frames)})
        run.record(cases=[c.name for c in cases], means=means)
    if cards:
        record_in_cards(cards, means, len(cases), frames, steps, split)
    return means


def card_files(models: tuple[str, ...], into_package: bool) -> list[Path]:
    """The cards ``--record`` would write, checked before any evaluation: a `vdm3d train` run's .json model
    file as given, a shipped model's card only with ``into_package`` (see :mod:`vdm3d.models.tiny.record`)."""
    from vdm3d.models.tiny.record import card_path, checked_card

    return [checked_card(name, into_package) if name.endswith(".json") else card_path(name, None, into_package)
            for name in models]


def record_in_cards(cards: list[Path], means: dict, cases: int, frames: int, steps: int,
                    split: str = "heldout") -> None:
    """Write the evaluation means into the given model cards (``card.heldout["stylize"]``, or
    ``"val_stylize"`` for the validation split), each atomically."""
    from vdm3d.models.tiny.record import store

    flat = {"cases": cases, "frames": frames, "steps": steps, "split": split}
    for method, values in means.items():
        flat.update({f"{method}_{k}": round(v, 4) for k, v in values.items()})
    key = "stylize" if split == "heldout" else f"{split}_stylize"
    for path in cards:
        store(path, key, flat)


NOISES = ("fresh", "warped", "mixed")


def denoising_errors(denoise: Callable[[Tensor, Tensor], Tensor], x0: Float[Tensor, "B F C h w"],
                     warped: Float[Tensor, "B F C h w"], sigmas: tuple[float, ...],
                     generator: torch.Generator, alpha: float = 0.5) -> dict[float, dict[str, float]]:
    """Mean squared error of ``denoise(x0 + sigma * eps, sigma)`` against ``x0`` on the inner frames (the
    first and last frame, the keyframes, are left out), for fresh ``eps``, the flow-``warped`` noise, and
    the two ``mixed`` like the job (``alpha``), with the same ``x0`` and conditions. Lower with warped
    than with fresh noise means the denoiser gets information from noise that moves with the geometry
    (it can read each frame's noise off the keyframes); higher means it loses the independent looks
    at a surface that fresh noise gives every frame."""
    fresh = torch.randn(x0.shape, generator=generator)
    eps = {"fresh": fresh, "warped": warped,
           "mixed": (alpha * fresh + (1 - alpha) * warped) / (alpha ** 2 + (1 - alpha) ** 2) ** 0.5}
    out: dict[float, dict[str, float]] = {}
    with torch.no_grad():
        for s in sigmas:
            sigma = torch.full(x0.shape[:2], float(s))
            out[s] = {k: float(((denoise(x0 + s * e, sigma) - x0) ** 2)[:, 1:-1].mean())
                      for k, e in eps.items()}
    return out


def stylize_noise(model: str = "stylize_inbetween", checkpoint: Path | None = None,
                  objects: Annotated[int, Range(1)] = 16, rooms: Annotated[int, Range(0)] = 8,
                  sigmas: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0),
                  split: Literal["val", "heldout"] = "val", seed: Annotated[int, SEED] = 0,
                  out: Path | None = None,
                  overwrite: bool = False) -> dict:
    """Does the inbetweening model get information from flow-warped noise? Its denoising error on
    validation paths (8 frames, every condition given: keyframes, edges, the start keyframe warped
    into every frame, cameras) with fresh, warped and mixed noise at each noise level.

    Args:
        model: an embedded inbetweening model (`vdm3d models`).
        checkpoint: a training run folder (its ``checkpoints/state.safetensors``): score its EMA weights
            instead of the shipped ones (``model`` gives the architecture and VAE).
        objects: validation objects on orbit arcs.
        rooms: validation rooms on walks.
        sigmas: noise levels.
        split: val (for choosing settings) or heldout.
        seed: seed of the fresh noise and the condition draw.
        out: optional run folder for the numbers (table.md, and the errors in manifest.json).
        overwrite: replace ``out`` if it exists.
    """
    params = locals().copy()  # the arguments only, before the imports below join the locals (rerun compares them)
    from safetensors.torch import load_file

    from vdm3d.io.runs import RunFolder

    from vdm3d.models.tiny import WEIGHTS_DIR
    from vdm3d.models.tiny.backbone import TinyVideoBackbone
    from vdm3d.train.run import checkpoint_state, load_fine_tune_init
    from vdm3d.train.stylize import StylizeSetConfig, StylizeTaskConfig, StylizeTasks, load_or_build_stylize

    state_file = checkpoint_state(checkpoint, "train stylize") if checkpoint is not None else None  # running too
    # the run folder opens before the scoring, as the jobs' do: an --out that cannot be written is refused in
    # one sentence before the work, not after it
    with (RunFolder(out, config=params, seed=seed, overwrite=overwrite) if out is not None
          else contextlib.nullcontext()) as run:
        data = load_or_build_stylize(StylizeSetConfig(objects=objects, rooms=rooms, split=split))
        net, _, vae = load_fine_tune_init(WEIGHTS_DIR / f"{model}.json")
        if state_file is not None:
            state = load_file(str(state_file))
            net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ema.")})
        net.eval()
        backbone = TinyVideoBackbone(vae, net, resolution=data["rgb"].shape[-3:-1], frames=data["rgb"].shape[1])
        every = StylizeTaskConfig(slot_drop=0.0, warp_prob=1.0, fresh_noise_prob=0.0)
        x0, cond, (warped, _) = StylizeTasks(backbone, data, every).inbetween(np.random.default_rng(seed), "cpu",
                                                                              index=np.arange(len(data["rgb"])))
        errors = denoising_errors(lambda x, s: backbone.denoise(x, s, cond), x0, warped, sigmas,
                                  torch.Generator().manual_seed(seed))
        rows = ["| sigma | fresh | warped | mixed (alpha 0.5) | warped / fresh |", "|---|---|---|---|---|"]
        rows += [f"| {s:g} | {e['fresh']:.5f} | {e['warped']:.5f} | {e['mixed']:.5f} | "
                 f"{e['warped'] / e['fresh']:.3f} |" for s, e in errors.items()]
        text = (f"{model}{f' ({checkpoint})' if checkpoint else ''}: denoising error on the inner frames of "
                f"{len(data['rgb'])} {split} paths\n" + "\n".join(rows))
        print(text)
        result = {str(s): e for s, e in errors.items()}
        if run is not None:  # the numbers in a run folder, as every other evaluation keeps them
            (run.path / "table.md").write_text(text + "\n")
            run.record(result=result, paths=len(data["rgb"]), split=split)
        return result


COMMANDS = {"stylize": stylize, "stylize-noise": stylize_noise}
