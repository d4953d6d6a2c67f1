"""``vdm3d fit DATA [--num-train-views K | --train-views I ...] [--steps N] [--downscale K] [--resume RUN]``.

Flags come from :class:`vdm3d.jobs.fit.FitJobConfig` (and its nested split and fit configs). A
progress bar (tqdm, on stderr) shows the step, loss, a running PSNR of the training patches and the
number of Gaussians; the held-out scores are printed at the end and stored in ``metrics.json``.
"""

from __future__ import annotations

import sys

HELP = "fit 3D Gaussian splats to posed photos (LLFF, COLMAP, transforms.json) and score held-out views"


def main(argv: list[str], prog: str = "vdm3d fit") -> int:
    from vdm3d.cli.main import dispatch
    from vdm3d.jobs.fit import FitJobConfig, run_fit

    config = dispatch(FitJobConfig, argv, prog, description=HELP)
    from tqdm import tqdm

    bars: list = []  # created at the first step, so an input error prints only its sentence
    smooth = {"psnr": None}

    def progress(p) -> None:
        if not bars:
            bars.append(tqdm(total=p.steps, initial=p.step - 1, desc="fit", unit="step", file=sys.stderr,
                             dynamic_ncols=True))
        bar = bars[0]
        # exponential moving average: one patch's PSNR is noisy
        smooth["psnr"] = p.psnr if smooth["psnr"] is None else 0.95 * smooth["psnr"] + 0.05 * p.psnr
        bar.update(1)
        if p.step % 10 == 0 or p.step == p.steps:
            bar.set_postfix(loss=f"{p.loss:.4f}", psnr=f"{smooth['psnr']:.2f}", gaussians=p.num_gaussians)

    try:
        result = run_fit(config, progress)
    finally:
        for bar in bars:
            bar.close()
    test = result.metrics.get("test")
    if test:
        for v in test["views"]:
            print(f"  {v['name']}: PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.4f}")
        print(f"held-out mean: PSNR {test['mean']['psnr']:.2f} dB, SSIM {test['mean']['ssim']:.4f} "
              f"({len(result.gaussians)} Gaussians)")
    print(f"results: {result.out}")
    return 0
