"""`vdm3d train vae|video|depth`: train the embedded tiny models on procedural worlds.

Built on accelerate: the same command runs on one CPU, one GPU, or several processes under
``accelerate launch -m vdm3d.cli.main train ...``. Training sets are rendered on first use and cached
(``train/`` in ``$VDM3D_CACHE``, ``$XDG_CACHE_HOME/vdm3d`` or ``~/.cache/vdm3d``). See :mod:`vdm3d.train.run`.
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

#: the examples that end `vdm3d train SUB --help`
SUB_EXAMPLES = {
    "vae": """examples:
  vdm3d train vae --out runs/vae --rooms.count 40 --loop.steps 1600 --loop.lr 1e-3""",
    "video": """examples:
  vdm3d train video --out runs/video --loop.steps 4000          # log lines with the loss and an ETA
  vdm3d train video --out runs/video --loop.steps 4000 --resume  # continue from the last checkpoint
  vdm3d train video --out runs/video-vae --vae runs/vae/vae.json  # decode with your own trained VAE""",
    "depth": """examples:
  vdm3d train depth --out runs/depth --loop.steps 2000 --loop.lr 1e-3""",
    "explore": """examples:
  vdm3d train explore --out runs/train/explore --rooms.count 200 --loop.steps 3000 --loop.lr 1e-4""",
    "orbit": """examples:
  vdm3d train orbit --out runs/train/orbit --objects.count 1000 --loop.steps 3200 --loop.lr 3e-4
  vdm3d eval object-orbit --checkpoint runs/train/orbit          # score it while it trains""",
    "object-depth": """examples:
  vdm3d train object-depth --out runs/train/object_depth --objects.count 1000 --loop.steps 5000 --loop.lr 1e-3""",
    "stylize": """examples:
  vdm3d train stylize --out runs/train/stylize_anchor --task anchor --loop.steps 600
  vdm3d train stylize --out runs/train/stylize_inbetween --task inbetween --loop.steps 600""",
    "v3d": """examples:
  vdm3d train v3d --out runs/train/v3d_scene                    # retrain the embedded model
  vdm3d train v3d --out runs/train/v3d_scene --resume           # continue from the last checkpoint""",
    "cards": """examples:
  vdm3d train cards                                             # print the shipped model cards as markdown
  vdm3d train cards --weights-dir runs/video --out runs/video/MODEL_CARDS.md""",
}


#: where the files the examples read come from, by the subcommand whose page names them
INPUTS = {
    "runs/vae/vae.json": "runs/vae/vae.json is the model of `vdm3d train vae --out runs/vae`",
    "--weights-dir runs/video": "runs/video is the run of `vdm3d train video --out runs/video`",
}


def inputs_note(text: str) -> str:
    """The ``inputs:`` line for the examples in ``text``: where each file they read comes from."""
    said = [line for name, line in INPUTS.items() if name in text]
    return f"inputs: {'; '.join(said)}.\n\n" if said else ""


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
    from vdm3d.train.run import set_train_argv, train_depth, train_vae, train_video
    from vdm3d.train.stylize import train_stylize
    from vdm3d.train.v3d import train_v3d

    set_train_argv(list(argv))  # the cards' command: this subcommand's own arguments, not sys.argv
    try:
        return dispatch({"vae": train_vae, "video": train_video, "depth": train_depth, "explore": train_explore,
                         "orbit": train_orbit, "object-depth": train_object_depth,
                         "stylize": train_stylize, "v3d": train_v3d,
                         "cards": cards},
                        argv, prog, description=HELP, examples={sub: inputs_note(text) + text for sub, text in {"": EXAMPLES, **SUB_EXAMPLES}.items()})
    finally:
        set_train_argv(None)
