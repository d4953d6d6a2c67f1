"""``vdm3d complete DATA [--method guidedvd|v3d] [--num-train-views K | --train-views I ...] [--out DIR] [--resume DIR]``.

Flags come from :class:`vdm3d.jobs.complete.CompleteConfig` (split, baseline fit, planning,
generation and distillation settings). A progress bar per fitting stage goes to stderr; the
held-out scores of the completed scene and of its baseline are printed at the end.
"""

from __future__ import annotations

import sys

HELP = ("few posed photos -> complete 3DGS scene with scene-grounded video generation (GuidedVD-3DGS, the default) "
        "or reprojected-feature video along a path (V3D scene mode, --method v3d)")


def main(argv, prog: str = "vdm3d complete") -> int:
    from vdm3d.cli.main import dispatch
    from vdm3d.jobs.complete import CompleteConfig, run_complete
    from vdm3d.jobs.complete_v3d import run_complete_v3d

    config = dispatch(CompleteConfig, argv, prog, description=HELP)
    from tqdm import tqdm

    bars: dict = {}  # one bar per stage, created at its first step

    def progress(stage: str, p) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = tqdm(total=p.steps, initial=p.step - 1, desc=stage, unit="step", file=sys.stderr,
                               dynamic_ncols=True)
        bar = bars[stage]
        bar.update(1)
        if p.step % 10 == 0 or p.step == p.steps:
            bar.set_postfix(loss=f"{p.loss:.4f}", gaussians=p.num_gaussians)

    try:
        result = (run_complete_v3d if config.method == "v3d" else run_complete)(config, progress)
    finally:
        for bar in bars.values():
            bar.close()
    test = result.metrics.get("test")
    if test:
        base = result.metrics.get("baseline") or {}
        m = test["mean"]
        print(f"held-out mean: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, empty {100 * m['empty']:.1f} % "
              f"(baseline: PSNR {base.get('psnr', float('nan')):.2f} dB, SSIM {base.get('ssim', float('nan')):.4f}, "
              f"empty {100 * base.get('empty', float('nan')):.1f} %)")
    print(f"results: {result.out}")
    return 0
