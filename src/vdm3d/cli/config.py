"""``--config FILE.yaml`` for every job: a file gives the defaults, flags on the command line override it.

Implemented once, here: a job's CLI parses its frozen config dataclass with :func:`cli` (directly,
or through :func:`vdm3d.cli.main.dispatch`) instead of ``tyro.cli``. :func:`cli` takes ``--config
FILE`` out of the arguments, builds an instance of the dataclass from the file on top of the
defaults the job would use anyway (a preset, say), and hands it to tyro as ``default``; tyro then
applies the remaining flags, so a flag always wins over the file and every option is still declared
once, by its dataclass field.

The file is YAML (or JSON): a mapping of field names (``fit_steps``, as in the dataclass, or the flag
spelling ``fit-steps``) to values, nested mappings for nested configs. The flat names ``--help`` shows
for options of a nested config work too (``steps: 20`` for ``fit: {steps: 20}`` in ``vdm3d fit``, whose
nested options have no prefix; ``plan.max_hole_fraction: 0.3``), and so does ``no_X: true`` for ``X: false``. A run's ``manifest.json``
works too: its recorded ``config`` is used, which is how ``vdm3d rerun`` repeats a run. A relative
path in a YAML file is taken beside the file when it is there (``image: cup.png`` next to
``cup.yaml``), as in a batch manifest, and otherwise as on the command line (relative to the current
folder), as ``out`` always is; paths in a run manifest are relative to the folder the run was
started from, when the manifest records it (``cwd``). Unknown fields and values of the wrong type are refused with the file and the field named.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

from vdm3d.errors import ConfigError, InputError
from vdm3d.option_names import _strip, nest_flat_keys, unknown_hint
from vdm3d.options import check_options, expand_home

T = TypeVar("T")
FLAG = "--config"


def pop_config_flag(argv: Sequence[str]) -> tuple[list[str], Path | None]:
    """``argv`` without ``--config FILE`` (or ``--config=FILE``), and the file."""
    argv, out, path = list(argv), [], None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == FLAG:
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file: --config FILE.yaml.")
            path, i = Path(argv[i + 1]), i + 2
            continue
        if a.startswith(FLAG + "="):
            path = Path(a.split("=", 1)[1])
        else:
            out.append(a)
        i += 1
    return out, path


@dataclasses.dataclass(frozen=True)
class PathBase:
    """Where the relative paths of a config file start: ``folder``, always (a run manifest's ``cwd``), or
    only for a file that is there (``beside``: a YAML file's own folder)."""

    folder: Path
    beside: bool = False

    def __call__(self, path: Path, output: bool = False) -> Path:
        """``path`` from here; an ``output`` (``--out``) of a YAML file is always from the current folder, so
        where a run goes never depends on what exists beside the file."""
        if path.is_absolute() or not str(path) or (self.beside and output):
            return path
        joined = self.folder / path
        return joined if not self.beside or joined.exists() else path


def read_config_file(path: str | Path) -> tuple[dict[str, Any], PathBase | None]:
    """The mapping in a YAML/JSON config file or a run manifest, and where its relative paths start."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist", fix="pass --config a YAML file of options")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(path=path, problem="is not UTF-8 text", fix="pass a YAML or JSON file of options") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(path=path, problem=f"is not valid YAML/JSON ({first})", fix="fix the syntax") from None
    if data is None:
        return {}, None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise InputError(path=path, problem="is not a mapping of options",
                         fix="write one `option: value` per line, e.g. `fit_steps: 300`")
    if data.get("format") == "vdm3d.run":  # a run manifest: its recorded config
        if not isinstance(data.get("config"), dict):
            raise InputError(path=path, field="config", problem="is missing", fix="pass the manifest.json of a run")
        cwd = data.get("cwd")
        # replaying a run never continues or replaces the old one: those are choices of the new command
        config = {k: v for k, v in data["config"].items() if k not in ("resume", "overwrite")}
        return config, PathBase(Path(cwd)) if cwd else None
    return data, PathBase(path.parent, beside=True)


def _convert(value: Any, tp: Any, where: str, base: PathBase | None) -> Any:
    """``value`` (from YAML/JSON) as the field type ``tp``; raises ValueError with the reason."""
    tp = _strip(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where, base)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(" or ".join(errors))
    if origin is typing.Literal:
        if value in args:
            return value
        raise ValueError(f"must be one of {', '.join(map(repr, args))}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping of the fields of {tp.__name__}, got {value!r}")
        return build(tp, value, None, where, base)
    if tp is Path:
        if not isinstance(value, str):
            raise ValueError(f"must be a path, got {value!r}")
        p = Path(value)
        return base(p, output=where == "out") if base is not None else p
    if origin in (tuple, list, set, frozenset) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"must have {len(args)} values, got {len(value)}")
            items = [_convert(v, a, where, base) for v, a in zip(value, args)]
        else:
            inner = args[0] if args else Any
            items = [_convert(v, inner, where, base) for v in value]
        return (origin or tp)(items) if (origin or tp) is not list else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"must be one of {', '.join(repr(m.value) for m in tp)}, got {value!r}") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"must be a whole number, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"must be text, got {value!r}")
    return value


def build(cls: type[T], data: dict[str, Any], default: T | None, source: str = "config",
          base: PathBase | None = None) -> T:
    """An instance of the dataclass ``cls``: ``default`` (or the field defaults) updated from ``data``.

    Fields without a default that ``data`` does not give are left to the command line (``tyro.MISSING``).
    """
    import tyro

    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if default is not None:
            values[name] = getattr(default, name)
        elif f.default is not dataclasses.MISSING:
            values[name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[name] = f.default_factory()
        else:
            values[name] = tyro.MISSING
    for key, value in nest_flat_keys(cls, data, source).items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise ConfigError(f"{source}: {key!r} is not an option of {cls.__name__}{unknown_hint(cls, name)}; "
                              f"see --help for the options.")
        try:
            if dataclasses.is_dataclass(_strip(hints[name])) and isinstance(value, dict):
                values[name] = build(_strip(hints[name]), value, values[name] if values[name] is not tyro.MISSING
                                     else None, f"{source}: {name}", base)
            else:
                values[name] = _convert(value, hints[name], name, base)
        except ValueError as e:
            raise ConfigError(f"{source}: {name} {e}; fix the value in the file.") from None
    if any(v is tyro.MISSING for v in values.values()):
        # a required field left to the command line: only tyro will build the real instance, so this
        # one just carries the defaults (no __init__, whose type checks would refuse the placeholder)
        instance = object.__new__(cls)
        for name, value in values.items():
            object.__setattr__(instance, name, value)
        return instance
    return cls(**values)


MEMORY_NOTE = ("--memory 24GB fits every hub backbone the job loads into that much device memory (default: "
               "the free memory) with VAE slicing/tiling, chunking and CPU offload, and prints the plan")


def pop_flag(argv: Sequence[str], flag: str) -> tuple[list[str], str | None]:
    """``argv`` without ``FLAG VALUE`` (or ``FLAG=VALUE``; the last one given wins), and the value (None when
    absent, ``""`` when the flag ends the line)."""
    argv, out, value, i = list(argv), [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == flag or a.startswith(f"{flag}="):
            value = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in a else 2
            continue
        out.append(a)
        i += 1
    return out, value


def pop_memory_flag(argv: Sequence[str]) -> tuple[list[str], str]:
    """``argv`` without ``--memory AMOUNT`` (or ``--memory=AMOUNT``), and the amount (``"auto"``
    when absent: the device's free memory)."""
    from vdm3d.models.hub.memory import parse_memory

    out, amount = pop_flag(argv, "--memory")
    if amount is not None and amount != "auto":
        parse_memory(amount)  # refuse a bad amount before the job starts
    return out, "auto" if amount is None else amount


def pop_device_flag(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``--device DEVICE`` (or ``--device=DEVICE``), and the device, checked (None when
    absent: the CPU)."""
    from vdm3d.models.device import parse_device

    out, device = pop_flag(argv, "--device")
    if device is not None:
        parse_device(device)  # refuse a device this process has not before the job starts
    return out, device


def cli(cls: type[T], argv: Sequence[str], prog: str, default: T | None = None, description: str | None = None,
        examples: str | None = None, memory: bool = False) -> T:
    """``tyro.cli`` for a job's config dataclass, with ``--config FILE`` giving the defaults.

    ``examples`` (a few command lines) are printed at the end of ``--help``, after tyro's options.
    ``memory``: the job loads hub backbones, so it takes ``--memory AMOUNT`` and ``--device DEVICE`` too (not
    config fields: they change how the models run, not what the job computes), which configure
    :mod:`vdm3d.models.hub.memory` and :mod:`vdm3d.models.device` for every backbone loaded afterwards.
    """
    import tyro

    argv, path = pop_config_flag(argv)
    if memory:
        from vdm3d.models import device as devices
        from vdm3d.models.hub.memory import configure, print_plan

        argv, amount = pop_memory_flag(argv)
        argv, device = pop_device_flag(argv)
        if not ("-h" in argv or "--help" in argv):
            configure(amount, report=print_plan)
            devices.configure(device)
    if path is not None:
        data, base = read_config_file(path)
        default = build(cls, data, default, str(path), base)
    note = "--config FILE.yaml gives the defaults of these options (flags override it); vdm3d rerun uses it"
    if memory:
        from vdm3d.models.device import DEVICE_NOTE

        note = f"{note}. {MEMORY_NOTE}. {DEVICE_NOTE}"
    description = f"{description}\n\n{note}" if description else note
    try:
        config = tyro.cli(cls, args=argv, prog=prog, default=default, description=description)
    except SystemExit as e:
        if examples and e.code in (0, None) and ("-h" in argv or "--help" in argv):
            from vdm3d.cli.help_layout import examples_text

            print(examples_text(examples))
        raise
    return check_options(expand_home(config))  # every declared range, before the command does any work
