"""`vdm3d explore --image IMG (--path FILE | --move PRESET ... | --path-from-run DIR) [options]`.

Flags are the fields of :class:`~vdm3d.jobs.explore.ExploreConfig` (tyro), declared once there.
"""

from __future__ import annotations

HELP = "one image + a camera path -> a long 3D-consistent video, depth, cameras and splats (WorldWarp)"
EXAMPLES = """inputs: room.png is a photo of yours (`vdm3d data make rooms --count 1 --resolution 128 --out room` renders one to try: room/case_000000/images/000.png); walk.json a camera path, such as `vdm3d trajectory make move --presets dolly-in pan-left --frames 81 --out walk.json` writes.

examples:
  vdm3d explore --image room.png --move dolly-in --frames 48 --out runs/walk   # a preset move, tiny models on CPU
  vdm3d explore --image room.png --path walk.json --backbone worldwarp --memory 24GB --out runs/ww  # hub weights
  vdm3d explore --image room.png --move dolly-in --frames 48 --out runs/walk --resume  # if stopped: from the last chunk"""


def main(argv, prog: str = "vdm3d explore"):
    from vdm3d.cli.config import cli
    from vdm3d.io.progress import StageLog
    from vdm3d.jobs.explore import ExploreConfig, run_explore

    config = cli(ExploreConfig, argv, prog, description=HELP, examples=EXAMPLES, memory=True)  # --config FILE.yaml
    result = run_explore(config, progress=StageLog())  # elapsed time, and an ETA per chunk
    print(f"results: {result.out}/ (video.mp4, frames/, depth/, cameras/, splats.ply, manifest.json)")
    return 0
