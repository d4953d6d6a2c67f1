"""`vdm3d eval ...`: quality against held-out ground truth, always beside a non-generative baseline.

Each evaluation harness lives in its own module under ``vdm3d.eval`` and exposes ``COMMANDS``, a dict
of subcommand name -> function (its typed parameters become the flags). This file only merges them.
"""

from __future__ import annotations

import importlib
import importlib.util

from vdm3d.cli.main import dispatch

HELP = "score jobs and backbones on held-out ground truth against non-generative baselines"
EXAMPLES = """examples:
  vdm3d eval object --procedural 5 --out runs/eval_object       # the object job vs two baselines
  vdm3d eval depth --manifest cases.yaml --out runs/eval_depth  # one run folder per case, on Ray
  vdm3d eval orbit --objects 10 --out runs/eval_orbit           # the tiny video model vs copying the input"""
#: where the files the examples read come from, by the subcommand whose page names them
INPUTS = {
    "cases.yaml": "cases.yaml is a YAML list of cases, each a mapping of this subcommand's options "
                  "(- {name: small, rooms: 2})",
    "runs/video/video.json": "runs/video/video.json is the model of `vdm3d train video --out runs/video`",
    "runs/train/orbit": "runs/train/orbit is the run of `vdm3d train orbit --out runs/train/orbit`",
    "runs/train/stylize_inbetween": "runs/train/stylize_inbetween is the run of `vdm3d train stylize --out "
                                    "runs/train/stylize_inbetween --task inbetween`",
    "../shared/data": "../shared/data holds the team's data beside a vdm3d checkout (meshes/, llff_fern/: LLFF's "
                      "fern scene); --mesh-root and --data-root name another place, and eval complete --no-fern "
                      "scores the rooms only",
}


#: the subcommands whose defaults read files (--data-root ../shared/data: LLFF's fern scene)
DEFAULT_INPUTS = {"complete": ("../shared/data",), "complete-frames": ("../shared/data",)}


def inputs_note(text: str, sub: str = "") -> str:
    """The ``inputs:`` line for the examples in ``text`` (of ``sub``'s page): where each file they read, or
    the subcommand reads by default, comes from."""
    said = [line for name, line in INPUTS.items() if name in text or name in DEFAULT_INPUTS.get(sub, ())]
    return f"inputs: {'; '.join(said)}.\n\n" if said else ""


#: the examples that end `vdm3d eval SUB --help`
SUB_EXAMPLES = {
    "object": """examples:
  vdm3d eval object --procedural 20 --out runs/eval_object       # the job vs input-only and the visual hull
  vdm3d eval object --procedural 20 --options samples-4 no-proxy --out runs/eval_object_options  # one row per option
  vdm3d eval object --source oracle --procedural 5 --out runs/eval_object_oracle  # exact orbit frames: the bound""",
    "object-orbit": """examples:
  vdm3d eval object-orbit --objects 20                            # orbit frames per azimuth (no maps) vs copying the input
  vdm3d eval object-orbit --objects 20 --proxy-maps --carry depth  # the frames as the job makes them (its defaults)
  vdm3d eval object-orbit --checkpoint runs/train/orbit           # a running fine-tune's last checkpoint
  vdm3d eval object-orbit --objects 20 --proxy-maps --carry exact-depth  # what the true depth would carry""",
    "orbit": """examples:
  vdm3d eval orbit --objects 10 --out runs/eval_orbit             # the tiny video model vs copying the input
  vdm3d eval orbit --model runs/video/video.json --steps 10       # a `vdm3d train video` run's model""",
    "warp": """examples:
  vdm3d eval warp --rooms 10                                      # hole pixels vs OpenCV Telea inpainting
  vdm3d eval warp --model runs/video/video.json --out runs/eval_warp""",
    "depth": """examples:
  vdm3d eval depth --rooms 10                                     # AbsRel vs a constant depth
  vdm3d eval depth --manifest cases.yaml --out runs/eval_depth    # one run folder per case, on Ray""",
    "explore": """examples:
  vdm3d eval explore --rooms 1 --frames 200 --fit-steps 30        # the job vs cache + warp + Telea, no cache, noise
  vdm3d eval explore --split val --rooms 3 --frames 100 --fit-steps 30  # validation rooms, to choose settings""",
    "complete": """examples:
  vdm3d eval complete --rooms 5                                   # plain fit vs the job and its ablations
  vdm3d eval complete --rooms 0 --fern-downscale 8 --baseline-steps 400  # fern only, smaller and shorter""",
    "complete-frames": """examples:
  vdm3d eval complete-frames                                      # the model's frames vs renders vs photos (fern)
  vdm3d eval complete-frames --room 0                             # the same on a held-out room""",
    "stylize": """examples:
  vdm3d eval stylize --procedural 10 --frames 24 --out runs/eval_stylize  # the job vs its baselines and ablations
  vdm3d eval stylize --split val --procedural 8 --out runs/eval_stylize_val  # validation cases, to choose settings""",
    "stylize-noise": """examples:
  vdm3d eval stylize-noise                                        # the shipped stylize_inbetween
  vdm3d eval stylize-noise --checkpoint runs/train/stylize_inbetween  # the EMA weights of a training run""",
}
HARNESSES = ("vdm3d.eval.object", "vdm3d.eval.backbones", "vdm3d.eval.scenes", "vdm3d.eval.explore",
             "vdm3d.eval.complete", "vdm3d.eval.stylize")


