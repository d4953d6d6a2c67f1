"""The cases of a batch: read from a manifest (JSON lines or YAML), each turned into one job command.

A manifest lists cases, one job run each. JSON lines: one case object per line (``#`` comments and
blank lines are skipped). YAML: either a list of cases, or a mapping with shared settings::

    job: object                 # the job of every case that names none (or --job)
    options: {fit_steps: 300}   # options shared by every case (a case's own win)
    cases:
      - {name: cup, image: photos/cup.jpg}
      - {name: mug, image: photos/mug.png, elevation_deg: 20}
      - {name: walk, job: explore, image: room.png, trajectory: paths/walk.json}

In a case, ``name`` (the run folder's name; default: the stem of the first input file, else
``case_NNN``), ``job``, ``options`` (a mapping) and ``argv`` (raw arguments put first: a subcommand such as ``[make, objects]``) are reserved;
every other key is an option of the job: ``fit_steps: 300`` becomes ``--fit-steps 300``, ``true`` /
``false`` become ``--flag`` / ``--no-flag``, a list gives several values, a nested mapping gives
dotted flags (``split: {num_train_views: 3}`` -> ``--split.num-train-views 3``), as tyro spells
them. A per-case trajectory is one more option (``trajectory: path.json``). Relative paths are taken
from the manifest's folder when the file is there. Each case writes ``<batch out>/<name>/`` unless it
sets ``out``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from vdm3d.errors import ConfigError, InputError

RESERVED = ("name", "job", "options", "argv")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class Case:
    """One job run of a batch."""

    name: str
    job: str
    options: dict[str, Any]  # option -> value, as written (paths resolved), without ``out``
    out: Path
    argv: tuple[str, ...] = ()  # raw arguments put first (a subcommand and its positionals)

    def command(self) -> list[str]:
        """The arguments of ``vdm3d <job>`` for this case (``--out`` included)."""
        return [*self.argv, *flags(self.options), "--out", str(self.out)]


def flags(options: dict[str, Any], prefix: str = "") -> list[str]:
    """tyro flags for ``options``: ``{"fit_steps": 3, "refine": True}`` -> ``--fit-steps 3 --refine``."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + prefix + key.replace("_", "-")
        if isinstance(value, dict):
            out += flags(value, prefix + key.replace("_", "-") + ".")
        elif isinstance(value, bool):
            out.append(flag if value else "--" + prefix + "no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            out += [flag, *(str(v) for v in value)]
        elif value is None:
            out += [flag, "None"]
        else:
            out += [flag, str(value)]
    return out


def _resolve(value: Any, base: Path) -> Any:
    """Relative paths that exist beside the manifest become absolute (others are left as written)."""
    if isinstance(value, dict):
        return {k: _resolve(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, base) for v in value]
    if isinstance(value, str) and value and not Path(value).is_absolute() and (base / value).exists():
        return str((base / value).resolve())
    return value


def _raw_cases(path: Path) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """``([(where, case dict)], shared settings)`` from a JSON-lines or YAML manifest."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        cases = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                cases.append((f"line {i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise InputError(path=path, field=f"line {i}", problem=f"is not JSON ({e.msg})",
                                 fix="write one case object per line, e.g. {\"name\": \"cup\", \"image\": \"cup.png\"}") from None
        return cases, {}
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(path=path, problem=f"is not valid YAML ({str(e).splitlines()[0]})",
                             fix="fix the syntax") from None
        shared: dict[str, Any] = {}
        if isinstance(data, dict):
            shared = {k: v for k, v in data.items() if k != "cases"}
            data = data.get("cases")
        if not isinstance(data, list):
            raise InputError(path=path, field="cases", problem="is not a list of cases",
                             fix="write `cases:` followed by one `- {name: ..., ...}` per case")
        return [(f"case {i + 1}", c) for i, c in enumerate(data)], shared
    raise InputError(path=path, problem=f"has a suffix {path.suffix!r} that names no manifest format",
                     fix="write the cases as JSON lines (.jsonl) or YAML (.yaml)")


def read_cases(path: str | Path, out: str | Path, job: str | None = None) -> list[Case]:
    """The cases of the manifest at ``path``, with run folders under ``out``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist", fix="pass a JSON-lines or YAML batch manifest")
    raw, shared = _raw_cases(path)
    unknown = set(shared) - {"job", "options"}
    if unknown:
        raise InputError(path=path, field=", ".join(sorted(unknown)), problem="is not a batch setting",
                         fix="put job options under `options:` or in each case")
    if not raw:
        raise InputError(path=path, problem="lists no cases", fix="add one case per line (JSON) or under `cases:` (YAML)")
    base, cases, seen = path.parent, [], {}
    for i, (where, c) in enumerate(raw):
        if not isinstance(c, dict):
            raise InputError(path=path, field=where, problem="is not a mapping of options",
                             fix="write each case as {\"name\": ..., \"image\": ...}")
        own = {k: v for k, v in c.items() if k not in RESERVED}
        options = {**(shared.get("options") or {}), **(c.get("options") or {}), **own}
        options = _resolve(options, base)
        case_job = c.get("job") or job or shared.get("job")
        if not case_job:
            raise InputError(path=path, field=f"{where} job", problem="is not given",
                             fix="name the job in the case, at the top of the YAML (job: object) or with --job")
        case_out = Path(options.pop("out")) if options.get("out") else None
        name = str(c.get("name") or (case_out.name if case_out else _default_name(options, i)))
        if not _NAME.match(name):
            raise InputError(path=path, field=f"{where} name", problem=f"{name!r} is not a usable folder name",
                             fix="use letters, digits, '.', '_' or '-'")
        if name in seen:
            raise InputError(path=path, field=f"{where} name", problem=f"{name!r} repeats {seen[name]}",
                             fix="give every case its own name")
        seen[name] = where
        argv = c.get("argv") or ()
        if not isinstance(argv, (list, tuple)):
            raise ConfigError(f"{path}: {where} argv must be a list of arguments, got {argv!r}.")
        cases.append(Case(name, str(case_job), options, case_out or Path(out) / name, tuple(str(a) for a in argv)))
    return cases


def _default_name(options: dict[str, Any], index: int) -> str:
    for value in options.values():
        if isinstance(value, str) and Path(value).suffix and Path(value).exists():
            stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(value).stem)
            if _NAME.match(stem):
                return stem
    return f"case_{index:03d}"
