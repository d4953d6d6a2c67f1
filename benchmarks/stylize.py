"""`vdm3d stylize` speed: a 48-frame video at 64 px with the embedded models, stage by stage.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stylize.py              # ~1-3 minutes on 2 cores
    .venv/bin/python benchmarks/stylize.py --frames 96 --steps 25          # other sizes

The whole command runs in a subprocess exactly as a user runs it (mesh file, trajectory file, style
image, run folder), with the threads given; the manifest's per-stage timings are printed beside the
wall time. The reference measured in the same run is the geometry alone (loading, rendering the
buffers and flows of the same path), so the ratio ``job / geometry`` says what the models cost on top
of the Blender-free preprocessing, independent of how loaded the machine is. Target (issue 14): the
48-frame job within 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_inputs(folder: Path, frames: int) -> None:
    """A held-out procedural object as a y-up GLB, an arc around it, and a style render off the path."""
    from vdm3d.cameras.trajectory import Trajectory
    from vdm3d.cameras.trajectory_file import save_trajectory
    from vdm3d.data.procedural.stylize import object_case
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.geometry.mesh_scene import Y_UP_TO_Z_UP
    from vdm3d.io.images import write_image

    case = object_case(1_000_003, frames, 64)
    case.scene.transformed(np.linalg.inv(Y_UP_TO_Z_UP)).export(folder / "scene.glb")
    save_trajectory(folder / "path.json", Trajectory(case.cameras, fps=12))
    write_image(folder / "style.png", render_buffers(case.scene, case.style_camera, ssaa=3).rgb[0])


def geometry_seconds(folder: Path) -> float:
    """The reference: load the three inputs and render the path's buffers and flows, in-process."""
    from vdm3d.jobs.stylize import StylizeConfig, geometry_buffers, load_inputs

    cfg = StylizeConfig(mesh=folder / "scene.glb", trajectory=folder / "path.json", style=folder / "style.png")
    t = time.perf_counter()
    geometry_buffers(cfg, load_inputs(cfg))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: the job's)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_inputs(folder, args.frames)
        geometry_seconds(folder)  # GL context and imports warm
        t_geo = min(geometry_seconds(folder) for _ in range(2))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        cmd = [sys.executable, "-m", "vdm3d.cli.main", "stylize", "--mesh", str(folder / "scene.glb"),
               "--trajectory", str(folder / "path.json"), "--style", str(folder / "style.png"),
               "--out", str(folder / "run")] + ([] if args.steps is None else ["--steps", str(args.steps)])
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        manifest = json.loads((folder / "run" / "manifest.json").read_text())
        timings, steps = manifest["timings"], manifest["config"]["steps"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"| frames | steps | threads | job wall (s) | stages (s) | geometry reference (s) | job / geometry | "
          f"within 5 min |")
    print("|---|---|---|---|---|---|---|---|")
    stages = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
    print(f"| {args.frames} | {steps} | {args.threads} | {wall:.1f} | {stages} | {t_geo:.2f} | "
          f"{wall / t_geo:.0f}x | {'yes' if wall <= 300 else 'no'} |")
    print(f"(load average {load:.1f} during the run)")


if __name__ == "__main__":
    main()
