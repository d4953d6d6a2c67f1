"""How the options of a config dataclass are spelled: as fields, as the flags tyro gives them, and as
the flat names ``--help`` shows for options of nested configs.

Shared by ``--config`` files (:mod:`vdm3d.cli.config`) and batch manifests (:mod:`vdm3d.batch.cases`),
which both accept every spelling the command line accepts: a field name (``fit_steps``), its flag
spelling (``fit-steps``), the flat flag of a nested option (``steps`` for ``fit.steps`` in ``vdm3d fit``,
``plan.max_hole_fraction``) and ``no_X: true`` for ``X: false``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from vdm3d.errors import ConfigError


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_positional(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Annotated and any("Positional" in repr(m) for m in tp.__metadata__)


def _nested_class(tp: Any) -> type | None:
    """The dataclass of a nested config field (tyro gives its fields flags of their own), else None."""
    inner = _strip(tp)
    return inner if dataclasses.is_dataclass(inner) and isinstance(inner, type) else None


@dataclasses.dataclass(frozen=True)
class Option:
    """One leaf option of a config dataclass: where it is (``("fit", "steps")``), the flag tyro gives it
    without the dashes and in field spelling (``steps``), its type, and whether it is positional."""

    attrs: tuple[str, ...]
    flag: str
    type: Any
    positional: bool = False


def options_of(cls: type, prefix: str = "", omit: bool = False, attrs: tuple[str, ...] = ()) -> list[Option]:
    """Every leaf option of the dataclass ``cls`` (recursively), with the flag name tyro builds for it."""
    from vdm3d.options import _nested_prefix

    hints = typing.get_type_hints(cls, include_extras=True)
    out: list[Option] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, path = hints.get(f.name, f.type), f"{prefix}{f.name}"
        nested = _nested_class(tp)
        if nested is not None:
            out += options_of(nested, *_nested_prefix(tp, path, prefix, omit), attrs + (f.name,))
        else:
            out.append(Option(attrs + (f.name,), path, tp, _is_positional(tp)))
    return out


def resolve_key(cls: type, key: str) -> tuple[tuple[str, ...], bool] | None:
    """Where the option spelled ``key`` lives in ``cls``, and whether its value is negated; None when no
    option has that spelling.

    Accepted spellings: a field name (a nested config's too, for a mapping), the flag as ``--help``
    shows it without dashes (``steps`` for ``fit.steps`` under ``OmitArgPrefixes``, ``plan.max_hole_fraction``),
    either with ``-`` or ``_``, and ``no_X`` for a true/false option ``X`` (``no_ray: true`` is ``ray: false``).
    """
    name = str(key).replace("-", "_")
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    if name in fields:
        return (name,), False
    options = options_of(cls)
    by_flag = {o.flag: o for o in options}
    if name in by_flag:
        return by_flag[name].attrs, False
    if "." not in name and name.startswith("no_"):
        target = resolve_key(cls, name[3:])
        if target is not None and not target[1]:
            leaf = next((o for o in options if o.attrs == target[0]), None)
            if leaf is not None and _strip(leaf.type) is bool:
                return target[0], True
    return None


def unknown_hint(cls: type, name: str) -> str:
    """`` (did you mean 'x'?)`` for an unknown option ``name`` of ``cls``, or a word on the positional argument."""
    options = options_of(cls)
    spellings = sorted({f.name for f in dataclasses.fields(cls) if f.init} | {o.flag for o in options})
    close = difflib.get_close_matches(name, spellings, n=1)
    words = [f"did you mean {close[0]!r}?"] if close else []
    positional = [o for o in options if o.positional]
    if positional:  # shown by --help as its type (PATH), so a file may name it after that
        words.append("the positional argument is " + " and ".join(f"`{'.'.join(o.attrs)}:`" for o in positional)
                     + " in a file")
    return f" ({' '.join(words)})" if words else ""


def nest_flat_keys(cls: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` with flag spellings moved to the nested fields they set: ``{steps: 20}`` becomes
    ``{fit: {steps: 20}}`` for :class:`~vdm3d.jobs.fit.FitJobConfig`, ``{no_ray: true}`` becomes
    ``{ray: false}``. Keys that name no option are left for :func:`build` to refuse."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        found = resolve_key(cls, key)
        if found is None:
            out[key] = value
            continue
        attrs, negate = found
        if negate:
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {key} must be true or false, got {value!r}; fix the value in the file.")
            value = not value
        node = out
        for a in attrs[:-1]:
            child = node.setdefault(a, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {key!r} sets {'.'.join(attrs)}, which {a!r} also sets; "
                                  f"keep one of them in the file.")
            node = child
        leaf = attrs[-1]
        both = isinstance(node.get(leaf), dict) and isinstance(value, dict)
        if leaf in node and (not both or set(node[leaf]) & set(value)):
            twice = ".".join(attrs + ((sorted(set(node[leaf]) & set(value))[0],) if both else ()))
            raise ConfigError(f"{source}: {twice} is set twice ({key!r} and another key of the file); "
                              f"keep one of them.")
        if both:
            node[leaf] = {**node[leaf], **value}
        else:
            node[leaf] = value
    return out
