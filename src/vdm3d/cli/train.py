"""`vdm3d train vae|video|depth`: train the embedded tiny models on procedural worlds.

Built on accelerate: the same command runs on one CPU, one GPU, or several processes under
``accelerate launch -m vdm3d.cli.main train ...``. Training sets are rendered on first use and cached
(``$VDM3D_CACHE``, default ``~/.cache/vdm3d``). See :mod:`vdm3d.train.run`.
"""

from __future__ import annotations

from pathlib import Path

from vdm3d.cli.main import dispatch

HELP = ("train the embedded tiny models (vae, video, depth, orbit, object-depth, explore, stylize, v3d) with EMA, "
        "checkpoints and --resume")
EXAMPLES = """examples:
  vdm3d train video --out runs/video --loop.steps 4000          # log lines with the loss and an ETA
  vdm3d train video --out runs/video --loop.steps 4000 --resume  # continue from the last checkpoint
  vdm3d train cards --out MODEL_CARDS.md                         # the model cards as markdown"""


def cards(weights_dir: Path | None = None, out: Path | None = None, into_package: bool = False) -> None:
    """Render the JSON model cards of a weights folder (default: the shipped one) as markdown.

    Printed unless ``--out FILE``; ``--into-package`` rewrites the MODEL_CARDS.md shipped in the package.

    Args:
        weights_dir: folder holding ``<name>.json`` + ``<name>.safetensors`` (default: the shipped weights).
        out: write the markdown to this file instead of printing it.
        into_package: write MODEL_CARDS.md beside the shipped weights (for maintainers).
    """
    from vdm3d.io.runs import atomic_write_bytes
    from vdm3d.models.tiny import WEIGHTS_DIR
    from vdm3d.models.tiny.cards import render_cards

    text = render_cards(weights_dir or WEIGHTS_DIR)
    target = out or (WEIGHTS_DIR / "MODEL_CARDS.md" if into_package else None)
    if target is None:
        print(text)
        return
    atomic_write_bytes(target, text.encode())
    print(target)


def main(argv, prog: str = "vdm3d train"):
    from vdm3d.train.explore import train_explore
    from vdm3d.train.object_depth import train_object_depth
    from vdm3d.train.orbit import train_orbit
    from vdm3d.train.run import train_depth, train_vae, train_video
    from vdm3d.train.stylize import train_stylize
    from vdm3d.train.v3d import train_v3d

    return dispatch({"vae": train_vae, "video": train_video, "depth": train_depth, "explore": train_explore,
                     "orbit": train_orbit, "object-depth": train_object_depth,
                     "stylize": train_stylize, "v3d": train_v3d,
                     "cards": cards},
                    argv, prog, description=HELP, examples=EXAMPLES)
