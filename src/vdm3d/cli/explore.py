"""`vdm3d explore --image IMG (--path FILE | --move PRESET ... | --path-from-run DIR) [options]`.

Flags are the fields of :class:`~vdm3d.jobs.explore.ExploreConfig` (tyro), declared once there.
"""

from __future__ import annotations

HELP = "one image + a camera path -> a long 3D-consistent video, depth, cameras and splats (WorldWarp)"


def main(argv, prog: str = "vdm3d explore"):
    from vdm3d.cli.config import cli
    from vdm3d.jobs.explore import ExploreConfig, run_explore

    config = cli(ExploreConfig, argv, prog, description=HELP, memory=True)  # --config FILE.yaml, flags override it
    result = run_explore(config)
    print(f"results: {result.out}/ (video.mp4, frames/, depth/, cameras/, splats.ply, manifest.json)")
    return 0
