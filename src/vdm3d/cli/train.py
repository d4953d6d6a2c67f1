"""`vdm3d train vae|video|depth`: train the embedded tiny models on procedural worlds.

Built on accelerate: the same command runs on one CPU, one GPU, or several processes under
``accelerate launch -m vdm3d.cli.main train ...``. Training sets are rendered on first use and cached
(``$VDM3D_CACHE``, default ``~/.cache/vdm3d``). See :mod:`vdm3d.train.run`.
"""

from __future__ import annotations

from pathlib import Path

from vdm3d.cli.main import dispatch

HELP = "train the embedded tiny models (vae, video, depth) with EMA, checkpoints and --resume"


def cards(weights_dir: Path | None = None) -> None:
    """Render the JSON model cards of a weights folder (default: the shipped one) into MODEL_CARDS.md.

    Args:
        weights_dir: folder holding ``<name>.json`` + ``<name>.safetensors``.
    """
    from vdm3d.models.tiny import WEIGHTS_DIR
    from vdm3d.models.tiny.cards import write_cards

    print(write_cards(weights_dir or WEIGHTS_DIR))


def main(argv, prog: str = "vdm3d train"):
    from vdm3d.train.explore import train_explore
    from vdm3d.train.run import train_depth, train_vae, train_video
    from vdm3d.train.stylize import train_stylize

    return dispatch({"vae": train_vae, "video": train_video, "depth": train_depth, "explore": train_explore,
                     "stylize": train_stylize,
                     "cards": cards},
                    argv, prog, description=HELP)
