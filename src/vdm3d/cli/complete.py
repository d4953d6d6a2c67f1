"""``vdm3d complete DATA [--method guidedvd|v3d] [--num-train-views K | --train-views I ...] [--out DIR] [--resume DIR]``.

Flags come from :class:`vdm3d.jobs.complete.CompleteConfig` (split, baseline fit, planning,
generation and distillation settings). A progress bar per fitting stage goes to stderr; the
held-out scores of the completed scene and of its baseline are printed at the end (a warning on stderr
when the completion scores below its baseline).
"""

from __future__ import annotations

import sys

HELP = ("few posed photos -> complete 3DGS scene with scene-grounded video generation (GuidedVD-3DGS, the default) "
        "or reprojected-feature video along a path (V3D scene mode, --method v3d)")
EXAMPLES = """inputs: scene/ is a folder of posed photos (transforms.json, COLMAP sparse/0 or LLFF poses_bounds.npy with images/); `vdm3d data make rooms --count 1 --out rooms` renders one to try: rooms/case_000000; ../shared/data/llff_fern is LLFF's fern scene (nerf_llff_data/fern of the NeRF authors' data) in the team's data folder beside a vdm3d checkout.

examples:
  vdm3d complete ../shared/data/llff_fern --method v3d --downscale 8 --out runs/fern            # V3D scene mode, CPU
  vdm3d complete ../shared/data/llff_fern --train-views 1 10 19 --backbone svd-xt --memory 24GB  # hub weights, memory plan
  vdm3d complete scene/ --out runs/scene --resume runs/scene                              # continue an interrupted run"""


def main(argv, prog: str = "vdm3d complete") -> int:
    from vdm3d.cli.main import dispatch
    from vdm3d.jobs.complete import CompleteConfig, run_complete
    from vdm3d.jobs.complete_v3d import run_complete_v3d

    from vdm3d.io.progress import StageBars

    config = dispatch(CompleteConfig, argv, prog, description=HELP, memory=True, examples=EXAMPLES)
    bars = StageBars()  # a tqdm bar per stage on a terminal, plain lines with an ETA in logs

    seen: set[str] = set()

    def progress(stage: str, p) -> None:
        if stage not in seen:  # a resumed run's stage starts past its first step: say so
            seen.add(stage)
            if p.step > 1:
                print(f"{stage}: resuming after step {p.step - 1}/{p.steps} (the interrupted run's checkpoint)")
        bars(stage, p.step, p.steps, loss=f"{p.loss:.4f}", gaussians=p.num_gaussians)

    try:
        result = (run_complete_v3d if config.method == "v3d" else run_complete)(config, progress)
    finally:
        bars.close()
    test = result.metrics.get("test")
    if test:
        base = result.metrics.get("baseline") or {}
        m = test["mean"]
        print(f"held-out mean: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, empty {100 * m['empty']:.1f} % "
              f"(baseline: PSNR {base.get('psnr', float('nan')):.2f} dB, SSIM {base.get('ssim', float('nan')):.4f}, "
              f"empty {100 * base.get('empty', float('nan')):.1f} %)")
        if base.get("psnr") is not None and m["psnr"] < base["psnr"]:
            print(f"warning: the completed scene scores below its own baseline on the held-out views "
                  f"({m['psnr']:.2f} dB against {base['psnr']:.2f} dB): here the generated views cost more than they "
                  f"gave. {result.out / 'baseline.ply'} is the plain fit; fewer fitting steps than the defaults "
                  "let the generated views outweigh the photos", file=sys.stderr)
    print(f"results: {result.out}")
    return 0
