"""``vdm3d eval SUB --manifest CASES`` through the batch runner: each eval case is one batch case.

A case is a set of options of ``vdm3d eval SUB`` (JSON lines or YAML, the batch manifest format of
:mod:`vdm3d.batch.cases`); the flags given on the command line beside ``--manifest`` are shared by
every case (a case's own options win, being later on its command line). Each case runs as
``vdm3d eval SUB <shared flags> <case options> --out <out>/<name>`` in its own process, on Ray or one
after another, so a rerun skips the cases whose run folder is complete and runs the rest. The summary
adds each finished case's numbers (``means`` or ``result`` of its ``manifest.json``) to the batch
table and writes them to ``<out>/batch.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from vdm3d.batch.cases import Case, read_cases
from vdm3d.batch.runner import CaseResult
from vdm3d.errors import ConfigError
from vdm3d.io.runs import MANIFEST

BATCH_FLAGS = {"--address": 1, "--num-cpus": 1, "--cpus-per-case": 1, "--no-ray": 0, "--ray": 0, "--out": 1,
               "--manifest": 1}
"""flags that steer the batch (with how many values they take); the rest go to every case"""


def split_batch_flags(argv: Sequence[str]) -> tuple[dict[str, str | bool], list[str]]:
    """(the batch flags given, with their values; the other arguments, in order)."""
    batch: dict[str, str | bool] = {}
    rest: list[str] = []
    i, argv = 0, list(argv)
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        if flag in BATCH_FLAGS:
            if BATCH_FLAGS[flag] == 0:
                batch[flag] = True
                i += 1
                continue
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{flag} needs a value; see vdm3d eval --help.")
                value, i = argv[i + 1], i + 1
            batch[flag] = value
        else:
            rest.append(argv[i])
        i += 1
    return batch, rest


def is_batch_manifest(path: str | Path) -> bool:
    """A batch manifest is JSON lines or YAML (``eval object`` keeps its own ``.json`` case list)."""
    return Path(path).suffix.lower() in (".jsonl", ".ndjson", ".yaml", ".yml")


def eval_cases(sub: str, manifest: str | Path, out: str | Path, shared: Sequence[str]) -> list[Case]:
    """The cases of ``manifest`` as ``vdm3d eval SUB`` runs, the shared flags first."""
    cases = read_cases(manifest, out, job="eval")
    for c in cases:
        if c.job != "eval":
            raise ConfigError(f"{manifest}: case {c.name!r} names job {c.job!r}; an eval manifest runs "
                              f"`vdm3d eval {sub}` only (use vdm3d batch for other jobs).")
    return [Case(c.name, "eval", c.options, c.out, (sub, *c.argv, *shared)) for c in cases]


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix.rstrip(".")] = float(data)
    return out


def case_numbers(out: str | Path) -> dict[str, float]:
    """The scores a finished eval case recorded in its manifest (``means`` or ``result``), flattened."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return _numbers(data.get("means") or data.get("result") or {})


def numbers_table(results: list[CaseResult], max_columns: int = 8) -> tuple[str, dict[str, dict[str, float]]]:
    """A plain-text table of each case's scores (the first ``max_columns`` metrics), and the scores."""
    scores = {r.name: case_numbers(r.out) for r in results}
    columns: list[str] = []
    for s in scores.values():
        columns += [k for k in s if k not in columns]
    columns = columns[:max_columns]
    if not columns:
        return "", scores
    rows = [("case", *columns)] + [(name, *(f"{s[c]:.4g}" if c in s else "-" for c in columns))
                                   for name, s in scores.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines), scores
