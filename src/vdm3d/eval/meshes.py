"""The shared textured meshes an evaluation adds to its procedural cases (``--meshes``, ``--mesh-root``).

They live outside the package (``../shared/data/meshes`` in a checkout beside the team's data), so an
evaluation run from elsewhere finds none. Leaving them out silently made a run of 1 case look like the
README's run of 4, with a manifest that still listed them: :func:`mesh_files` says what it left out, and
the caller records what ran.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence


def mesh_files(items: Sequence[str], root: Path, say: Callable[[str], None] | None = None
               ) -> list[tuple[Path, Path | None]]:
    """``(mesh, texture or None)`` of each ``path[:texture]`` in ``items`` (relative to ``root``) that exists;
    the missing ones are named in one line (to stderr by default) with the option that finds them."""
    found, missing = [], []
    for item in items:
        path, _, texture = item.partition(":")
        full = root / path
        if full.is_file():
            found.append((full, root / texture if texture else None))
        else:
            missing.append(path)
    if missing:
        say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        say(f"note: {len(missing)} of the {len(items)} shared meshes are not under --mesh-root {root} "
            f"({', '.join(missing)}), so they are left out; pass --mesh-root DIR to add them, or --meshes with "
            "no values to run without them quietly.")
    return found
