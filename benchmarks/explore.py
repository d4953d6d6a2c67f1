"""Time and peak memory per chunk of `vdm3d explore` (do they stay flat from chunk 2 on?).

    OMP_NUM_THREADS=1 python benchmarks/explore.py [--frames 200] [--model explore] [--fit-steps 60] [--samples N]
        [--strength S] [--mean-steps N]

Runs the job on a held-out procedural room loop (the one `vdm3d eval explore` uses first) and prints,
per chunk, the wall and CPU time and the peak resident memory of the process during that chunk (sampled every
5 ms from /proc/self/statm), each also as a ratio to chunk 2 measured in the same run, then the total
time of the run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path


class PeakRSS:
    """Highest resident set size seen since the last :meth:`take` (a background sampling thread)."""

    def __init__(self, every_s: float = 0.005):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak, self.every = self.rss(), every_s
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every)

    def take(self) -> int:
        peak, self.peak = max(self.peak, self.rss()), self.rss()
        return peak

    def stop(self) -> None:
        self._stop.set()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--model", default="explore")
    ap.add_argument("--fit-steps", type=int, default=60)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--samples", type=int, default=None, help="draws averaged per chunk (default: the job's)")
    ap.add_argument("--strength", type=float, default=None, help="noise on valid tokens (default: the job's)")
    ap.add_argument("--mean-steps", type=int, default=None, help="x0 predictions averaged per draw (default: the job's)")
    args = ap.parse_args()
    job_options = {k: v for k, v in (("samples", args.samples), ("strength", args.strength),
                                     ("mean_steps", args.mean_steps)) if v is not None}

    import torch

    from vdm3d.cameras.trajectory import Trajectory
    from vdm3d.cameras.trajectory_file import save_trajectory
    from vdm3d.eval.explore import loop_path
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.io.images import write_image
    from vdm3d.jobs.explore import ExploreConfig, run_explore
    from vdm3d.train.datasets import SEED_OFFSETS

    seed = SEED_OFFSETS["heldout"] + 500_000
    found = None
    while found is None:
        seed += 1
        found = loop_path(seed, args.frames, 64, 0.03)
    scene, cams = found
    buf = render_buffers(scene, cams[:1], ssaa=3)
    depth0 = buf.depth[0].float()
    rows, meter = [], PeakRSS()
    last = [time.perf_counter(), time.process_time()]

    def on_chunk(index, state):
        now, cpu = time.perf_counter(), time.process_time()
        rows.append((index + 1, now - last[0], cpu - last[1], meter.take() / 2 ** 20,
                     len(state.cache) if state.cache is not None else 0))
        last[0], last[1] = now, cpu

    with tempfile.TemporaryDirectory() as tmp:
        image, path = Path(tmp) / "start.png", Path(tmp) / "path.json"
        write_image(image, buf.rgb[0])
        save_trajectory(path, Trajectory(cams, 12.0))
        config = ExploreConfig(image=image, path=path, out=Path(tmp) / "run", model=args.model, fov_deg=float(cams.fov_x_deg[0]),
                               depth_median=float(depth0[depth0 > 0].median()), fit_steps=args.fit_steps,
                               steps=args.steps, chunk=args.chunk, **job_options)
        t0, c0 = time.perf_counter(), time.process_time()
        meter.take()
        last[0], last[1] = time.perf_counter(), time.process_time()
        result = run_explore(config, progress=None, on_chunk=on_chunk)
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    meter.stop()
    ref_t, ref_c, ref_m = rows[1][1], rows[1][2], rows[1][3]
    print(f"explore, {args.frames} frames at 64x64, model {args.model}, chunk {args.chunk}, {args.steps} sampler "
          f"steps, strength {config.strength}, {config.samples} samples, mean of the first {config.mean_steps} x0 "
          f"predictions (0: full sampling), {args.fit_steps} fit steps, torch threads {torch.get_num_threads()}, "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    print("| chunk | wall (s) | CPU (s) | CPU / chunk 2 | peak RSS (MiB) | RSS / chunk 2 | Gaussians |")
    print("|---|---|---|---|---|---|---|")
    for k, t, c, m, g in rows:
        print(f"| {k} | {t:.2f} | {c:.2f} | {c / ref_c:.2f} | {m:.0f} | {m / ref_m:.3f} | {g} |")
    late = rows[1:]
    print(f"chunks 2-{len(rows)}: CPU {min(r[2] for r in late):.2f}-{max(r[2] for r in late):.2f} s, "
          f"wall {min(r[1] for r in late):.2f}-{max(r[1] for r in late):.2f} s, "
          f"peak RSS {min(r[3] for r in late):.0f}-{max(r[3] for r in late):.0f} MiB; whole run {total:.1f} s wall, "
          f"{total_cpu:.1f} s CPU ({len(result.video)} frames, start stage {result.timings['start']:.1f} s)")


if __name__ == "__main__":
    main()
