"""Splatting backends: forward+backward time and peak memory, with ratios to ``torch_ref`` and ``torch``.

Scene: the real Mip-NeRF 360 "garden" COLMAP points (``../shared/data/points/test_garden.npz``),
``N`` of them drawn with a fixed seed, as isotropic Gaussians with kNN scales, opacity 0.5 and SH
degree 3, seen from the data set's first real camera resized to ``S x S`` (a random point cloud
stands in when the data folder is absent). The loss is a fixed random cotangent on rgb, depth and
alpha, so the backward reaches every Gaussian parameter.

Method: each (backend, N, S) runs in two fresh subprocesses, single-threaded by default (the
machines are shared; ``--threads`` changes it). Time: the best of ``--reps`` forward+backward
passes after one warm-up (the reference: its single pass), as wall-clock and as process CPU time.
Memory: after a 64-Gaussian 32x32 render has paged in the code, the growth of the resident set
during one full pass (from the parameters, which are not counted, to their gradients): the kernel's high-water mark is reset through ``/proc/self/clear_refs`` just
before it and read from ``VmHWM`` after, with glibc's mmap threshold pinned at 128 KiB
(``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the resident set at once and it tracks
live memory rather than the allocator's cache. (tracemalloc does not see torch's allocations;
``resource.getrusage`` maxrss cannot be reset and is only the fallback.) On CUDA it is
``torch.cuda.max_memory_allocated``.

The dense reference is skipped when ``N * S * S`` exceeds ``--ref-max-pairs`` (it evaluates every
pair; the table says how long it would take at the rate measured in the same run, and how much its
graph would hold without the checkpointed chunks, at 50 bytes per pair).

    .venv/bin/python benchmarks/render.py                  # full table (about 10 minutes)
    .venv/bin/python benchmarks/render.py --sizes 128 --counts 2000 20000
    .venv/bin/python benchmarks/render.py --backends torch numba --sizes 64 128 --counts 2000 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GARDEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "points" / "test_garden.npz"


def build_scene(n: int, size: int, device: str):
    import numpy as np
    import torch

    from vdm3d.cameras import Cameras, look_at
    from vdm3d.splat import Gaussians

    gen = torch.Generator().manual_seed(0)
    if GARDEN.exists():
        data = np.load(GARDEN)
        idx = torch.randperm(len(data["means3d"]), generator=gen)[:n]
        points, colors = torch.from_numpy(data["means3d"])[idx], torch.from_numpy(data["colors"])[idx]
        c2w = torch.linalg.inv(torch.from_numpy(data["viewmats"][0]).double()).float()
        cam = Cameras(torch.from_numpy(data["Ks"][0]), c2w, int(data["width"]), int(data["height"]))
    else:
        points = torch.randn(n, 3, generator=gen)
        colors = torch.rand(n, 3, generator=gen)
        c2w = look_at(torch.tensor([0.0, -1.0, -4.0]), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
        cam = Cameras.from_fov(60.0, size, size, c2w)
    g = Gaussians.from_points(points, colors, opacity=0.5, sh_degree=3)
    return g.to(device), cam.resize(size, size).to(device)


def rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def worker(backend: str, n: int, size: int, reps: int, threads: int, mode: str) -> dict:
    import torch

    from vdm3d.splat import render

    torch.set_num_threads(threads)
    device = "cuda" if backend == "gsplat" else "cpu"
    g, cam = build_scene(n, size, device)
    state = {}

    def step(g, cam):
        gen = torch.Generator().manual_seed(1)
        cot = [torch.randn(1, cam.height, cam.width, k, generator=gen).squeeze(-1).to(device) for k in (3, 1, 1)]
        h = g.clone().requires_grad_()  # the parameters exist before a render: not counted
        state["base"] = reset_peak(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = render(h, cam, backend=backend)
        loss = (out.rgb * cot[0]).sum() + (out.depth * cot[1]).sum() + (out.alpha * cot[2]).sum()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0

    if mode == "time":
        if backend == "torch_ref":  # too slow to repeat: one pass
            times = [step(g, cam)]
        else:
            step(g, cam)  # warm-up
            times = [step(g, cam) for _ in range(reps)]
        return {"wall": min(t[0] for t in times), "cpu": min(t[1] for t in times)}

    # Memory: a tiny render first pages in the code, then the real pass is measured.
    step(g[:64], cam.resize(32, 32))
    gc.collect()
    step(g, cam)
    if device == "cuda":
        return {"peak": torch.cuda.max_memory_allocated() - state["base"], "method": "cuda.max_memory_allocated"}
    if state["base"] is not None:
        return {"peak": max(rss_kb("VmHWM") * 1024 - state["base"], 0), "method": "VmHWM"}
    import resource  # no /proc: the high-water mark of the whole process is all there is

    return {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "method": "maxrss (absolute)"}


def reset_peak(device: str) -> int | None:
    """Reset the peak-memory mark; return the current usage in bytes (None where unsupported)."""
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        return rss_kb("VmRSS") * 1024
    except OSError:
        return None


def run_one(backend: str, n: int, size: int, reps: int, threads: int) -> dict:
    result = {}
    for mode in ("time", "memory"):
        cmd = [sys.executable, __file__, "--worker", backend, str(n), str(size), mode, "--reps", str(reps),
               "--threads", str(threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
        if mode == "memory":
            # A fixed mmap threshold makes glibc hand freed large blocks back to the OS at once, so the
            # resident set follows live allocations, not what the allocator keeps cached.
            env["MALLOC_MMAP_THRESHOLD_"] = "131072"
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            err = res.stderr.strip().splitlines()
            return {"error": err[-1] if err else f"exit {res.returncode}"}
        result.update(json.loads(res.stdout.strip().splitlines()[-1]))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--counts", type=int, nargs="+", default=[2000, 20000, 100000])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ref-max-pairs", type=float, default=6e8)
    p.add_argument("--backends", nargs="+", default=None,
                   help="backends to run (default: torch_ref, torch, numba, cpp, and gsplat where CUDA is)")
    p.add_argument("--worker", nargs=4, metavar=("BACKEND", "N", "SIZE", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        backend, n, size = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(worker(backend, n, size, args.reps, args.threads, args.worker[3])))
        return

    import torch

    backends = args.backends or (["torch_ref", "torch", "numba", "cpp"] + (["gsplat"] if torch.cuda.is_available() else []))
    print(f"scene: {'garden points' if GARDEN.exists() else 'random points (garden data absent)'}; "
          f"threads={args.threads}; time = best of {args.reps} (reference: 1); fwd+bwd")
    if "gsplat" not in backends:
        print("gsplat: skipped (no CUDA device here)")
    rows, ref_rate = [], None
    for size in args.sizes:
        for n in args.counts:
            ref, tiled = None, None
            for backend in backends:
                pairs = n * size * size
                if backend == "torch_ref" and pairs > args.ref_max_pairs:
                    rows.append((backend, n, size, None, pairs))
                    continue
                r = run_one(backend, n, size, args.reps, args.threads)
                if backend == "torch_ref" and "error" not in r:
                    ref = r
                    ref_rate = pairs / r["cpu"]
                if backend == "torch" and "error" not in r:
                    tiled = r
                rows.append((backend, n, size, dict(r, ref=ref, tiled=tiled), pairs))
                print(f"  done {backend} N={n} S={size}: {r}", file=sys.stderr, flush=True)

    header = ("| backend | N | size | wall s | CPU s | peak +MB | wall ratio ref/this | CPU ratio ref/this "
              "| memory ratio this/ref | wall ratio torch/this | CPU ratio torch/this |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")
    print(header)
    for backend, n, size, r, pairs in rows:
        if r is None:
            est = f"~{pairs / ref_rate:.0f} s CPU at the measured rate, " if ref_rate else ""
            print(f"| {backend} | {n} | {size} | skipped: {pairs:.2g} pairs > {args.ref_max_pairs:.2g} "
                  f"({est}~{pairs * 50 / 2**30:.0f} GB unchunked) | | | | | | | |")
            continue
        if "error" in r:
            print(f"| {backend} | {n} | {size} | error: {r['error']} | | | | | | | |")
            continue
        ref, tiled = r["ref"], r["tiled"]
        ratios = ["", "", ""]
        if ref and backend != "torch_ref":
            ratios = [f"{ref['wall'] / r['wall']:.0f}x", f"{ref['cpu'] / r['cpu']:.0f}x",
                      f"{r['peak'] / max(ref['peak'], 1):.3f}"]
        if tiled and backend not in ("torch_ref", "torch"):
            ratios += [f"{tiled['wall'] / r['wall']:.1f}x", f"{tiled['cpu'] / r['cpu']:.1f}x"]
        else:
            ratios += ["", ""]
        print(f"| {backend} | {n} | {size} | {r['wall']:.3f} | {r['cpu']:.3f} | {r['peak'] / 2**20:.1f} | "
              + " | ".join(ratios) + " |")
    methods = {r["method"] for _, _, _, r, _ in rows if r and "method" in r}
    print(f"peak memory method: {', '.join(sorted(methods)) or 'n/a'}")


if __name__ == "__main__":
    main()
