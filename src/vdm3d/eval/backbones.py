"""`vdm3d eval orbit|warp|depth`: the tiny backbones on held-out procedural worlds vs baselines.

Every number is measured on seeds from the held-out range (:data:`vdm3d.train.datasets.SEED_OFFSETS`),
which training never touches, against exact renders:

* ``orbit`` (SV3D task): from one view of an object, generate 8 views at azimuth offsets
  40, 80, ..., 320 deg (same elevation); mean PSNR against the exact renders, beside the
  copy-the-input-view baseline and the VAE's reconstruction ceiling.
* ``warp`` (ViewCrafter/WorldWarp task): the first frame of a room path forward-warped into the
  next 7 frames; the model fills the holes (valid pixels are kept from the warp). PSNR over the hole
  pixels only, beside OpenCV's Telea inpainting of the same warped frames.
* ``depth``: AbsRel after per-image median scaling on held-out room frames, beside a constant depth.

``--split val`` scores the validation seeds instead (used to choose sampler settings, so that the
held-out numbers are not tuned on). Sampling: deterministic Euler on EDM sigmas (:mod:`vdm3d.diffusion.samplers`), a fixed generator.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.diffusion.guiders import CFG
from vdm3d.diffusion.samplers import sample
from vdm3d.diffusion.schedules import EdmSchedule
from vdm3d.errors import ConfigError, InputError
from vdm3d.io.progress import StepProgress
from vdm3d.io.runs import RunFolder
from vdm3d.metrics.image import psnr
from vdm3d.options import SEED, Range
from vdm3d.protocols import Conditioning
from vdm3d.train.datasets import ObjectSetConfig, RoomSetConfig, Split, load_or_build
from vdm3d.train.video import ORBIT_STRIDE


def _model_file(model: str, weights_dir: Path | None) -> tuple[str, Path | None]:
    """``--model`` as the name and folder of its model file: a model's name (in ``--weights-dir``, else
    shipped), or the ``NAME.json`` model file a `vdm3d train` run wrote, as the jobs take it. A wrong
    one is refused naming it as given."""
    from vdm3d.models.tiny import WEIGHTS_DIR, available

    if model.endswith(".json"):
        path = Path(model)
        if weights_dir is not None:
            raise ConfigError(f"--model {model} is a model file, which names its own folder, so --weights-dir "
                              f"{weights_dir} has nothing to add; drop --weights-dir, or pass --model {path.stem} "
                              "--weights-dir DIR.")
        if not path.is_file():
            raise InputError(f"--model {model}: the model file does not exist; pass a model name from `vdm3d "
                             "models list` or the .json model file that a `vdm3d train` run wrote.")
        return path.stem, path.parent
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    if not (folder / f"{model}.json").is_file():
        names = ", ".join(available(folder)) or "none"
        where = f"in --weights-dir {weights_dir}" if weights_dir is not None else "shipped"
        raise InputError(f"--model {model}: no tiny model of that name is {where}; choose one of: {names}, or "
                         "pass the .json model file that a `vdm3d train` run wrote.")
    return model, weights_dir


def _load(name: str, weights_dir: Path | None):
    from vdm3d.models.tiny import load_tiny

    return load_tiny(name, weights_dir=weights_dir)


def generate(backbone, cond: Conditioning, batch: int, frames: int, steps: int, cfg_scale: float,
             seed: int, sigma_max: float = 80.0) -> torch.Tensor:
    """Sample ``[B, F, H, W, 3]`` frames from a backbone with a deterministic Euler EDM sampler."""
    h, w = backbone.resolution
    f = backbone.spatial_factor
    shape = (batch, frames, backbone.latent_channels, h // f, w // f)
    gen = torch.Generator().manual_seed(seed)
    guider = CFG(scale=cfg_scale) if cfg_scale != 1.0 else None
    with torch.no_grad():
        z = sample(backbone, EdmSchedule(steps, 0.002, sigma_max, 7.0).sigmas(), cond=cond, shape=shape,
                   generator=gen, guider=guider)
        return backbone.decode(z)


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{title}", f"| {'method':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {a:<{width}} | {b} |" for a, b in rows]
    return "\n".join(lines)


def _check_record(record: bool, model: str, weights_dir: Path | None, into_package: bool) -> None:
    if record:
        from vdm3d.models.tiny.record import card_path

        card_path(model, weights_dir, into_package)  # raises ConfigError when the card would be the package's


def _run_folder(out: Path | None, config: Any, seed: int | None, overwrite: bool):
    """The run folder for the numbers, opened before the evaluation (as the jobs open theirs) so that an
    ``--out`` that cannot be written (a file in the way, a read-only folder, a folder that is not a run's)
    is refused in one sentence before minutes of sampling, not after them; a do-nothing context without
    ``--out``."""
    if out is None:
        return contextlib.nullcontext()
    return RunFolder(out, config=config, seed=seed, overwrite=overwrite)


def _save(run: RunFolder | None, result: dict[str, Any], record: bool = False, model: str = "",
          weights_dir: Path | None = None, record_into_package: bool = False) -> None:
    if record:  # the numbers into the model card (card["heldout"][task]), never the package's by surprise
        from vdm3d.models.tiny.record import record_result

        key = result["task"] + ("" if result.get("steps", 25) == 25 else f"_{result['steps']}steps")
        key = key if result.get("split", "heldout") == "heldout" else f"{result['split']}_{key}"
        record_result(model, key, result, weights_dir, record_into_package)
    if run is not None:
        run.record(result=result)


def orbit(model: str = "video", objects: Annotated[int, Range(1)] = 50, batch: Annotated[int, Range(1)] = 10,
          steps: Annotated[int, Range(1)] = 25, cfg_scale: Annotated[float, Range(0)] = 1.0,
          seed: Annotated[int, SEED] = 0, split: Split = "heldout", weights_dir: Path | None = None,
          out: Path | None = None, overwrite: bool = False, record: bool = False,
          record_into_package: bool = False) -> dict[str, Any]:
    """Orbit generation from one view on held-out objects: PSNR vs copying the input view.

    Args:
        model: the tiny video model: a name from `vdm3d models list`, or the ``.json`` model file of a
            `vdm3d train` run.
        objects: held-out objects (8 target views each).
        batch: objects per sampling batch.
        steps: Euler EDM steps.
        cfg_scale: classifier-free guidance scale (1 = conditional only).
        seed: generator seed of the sampler.
        split: ``heldout`` (the test seeds) or ``val`` (validation seeds, for choosing settings).
        weights_dir: folder with the model files (default: the shipped weights).
        out: optional run folder for the numbers (manifest.json).
        overwrite: replace ``out`` if it exists.
        record: also write the numbers into the model card (``<model>.json``, ``card.heldout[task]``,
            ``task_<n>steps`` for a step count other than 25). The card is the one in ``weights_dir``;
            the shipped card changes only with ``record_into_package``.
        record_into_package: let ``record`` write into the card shipped inside the installed package.
    """
    config = dict(locals())
    name, folder = _model_file(model, weights_dir)
    _check_record(record, name, folder, record_into_package)  # before minutes of evaluation
    with _run_folder(out, config, seed, overwrite) as run:  # before the work: a bad --out costs nothing
        bb = _load(name, folder)
        data = load_or_build(ObjectSetConfig(count=objects, split=split))
        rgb = torch.from_numpy(data["rgb"]).float() / 255  # [N, V, H, W, 3]
        c2w = torch.from_numpy(data["c2w"]).float()
        K = torch.from_numpy(data["K"]).float()
        n, v = rgb.shape[:2]
        frames = 8
        idx = ORBIT_STRIDE * (1 + torch.arange(frames))
        res = rgb.shape[-2]
        gen_psnr, copy_psnr, vae_psnr = [], [], []
        t0 = time.time()
        bar = StepProgress(n, "generate", unit="case")  # a bar on a terminal, lines with an ETA in logs
        for s in range(0, n, batch):
            sl = slice(s, min(n, s + batch))
            b = sl.stop - sl.start
            target = rgb[sl][:, idx]
            cams = Cameras(K.expand(b, frames, 3, 3), c2w[sl][:, idx], res, res)
            cond = Conditioning(reference=rgb[sl, 0], cameras=cams, extras={"reference_c2w": c2w[sl, 0]})
            out_frames = generate(bb, cond, b, frames, steps, cfg_scale, seed + s)
            gen_psnr.append(psnr(out_frames, target).flatten())
            copy_psnr.append(psnr(rgb[sl, 0][:, None].expand_as(target), target).flatten())
            with torch.no_grad():
                vae_psnr.append(psnr(bb.decode(bb.encode(target)), target).flatten())
            bar.update(b)
        bar.close()
        g, c, ceil = (torch.cat(x).mean().item() for x in (gen_psnr, copy_psnr, vae_psnr))
        result = {"task": "orbit", "objects": n, "views_per_object": frames, "psnr_model_db": round(g, 3),
                  "psnr_copy_input_db": round(c, 3), "gain_db": round(g - c, 3),
                  "psnr_vae_ceiling_db": round(ceil, 3),
                  "steps": steps, "cfg_scale": cfg_scale, "seed": seed, "split": split,
                  "seconds": round(time.time() - t0, 1)}
        print(_table(f"orbit, {n} {split} objects x {frames} views, 64x64 (mean PSNR, dB)",
                     [(f"tiny {model} ({steps} Euler steps, cfg {cfg_scale})", f"{g:.2f}"),
                      ("copy the input view", f"{c:.2f}"), ("gain", f"{g - c:+.2f}"),
                      ("VAE reconstruction (ceiling)", f"{ceil:.2f}")]))
        _save(run, result, record, name, folder, record_into_package)
        return result


def telea(warped: np.ndarray, valid: np.ndarray, radius: int = 3) -> np.ndarray:
    """OpenCV Telea inpainting of the invalid pixels of ``uint8 [H, W, 3]``."""
    import cv2

    return cv2.inpaint(warped, (~valid).astype(np.uint8), radius, cv2.INPAINT_TELEA)


def warp(model: str = "video", rooms: Annotated[int, Range(1)] = 30, batch: Annotated[int, Range(1)] = 8,
         steps: Annotated[int, Range(1)] = 25, cfg_scale: Annotated[float, Range(0)] = 1.0,
         seed: Annotated[int, SEED] = 0, split: Split = "heldout", weights_dir: Path | None = None,
         out: Path | None = None, overwrite: bool = False, record: bool = False,
         record_into_package: bool = False) -> dict[str, Any]:
    """Warp-and-refine on held-out rooms: PSNR on hole pixels vs Telea inpainting.

    Args:
        model: the tiny video model: a name from `vdm3d models list`, or the ``.json`` model file of a
            `vdm3d train` run.
        rooms: held-out rooms (two 8-frame paths each; frames 1-7 are scored).
        batch: paths per sampling batch.
        steps: Euler EDM steps.
        cfg_scale: classifier-free guidance scale (1 = conditional only).
        seed: generator seed of the sampler.
        split: ``heldout`` (the test seeds) or ``val`` (validation seeds, for choosing settings).
        weights_dir: folder with the model files (default: the shipped weights).
        out: optional run folder for the numbers.
        overwrite: replace ``out`` if it exists.
        record: also write the numbers into the model card (``<model>.json``, ``card.heldout[task]``,
            ``task_<n>steps`` for a step count other than 25). The card is the one in ``weights_dir``;
            the shipped card changes only with ``record_into_package``.
        record_into_package: let ``record`` write into the card shipped inside the installed package.
    """
    config = dict(locals())
    name, folder = _model_file(model, weights_dir)
    _check_record(record, name, folder, record_into_package)  # before minutes of evaluation
    with _run_folder(out, config, seed, overwrite) as run:  # before the work: a bad --out costs nothing
        bb = _load(name, folder)
        data = load_or_build(RoomSetConfig(count=rooms, split=split))
        rgb = torch.from_numpy(data["rgb"]).float() / 255  # [N, F, H, W, 3]
        warped_u8, valid_np = data["warped"], data["valid"]
        c2w = torch.from_numpy(data["c2w"]).float()
        K = torch.from_numpy(data["K"]).float()
        n, frames, res = rgb.shape[0], rgb.shape[1], rgb.shape[2]
        model_sq, telea_sq, counts, full_model, full_telea = [], [], [], [], []
        t0 = time.time()
        bar = StepProgress(n, "generate", unit="case")  # a bar on a terminal, lines with an ETA in logs
        for s in range(0, n, batch):
            sl = slice(s, min(n, s + batch))
            b = sl.stop - sl.start
            warped = torch.from_numpy(warped_u8[sl]).float() / 255
            valid = torch.from_numpy(valid_np[sl]).float()
            maps = torch.cat([warped, valid[..., None], torch.zeros_like(valid[..., None])], -1)
            cams = Cameras(K.expand(b, frames, 3, 3), c2w[sl], res, res)
            cond = Conditioning(reference=rgb[sl, 0], cameras=cams, maps=maps,
                                extras={"reference_c2w": c2w[sl, 0]})
            gen = generate(bb, cond, b, frames, steps, cfg_scale, seed + s)
            composite = torch.where(valid[..., None] > 0, warped, gen)
            inpainted = torch.from_numpy(np.stack([[telea(warped_u8[i, f], valid_np[i, f]) for f in range(frames)]
                                                   for i in range(sl.start, sl.stop)])).float() / 255
            hole = 1 - valid
            target = rgb[sl]
            for pred, acc, full in ((composite, model_sq, full_model), (inpainted, telea_sq, full_telea)):
                se = ((pred - target) ** 2).mean(-1) * hole  # [b, F, H, W]
                acc.append(se[:, 1:].sum().item())
                full.append(psnr(pred[:, 1:], target[:, 1:]).flatten())
            counts.append(hole[:, 1:].sum().item())
            bar.update(b)
        bar.close()
        holes = sum(counts)
        p_model = 10 * np.log10(holes / max(sum(model_sq), 1e-12))
        p_telea = 10 * np.log10(holes / max(sum(telea_sq), 1e-12))
        f_model, f_telea = torch.cat(full_model).mean().item(), torch.cat(full_telea).mean().item()
        result = {"task": "warp", "paths": n, "frames_scored": n * (frames - 1), "hole_fraction":
                  round(holes / (n * (frames - 1) * res * res), 4), "psnr_holes_model_db": round(float(p_model), 3),
                  "psnr_holes_telea_db": round(float(p_telea), 3), "gain_db": round(float(p_model - p_telea), 3),
                  "psnr_full_model_db": round(f_model, 3), "psnr_full_telea_db": round(f_telea, 3),
                  "steps": steps, "cfg_scale": cfg_scale, "seed": seed, "split": split,
                  "seconds": round(time.time() - t0, 1)}
        print(_table(f"warp-and-refine, {n} {split} room paths x {frames - 1} frames, 64x64 "
                     f"(PSNR on hole pixels, {100 * result['hole_fraction']:.1f}% of pixels, dB)",
                     [(f"tiny {model} ({steps} Euler steps, cfg {cfg_scale})", f"{p_model:.2f}"),
                      ("OpenCV Telea inpainting", f"{p_telea:.2f}"), ("gain", f"{p_model - p_telea:+.2f}"),
                      ("full-frame PSNR, model / Telea", f"{f_model:.2f} / {f_telea:.2f}")]))
        _save(run, result, record, name, folder, record_into_package)
        return result


def depth(model: str = "depth", rooms: Annotated[int, Range(1)] = 30, weights_dir: Path | None = None,
          out: Path | None = None,
          overwrite: bool = False, record: bool = False,
          record_into_package: bool = False) -> dict[str, Any]:
    """Monocular depth on held-out room frames: AbsRel after per-image median scaling.

    Args:
        model: the tiny depth model: a name from `vdm3d models list`, or the ``.json`` model file of a
            `vdm3d train` run.
        rooms: held-out rooms (all frames of two paths each).
        weights_dir: folder with the model files (default: the shipped weights).
        out: optional run folder for the numbers.
        overwrite: replace ``out`` if it exists.
        record: also write the numbers into the model card (``<model>.json``, ``card.heldout[task]``,
            ``task_<n>steps`` for a step count other than 25). The card is the one in ``weights_dir``;
            the shipped card changes only with ``record_into_package``.
        record_into_package: let ``record`` write into the card shipped inside the installed package.
    """
    config = dict(locals())  # the arguments only, before any import joins the locals (rerun compares them)
    from vdm3d.train.run import depth_metrics

    name, folder = _model_file(model, weights_dir)
    _check_record(record, name, folder, record_into_package)  # before minutes of evaluation
    with _run_folder(out, config, None, overwrite) as run:  # before the work: a bad --out costs nothing
        net = _load(name, folder)
        data = load_or_build(RoomSetConfig(count=rooms, split="heldout"))
        m = depth_metrics(net, data)
        result = {"task": "depth", "rooms": rooms, **m}
        print(_table(f"depth, {m['images']} held-out room frames, 64x64 (AbsRel after median scaling)",
                     [(f"tiny {model}", f"{m['abs_rel']:.4f}"),
                      ("constant depth", f"{m['abs_rel_constant_baseline']:.4f}")]))
        _save(run, result, record, name, folder, record_into_package)
        return result


COMMANDS = {"orbit": orbit, "warp": warp, "depth": depth}