def commands() -> dict:
    out: dict = {}
    for name in HARNESSES:
        if importlib.util.find_spec(name) is not None:
            out.update(importlib.import_module(name).COMMANDS)
    return out


MANIFEST_NOTE = ("vdm3d eval SUB --manifest CASES.yaml|.jsonl [flags for every case] runs each case of a batch "
                 "manifest as its own `vdm3d eval SUB` run folder under --out (on Ray; --no-ray, --address, "
                 "--num-cpus, --cpus-per-case as in vdm3d batch); a rerun skips finished cases. --device cuda "
                 "runs the hub backbones an evaluation loads on the GPU, as the jobs' --device does")


def main(argv, prog: str = "vdm3d eval"):
    from vdm3d.batch.evals import is_batch_manifest, split_batch_flags

    from vdm3d.cli.config import pop_device_flag
    from vdm3d.models import device as devices

    argv, device = pop_device_flag(argv)  # where the hub backbones run (checked before any work)
    if device is not None and not ("-h" in argv or "--help" in argv):
        devices.configure(device)
    batch, rest = split_batch_flags(argv)
    manifest = batch.get("--manifest")
    if isinstance(manifest, str) and is_batch_manifest(manifest) and rest and not rest[0].startswith("-"):
        return run_manifest(rest[0], manifest, batch, [*rest[1:], *(["--device", device] if device else [])])
    # the manifest note ends every eval --help (the subcommands' too): --manifest is taken here, not by them
    pages = {"": EXAMPLES, **SUB_EXAMPLES}
    return dispatch(commands(), argv, prog, description=HELP,
                    examples={sub: f"{MANIFEST_NOTE}.\n\n{inputs_note(text, sub)}{text}" for sub, text in pages.items()})


def run_manifest(sub: str, manifest: str, batch: dict, shared: list[str]) -> int:
    """Every case of ``manifest`` as a ``vdm3d eval SUB`` batch case; a table of statuses and scores."""
    import sys
    from pathlib import Path

    from vdm3d.batch.evals import eval_cases, numbers_table
    from vdm3d.batch.runner import (check_address, check_batch_out, print_case, run_and_summarize,
                                     summary_table)
    from vdm3d.errors import ConfigError
    from vdm3d.io.runs import atomic_write_json

    if sub not in commands():
        raise ConfigError(f"vdm3d eval {sub!r} is unknown; choose one of: {', '.join(commands())}.")
    out = Path(str(batch.get("--out") or f"runs/eval_{sub}_batch"))
    check_batch_out(out)  # before any case runs: a file in the way was a traceback
    if not batch.get("--no-ray"):
        check_address(batch.get("--address"))  # before the header line, as `vdm3d batch` does
    cpus = str(batch.get("--cpus-per-case") or "1")
    if not cpus.isdigit() or int(cpus) < 1:
        raise ConfigError(f"--cpus-per-case is {cpus!r}; give a whole number, 1 or more.")
    num_cpus = batch.get("--num-cpus")
    cases = eval_cases(sub, manifest, out, shared)
    print(f"eval {sub}: {len(cases)} cases from {manifest} -> {out}/", flush=True)

    results = run_and_summarize(cases, out / "logs", out / "batch.json", manifest, use_ray=not batch.get("--no-ray"),
                                address=batch.get("--address"), cpus_per_case=int(cpus), report=print_case,
                                num_cpus=int(num_cpus) if isinstance(num_cpus, str) else None,
                                again=f"the same `vdm3d eval {sub} --manifest` command")
    scores_text, scores = numbers_table(results)
    atomic_write_json(out / "scores.json", scores)
    print(summary_table(results))
    if scores_text:
        print(f"\n{scores_text}")
    sys.stdout.flush()
    return 1 if any(r.status == "failed" for r in results) else 0
