"""`vdm3d data make objects|rooms`: render procedural datasets with exact ground truth.

One folder per case (frames, lossless depth, normals/edges/instances, transforms.json, the trajectory
file, the textured mesh); see :mod:`vdm3d.data.procedural.dataset` for the layout. The output goes
through :class:`~vdm3d.io.runs.RunFolder`: an interrupted run leaves ``.OUT.partial`` behind and the
same command with ``--resume`` renders only the missing cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import tyro

from vdm3d.cli.main import dispatch
from vdm3d.options import SEED, Range

HELP = "render procedural objects or rooms with exact depth, normals, edges, ids and cameras"
EXAMPLES = """examples:
  vdm3d data make objects --count 4 --out data/objects     # 4 cases: 21 orbit views of 64x64, depth, mesh.glb
  vdm3d data make rooms --count 2 --views 49 --resolution 128 --out data/rooms  # a walk inside each room
  vdm3d data make objects --count 1 --resolution 128 --out cup  # cup/case_000000/images/000.png for vdm3d object"""


def make(kind: tyro.conf.Positional[Literal["objects", "rooms"]], *, out: Path,
         count: Annotated[int, Range(1)] = 100,
         resolution: Annotated[int, Range(8)] = 64, views: Annotated[int, Range(1)] = 21,
         seed: Annotated[int, SEED] = 0,
         workers: Annotated[int, Range(0)] = 2,
         fov_deg: Annotated[float | None, Range(0, 180, open_min=True, open_max=True)] = None,
         ssaa: Annotated[int, Range(1)] = 1, mesh: bool = True, resume: bool = False, overwrite: bool = False,
         progress: bool = True) -> None:
    """Render COUNT procedural worlds, VIEWS frames each, into one folder per case.

    Args:
        kind: objects (1-4 textured primitives seen on an orbit) or rooms (a furnished room and a path inside).
        out: output folder (created atomically; see --resume and --overwrite).
        count: number of cases.
        resolution: frame width and height in pixels.
        views: frames per case.
        seed: base seed; the same seed gives the same bytes.
        workers: worker processes (1 renders in this process).
        fov_deg: horizontal field of view; default 40 for objects and 70 for rooms.
        ssaa: odd supersampling factor for colours and alpha.
        mesh: also write mesh.glb per case.
        resume: continue an interrupted run, skipping complete cases.
        overwrite: replace an existing output folder.
        progress: show a progress bar.
    """
    from vdm3d.data.procedural.dataset import DatasetConfig, render_dataset
    from vdm3d.io.runs import RunFolder

    cfg = DatasetConfig(kind=kind, count=count, resolution=resolution, views=views, seed=seed, workers=workers,
                        fov_deg=fov_deg, ssaa=ssaa, mesh=mesh)
    cfg.check()
    with RunFolder(out, config=cfg, seed=seed, resume=resume, overwrite=overwrite) as run:
        run.checkpoint_dir  # noqa: B018 - marks the partial folder as resumable if we are interrupted
        stats = render_dataset(run.path, cfg, progress=progress)
        (run.path / "checkpoints").rmdir()
        run.record(**stats, cases=[f"case_{i:06d}" for i in range(count)])
    print(f"wrote {count} {kind} cases to {out} ({stats['rendered']} rendered, {stats['skipped']} resumed"
          + (f", {stats['images_per_second']} images/s)" if stats["images_per_second"] else ")"))


def main(argv, prog: str = "vdm3d data"):
    return dispatch({"make": make}, argv, prog, description=HELP, examples={"": EXAMPLES, "make": EXAMPLES})

