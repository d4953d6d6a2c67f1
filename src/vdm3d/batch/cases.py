"""The cases of a batch: read from a manifest (JSON lines or YAML), each turned into one job command.

A manifest lists cases, one job run each. JSON lines: one case object per line (``#`` comments and
blank lines are skipped). YAML: either a list of cases, or a mapping with shared settings::

    job: object                 # the job of every case that names none (or --job)
    options:                    # shared options, per job (a case's own win)
      object: {fit_steps: 300}
      explore: {steps: 4}
    cases:
      - {name: cup, image: photos/cup.jpg}
      - {name: mug, image: photos/mug.png, elevation_deg: 20}
      - {name: walk, job: explore, image: room.png, path: paths/walk.json}

Shared ``options`` are either per job (a mapping from job names to options, as above) or one mapping
of options, which go to the cases of the manifest's job (``job:`` / ``--job``) only; without a manifest
job, to every case whose job has that option. So an option never reaches a job it was not written for
(``fit_steps`` means Gaussian fitting steps in ``object`` but cache steps per chunk in ``explore``), and
a shared option that reaches no case is refused before any case runs.

Every case's options are checked against its job's options before any case runs (for the jobs with a
config dataclass, :data:`JOB_CONFIGS`): an unknown key gets one sentence naming the manifest, the
case, the key and the closest option. Keys take the spellings a ``--config`` file takes
(:func:`vdm3d.option_names.resolve_key`): fields, the flat flags ``--help`` shows (``steps`` for ``fit``'s
``fit.steps``), ``no_X``; a positional field (``data`` of ``fit``) becomes a positional argument.

In a case, ``name`` (the run folder's name; default: the stem of the first input file, else
``case_NNN``), ``job``, ``options`` (a mapping) and ``argv`` (raw arguments put first: a subcommand
such as ``[make, objects]``) are reserved; every other key is an option of the job: ``fit_steps: 300`` becomes ``--fit-steps 300``, ``true`` /
``false`` become ``--flag`` / ``--no-flag``, a list gives several values, a nested mapping gives
dotted flags (``plan: {max_hole_fraction: 0.3}`` -> ``--plan.max-hole-fraction 0.3``), as tyro spells
them (for a checked job, the flag its ``--help`` shows: ``split: {num_train_views: 3}`` is
``--num-train-views 3`` for ``fit``). A per-case camera path is one more option (``path: walk.json``
for ``explore``, ``trajectory:`` for ``stylize``). Relative paths are taken from the manifest's
folder when the file is there. Each case writes ``<batch out>/<name>/`` unless it sets ``out``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import re
import typing
from pathlib import Path
from typing import Any

from vdm3d.errors import ConfigError, InputError
from vdm3d.io.runs import run_place_problem

RESERVED = ("name", "job", "options", "argv")

# job -> "module:dataclass" of the jobs whose options are a config dataclass (checked before running);
# other jobs (eval, train, data, ...) take their options unchecked and tyro judges them in the case's run.
JOB_CONFIGS = {
    "object": "vdm3d.jobs.object:ObjectConfig",
    "fit": "vdm3d.jobs.fit:FitJobConfig",
    "complete": "vdm3d.jobs.complete:CompleteConfig",
    "explore": "vdm3d.jobs.explore:ExploreConfig",
    "stylize": "vdm3d.jobs.stylize:StylizeConfig",
    "view": "vdm3d.cli.view:ViewConfig",
}
# the commands a case may run (`vdm3d <job>`), which name per-job shared options (`options: {object: {...}}`)
JOBS = ("object", "complete", "explore", "stylize", "fit", "trajectory", "data", "train", "eval", "view")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class Case:
    """One job run of a batch."""

    name: str
    job: str
    options: dict[str, Any]  # option -> value, as written (paths resolved), without ``out``
    out: Path
    argv: tuple[str, ...] = ()  # raw arguments put first (a subcommand and its positionals)

    positionals: tuple[str, ...] = ()  # positional arguments of the job (``data`` of ``fit``), after ``argv``

    def command(self) -> list[str]:
        """The arguments of ``vdm3d <job>`` for this case (``--out`` included)."""
        return [*self.argv, *self.positionals, *flags(self.options), "--out", str(self.out)]


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


@functools.lru_cache(maxsize=None)
def job_config(job: str) -> type | None:
    """The config dataclass of ``vdm3d <job>``, or None for a job whose options are not checked here."""
    if job not in JOB_CONFIGS:
        return None
    module, name = JOB_CONFIGS[job].split(":")
    return getattr(importlib.import_module(module), name)


def accepts(job: str, key: str) -> bool:
    """``vdm3d <job>`` has an option spelled ``key`` (any job not in :data:`JOB_CONFIGS` is taken to)."""
    from vdm3d.option_names import resolve_key

    cls = job_config(job)
    return cls is None or resolve_key(cls, key) is not None


def job_options(job: str, options: dict[str, Any], where: str) -> tuple[list[str], dict[str, Any]]:
    """``(positional arguments, options by flag)`` of a case of ``job``: every key checked against the job's
    config dataclass and spelled as its flag (``{"fit": {"steps": 3}}`` -> ``{"steps": 3}`` for ``fit``).

    Raises ConfigError naming ``where`` (the manifest and the case), the key and the closest option."""
    from vdm3d.option_names import _nested_class, nest_flat_keys, options_of, unknown_hint

    cls = job_config(job)
    if cls is None:
        return [], options

    def leaves(tp: type, data: dict[str, Any], attrs: tuple[str, ...]):
        hints = typing.get_type_hints(tp, include_extras=True)
        fields = {f.name for f in dataclasses.fields(tp) if f.init}
        for key, value in nest_flat_keys(tp, data, where).items():
            if key not in fields:
                shown = ".".join((*attrs, str(key)))
                raise ConfigError(f"{where}: {shown!r} is not an option of `vdm3d {job}`"
                                  f"{unknown_hint(tp, str(key).replace('-', '_'))}; fix the key in the manifest.")
            nested = _nested_class(hints[key])
            if nested is not None and isinstance(value, dict):
                yield from leaves(nested, value, attrs + (key,))
            else:
                yield attrs + (key,), value

    by_attrs = {o.attrs: o for o in options_of(cls)}
    positionals, flat = [], {}
    for attrs, value in leaves(cls, options, ()):
        option = by_attrs.get(attrs)
        if option is not None and option.positional:
            positionals += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        else:
            flat[option.flag if option is not None else ".".join(attrs)] = value
    return positionals, flat


def _shared_options(path: Path, shared: Any, default_job: str | None, jobs: list[str]) -> dict[str, dict[str, Any]]:
    """The shared options of each job of the manifest's cases: per job as written (``options: {object:
    {...}}``), or one mapping for the manifest's job (every job with the option when it names none)."""
    if shared is None:
        return {}
    if not isinstance(shared, dict):
        raise InputError(path=path, field="options", problem="is not a mapping of options",
                         fix="write `options: {fit_steps: 300}` or per job `options: {object: {fit_steps: 300}}`")
    if shared and all(k in JOBS and isinstance(v, dict) for k, v in shared.items()):  # per job
        for job in shared:
            if job not in jobs:
                raise InputError(path=path, field=f"options.{job}", problem=f"is for the job {job}, which no case runs",
                                 fix=f"remove it, or give a case `job: {job}`")
        return {job: dict(opts) for job, opts in shared.items()}
    out: dict[str, dict[str, Any]] = {}
    for key, value in shared.items():
        targets = [default_job] if default_job else [j for j in dict.fromkeys(jobs) if accepts(j, key)]
        if default_job and not accepts(default_job, key):
            raise InputError(path=path, field=f"options.{key}",
                             problem=f"is not an option of `vdm3d {default_job}`, the manifest's job, whose cases "
                                     f"shared options go to",
                             fix=f"put it under its job (`options: {{JOB: {{{key}: ...}}}}`) or in the cases that take it")
        if default_job and default_job not in jobs:
            raise InputError(path=path, field=f"options.{key}",
                             problem=f"goes to the cases of the manifest's job {default_job}, and no case runs it",
                             fix="put it under the job it is for (`options: {JOB: {...}}`) or in the cases")
        if not targets:
            raise InputError(path=path, field=f"options.{key}",
                             problem=f"is an option of none of the cases' jobs ({', '.join(dict.fromkeys(jobs))})",
                             fix="remove it or fix its name")
        for job in targets:
            out.setdefault(job, {})[key] = value
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
    for where, c in raw:
        if not isinstance(c, dict):
            raise InputError(path=path, field=where, problem="is not a mapping of options",
                             fix="write each case as {\"name\": ..., \"image\": ...}")
        if not (c.get("job") or job or shared.get("job")):
            raise InputError(path=path, field=f"{where} job", problem="is not given",
                             fix="name the job in the case, at the top of the YAML (job: object) or with --job")
    default_job = job or shared.get("job")
    jobs = [str(c.get("job") or default_job) for _, c in raw]
    shared_by_job = _shared_options(path, shared.get("options"), default_job and str(default_job), jobs)
    base, cases, seen = path.parent, [], {}
    for i, (where, c) in enumerate(raw):
        own = {k: v for k, v in c.items() if k not in RESERVED}
        case_job = jobs[i]
        options = {**shared_by_job.get(case_job, {}), **(c.get("options") or {}), **own}
        options = _resolve(options, base)
        case_out = Path(options.pop("out")).expanduser() if options.get("out") else None  # as the job expands it
        problem = run_place_problem(case_out) if case_out is not None else None
        if problem:  # refused before any case runs: the case ran to its end, then failed its rename (EBUSY)
            raise InputError(path=path, field=f"{where} out", problem=f"{str(case_out)!r} {problem}: a run is "
                             "written beside its folder (.NAME.partial) and renamed into place at the end",
                             fix=f"give a folder inside it (such as out: {case_out / str(c.get('name') or 'cup')})")
        name = str(c.get("name") or (case_out.name if case_out else _default_name(options, i)))
        if not _NAME.match(name):
            raise InputError(path=path, field=f"{where} name", problem=f"{name!r} is not a usable folder name",
                             fix="use ASCII letters (a-z, A-Z), digits, '.', '_' or '-', starting with a letter or digit")
        if name in seen:
            raise InputError(path=path, field=f"{where} name", problem=f"{name!r} repeats {seen[name]}",
                             fix="give every case its own name")
        seen[name] = where
        argv = c.get("argv") or ()
        if not isinstance(argv, (list, tuple)):
            raise ConfigError(f"{path}: {where} argv must be a list of arguments, got {argv!r}.")
        positionals, options = job_options(case_job, options, f"{path}: {where} ({name})")
        cases.append(Case(name, case_job, options, case_out or Path(out) / name, tuple(str(a) for a in argv),
                          tuple(positionals)))
    return cases


def _default_name(options: dict[str, Any], index: int) -> str:
    for value in options.values():
        if isinstance(value, str) and Path(value).suffix and Path(value).exists():
            stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(value).stem)
            if _NAME.match(stem):
                return stem
    return f"case_{index:03d}"
