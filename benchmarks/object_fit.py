"""The object demo's stages with the tiled ``torch`` renderer (before) and the default compiled one (after).

Runs ``vdm3d object`` on the bundled Spot render (the ``make demo`` job) in a fresh process per
backend and round, with the same thread count, and times each stage by wrapping the job's stage
functions: CPU-seconds of the process (fair on a busy machine) and wall-clock. The fitting stage is
also broken down per step as in ``benchmarks/fit.py`` (render, loss terms, backward, optimizer,
densification, the rest of the loop). "before" routes every
render of the job (fitting, refinement, mesh extraction) through the tiled torch backend, as
``backend="auto"`` did before the compiled one existed; "after" is today's default.

``--before-src`` runs "before" on another source tree (the ``src`` folder of an earlier commit,
unpacked with ``git archive``), so the reference also keeps that commit's losses and optimizer:
the whole fitting step as it was, not just its renderer, measured in the same run.

    .venv/bin/python benchmarks/object_fit.py --rounds 2
    mkdir -p /tmp/base && git archive 8f743be src | tar -x -C /tmp/base
    .venv/bin/python benchmarks/object_fit.py --rounds 2 --before-src /tmp/base/src
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPOT = ROOT / "src" / "vdm3d" / "assets" / "spot.png"
STAGES = ("generate_orbit", "carve", "fit", "extract_mesh", "export")
PARTS = ("render", "loss", "backward", "optimizer", "densify", "other")


def worker(backend: str, threads: int, out: Path) -> dict:
    import importlib

    from fit import patch_step_timers

    from vdm3d import threads as vthreads
    from vdm3d.jobs import object as job

    render_module = importlib.import_module("vdm3d.splat.render")  # the module; vdm3d.splat.render is the function

    vthreads.set_threads(threads)
    if backend == "torch":  # what "auto" picked on the CPU before the compiled backends
        render_module.numba_backend = render_module.torch_backend
        if hasattr(render_module, "cpp_backend"):
            render_module.cpp_backend = render_module.torch_backend
    cpu, wall = {}, {}
    step_cpu, step_wall = collections.defaultdict(float), collections.defaultdict(float)
    patch_step_timers(step_cpu, step_wall)  # only the fitting stage runs the trainer's loop
    for name in STAGES:
        fn = getattr(job, name)

        def wrapped(*args, _fn=fn, _name=name, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return _fn(*args, **kwargs)
            finally:
                wall[_name] = wall.get(_name, 0.0) + time.perf_counter() - t0
                cpu[_name] = cpu.get(_name, 0.0) + time.process_time() - c0
        setattr(job, name, wrapped)
    t0, c0 = time.perf_counter(), time.process_time()
    job.run_object(job.ObjectConfig(image=SPOT, out=out, overwrite=True), progress=None)
    step_cpu["other"] = cpu["fit"] - sum(step_cpu.values())
    return {"cpu": cpu, "wall": wall, "total_cpu": time.process_time() - c0, "total_wall": time.perf_counter() - t0,
            "fit_parts": dict(step_cpu), "fit_steps": job.ObjectConfig(image=SPOT).fit_steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--before-src", type=Path, default=None,
                   help="source tree (a src folder) for the 'before' runs (default: this one)")
    p.add_argument("--worker", metavar="BACKEND", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads, args.out)))
        return
    runs: dict[str, list[dict]] = {"torch": [], "default": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for backend in (("torch", "default") if r % 2 == 0 else ("default", "torch")):
                cmd = [sys.executable, __file__, "--worker", backend, "--threads", str(args.threads),
                       "--out", str(Path(tmp) / backend)]
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                if backend == "torch" and args.before_src:
                    env["PYTHONPATH"] = os.pathsep.join([str(args.before_src.resolve()), env.get("PYTHONPATH", "")])
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    sys.exit(f"{backend}: {res.stderr.strip()[-500:]}")
                runs[backend].append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(f"  round {r + 1} {backend}: fit {runs[backend][-1]['cpu']['fit']:.1f} CPU-s", file=sys.stderr,
                      flush=True)

    def med(backend, key, stage=None):
        vals = [(r[key] if stage is None else r[key].get(stage, 0.0)) for r in runs[backend]]
        return statistics.median(vals)

    before = f"source {args.before_src}" if args.before_src else "this source"
    print(f"object demo (spot.png, embedded backbone), threads={args.threads}, median of {args.rounds} rounds; "
          f"CPU-s (wall s); before: tiled torch renderer, {before}")
    print("| stage | torch (before) | default (after) | CPU ratio before/after |")
    print("|---|---|---|---|")
    for stage in STAGES + ("total",):
        key = "total_cpu" if stage == "total" else "cpu"
        wkey = "total_wall" if stage == "total" else "wall"
        st = None if stage == "total" else stage
        b, a = med("torch", key, st), med("default", key, st)
        print(f"| {stage} | {b:.1f} ({med('torch', wkey, st):.1f}) | {a:.1f} ({med('default', wkey, st):.1f}) | "
              f"{b / a:.1f}x |")
    steps = runs["default"][0]["fit_steps"]
    print(f"\nthe fitting stage per step ({steps} steps), CPU ms, median of {args.rounds} rounds")
    print("| part | torch (before) | default (after) | ratio |\n|---|---|---|---|")
    for part in PARTS:
        b, a = (statistics.median(r["fit_parts"].get(part, 0.0) for r in runs[k]) / steps * 1e3 for k in ("torch", "default"))
        print(f"| {part} | {b:.1f} | {a:.1f} | {b / a:.1f}x |" if a > 0 else f"| {part} | {b:.1f} | {a:.1f} | |")


if __name__ == "__main__":
    main()
