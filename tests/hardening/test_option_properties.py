"""Property tests over every job, train and eval config: the one validation mechanism refuses exactly
the values outside each declared range (checked against an independent oracle), and the option its
sentence names is a flag that the command's ``--help`` really lists."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import io
import math
import os
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vdm3d import options
from vdm3d.cli.main import main
from vdm3d.errors import ConfigError


def _configs() -> dict[str, tuple[list[str], object]]:
    """command -> (its argv for --help, a default config instance or a function command)."""
    from vdm3d.cli.batch import BatchConfig
    from vdm3d.cli.trajectory import Move, Orbit
    from vdm3d.cli.view import ViewConfig
    from vdm3d.eval.object import EvalObjectConfig
    from vdm3d.jobs.complete import CompleteConfig
    from vdm3d.jobs.explore import ExploreConfig
    from vdm3d.jobs.fit import FitJobConfig
    from vdm3d.jobs.object import ObjectConfig
    from vdm3d.jobs.stylize import StylizeConfig
    from vdm3d.train.explore import train_explore
    from vdm3d.train.run import train_depth, train_vae, train_video
    from vdm3d.train.stylize import train_stylize

    here = Path(".")
    return {
        "fit": (["fit"], FitJobConfig(data=here)),
        "object": (["object"], ObjectConfig()),
        "explore": (["explore"], ExploreConfig()),
        "complete": (["complete"], CompleteConfig(data=here)),
        "stylize": (["stylize"], StylizeConfig()),
        "eval object": (["eval", "object"], EvalObjectConfig()),
        "batch": (["batch"], BatchConfig(manifest=here)),
        "view": (["view"], ViewConfig(path=here)),
        "trajectory make orbit": (["trajectory", "make", "orbit"], Orbit(out=here)),
        "trajectory make move": (["trajectory", "make", "move"], Move(out=here)),
        "train vae": (["train", "vae"], train_vae),
        "train video": (["train", "video"], train_video),
        "train depth": (["train", "depth"], train_depth),
        "train explore": (["train", "explore"], train_explore),
        "train stylize": (["train", "stylize"], train_stylize),
    }


CONFIGS = _configs()


def _fields(target) -> list[tuple[tuple[str, ...], str, options.Range]]:
    """Every constrained option of a config instance, or of a function command's parameters."""
    if dataclasses.is_dataclass(target):
        return list(options.constrained_fields(target))
    out = []
    hints = typing.get_type_hints(target, include_extras=True)
    for name, p in inspect.signature(target).parameters.items():
        if dataclasses.is_dataclass(p.default):
            prefix, omit = options._nested_prefix(hints[name], name, "", False)
            out += list(options.constrained_fields(p.default, prefix, omit, (name,)))
        else:
            out += [((name,), name, r) for r in options._ranges(hints.get(name))]
    return out


FIELDS = [(command, *f) for command, (_, target) in CONFIGS.items() for f in _fields(CONFIGS[command][1])]


