"""How ``--help`` text is fitted to the terminal: its width, and lines wrapped at spaces with example commands
kept whole. Its own module so that :mod:`vdm3d.cli.config` and :mod:`vdm3d.cli.rerun`, which print help
through tyro and argparse, and :mod:`vdm3d.cli.main`, which patches tyro's layout, share it without importing
one another."""

from __future__ import annotations

import shutil
import textwrap

MIN_HELP_WIDTH = 40  # tyro's own floor for its error boxes; narrower, its --help page was letters (or looped)
BESIDE_MIN = 30  # an option's help narrower than this beside its name goes below the name instead


def help_width() -> int:
    """The width --help is laid out for: the terminal's (``COLUMNS`` when set, 80 when not a terminal), and at
    least :data:`MIN_HELP_WIDTH`; a narrower terminal folds the lines."""
    return max(MIN_HELP_WIDTH, shutil.get_terminal_size().columns)


def wrap_help_text(text: str, width: int | None = None, examples: bool = False) -> str:
    """``text`` with every line longer than ``width`` (:func:`help_width`) wrapped at spaces, the folded lines
    indented as their first one (a word longer than the width, a path or a URL, is kept whole). With
    ``examples``, an indented line is a command line, which is never folded (a copied half would run on its
    own): its ``  # comment`` goes on the lines above it instead."""
    width = width or help_width()
    out = []
    for line in text.split("\n"):
        if len(line) <= width or "\x1b" in line:  # fits, or coloured (tyro's own, already laid out)
            out.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())]
        if examples and indent:
            command, _, comment = line.partition("  # ")
            if comment:
                out += textwrap.wrap(comment, width, initial_indent=f"{indent}# ",
                                     subsequent_indent=f"{indent}# ", break_long_words=False,
                                     break_on_hyphens=False)
            out.append(command.rstrip())
            continue
        out += textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False)
    return "\n".join(out)


def examples_text(examples: str) -> str:
    """The examples printed at the end of --help (after a blank line), fitted to :func:`help_width`."""
    return "\n" + wrap_help_text(examples.strip(), examples=True)
