"""Time per stage of ``vdm3d complete`` on one scene at the embedded default settings.

    OMP_NUM_THREADS=1 python benchmarks/complete.py                       # a held-out room, 64 x 64
    OMP_NUM_THREADS=2 python benchmarks/complete.py --scene ../shared/data/llff_fern --downscale 8
    OMP_NUM_THREADS=1 python benchmarks/complete.py --method v3d            # V3D's scene mode

Prints wall and CPU seconds of every stage (load, baseline fit, planning, generation, distillation,
evaluation), the total against the 15-minute budget, and each stage as a ratio of the baseline fit
measured in the same run (the plain 3DGS every job starts from), so the figures stay comparable on
a loaded machine. The default settings are those of ``vdm3d complete`` itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=None, help="scene folder (default: held-out room 0)")
    parser.add_argument("--downscale", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--method", choices=("guidedvd", "v3d"), default="guidedvd")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from vdm3d.eval.complete import write_room_case
    from vdm3d.io.progress import StageBars
    from vdm3d.jobs.complete import CompleteConfig, run_complete
    from vdm3d.jobs.complete_v3d import run_complete_v3d

    with tempfile.TemporaryDirectory() as tmp:
        scene = args.scene or write_room_case(Path(tmp) / "room", seed=0)
        config = CompleteConfig(data=scene, out=Path(tmp) / "run", downscale=args.downscale, method=args.method)
        start, cpu = time.time(), time.process_time()
        bars = StageBars(stream=sys.stderr)  # the fits' progress with an ETA (minutes each), as the command shows it
        try:
            result = (run_complete_v3d if args.method == "v3d" else run_complete)(
                config, lambda stage, p: bars(stage, p.step, p.steps, loss=f"{p.loss:.4f}"))
        finally:
            bars.close()
        wall, cpu = time.time() - start, time.process_time() - cpu
    secs = result.metrics["seconds"]
    base = max(secs.get("baseline", 1e-9), 1e-9)
    print(f"method {args.method}, scene {scene} ({result.metrics['image_size'][0]}x{result.metrics['image_size'][1]}), "
          f"{torch.get_num_threads()} thread(s), backbone {result.metrics['backbone']}")
    print("| stage | wall s | x baseline fit |")
    print("|---|---|---|")
    for name, s in secs.items():
        print(f"| {name} | {s:.1f} | {s / base:.2f} |")
    print(f"| total | {wall:.1f} (CPU {cpu:.1f}) | {wall / base:.2f} |")
    print(f"budget: {wall / 60:.1f} of 15 min wall")
    m, b = result.metrics["test"]["mean"], result.metrics["baseline"]
    print(f"held-out PSNR {m['psnr']:.2f} dB (baseline {b['psnr']:.2f}), SSIM {m['ssim']:.4f} "
          f"(baseline {b['ssim']:.4f}), empty {100 * m['empty']:.2f} % (baseline {100 * b['empty']:.2f} %)")


if __name__ == "__main__":
    main()
