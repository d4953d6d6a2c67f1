"""`vdm3d object --image IMAGE [--preset NAME] [--backbone NAME] [options]`: image -> orbit, splats, mesh.

``--preset`` picks the defaults (:data:`vdm3d.jobs.object.PRESETS`); without it, the backbone picks
its own preset (sv3d-p -> sv3d, sv3d-u -> sv3d-u, v3d -> v3d, anything else -> tiny with that backbone). Every other
flag overrides one field of :class:`~vdm3d.jobs.object.ObjectConfig` on top of the preset. tyro is
called with the preset as ``default`` (``dispatch`` takes no defaults), so a flag is still declared
once, by the dataclass field.
"""

from __future__ import annotations

import dataclasses

HELP = "one image of an object -> orbit video, Gaussian splats (PLY), textured mesh (GLB/OBJ), cameras"
EXAMPLES = """inputs: cup.png is a photo of yours or an RGBA render of one object (`vdm3d data make objects --count 1 --resolution 128 --out cup` renders one to try: cup/case_000000/images/000.png); cup.jpg and cup_mask.png a photo and a white-on-black mask of the object; cup.yaml options as `name: value` lines (image: cup.png, fit_steps: 200, ...; a run's manifest.json works too).

examples:
  vdm3d object --image cup.png --out runs/cup                 # embedded tiny backbone, CPU; photos: GrabCut
  vdm3d object --image cup.jpg --mask cup_mask.png --preset sv3d  # your own mask, SV3D_p settings and weights
  vdm3d object --config cup.yaml --fit-steps 400              # options from a YAML file, one overridden"""
BACKBONE_PRESETS = {"tiny": "tiny", "sv3d-p": "sv3d", "sv3d-u": "sv3d-u", "v3d": "v3d"}


def _flag(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def choose_preset(argv: list[str]):
    """The preset's config named by ``--preset`` or implied by ``--backbone``."""
    from vdm3d.errors import ConfigError
    from vdm3d.jobs.object import PRESETS

    name, backbone = _flag(argv, "--preset"), _flag(argv, "--backbone")
    if name is None:
        name = BACKBONE_PRESETS.get(backbone or "tiny", "tiny")
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is unknown; choose one of: {', '.join(PRESETS)}.")
    config = PRESETS[name][1]
    return dataclasses.replace(config, backbone=backbone) if backbone else config


def main(argv, prog: str = "vdm3d object"):
    from vdm3d.cli.config import cli
    from vdm3d.io.progress import StageLog
    from vdm3d.jobs.object import PRESETS, ObjectConfig, run_object

    argv = list(argv)
    presets = "; ".join(f"{k}: {d}" for k, (d, _) in PRESETS.items())
    config = cli(ObjectConfig, argv, prog, default=choose_preset(argv),
                 description=f"{HELP}. Presets (--preset): {presets}.", examples=EXAMPLES, memory=True)
    result = run_object(config, progress=StageLog())  # elapsed time, and an ETA for the fitting steps
    print(f"results: {result.out}/ (orbit.mp4, splats.ply, mesh.glb, mesh.obj, turntable.mp4/.png, cameras/, manifest.json)")
    return 0
