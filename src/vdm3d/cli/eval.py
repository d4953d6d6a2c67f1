"""`vdm3d eval ...`: quality against held-out ground truth, always beside a non-generative baseline.

Each evaluation harness lives in its own module under ``vdm3d.eval`` and exposes ``COMMANDS``, a dict
of subcommand name -> function (its typed parameters become the flags). This file only merges them.
"""

from __future__ import annotations

import importlib
import importlib.util

from vdm3d.cli.main import dispatch

HELP = "score jobs and backbones on held-out ground truth against non-generative baselines"
HARNESSES = ("vdm3d.eval.object", "vdm3d.eval.backbones", "vdm3d.eval.scenes", "vdm3d.eval.explore",
             "vdm3d.eval.complete", "vdm3d.eval.stylize")


def commands() -> dict:
    out: dict = {}
    for name in HARNESSES:
        if importlib.util.find_spec(name) is not None:
            out.update(importlib.import_module(name).COMMANDS)
    return out


def main(argv, prog: str = "vdm3d eval"):
    return dispatch(commands(), argv, prog, description=HELP)
