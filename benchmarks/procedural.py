"""Procedural worlds: rendering speed, the backend comparison, and the 1,000 objects x 21 views budget.

    .venv/bin/python benchmarks/procedural.py                 # tables, ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/procedural.py --full          # also render 1,000 x 21 at 64x64 for real
    PYTHONPATH=/path/to/embreex .venv/bin/python benchmarks/procedural.py   # adds the Embree baseline

Tables (all in one run, so ratios are comparable even on a contended machine):

1. backend: the GL renderer (all buffers) against ray casting the same object with trimesh+Embree
   (first hit only, no shading, textures or edges: a lower bound for a ray-casting renderer);
   Embree is not a dependency and the row is skipped when ``embreex`` is not importable;
2. in-process images per second at 64x64 and 256x256 for objects and rooms: world generation,
   rendering, and both together;
3. ``vdm3d data make objects --views 21 --resolution 64`` with 2 workers on ``--cases`` cases
   (files included), extrapolated to 1,000 cases; ``--full`` runs the 1,000 instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def backend_table(views: int = 21) -> list[str]:
    from vdm3d.data.procedural import make_object, orbit_cameras
    from vdm3d.geometry.mesh_render import render_buffers

    scene = make_object(1)
    rows = ["| resolution | GL, all buffers (s / 21 views) | Embree first hit (s / 21 views) | ratio |", "|---|---|---|---|"]
    try:
        import trimesh
        from trimesh.ray import ray_pyembree

        mesh = trimesh.util.concatenate([trimesh.Trimesh(p.vertices, p.faces, process=False) for p in scene.parts])
        embree = ray_pyembree.RayMeshIntersector(mesh)
    except Exception:  # noqa: BLE001 - optional baseline
        embree = None
    for res in (64, 256):
        cams = orbit_cameras(views, width=res, height=res)
        render_buffers(scene, cams)  # upload + warm-up
        t_gl = _best(lambda: render_buffers(scene, cams))
        if embree is not None:
            o, d = cams.rays()
            o = o.reshape(-1, 3).double().numpy()
            d = d.reshape(-1, 3).double().numpy()
            t_rt = _best(lambda: embree.intersects_first(o, d))
            rows.append(f"| {res}x{res} | {t_gl:.3f} | {t_rt:.3f} | {t_rt / t_gl:.1f}x |")
        else:
            rows.append(f"| {res}x{res} | {t_gl:.3f} | (embreex not importable) | - |")
    rows.insert(0, f"object {scene.num_faces} triangles, {views} views")
    return rows


def speed_table(n_worlds: int = 4, views: int = 21) -> list[str]:
    from vdm3d.data.procedural import make_object, make_room, orbit_cameras, room_path
    from vdm3d.geometry.mesh_render import render_buffers

    rows = ["| world | resolution | generate (ms/world) | render (images/s) | generate + render (images/s) |",
            "|---|---|---|---|---|"]
    for kind in ("objects", "rooms"):
        make = make_object if kind == "objects" else make_room
        t = time.perf_counter()
        worlds = [make(1000 + i) for i in range(n_worlds)]
        t_gen = (time.perf_counter() - t) / n_worlds
        for res in (64, 256):
            cams = [orbit_cameras(views, width=res, height=res) if kind == "objects"
                    else room_path(w, views, i, width=res, height=res) for i, w in enumerate(worlds)]
            render_buffers(worlds[0], cams[0])
            t = time.perf_counter()
            for w, c in zip(worlds, cams):
                render_buffers(w, c)
            t_render = (time.perf_counter() - t) / n_worlds  # includes the first upload of each world
            rows.append(f"| {kind} | {res}x{res} | {1000 * t_gen:.0f} | {views / t_render:.0f} | "
                        f"{views / (t_render + t_gen):.0f} |")
    return rows


def budget_table(cases: int, full: bool) -> list[str]:
    from vdm3d.data.procedural.dataset import DatasetConfig, render_dataset

    n = 1000 if full else cases
    tmp = Path(tempfile.mkdtemp(prefix="vdm3d_bench_"))
    try:
        cfg = DatasetConfig(kind="objects", count=n, resolution=64, views=21, seed=0, workers=2)
        stats = render_dataset(tmp / "ds", cfg, progress=False)
        per_case = stats["seconds"] / n
        size = sum(p.stat().st_size for p in (tmp / "ds").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    projected = per_case * 1000
    cpu_projected = stats["cpu_seconds"] / n * 1000 / 2  # 2 cores doing only this
    verdict = lambda t: "within" if t <= 600 else "over"  # noqa: E731
    return ["| cases | wall (s) | CPU (s) | images/s (wall) | 1,000 x 21 @ 64x64, from wall (s) | "
            "from CPU time on 2 free cores (s) | load avg |",
            "|---|---|---|---|---|---|---|",
            f"| {n} | {stats['seconds']:.1f} | {stats['cpu_seconds']:.1f} | {stats['images_per_second']:.0f} | "
            f"{projected:.0f} ({'measured' if full else 'extrapolated'}, {verdict(projected)} 600 s) | "
            f"{cpu_projected:.0f} ({verdict(cpu_projected)} 600 s) | {load:.1f} |",
            f"disk: {size / n / 1e3:.0f} kB per case (with mesh.glb); wall and CPU include 2 worker start-ups"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=40, help="cases for the 2-worker run (extrapolated to 1,000)")
    ap.add_argument("--full", action="store_true", help="render all 1,000 x 21 views")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"# procedural benchmark ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})\n")
    print("## backend\n")
    print("\n".join(backend_table()) + "\n")
    print("## in-process speed (one process)\n")
    print("\n".join(speed_table()) + "\n")
    print("## dataset budget (vdm3d data make, 2 workers)\n")
    print("\n".join(budget_table(args.cases, args.full)))


if __name__ == "__main__":
    sys.exit(main())
