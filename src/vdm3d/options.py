"""Option constraints, declared once on the config fields and checked in one place before any work.

A numeric option says what it accepts where it is declared, as ``typing.Annotated`` metadata on the
dataclass field (or function parameter) that also gives the flag, its type and its help::

    steps: Annotated[int, Range(1)] = 3000                # its docstring below stays the help
    lr: Annotated[float, Range(0, open_min=True)] = 1e-3
    guidance: Annotated[float, Range(0)] = 4.5              # NaN and inf are refused by every Range

tyro ignores metadata it does not know, so the flag is still declared exactly once. The CLI checks
every parsed config with :func:`check_options` (and every function command with
:func:`checked_command`) before the command runs: the first violation raises
:class:`~vdm3d.errors.ConfigError` naming the option as it is typed (``--fit-steps``, or
``--loop.steps`` for a nested config without omitted prefixes), the value and the allowed range.
Library callers get the same check by calling :func:`check_options` on their config.

A ``Literal[...]`` field (or ``Literal[...] | None``) is checked against its choices the same way: tyro
refuses an unknown choice on the command line, but a config built in Python reaches the job only
through :func:`check_options`.

``None`` passes (an optional field that is unset); a tuple or list is checked element by element.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import types
import typing
from pathlib import PurePath
from typing import Any, Callable, Iterator

from vdm3d.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Range:
    """A finite number within ``[min, max]`` (either end optional; ``open_min``/``open_max`` exclude it)."""

    min: int | float | None = None
    max: int | float | None = None
    open_min: bool = False
    open_max: bool = False

    def allowed(self) -> str:
        """The range in words: ``>= 1``, ``> 0``, ``between 0 and 1``."""
        lo = None if self.min is None else f"{'>' if self.open_min else '>='} {_num(self.min)}"
        hi = None if self.max is None else f"{'<' if self.open_max else '<='} {_num(self.max)}"
        if lo and hi:
            if not self.open_min and not self.open_max:
                return f"between {_num(self.min)} and {_num(self.max)}"
            return f"{lo} and {hi}"
        return lo or hi or "a finite number"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True  # not a number: the type check of the parser is responsible
        if not math.isfinite(value):
            return False
        if self.min is not None and (value <= self.min if self.open_min else value < self.min):
            return False
        if self.max is not None and (value >= self.max if self.open_max else value > self.max):
            return False
        return True


#: The range of every ``seed`` option: numpy's generators refuse a negative seed and torch's one past 2**64,
#: so a seed both accept (the common 32-bit convention) is refused up front instead of deep inside a run.
SEED = Range(0, 2**32 - 1)


def derived_seed(seed: int, stride: int, offset: int = 0) -> int:
    """The seed of one part of a run (a chunk, a clip, an epoch): ``seed * stride + offset``, wrapped into
    :data:`SEED`'s range so that it is a valid seed itself at the top of the range too (a part seeded past
    it was refused, or overflowed torch's generator, for run seeds near 2**32); unchanged where it fits."""
    return (seed * stride + offset) % 2**32


@dataclasses.dataclass(frozen=True)
class Choices:
    """One of the values of a ``Literal[...]`` field (found from the type; never declared by hand)."""

    values: tuple

    def allowed(self) -> str:
        return ", ".join(map(str, self.values))

    def accepts(self, value: Any) -> bool:
        return value in self.values


