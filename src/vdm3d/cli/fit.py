"""``vdm3d fit DATA [--num-train-views K | --train-views I ...] [--steps N] [--downscale K] [--resume RUN]``.

Flags come from :class:`vdm3d.jobs.fit.FitJobConfig` (and its nested split and fit configs). A
progress bar (tqdm, on stderr) shows the step, loss, a running PSNR of the training patches and the
number of Gaussians; the held-out scores are printed at the end and stored in ``metrics.json``.
"""

from __future__ import annotations


HELP = "fit 3D Gaussian splats to posed photos (LLFF, COLMAP, transforms.json) and score held-out views"
EXAMPLES = """inputs: scene/ is a folder of posed photos (transforms.json, COLMAP sparse/0 or LLFF poses_bounds.npy with images/); `vdm3d data make rooms --count 1 --out rooms` renders one to try: rooms/case_000000; ../shared/data/llff_fern is LLFF's fern scene (nerf_llff_data/fern of the NeRF authors' data) in the team's data folder beside a vdm3d checkout.

examples:
  vdm3d fit ../shared/data/llff_fern --downscale 8 --out runs/fern          # every 8th view held out
  vdm3d fit scene/ --num-train-views 3 --steps 1000 --out runs/sparse3      # sparse-view protocol
  vdm3d fit scene/ --num-train-views 3 --steps 1000 --resume runs/sparse3  # continue it if it was interrupted"""


def main(argv: list[str], prog: str = "vdm3d fit") -> int:
    from vdm3d.cli.config import cli
    from vdm3d.io.progress import StepProgress
    from vdm3d.jobs.fit import FitJobConfig, print_line, run_fit

    config = cli(FitJobConfig, argv, prog, description=HELP, examples=EXAMPLES)

    bars: list = []  # created at the first step, so an input error prints only its sentence
    smooth = {"psnr": None}

    def progress(p) -> None:
        if not bars:
            if p.step > 1:  # a resumed run starts past its first step: say so
                print(f"fit: resuming after step {p.step - 1}/{p.steps} (the interrupted run's checkpoint)")
            bars.append(StepProgress(p.steps, "fit", initial=p.step - 1))  # plain lines with an ETA in logs
        bar = bars[0]
        # exponential moving average: one patch's PSNR is noisy
        smooth["psnr"] = p.psnr if smooth["psnr"] is None else 0.95 * smooth["psnr"] + 0.05 * p.psnr
        shown = p.step % 10 == 0 or p.step == p.steps
        bar.update(1, **(dict(loss=f"{p.loss:.4f}", psnr=f"{smooth['psnr']:.2f}", gaussians=p.num_gaussians)
                         if shown else {}))

    try:
        result = run_fit(config, progress, say=print_line)
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
