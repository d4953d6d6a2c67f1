"""`vdm3d stylize --mesh SCENE.glb --trajectory PATH.json --style STYLE.png --out DIR`: a styled video
that follows a coarse mesh along a camera path (VideoFrom3D). Flags come from
:class:`~vdm3d.jobs.stylize.StylizeConfig`.
"""

from __future__ import annotations

HELP = "coarse mesh + camera path + style image -> a styled video that follows the geometry (VideoFrom3D)"
EXAMPLES = """inputs: room.glb is a coarse mesh of the scene (GLB/OBJ), walk.json a camera path through it, ink.png a picture in the style; `vdm3d data make rooms --count 1 --out room` renders a room to try: room/case_000000/mesh.glb and room/case_000000/trajectory.json; ink.yaml options as `name: value` lines (mesh: room.glb, trajectory: walk.json, style: ink.png, out: runs/ink, ...).

examples:
  vdm3d stylize --mesh room.glb --trajectory walk.json --style ink.png --out runs/ink   # tiny models on CPU
  vdm3d stylize --mesh room.glb --trajectory walk.json --style ink.png --backbone hub --memory 24GB  # FLUX + GGI
  vdm3d stylize --config ink.yaml --resume                      # options from a file; continue after the last arc"""


def main(argv, prog: str = "vdm3d stylize"):
    from vdm3d.cli.config import cli
    from vdm3d.io.progress import StageLog
    from vdm3d.jobs.stylize import StylizeConfig, run_stylize

    config = cli(StylizeConfig, argv, prog, description=HELP, examples=EXAMPLES, memory=True)  # --config FILE.yaml
    result = run_stylize(config, progress=StageLog())  # elapsed time, and an ETA per arc
    print(f"results: {result.out}/ (video.mp4, frames/, anchors/, edges/, style.png, cameras/, manifest.json)")
    return 0