@functools.lru_cache(maxsize=None)
def help_text(command: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    os.environ["COLUMNS"] = "400"  # one option per line: flags are never wrapped
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main([*CONFIGS[command][0], "--help"]) == 0
    return out.getvalue()


def _replace(obj, attrs: tuple[str, ...], value):
    if len(attrs) == 1:
        return dataclasses.replace(obj, **{attrs[0]: value})
    return dataclasses.replace(obj, **{attrs[0]: _replace(getattr(obj, attrs[0]), attrs[1:], value)})


def _default(target, attrs: tuple[str, ...]):
    if dataclasses.is_dataclass(target):
        value = target
    else:
        value = inspect.signature(target).parameters[attrs[0]].default
        attrs = attrs[1:]
    for a in attrs:
        value = getattr(value, a)
    return value


def _is_int(target, attrs: tuple[str, ...]) -> bool:
    """Whether the option holds whole numbers (``int``, ``int | None``, ``tuple[int, ...]``)."""
    owner = target if len(attrs) == 1 and not dataclasses.is_dataclass(target) else type(_default(target, attrs[:-1])) \
        if len(attrs) > 1 or not dataclasses.is_dataclass(target) else type(target)
    tp = typing.get_type_hints(owner, include_extras=True)[attrs[-1]]
    base = str(typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp)
    return "int" in base and "float" not in base


def _outside(value: float, rng: options.Range) -> bool:
    """The oracle: written from the definition of a range, not from ``Range.accepts``."""
    if math.isnan(value) or math.isinf(value):
        return True
    below = rng.min is not None and (value < rng.min or (rng.open_min and value == rng.min))
    above = rng.max is not None and (value > rng.max or (rng.open_max and value == rng.max))
    return below or above


def test_every_job_train_and_eval_config_declares_ranges():
    constrained = {command for command, *_ in FIELDS}
    assert constrained == set(CONFIGS)
    assert len(FIELDS) > 200


def _suppressed(target, attrs: tuple[str, ...]) -> bool:
    """Whether the option is hidden from the command line (``tyro.conf.Suppress``: a field a job sets itself,
    such as complete's nested fit seeds, still range-checked for library calls)."""
    if len(attrs) == 1 and not dataclasses.is_dataclass(target):
        return False
    owner = type(_default(target, attrs[:-1])) if len(attrs) > 1 else type(target)
    tp = typing.get_type_hints(owner, include_extras=True)[attrs[-1]]
    return any("Suppress" in repr(m) for m in getattr(tp, "__metadata__", ()))


def test_every_named_option_is_a_real_flag():
    hidden = [(command, flag) for command, attrs, flag, _ in FIELDS if _suppressed(CONFIGS[command][1], attrs)]
    assert ("complete", "baseline.seed") in hidden and ("complete", "distill.fit.steps") in hidden
    for command, attrs, flag, _ in FIELDS:
        if (command, flag) in hidden:
            assert f"{options.flag_name(flag)} " not in help_text(command), (command, flag)
        else:
            assert f"{options.flag_name(flag)} " in help_text(command), (command, flag)


numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 0.5, 1.0, 180.0, 170.0, 90.0, -90.0, 65535, 65536, 8, 16, 15]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(FIELDS) - 1), raw=numbers)
def test_the_check_refuses_exactly_the_values_outside_the_range(index, raw):
    command, attrs, flag, rng = FIELDS[index]
    target = CONFIGS[command][1]
    default = _default(target, attrs)
    items = default if isinstance(default, tuple) else None
    is_int = _is_int(target, attrs)
    value = (int(raw) if math.isfinite(raw) else 0) if is_int else float(raw)
    stored = (value,) * max(1, len(items)) if items is not None else value
    bad = _outside(value, rng)
    try:
        if dataclasses.is_dataclass(target):
            options.check_options(_replace(target, attrs, stored))
        elif len(attrs) == 1:
            options.check_arguments(target, {attrs[0]: stored})
        else:
            options.check_arguments(target, {attrs[0]: _replace(_default(target, attrs[:1]), attrs[1:], stored)})
    except ConfigError as e:
        assert bad, f"{command} {flag}={value!r} refused: {e}"
        message = str(e)
        assert message.startswith(f"{options.flag_name(flag)} ") and rng.allowed() in message
        assert message.endswith(".") and "\n" not in message
    else:
        assert not bad, f"{command} {flag}={value!r} accepted outside {rng.allowed()}"


@pytest.mark.parametrize("rng, inside, outside", [
    (options.Range(1), [1, 2, 10**9], [0, -1, math.nan, math.inf]),
    (options.Range(0, open_min=True), [1e-12, 3.0], [0, -1e-12, -math.inf]),
    (options.Range(0, 1), [0, 0.5, 1], [-0.01, 1.01, math.nan]),
    (options.Range(0, 170, open_min=True, open_max=True), [1, 169.9], [0, 170, 180]),
])
def test_range_ends(rng, inside, outside):
    assert all(rng.accepts(v) for v in inside) and not any(rng.accepts(v) for v in outside)


def test_a_leading_tilde_in_a_path_option_is_the_home_folder(tmp_path, monkeypatch, capsys):
    """`--out=~/x`, a quoted "~/x", a --config file or a batch manifest used to make a folder named `~`
    in the working directory (which `rm -rf ~` then deletes the home of); every path option now expands it,
    in function commands and in job configs after --config gave their defaults."""
    from vdm3d.jobs.complete import CompleteConfig

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert main(["trajectory", "make", "orbit", "--frames", "3", "--out=~/o.json"]) == 0
    assert (home / "o.json").is_file() and not (tmp_path / "~").exists()
    config = options.expand_home(CompleteConfig(data=Path("~/scene"), out=Path("runs/x")))
    assert config.data == home / "scene" and config.out == Path("runs/x")
    assert options.expand_home((Path("~"), "~", 3)) == (home, "~", 3)  # strings are not paths
    from vdm3d.jobs.stylize import StylizeConfig

    default = StylizeConfig(mesh=Path("m.glb"), trajectory=Path("t.json"), style=Path("s.png"))
    assert options.expand_home(default).style_lora_cache is None  # the default: the cache folder, found at run time
    given = dataclasses.replace(default, style_lora_cache=Path("~/loras"))
    assert options.expand_home(given).style_lora_cache == home / "loras"
    capsys.readouterr()
