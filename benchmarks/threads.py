"""Thread count under a competing CPU load: the demo (``vdm3d object`` on the bundled Spot render)
with ``--threads 1``, ``--threads 2``, ... and with the default (see :mod:`vdm3d.threads`), while
``--load`` busy processes run beside it.

Each round runs every setting once, in a fresh process, in an order that rotates between rounds
(so drifts in the machine's other load hit every setting alike); the table gives the median wall
time per setting and its ratio to the best setting of the same run. The competing load is plain
Python busy loops, started before and stopped after the whole measurement. The environment's
``OMP_NUM_THREADS`` is removed for the runs, so the default is the one a user gets.

    .venv/bin/python benchmarks/threads.py                     # 1 busy process beside, 2 rounds
    .venv/bin/python benchmarks/threads.py --load 0 --rounds 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPOT = ROOT / "src" / "vdm3d" / "assets" / "spot.png"


def busy(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run_demo(threads: int | None, out: Path) -> float:
    cmd = [sys.executable, "-m", "vdm3d.cli.main", "object", "--image", str(SPOT), "--out", str(out), "--overwrite"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f"demo failed with --threads {threads}: {res.stderr.strip()[-400:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load", type=int, default=1, help="competing busy processes")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="explicit thread counts to compare")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()

    settings: list[int | None] = [None, *args.threads]
    stop = mp.Event()
    workers = [mp.Process(target=busy, args=(stop,), daemon=True) for _ in range(args.load)]
    for w in workers:
        w.start()
    times: dict[int | None, list[float]] = {s: [] for s in settings}
    loads = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_demo(1, Path(tmp) / "warm")  # numba's cache and the model files paged in, not timed
            for r in range(args.rounds):
                order = settings[r % len(settings):] + settings[:r % len(settings)]
                for s in order:
                    loads.append(os.getloadavg()[0])
                    times[s].append(run_demo(s, Path(tmp) / "run"))
                    print(f"  round {r + 1} threads={s or 'default'}: {times[s][-1]:.1f} s", file=sys.stderr, flush=True)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=5)
    med = {s: statistics.median(v) for s, v in times.items()}
    best = min(med.values())
    print(f"demo (vdm3d object on spot.png), {args.load} competing busy process(es), {len(os.sched_getaffinity(0))} "
          f"cores, load average at the starts {min(loads):.1f}-{max(loads):.1f}; median of {args.rounds} rounds")
    print("| threads | wall s (median) | runs | ratio to best |")
    print("|---|---|---|---|")
    for s in settings:
        print(f"| {'default' if s is None else s} | {med[s]:.1f} | "
              f"{', '.join(f'{t:.1f}' for t in times[s])} | {med[s] / best:.2f} |")


if __name__ == "__main__":
    main()
