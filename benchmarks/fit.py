"""Where a fitting step spends its time: render, loss (SSIM included), backward, optimizer, densification.

Runs the real loop (:func:`vdm3d.recon.trainer.fit_gaussians`) on LLFF fern with the ``vdm3d fit``
defaults (random 128-pixel patches, SH degree 1, densification from step 200 every 100 steps),
for ``--steps`` steps, once per renderer backend, each in a fresh subprocess with the same thread
count. The stages are timed by wrapping the functions the loop calls (``render``, the loss terms,
``Tensor.backward``, ``Adam.step``/``zero_grad``, the densification policy's ``accumulate``/``step``);
what is left (view selection, cropping, the progress PSNR) is "other". Times are CPU-seconds of the
process (``time.process_time``, so waiting for a busy machine is not counted) and wall-clock.

    .venv/bin/python benchmarks/fit.py                        # torch (before) vs cpp (after), 300 steps
    mkdir -p /tmp/base && git archive 8f743be src | tar -x -C /tmp/base
    .venv/bin/python benchmarks/fit.py --before-src /tmp/base/src   # "before" on that commit's source
    .venv/bin/python benchmarks/fit.py --steps 100 --backends numba cpp --threads 2
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FERN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llff_fern"
STAGES = ("render", "loss", "backward", "optimizer", "densify", "other")


def patch_step_timers(cpu: dict, wall: dict) -> None:
    """Time the parts of a fitting step by wrapping what :func:`vdm3d.recon.trainer.fit_gaussians`
    calls (for the rest of the process): ``render``, the loss terms, ``Tensor.backward``, Adam's
    ``step``/``zero_grad`` (torch's and :mod:`vdm3d.recon.adam`'s) and the densification policy;
    seconds add up in ``cpu`` and ``wall``."""
    import torch

    from vdm3d.recon import losses, perceptual, trainer
    from vdm3d.splat.strategy import DensifyPolicy

    def timed(stage, fn):
        def wrapper(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall[stage] += time.perf_counter() - t0
                cpu[stage] += time.process_time() - c0
        return wrapper

    patches = [(trainer, "render", "render"), (perceptual, "ms_ssim_loss", "loss")]
    patches += [(losses, name, "loss") for name in ("l1_loss", "dssim_loss", "ms_ssim_loss", "depth_loss",
                                                      "alpha_loss", "opacity_loss")]
    patches += [(torch.Tensor, "backward", "backward"), (torch.optim.Adam, "step", "optimizer"),
                (torch.optim.Adam, "zero_grad", "optimizer"), (DensifyPolicy, "accumulate", "densify"),
                (DensifyPolicy, "step", "densify")]
    try:  # the loop's own Adam (an earlier source, run with --before-src, has only torch's)
        from vdm3d.recon.adam import Adam
        patches += [(Adam, "step", "optimizer"), (Adam, "zero_grad", "optimizer")]
    except ImportError:
        pass
    for owner, name, stage in patches:
        setattr(owner, name, timed(stage, getattr(owner, name)))


def worker(backend: str, steps: int, threads: int) -> dict:
    import torch

    from vdm3d import threads as vthreads
    from vdm3d.data.readers import Split, read_scene
    from vdm3d.jobs import fit as fit_job
    from vdm3d.recon import trainer

    vthreads.set_threads(threads)
    cpu = collections.defaultdict(float)
    wall = collections.defaultdict(float)
    patch_step_timers(cpu, wall)

    scene = read_scene(FERN, Split())
    cfg = fit_job.FitJobConfig(data=FERN)
    init = fit_job.initialize(scene, cfg)
    fit_cfg = dataclasses.replace(fit_job.CPU_FIT, steps=steps, backend=backend, checkpoint_every=0)
    # Warm up (numba loads its cached kernels, torch its kernels) on a few steps, not timed.
    warm = dataclasses.replace(fit_cfg, steps=3)
    trainer.fit_gaussians(scene.train, init, warm)
    cpu.clear(), wall.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    out = trainer.fit_gaussians(scene.train, init, fit_cfg)
    total_wall, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    cpu["other"] = total_cpu - sum(cpu[s] for s in STAGES if s != "other")
    wall["other"] = total_wall - sum(wall[s] for s in STAGES if s != "other")
    return {"cpu": dict(cpu), "wall": dict(wall), "total_cpu": total_cpu, "total_wall": total_wall,
            "gaussians": len(out), "init": len(init), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--backends", nargs="+", default=["torch", "cpp"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--before-src", type=Path, default=None,
                   help="source tree (a src folder) the first backend runs on, e.g. an earlier commit's")
    p.add_argument("--worker", metavar="BACKEND", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.threads)))
        return
    if not FERN.exists():
        sys.exit(f"benchmarks/fit.py: {FERN} is missing; it needs the shared LLFF fern scene.")
    results = {}
    for backend in args.backends:
        cmd = [sys.executable, __file__, "--worker", backend, "--steps", str(args.steps), "--threads", str(args.threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        if backend == args.backends[0] and args.before_src:
            env["PYTHONPATH"] = os.pathsep.join([str(args.before_src.resolve()), env.get("PYTHONPATH", "")])
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            sys.exit(f"{backend}: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
        results[backend] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  done {backend}: {results[backend]['total_cpu']:.1f} CPU-s", file=sys.stderr, flush=True)

    first = args.backends[0]
    source = f" ({first} on {args.before_src})" if args.before_src else ""
    print(f"fern, vdm3d fit defaults (128 px patches), {args.steps} steps, threads={args.threads}{source}; "
          f"per step, CPU ms (wall ms); ratio = {first} / this")
    print("| stage | " + " | ".join(args.backends) + " | " + " | ".join(f"ratio {b}" for b in args.backends[1:]) + " |")
    print("|---|" + "---|" * (2 * len(args.backends) - 1))
    for stage in STAGES + ("total",):
        cells, ratios = [], []
        for b in args.backends:
            r = results[b]
            c = (r["total_cpu"] if stage == "total" else r["cpu"].get(stage, 0.0)) / args.steps * 1e3
            w = (r["total_wall"] if stage == "total" else r["wall"].get(stage, 0.0)) / args.steps * 1e3
            cells.append(f"{c:.1f} ({w:.1f})")
            if b != first:
                ref = (results[first]["total_cpu"] if stage == "total" else results[first]["cpu"].get(stage, 0.0))
                mine = r["total_cpu"] if stage == "total" else r["cpu"].get(stage, 0.0)
                ratios.append(f"{ref / mine:.1f}x" if mine > 0 else "")
        print(f"| {stage} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print("Gaussians at the end: " + ", ".join(f"{b} {results[b]['gaussians']} (from {results[b]['init']})"
                                             for b in args.backends))


if __name__ == "__main__":
    main()
