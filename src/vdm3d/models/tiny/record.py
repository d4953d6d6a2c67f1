"""Where measured numbers go: a model card is changed only where the user said so.

``vdm3d eval ... --record`` writes a result into a card (``<model>.json``, ``card.heldout[key]``).
The shipped cards live inside the installed package, which a command must not change by surprise
(a site-packages install may be shared or read-only, and a checkout's cards are versioned files).
So :func:`card_path` writes into a card only in an explicit place: the ``--weights-dir`` the
evaluation read its weights from (your copy), or the package's own folder with
``--record-into-package`` (for maintainers refreshing the shipped numbers), also when ``--weights-dir``
names that folder. Anything else is a :class:`~vdm3d.errors.ConfigError` that names both options.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from vdm3d.errors import ConfigError

#: the fields of a recorded result that say how many cases it averages
COUNTS = ("objects", "rooms", "cases", "scenes", "images", "frames")


def _is_package(folder: str | Path) -> bool:
    from vdm3d.models.tiny import WEIGHTS_DIR

    return Path(folder).resolve() == WEIGHTS_DIR.resolve()


def card_path(model: str, weights_dir: str | Path | None, into_package: bool) -> Path:
    """The card ``<model>.json`` a recorded result may be written to (see the module docstring)."""
    from vdm3d.models.tiny import WEIGHTS_DIR

    if weights_dir is not None:
        return checked_card(Path(weights_dir) / f"{model}.json", into_package,
                            option=f"--weights-dir {weights_dir}")
    if into_package:
        return WEIGHTS_DIR / f"{model}.json"
    raise ConfigError(f"--record writes into the model card of {model!r}; pass --weights-dir DIR (a folder "
                      f"holding your copy of {model}.json and {model}.safetensors) or --record-into-package to "
                      "change the card shipped inside the installed package.")


def checked_card(path: str | Path, into_package: bool, option: str | None = None) -> Path:
    """``path`` as the card to record into, unless it is one shipped in the package (by its resolved folder,
    however it is spelled) and ``into_package`` was not given."""
    path = Path(path)
    if not into_package and _is_package(path.parent):
        raise ConfigError(f"{option or path} is the package's own weights folder, so --record would rewrite the "
                          f"shipped card {path.name}; add --record-into-package to change it on purpose, or "
                          "record into a copy of the folder.")
    return path


def _counts(result: Any) -> str:
    counts = [f"{k} {result[k]}" for k in COUNTS if isinstance(result, dict) and k in result]
    return ", ".join(counts) or "no case counts"


def store(path: str | Path, key: str, result: dict[str, Any]) -> None:
    """Set ``card.heldout[key]`` of the card file ``path`` to ``result`` (atomically), saying so when it
    replaces an entry measured on other case counts (a 2-room check over a 30-room evaluation)."""
    from vdm3d.io.runs import atomic_write_json

    path = Path(path)
    meta = json.loads(path.read_text())
    held = meta.setdefault("card", {}).setdefault("heldout", {})
    old, new = _counts(held.get(key)), _counts(result)
    if key in held and old != new:
        print(f"note: {path}: replaced {key!r} measured on {old} by one measured on {new}.", file=sys.stderr)
    held[key] = result
    atomic_write_json(path, meta)


def record_result(model: str, key: str, result: dict[str, Any], weights_dir: str | Path | None,
                  into_package: bool) -> Path:
    """Store ``result`` as ``card.heldout[key]`` of ``<model>.json`` (atomically); returns the card's path."""
    path = card_path(model, weights_dir, into_package)
    store(path, key, result)
    return path
