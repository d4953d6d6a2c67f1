"""Where measured numbers go: a model card is changed only where the user said so.

``vdm3d eval ... --record`` writes a result into a card (``<model>.json``, ``card.heldout[key]``).
The shipped cards live inside the installed package, which a command must not change by surprise
(a site-packages install may be shared or read-only, and a checkout's cards are versioned files).
So :func:`card_path` writes into a card only in an explicit place: the ``--weights-dir`` the
evaluation read its weights from (your copy), or the package's own folder with
``--record-into-package`` (for maintainers refreshing the shipped numbers). Anything else is a
:class:`~vdm3d.errors.ConfigError` that names both options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vdm3d.errors import ConfigError


def card_path(model: str, weights_dir: str | Path | None, into_package: bool) -> Path:
    """The card ``<model>.json`` a recorded result may be written to (see the module docstring)."""
    from vdm3d.models.tiny import WEIGHTS_DIR

    if weights_dir is not None:
        return Path(weights_dir) / f"{model}.json"
    if into_package:
        return WEIGHTS_DIR / f"{model}.json"
    raise ConfigError(f"--record writes into the model card of {model!r}; pass --weights-dir DIR (a folder "
                      f"holding your copy of {model}.json and {model}.safetensors) or --record-into-package to "
                      "change the card shipped inside the installed package.")


def record_result(model: str, key: str, result: dict[str, Any], weights_dir: str | Path | None,
                  into_package: bool) -> Path:
    """Store ``result`` as ``card.heldout[key]`` of ``<model>.json`` (atomically); returns the card's path."""
    from vdm3d.io.runs import atomic_write_json

    path = card_path(model, weights_dir, into_package)
    meta = json.loads(path.read_text())
    meta.setdefault("card", {}).setdefault("heldout", {})[key] = result
    atomic_write_json(path, meta)
    return path
