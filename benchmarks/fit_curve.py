"""Held-out PSNR against fitting time: the curve of ``vdm3d fit`` on LLFF fern.

Runs the fit job's stages (:mod:`vdm3d.jobs.fit`: read the scene with the default split, held-out
views 0, 8, 16; initialize from the sparse points; :func:`vdm3d.recon.trainer.fit_gaussians` with
the job's defaults, :data:`vdm3d.jobs.fit.CPU_FIT`) and, every ``--eval-every`` steps, renders the
held-out views at full size and scores them exactly as ``vdm3d fit`` does
(:func:`vdm3d.recon.evaluate.score_views`). Time is the CPU-seconds of the fitting alone (the
evaluations are not counted), so a busy machine does not inflate it; one thread by default, so on
two idle cores the wall-clock time is at most the CPU time.

``--steps`` other than the default stretches or shrinks the schedule with it (densification stop,
SH warm-up), everything else stays the default (``--max-gaussians`` changes the budget). The run
checkpoints at every evaluation into ``--out`` and continues from there when started again with the
same arguments (``--resume``), so it can run niced in the background for as long as the machine
allows.

    nice -n 10 .venv/bin/python benchmarks/fit_curve.py --eval-every 1000 --out runs/bench/fern_12k_100k
    .venv/bin/python benchmarks/fit_curve.py --eval-every 1000 --out runs/bench/fern_12k_100k --resume \
        --plot docs/fern_curve.png                                       # the table and the plot
    .venv/bin/python benchmarks/fit_curve.py --steps 3000 --max-gaussians 40000   # the earlier default
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

FERN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llff_fern"


def stretched_config(steps: int, backend: str, max_gaussians: int | None = None):
    """The ``vdm3d fit`` defaults with the step-dependent parts of the schedule scaled to ``steps``
    (and, when given, another Gaussian budget)."""
    from vdm3d.jobs.fit import CPU_FIT

    k = steps / CPU_FIT.steps
    densify = dataclasses.replace(CPU_FIT.densify, refine_stop=round(CPU_FIT.densify.refine_stop * k),
                                  max_gaussians=max_gaussians or CPU_FIT.densify.max_gaussians)
    return dataclasses.replace(CPU_FIT, steps=steps, sh_warmup_every=round(CPU_FIT.sh_warmup_every * k),
                               densify=densify, backend=backend, checkpoint_every=0)


def run(args: argparse.Namespace) -> list[dict]:
    """Fit (or continue fitting) with an evaluation and a checkpoint every ``--eval-every`` steps;
    returns the curve's rows, also kept in ``<out>/curve.jsonl``."""
    import torch

    from vdm3d import threads
    from vdm3d.data.readers import Split, read_scene
    from vdm3d.jobs import fit as fit_job
    from vdm3d.recon.checkpoint import load_state, save_state
    from vdm3d.recon.evaluate import render_views, score_views
    from vdm3d.recon.trainer import fit_gaussians
    from vdm3d.splat.gaussians import Gaussians

    threads.set_threads(args.threads)
    scene = read_scene(FERN, Split())
    config = stretched_config(args.steps, args.backend, args.max_gaussians)
    config = dataclasses.replace(config, checkpoint_every=args.eval_every,
                                 seed=config.seed if args.seed is None else args.seed)
    ckpt, curve = args.out / "checkpoint", args.out / "curve.jsonl"
    state, rows = None, []
    if args.resume and (ckpt / "state.json").is_file():
        state = load_state(ckpt)
        rows = [json.loads(line) for line in curve.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["step"] <= state.step]  # a row written after the last checkpoint
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        curve.write_text("")
    init = fit_job.initialize(scene, fit_job.FitJobConfig(data=FERN))
    bg = torch.zeros(3)
    clock = {"cpu": rows[-1]["cpu"] if rows else 0.0, "since": time.process_time()}

    def record(step: int, gaussians: Gaussians) -> None:
        clock["cpu"] += time.process_time() - clock["since"]  # fitting time up to here
        pred = render_views(gaussians, scene.test.cameras, backend=args.backend, background=bg)
        score = score_views(pred, scene.test)["mean"]
        row = {"step": step, "cpu": round(clock["cpu"], 2), "psnr": score["psnr"], "ssim": score["ssim"],
               "gaussians": len(gaussians), "wall_time": time.strftime("%H:%M:%S")}
        rows.append(row)
        with curve.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), file=sys.stderr, flush=True)

    def on_checkpoint(s) -> None:
        record(s.step, Gaussians.from_parameters(s.params))
        save_state(ckpt, s)
        clock["since"] = time.process_time()  # evaluating and saving are not fitting

    if not rows:
        record(0, init.with_sh_degree(config.sh_degree))
        clock["since"] = time.process_time()
    if state is None or state.step < config.steps:
        fit_gaussians(scene.train, init, config, state=state, on_checkpoint=on_checkpoint)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="default: vdm3d fit's")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backend", default="auto")
    p.add_argument("--max-gaussians", type=int, default=None, help="Gaussian budget (default: vdm3d fit's)")
    p.add_argument("--seed", type=int, default=None,
                   help="the fit's seed (views, patches; default: vdm3d fit's), for run-to-run variation")
    p.add_argument("--out", type=Path, default=Path("runs/bench/fern_curve"))
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--plot", type=Path, default=None, help="also draw the curve into this PNG")
    p.add_argument("--also", nargs="*", default=[], metavar="LABEL=CURVE.jsonl",
                   help="more curves (an earlier run's curve.jsonl) to draw beside this one")
    args = p.parse_args()
    if args.steps is None:
        from vdm3d.jobs.fit import CPU_FIT

        args.steps = CPU_FIT.steps
    if not FERN.exists():
        sys.exit(f"benchmarks/fit_curve.py: {FERN} is missing; it needs the shared LLFF fern scene.")
    rows = run(args)
    budget = f", at most {args.max_gaussians} Gaussians" if args.max_gaussians else ""
    print(f"fern, vdm3d fit defaults, {args.steps} steps{budget}, threads={args.threads}, backend={args.backend}; "
          "held-out views 0, 8, 16 at 504x378")
    print("| step | fit CPU s | held-out PSNR dB | SSIM | Gaussians |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['step']} | {r['cpu']:.0f} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['gaussians']} |")
    if args.plot:
        plot(rows, args)


def plot(rows: list[dict], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot([r["cpu"] for r in rows], [r["psnr"] for r in rows], "o-", label=f"vdm3d fit, {args.steps} steps"
            + (f", {args.max_gaussians // 1000}k Gaussians" if args.max_gaussians else ""))
    for item in args.also:
        label, _, path = item.partition("=")
        more = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        ax.plot([r["cpu"] for r in more], [r["psnr"] for r in more], "s--", alpha=0.7, label=label)
    ax.axhline(25.17, color="gray", ls="--", label="NeRF (25.17 dB)")
    ax.axvline(2400, color="gray", ls=":", label="20 min of 2 cores")
    ax.set_xlabel("fitting CPU-seconds (one thread)")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title("LLFF fern, held-out views 0, 8, 16")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot)


if __name__ == "__main__":
    main()
