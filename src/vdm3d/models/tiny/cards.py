"""Model cards of the shipped tiny models as markdown (``weights/MODEL_CARDS.md``).

The JSON beside each ``.safetensors`` is the source of truth (written by ``vdm3d train`` and, for
held-out metrics, by ``vdm3d eval ... --record``); this module only renders it for people.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any


def _flat(value: Any) -> bool:
    """A scalar or a list of scalars (a network's channels per level, an input size): shown in a config line."""
    items = value if isinstance(value, list) else [value]
    return not any(isinstance(x, (dict, list)) for x in items)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items() if _flat(v))
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(x) for x in value) + "]"
    return str(value)


def portable_command(command: str, name: str) -> str:
    """The recorded training command with its ``--out`` folder shown as ``runs/train/<name>``
    (where a run was written does not change what it trains)."""
    args = shlex.split(command)
    for i, arg in enumerate(args[:-1]):
        if arg == "--out":
            args[i + 1] = f"runs/train/{name}"
    return shlex.join(args)


def reproduce(card: dict[str, Any], name: str) -> str:
    """The shell line that retrains the model: the card's ``prepare`` steps (like fetching the init weights
    from an earlier commit with ``git show``), then its command (:func:`portable_command`)."""
    return " && ".join([*card.get("prepare", []), portable_command(card.get("command", ""), name)])


def timing(card: dict[str, Any]) -> str:
    """The card's training time, said as what it measured: ``train_seconds`` sums every session of a resumed
    run, the wall time with data building is of one process (the last one when the run was resumed)."""
    text = f"training wall time {card.get('train_seconds')} s"
    if card.get("wall_seconds_incl_data") is not None:
        return text + f" (with data {card['wall_seconds_incl_data']} s)"
    if card.get("wall_seconds_last_session_incl_data") is not None:
        last = card["wall_seconds_last_session_incl_data"]
        return text + f" over all sessions (the last session, resumed, took {last} s of wall time with its data)"
    return text + " (wall time with data not recorded)"


def render_cards(weights_dir: str | Path) -> str:
    """Markdown for every ``<name>.json`` in ``weights_dir``."""
    weights_dir = Path(weights_dir)
    parts = ["# Shipped tiny models", "",
             "Generated from the JSON cards beside the weights (`vdm3d train cards --into-package`). "
             "Every number was "
             "measured on procedural seeds from the held-out range, never used in training.", ""]
    for path in sorted(weights_dir.glob("*.json")):
        meta = json.loads(path.read_text())
        card = meta.get("card", {})
        size = path.with_suffix(".safetensors").stat().st_size if path.with_suffix(".safetensors").exists() else 0
        parts += [f"## {path.stem} ({meta.get('kind')})", ""]
        if card.get("description"):
            parts.append(f"- summary: {card['description']}")
        parts += [f"- weights: `{path.stem}.safetensors`, {size / 1e6:.2f} MB; config: {_fmt(meta.get('config', {}))}",
                  f"- reproduce: `{reproduce(card, path.stem)}`",
                  f"- data: {json.dumps(card.get('data', {}))}",
                  f"- seed {card.get('seed')}, steps {card.get('steps')}, {timing(card)}, "
                  f"stopped: {card.get('stopped')}",
                  f"- hardware: {_fmt(card.get('hardware', {}))}",
                  f"- notes: {card.get('notes', '')}", "", "Held-out metrics:", ""]
        for task, result in card.get("heldout", {}).items():
            parts.append(f"- {task}: {_fmt(result) if isinstance(result, dict) else result}")
        parts.append("")
    return "\n".join(parts)


def write_cards(weights_dir: str | Path) -> Path:
    out = Path(weights_dir) / "MODEL_CARDS.md"
    out.write_text(render_cards(weights_dir))
    return out
