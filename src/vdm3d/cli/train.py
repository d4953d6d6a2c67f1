"""`vdm3d train vae|video|depth`: train the embedded tiny models on procedural worlds.

Built on accelerate: the same command runs on one CPU, one GPU, or several processes under
``accelerate launch -m vdm3d.cli.main train ...``. Training sets are rendered on first use and cached
(``$VDM3D_CACHE``, default ``~/.cache/vdm3d``). See :mod:`vdm3d.train.run`.
"""

from __future__ import annotations

from vdm3d.cli.main import dispatch

HELP = "train the embedded tiny models (vae, video, depth) with EMA, checkpoints and --resume"


def main(argv, prog: str = "vdm3d train"):
    from vdm3d.train.run import train_depth, train_vae, train_video

    dispatch({"vae": train_vae, "video": train_video, "depth": train_depth}, argv, prog, description=HELP)
