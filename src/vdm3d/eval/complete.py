"""`vdm3d eval complete`: GuidedVD-3DGS and V3D's scene mode against plain 3DGS from the same sparse views.

Scenes (held-out views are never used for fitting, initialization or planning):

* **procedural rooms** from the held-out seed range (:data:`vdm3d.train.datasets.SEED_OFFSETS`,
  never seen by the embedded models in training): a 24-frame path through the room at 64 x 64,
  60 deg field of view (the embedded model's room framing), 3 training views, the held-out views
  every 8th frame of the path, exact ground truth; initial points from the training views' depth;
* **LLFF fern** (``../shared/data/llff_fern``): 3 training views (1, 10, 19), every 8th view held
  out as ``vdm3d fit`` does, initial points = the COLMAP points that two training views observe.

Methods, in one table: plain 3DGS (the baseline fit continued for as many steps as the
distillation, without generated views), ``complete`` without scene-grounding guidance,
``complete`` with a fixed left/right orbit instead of planned paths, ``complete`` (guidedvd) and
``v3d`` (``complete --method v3d``: clips between the training cameras from their reprojected
features, then the fit on photos + frames). All share the same baseline fit. Scores: PSNR, SSIM and
the held-out area left empty (alpha < 0.5); for ``v3d`` on the rooms also V3D's own measure, the
points pycolmap triangulates at the known cameras from the generated frames, from the exact frames
there and from the plain baseline's renders there, with the Chamfer distance to the exact frames' points
(:mod:`vdm3d.metrics.colmap_points`).

``--validation`` scores the views that are neither trained on nor held out instead of the held-out ones,
so settings can be chosen without reading a held-out score. ``vdm3d eval complete-frames`` asks what a
pseudo view can teach: at those validation views, the backbone's guided frames against the photos,
beside the fits' renders, the nearest training photo and the photo through the backbone's own VAE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch

from vdm3d.eval.checkpoints import FROM_CHECKPOINT, CaseCheckpoints
from vdm3d.io.progress import StageLog
from vdm3d.io.runs import RunFolder, atomic_write_json, check_writable
from vdm3d.options import SEED, Range, derived_seed

SEED_BASE = 1_000_000  # the held-out seed range of vdm3d.train.datasets
METHODS = ("plain", "no_guidance", "orbit", "complete", "v3d")


def write_room_case(root: str | Path, seed: int, resolution: int = 64, views: int = 24, step: float = 0.12,
                    fov_deg: float = 60.0, ssaa: int = 3) -> Path:
    """Render a held-out procedural room along a path into ``root`` (images, depth, transforms.json)."""
    from vdm3d.cameras.io_transforms import write_transforms_json
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.io.images import encode_image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    scene = make_room(SEED_BASE + seed)
    cams = room_path(scene, views, SEED_BASE + seed, width=resolution, height=resolution, fov_deg=fov_deg, step=step)
    b = render_buffers(scene, cams, ssaa=ssaa)
    names = []
    for j in range(len(cams)):
        (root / f"images/{j:03d}.png").write_bytes(encode_image(b.rgb[j]))
        np.save(root / f"depth/{j:03d}.npy", b.depth[j].numpy().astype(np.float32), allow_pickle=False)
        names.append(f"images/{j:03d}.png")
    frames = [{"depth_file_path": f"depth/{j:03d}.npy"} for j in range(len(cams))]
    write_transforms_json(root / "transforms.json", cams, names, extras={"frames": frames})
    return root


def room_truth(seed: int, resolution: int | None = None):
    """``render(cameras) -> [N, H, W, 3]``: exact renders of held-out room ``seed`` (for V3D's COLMAP measure)."""
    from vdm3d.data.procedural.rooms import make_room
    from vdm3d.geometry.mesh_render import render_buffers

    scene = make_room(SEED_BASE + seed)
    return lambda cameras: render_buffers(scene, cameras, ssaa=3).rgb.float()


def colmap_rows(generated: Any, baseline: Any, truth) -> dict[str, Any]:
    """V3D's geometry measure on the generated frames: points pycolmap triangulates (known poses) from them, from
    the exact frames at the same cameras and from the plain baseline's renders there; Chamfer to the exact ones."""
    from vdm3d.metrics.colmap_points import chamfer_points, triangulate_known_poses
    from vdm3d.recon.render import render_views

    cams = generated.cameras
    true_pts = triangulate_known_poses(truth(cams), cams)
    gen_pts = triangulate_known_poses(generated.images.float(), cams)
    base_pts = triangulate_known_poses(render_views(baseline, cams).images.float(), cams)
    return {"frames": len(generated), "points_truth": len(true_pts),
            "v3d": {"points": len(gen_pts), "chamfer": chamfer_points(gen_pts, true_pts)},
            "baseline_renders": {"points": len(base_pts), "chamfer": chamfer_points(base_pts, true_pts)}}


def validation_split(data: Path, config: Any) -> Any:
    """``config`` with the same training views and, as the views to score, its validation views
    (:func:`validation_views`) instead of the held-out ones."""
    from vdm3d.data.readers import Split, read_scene
    from vdm3d.jobs.complete import load_scene

    scene, _ = load_scene(config)
    n = len(read_scene(data, Split(test_every=0), downscale=config.downscale).train)
    val = validation_views(n, scene.train_indices, scene.test_indices)
    return dataclasses.replace(config, split=Split(train_views=tuple(scene.train_indices), test_views=val))


def evaluate_scene(data: Path, config: Any, backbone: Any, methods: tuple[str, ...] = METHODS,
                   log=print, v3d_model: Any = None, truth=None, validation: bool = False) -> dict[str, Any]:
    """Fit one baseline, then every method from it; returns ``{method: held-out means}`` and timings
    (and, for ``v3d`` with ``truth``, the COLMAP points of its frames under ``colmap``). With
    ``validation`` the scores are of the validation views instead (:func:`validation_split`)."""
    from vdm3d.jobs.complete import evaluate, hole_filler, initialize, load_scene, plan
    from vdm3d.jobs.complete_distill import distill
    from vdm3d.jobs.complete_generate import generate_clip
    from vdm3d.recon.trainer import fit_gaussians

    config = dataclasses.replace(config, data=data)
    if validation:
        config = validation_split(data, config)
    t0 = time.time()
    scene, depths = load_scene(config)
    init = initialize(scene, depths, config)
    baseline = fit_gaussians(scene.train, init, dataclasses.replace(config.baseline, seed=config.seed))
    out: dict[str, Any] = {"baseline": evaluate(baseline, scene)[0]["test"]["mean"],
                           "seconds": {"baseline": round(time.time() - t0, 1)}}
    log(f"  {data.name}: baseline {out['baseline']}")
    frames = (backbone.frames or 8) if backbone is not None else 8
    for method in methods:
        t = time.time()
        if method == "plain":
            fit = dataclasses.replace(config.distill.fit, steps=config.distill.steps, seed=config.seed)
            g = fit_gaussians(scene.train, baseline, fit)
        elif method == "v3d":
            from vdm3d.jobs.complete_v3d import choose_paths, fit_with_generated, generate, scene_depths

            ranges, median = scene_depths(baseline, scene)
            clips = choose_paths(baseline, scene, config, v3d_model.frames or 8)
            generated = generate(v3d_model, scene, clips, ranges, median, config, None)
            g = fit_with_generated(scene, baseline, generated, config)
            if truth is not None:
                out["colmap"] = colmap_rows(generated, baseline, truth)
                log(f"  {data.name}: colmap {out['colmap']}")
        else:
            cfg = dataclasses.replace(config, paths="orbit" if method == "orbit" else "planned")
            gen_cfg = dataclasses.replace(cfg.generation, guidance=method != "no_guidance")
            paths = plan(baseline, scene, cfg, frames)

            def generate(k, view, path, gen_cfg=gen_cfg):
                return generate_clip(backbone, baseline, scene.train.images[view], path, gen_cfg,
                                     seed=derived_seed(config.seed, 1000, k))[0]
            g, _ = distill(scene.train, baseline, paths, generate, cfg.distill, seed=config.seed,
                           add_points=hole_filler(baseline, cfg))
        out[method] = evaluate(g, scene)[0]["test"]["mean"]
        out["seconds"][method] = round(time.time() - t, 1)
        log(f"  {data.name}: {method} {out[method]} ({out['seconds'][method]} s)")
    return out


def _table(results: dict[str, dict[str, Any]], methods: tuple[str, ...]) -> str:
    lines = ["| scene | method | PSNR | SSIM | empty (alpha < 0.5) |", "|---|---|---|---|---|"]
    for scene, res in results.items():
        for m in ("baseline", *methods):
            r = res[m]
            lines.append(f"| {scene} | {m} | {r['psnr']:.2f} | {r['ssim']:.4f} | {100 * r['empty']:.2f} % |")
    colmap = {k: v["colmap"] for k, v in results.items() if "colmap" in v}
    if colmap:
        lines += ["", "| scene | frames | COLMAP points: exact frames | v3d frames (Chamfer to exact) | "
                      "plain baseline renders (Chamfer to exact) |", "|---|---|---|---|---|"]
        for scene, c in colmap.items():
            lines.append(f"| {scene} | {c['frames']} | {c['points_truth']} | {c['v3d']['points']} "
                         f"({c['v3d']['chamfer']:.3f}) | {c['baseline_renders']['points']} "
                         f"({c['baseline_renders']['chamfer']:.3f}) |")
    return "\n".join(lines)


def complete(rooms: Annotated[int, Range(0)] = 3, first_room: Annotated[int, Range(0)] = 0, fern: bool = True,
             fern_downscale: Annotated[int, Range(1)] = 4, data_root: Path = Path("../shared/data"),
             baseline_steps: Annotated[int, Range(1)] = 1500, distill_steps: Annotated[int, Range(0)] = 1500,
             generate_every: Annotated[int, Range(1)] = 250,
             sampler_steps: Annotated[int, Range(1)] = 25, methods: tuple[str, ...] = METHODS,
             colmap: bool = True, seed: Annotated[int, SEED] = 0,
             hybrid: Literal["auto", "on", "off"] = "auto", validation: bool = False,
             work: Path = Path("runs/eval/complete_scenes"), out: Path | None = None,
             overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """Held-out rooms and fern with 3 training views: plain fit vs the complete job and its ablations.

    Args:
        rooms: held-out procedural rooms (seeds first_room..first_room+rooms-1 of the held-out range).
        first_room: the first of them (to leave out rooms used to choose settings).
        fern: also score ``DATA_ROOT/llff_fern``.
        fern_downscale: divide fern's 504 x 378 images by this.
        data_root: folder holding ``llff_fern``.
        baseline_steps: steps of the baseline fit.
        distill_steps: steps after the baseline (plain fit: as many, without generated views).
        generate_every: steps between generated clips.
        sampler_steps: DDIM steps per clip.
        methods: which of plain, no_guidance, orbit, complete (guidedvd), v3d to run.
        colmap: for v3d on the rooms, also V3D's measure: pycolmap points (known poses) from the generated frames,
            the exact frames and the plain baseline's renders at the same cameras, Chamfer to the exact ones.
        seed: seed of every fit and sampler.
        hybrid: the planner's hybrid trajectory (``complete --plan.hybrid``) for the guided methods.
        validation: score the views that are neither training nor held out instead of the held-out ones
            (to choose settings without looking at the held-out views).
        work: where the room scenes are written.
        out: optional run folder for the numbers (manifest.json, results.json); each finished scene is
            checkpointed there.
        overwrite: replace ``out`` if it exists.
        resume: continue the interrupted evaluation in ``out``: its finished scenes are loaded, not run again.
    """
    from vdm3d.errors import ConfigError
    from vdm3d.jobs.complete import CompleteConfig, load_backbone

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"eval complete: --methods {' '.join(unknown)} is not one of {' '.join(METHODS)}; "
                          "pick from those.")
    if resume and out is None:
        raise ConfigError("--resume continues the interrupted evaluation in its run folder; give that folder as "
                          "--out (without --out nothing is checkpointed).")
    if fern and not (Path(data_root) / "llff_fern").is_dir():  # before the rooms: not after minutes of them
        raise ConfigError(f"{Path(data_root) / 'llff_fern'}: does not exist; give --data-root the folder that holds "
                          "llff_fern (LLFF's fern scene), or pass --no-fern to score the rooms only.")
    config = CompleteConfig(data=Path("."), seed=seed)
    config = dataclasses.replace(
        config, baseline=dataclasses.replace(config.baseline, steps=baseline_steps),
        distill=dataclasses.replace(config.distill, steps=distill_steps, generate_every=generate_every),
        generation=dataclasses.replace(config.generation, steps=sampler_steps),
        plan=dataclasses.replace(config.plan, hybrid=hybrid),
        v3d=dataclasses.replace(config.v3d, steps=sampler_steps))
    settings = {"baseline_steps": baseline_steps, "distill_steps": distill_steps, "generate_every": generate_every,
                "sampler_steps": sampler_steps, "fern_downscale": fern_downscale, "rooms": rooms,
                "first_room": first_room, "seed": seed, "methods": list(methods), "hybrid": hybrid,
                "validation": validation, "fern": fern, "colmap": colmap}
    if rooms:  # the rendered rooms go to --work: refused there before any work too
        check_writable(Path(work) / f"room_{first_room:03d}", "--work")
    # the run folder opens before the rooms are rendered and the models loaded, as the jobs' do: an --out
    # that cannot be written is refused in one sentence before the work, not after it
    with (RunFolder(out, config=settings, seed=seed, overwrite=overwrite, resume=resume) if out is not None
          else contextlib.nullcontext()) as run:
        guided = {"no_guidance", "orbit", "complete"} & set(methods)
        backbone = load_backbone(config.backbone) if guided else None
        v3d_model = None
        if "v3d" in methods:
            from vdm3d.jobs.complete_v3d import load_model

            v3d_model = load_model(config.v3d.model)
        scenes: list[tuple[str, Path, Any]] = []
        truths: dict[str, Any] = {}
        for r in range(first_room, first_room + rooms):
            case = Path(work) / f"room_{r:03d}"
            if not (case / "transforms.json").is_file():
                write_room_case(case, r)
            scenes.append((f"room {r}", case, config))
            if colmap and "v3d" in methods:
                truths[f"room {r}"] = room_truth(r)
        if fern:
            fern_dir = Path(data_root) / "llff_fern"
            scenes.append(("fern", fern_dir, dataclasses.replace(config, downscale=fern_downscale)))
        results: dict[str, Any] = {}
        t0 = time.time()
        say = StageLog()  # "[i/n] scene scored" lines with an ETA
        finished = CaseCheckpoints(run)  # with --out, each scene's scores as it finishes, for --resume
        for i, (name, path, cfg) in enumerate(scenes):
            print(f"{name} ({path})", flush=True)
            saved = finished.load(i, name)
            results[name] = saved.result if saved else finished.save(i, name, evaluate_scene(
                path, cfg, backbone, tuple(methods), v3d_model=v3d_model, truth=truths.get(name), validation=validation))
            say(f"[{i + 1}/{len(scenes)}] {name} scored" + (f" {FROM_CHECKPOINT}" if saved else ""))
        rooms_only = [results[n] for n, _, _ in scenes if n.startswith("room")]
        if rooms_only:
            results["rooms (mean)"] = {m: {k: float(np.mean([r[m][k] for r in rooms_only]))
                                           for k in ("psnr", "ssim", "empty")} for m in ("baseline", *methods)}
        table = _table({k: v for k, v in results.items()}, tuple(methods))
        print(table)
        summary = {"results": results, "table": table, "seconds": round(time.time() - t0, 1), "settings": settings}
        if run is not None:
            atomic_write_json(run.path / "results.json", summary)
    return summary


def validation_views(n: int, train: tuple[int, ...], test: tuple[int, ...]) -> tuple[int, ...]:
    """The views of a scene of ``n`` that are neither training nor held out: free to choose settings on."""
    return tuple(i for i in range(n) if i not in set(train) | set(test))


def score_frames(data: Path, config: Any, backbone: Any, baseline_steps: int, distill_steps: int,
                 max_views: int | None = None, log=print) -> dict[str, Any]:
    """Generated frames against real photos at the scene's validation views (:func:`validation_views`).

    For each validation camera: a guided clip from the nearest training view that ends exactly there
    (:func:`vdm3d.recon.planning.toward`, reach 1), its last frame scored against the photo; beside it
    the frozen baseline's render, the plain fit's render (the baseline continued ``distill_steps`` steps),
    the nearest training photo as it is, and the photo through the backbone's own VAE at the generation
    resolution (the most any frame of the backbone can score). Mean PSNR of each, over the views
    (``max_views`` evenly spaced ones when given)."""
    from vdm3d.jobs.complete import initialize, load_scene
    from vdm3d.jobs.complete_generate import _resize, generate_clip, generation_size
    from vdm3d.metrics.image import psnr
    from vdm3d.recon.planning import toward
    from vdm3d.recon.render import render_views
    from vdm3d.recon.trainer import fit_gaussians

    config = dataclasses.replace(config, data=data)
    scene, depths = load_scene(config)
    checked = validation_split(data, config)
    val = checked.split.test_views
    if max_views is not None and len(val) > max_views:
        val = tuple(val[int(k)] for k in np.round(np.linspace(0, len(val) - 1, max_views)))
    photos = load_scene(dataclasses.replace(checked, split=dataclasses.replace(checked.split, test_views=val)))
    photos = photos[0].test
    baseline = fit_gaussians(scene.train, initialize(scene, depths, config),
                             dataclasses.replace(config.baseline, steps=baseline_steps, seed=config.seed))
    plain = fit_gaussians(scene.train, baseline,
                          dataclasses.replace(config.distill.fit, steps=distill_steps, seed=config.seed))
    train = scene.train.cameras
    side = config.generation.max_side or max(backbone.resolution)
    w, h = generation_size(photos.width, photos.height, side, backbone.spatial_factor)
    rows: dict[str, list[float]] = {k: [] for k in ("frame", "baseline", "plain", "nearest_photo", "vae")}
    for j in range(len(photos)):
        cam, photo = photos.cameras[j:j + 1], photos.images[j].float()
        i = int((train.centers - cam.centers).norm(dim=-1).argmin())
        path = toward(train[i:i + 1], cam, 1.0, backbone.frames or 8)
        frames = generate_clip(backbone, baseline, scene.train.images[i], path, config.generation,
                               seed=derived_seed(config.seed, 1000, j))[0]
        with torch.no_grad():
            vae = backbone.decode(backbone.encode(_resize(photo[None], w, h)[None]))[0].clamp(0, 1).float()
        score = lambda x: float(psnr(x.float().clamp(0, 1)[None], photo[None]).mean())  # noqa: E731
        rows["frame"].append(score(frames.images[-1]))
        rows["baseline"].append(score(render_views(baseline, cam).images[0]))
        rows["plain"].append(score(render_views(plain, cam).images[0]))
        rows["nearest_photo"].append(score(scene.train.images[i]))
        rows["vae"].append(score(_resize(vae, photo.shape[1], photo.shape[0])[0]))
    out = {k: float(np.mean(v)) for k, v in rows.items()}
    out["views"] = list(val)
    log(f"  {data.name}: {out}")
    return out


def frames(room: Annotated[int | None, Range(0)] = None, fern_downscale: Annotated[int, Range(1)] = 8,
           data_root: Path = Path("../shared/data"), baseline_steps: Annotated[int, Range(1)] = 400,
           distill_steps: Annotated[int, Range(0)] = 300, sampler_steps: Annotated[int, Range(1)] = 10,
           seed: Annotated[int, SEED] = 0, work: Path = Path("runs/eval/complete_scenes")) -> dict[str, Any]:
    """How good are the backbone's frames? Guided frames vs renders vs photos at a scene's validation views.

    Args:
        room: score held-out procedural room ``room`` instead of fern.
        fern_downscale: divide fern's 504 x 378 images by this.
        data_root: folder holding ``llff_fern``.
        baseline_steps: steps of the baseline fit (guidance source, and start of the plain fit).
        distill_steps: further steps of the plain fit.
        sampler_steps: DDIM steps per clip.
        seed: seed of the fits and the sampler.
        work: where the room scenes are written.
    """
    from vdm3d.jobs.complete import CompleteConfig, load_backbone

    config = CompleteConfig(data=Path("."), seed=seed)
    config = dataclasses.replace(config,
                                 generation=dataclasses.replace(config.generation, steps=sampler_steps))
    if room is None:
        data = Path(data_root) / "llff_fern"
        config = dataclasses.replace(config, downscale=fern_downscale)
    else:
        data = Path(work) / f"room_{room:03d}"
        if not (data / "transforms.json").is_file():
            check_writable(data, "--work")  # one sentence, not a traceback from the first mkdir
            write_room_case(data, room)
    result = score_frames(data, config, load_backbone(config.backbone), baseline_steps, distill_steps)
    print("| views | guided frame | frozen baseline | plain fit | nearest photo | photo through the VAE |")
    print("|---|---|---|---|---|---|")
    cells = [f"{result[k]:.2f}" for k in ("frame", "baseline", "plain", "nearest_photo", "vae")]
    print(f"| {len(result['views'])} | " + " | ".join(cells) + " |")
    return result


COMMANDS = {"complete": complete, "complete-frames": frames}


__all__ = ["COMMANDS", "METHODS", "complete", "evaluate_scene", "frames", "score_frames", "validation_split",
           "validation_views", "write_room_case"]