def _num(x: int | float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def flag_name(path: str) -> str:
    """``fit_steps`` -> ``--fit-steps``; ``loop.time_limit_min`` -> ``--loop.time-limit-min``."""
    return "--" + path.replace("_", "-")


def _ranges(tp: Any) -> tuple[Range, ...]:
    if typing.get_origin(tp) is typing.Annotated:
        return tuple(m for m in tp.__metadata__ if isinstance(m, Range))
    return ()


def _choices(tp: Any) -> Choices | None:
    """The choices of a ``Literal[...]`` type (inside ``Annotated`` too, or ``| None``); None for others."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) is typing.Literal:
        return Choices(typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _choices(args[0])
    return None


def _nested_prefix(tp: Any, path: str, prefix: str, omit: bool) -> tuple[str, bool]:
    """The flag prefix of a nested config's fields, as tyro builds it, and whether the subtree omits prefixes.

    ``tyro.conf.OmitArgPrefixes`` drops the prefixes of the whole subtree; ``tyro.conf.arg(name="")``
    drops this level's name; ``arg(name="x")`` renames it and ``arg(prefix_name=False)`` forgets the
    parents' prefix.
    """
    name, parent = path.rsplit(".", 1)[-1], prefix
    for m in (tp.__metadata__ if typing.get_origin(tp) is typing.Annotated else ()):
        if "OmitArgPrefixes" in repr(m):
            omit = True
        if type(m).__name__ == "_ArgConfig":
            if getattr(m, "name", None) is not None:
                name = m.name
            if getattr(m, "prefix_name", None) is False:
                parent = ""
    if omit:
        return "", True
    return (f"{parent}{name}." if name else parent), False


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:  # noqa: BLE001 - an unresolvable forward reference: check nothing rather than crash
        return {}


def constrained_fields(config: Any, prefix: str = "", omit: bool = False, attrs: tuple[str, ...] = ()
                       ) -> Iterator[tuple[tuple[str, ...], str, Range]]:
    """``(attribute path, flag path, range)`` of every field of ``config`` (recursively) with a declared range.

    The attribute path reaches the field from ``config`` (``("fit", "steps")``); the flag path is
    the option as typed, without the dashes (``steps``).
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        tp, value, path = hints.get(f.name, f.type), getattr(config, f.name, None), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from constrained_fields(value, *_nested_prefix(tp, path, prefix, omit), attrs + (f.name,))
        else:
            for rng in _ranges(tp):
                yield attrs + (f.name,), path, rng


def violations(config: Any, prefix: str = "", omit: bool = False
               ) -> Iterator[tuple[str, Any, Range | Choices]]:
    """``(flag path, value, range or choices)`` of every field of ``config`` (recursively) outside its range
    or not one of its ``Literal`` choices."""
    for path, _, value, rule in _violations(config, prefix, omit, ()):
        yield path, value, rule


def _violations(config: Any, prefix: str, omit: bool, attrs: tuple[str, ...]
                ) -> Iterator[tuple[str, tuple[str, ...], Any, Range | Choices]]:
    """:func:`violations`, with each field's attribute path beside its flag path."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name, None)
        tp = hints.get(f.name, f.type)
        yield from _check_value(f"{prefix}{f.name}", value, tp, prefix, omit, attrs + (f.name,))


def _check_value(path: str, value: Any, tp: Any, prefix: str, omit: bool, attrs: tuple[str, ...]
                 ) -> Iterator[tuple[str, tuple[str, ...], Any, Range | Choices]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield from _violations(value, *_nested_prefix(tp, path, prefix, omit), attrs)
        return
    items = value if isinstance(value, (tuple, list)) else (value,)
    choices = _choices(tp)
    if choices is None and isinstance(value, (tuple, list)):  # tuple[Literal[...], ...]: each element
        inner = tp
        while typing.get_origin(inner) is typing.Annotated:
            inner = typing.get_args(inner)[0]
        args = typing.get_args(inner) if typing.get_origin(inner) in (tuple, list) else ()
        choices = _choices(args[0]) if args and all(a in (args[0], Ellipsis) for a in args) else None
    for rule in (*_ranges(tp), *([choices] if choices is not None else [])):
        for item in items:
            if item is not None and not rule.accepts(item):
                yield path, attrs, item, rule
                break


def _message(name: str, value: Any, rng: Range | Choices, source: str | None, field: bool = False) -> str:
    """The sentence for a value outside its range: ``name`` is a flag (``--steps``) or, with ``field``, a
    dataclass field (``FitConfig.steps``)."""
    where = f"{source}: " if source else ""
    if isinstance(rng, Choices):  # the CLI's own sentence for an unknown choice (vdm3d.cli.main)
        return f"{where}{name} takes one of {rng.allowed()}, not {value!r}; pass one of them."
    shown = "nan" if isinstance(value, float) and math.isnan(value) else _num(value) if isinstance(
        value, float) and math.isfinite(value) else str(value)
    return (f"{where}{name}{' =' if field else ''} {shown} is out of range: it must be {rng.allowed()}; "
            f"pass a value in that range.")


def check_options(config: Any, source: str | None = None, *, fields: bool = False) -> Any:
    """Raise :class:`ConfigError` for the first option of ``config`` outside its declared range (or not one
    of its ``Literal`` choices). The sentence names the command-line flag (``--fit.steps 0 ...``), or with
    ``fields=True`` (a library call) the dataclass field (``FitJobConfig.fit.steps = 0 ...``).

    Returns ``config`` so a parser can end with ``return check_options(tyro.cli(...))``.
    """
    for path, attrs, value, rng in _violations(config, "", False, ()):
        name = f"{type(config).__name__}.{'.'.join(attrs)}" if fields else flag_name(path)
        raise ConfigError(_message(name, value, rng, source, fields))
    return config


def _is_default(value: Any, field: dataclasses.Field) -> bool:
    try:
        return field.default is not dataclasses.MISSING and bool(value == field.default)
    except Exception:  # noqa: BLE001 - a value that does not compare (an array): not the default
        return False


def expand_home(value: Any) -> Any:
    """``value`` with every path that starts with ``~`` turned into the user's home, as a shell does for
    a bare word but not for ``--out=~/x``, a quoted argument, a ``--config`` file or a batch manifest
    (where ``~/x`` made a folder named ``~`` in the working directory). Dataclasses are copied with their
    paths expanded; tuples and lists element by element; anything else is returned as it is."""
    if isinstance(value, PurePath):
        return type(value)(os.path.expanduser(value)) if str(value).startswith("~") else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # a default left as it is (``~/.cache/...``) stays unexpanded: the run's manifest records it so, and a
        # rerun by another user expands it to that user's home where the job uses it
        changed = {f.name: expand_home(getattr(value, f.name)) for f in dataclasses.fields(value)
                   if f.init and not _is_default(getattr(value, f.name), f)}
        changed = {k: v for k, v in changed.items() if v is not getattr(value, k)}
        return dataclasses.replace(value, **changed) if changed else value
    if isinstance(value, (tuple, list)):
        items = [expand_home(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    return value


def check_arguments(fn: Callable, arguments: dict[str, Any]) -> None:
    """:func:`check_options` for the parameters of a function command (``vdm3d train``, ``vdm3d eval``)."""
    hints = _hints(fn)
    for name, value in arguments.items():
        for path, _, bad, rng in _check_value(name, value, hints.get(name), "", False, (name,)):
            raise ConfigError(_message(flag_name(path), bad, rng, None))


def checked_command(fn: Callable) -> Callable:
    """``fn`` with its arguments checked against their declared ranges before it runs.

    The wrapper keeps ``fn``'s signature, annotations and docstring, so tyro builds the same flags.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.arguments.update({k: expand_home(v) for k, v in bound.arguments.items()})
        check_arguments(fn, dict(bound.arguments))
        return fn(*bound.args, **bound.kwargs)

    return run


__all__ = ["SEED", "Choices", "Range", "check_arguments", "check_options", "checked_command",
           "constrained_fields", "expand_home", "flag_name", "violations"]
