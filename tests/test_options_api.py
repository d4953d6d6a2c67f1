"""check_options for configs built in Python: Literal choices, and the range of every seed option."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import pytest

from vdm3d import options
from vdm3d.errors import ConfigError
from vdm3d.jobs.complete import CompleteConfig, StageFitConfig
from vdm3d.jobs.explore import ExploreConfig
from vdm3d.jobs.fit import FitJobConfig
from vdm3d.jobs.object import ObjectConfig
from vdm3d.jobs.stylize import StylizeConfig
from vdm3d.recon.trainer import FitConfig


def _refusal(config) -> str:
    with pytest.raises(ConfigError) as e:
        options.check_options(config)
    return str(e.value)


def _with(config, **changes):
    """``config`` with fields set past its constructor (the test session type-checks constructors, which
    a library caller's process does not)."""
    config = dataclasses.replace(config)
    for name, value in changes.items():
        object.__setattr__(config, name, value)
    return config


def test_an_unknown_literal_choice_is_refused_with_the_clis_sentence():
    # tyro refuses it on the command line; built in Python it used to run as the "random" init
    assert _refusal(_with(FitJobConfig(data=Path("x")), init="bogus")) == \
        "--init takes one of points, random, not 'bogus'; pass one of them."
    assert _refusal(_with(ObjectConfig(), orbit="v4d")) == \
        "--orbit takes one of sv3d-static, sv3d-dynamic, v3d, not 'v4d'; pass one of them."
    # nested, under a kept prefix: --baseline.backend as the CLI spells it
    assert _refusal(CompleteConfig(data=Path("x"), baseline=_with(StageFitConfig(), backend="gpu"))).startswith(
        "--baseline.backend takes one of auto, ")
    # an optional Literal left unset (None) passes; the defaults pass
    assert options.check_options(FitJobConfig(data=Path("x"))) is not None
    assert options.check_options(_with(StylizeConfig(), guidance_scale=None)) is not None


Kind = typing.Literal["a", "b"]


def _command(kinds: tuple[Kind, ...] = ("a",), kind: Kind | None = None):
    return kinds, kind


def test_literal_types_the_check_understands():
    assert options._choices(typing.Annotated[Kind, "meta"]) == options.Choices(("a", "b"))
    assert options._choices(Kind | None) == options.Choices(("a", "b"))
    assert options._choices(typing.Optional[Kind]) == options.Choices(("a", "b"))
    assert options._choices(str) is None and options._choices(Kind | int) is None
    options.check_arguments(_command, {"kinds": ("a", "b"), "kind": None})
    with pytest.raises(ConfigError, match=r"^--kinds takes one of a, b, not 'c'; pass one of them\.$"):
        options.check_arguments(_command, {"kinds": ("a", "c")})
    with pytest.raises(ConfigError, match=r"^--kind takes one of a, b, not 'z'; pass one of them\.$"):
        options.check_arguments(_command, {"kind": "z"})


SEED_SENTENCE = "--seed {} is out of range: it must be between 0 and 4294967295; pass a value in that range."


@pytest.mark.parametrize("config", [
    ObjectConfig(), ExploreConfig(), StylizeConfig(), CompleteConfig(data=Path("x")),
])
@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_a_seed_numpy_or_torch_would_refuse_is_refused_first(config, seed):
    assert _refusal(dataclasses.replace(config, seed=seed)) == SEED_SENTENCE.format(seed)
    options.check_options(dataclasses.replace(config, seed=2**32 - 1))


def test_fits_seed_is_range_checked_too():
    config = FitJobConfig(data=Path("x"), fit=dataclasses.replace(FitConfig(), seed=-1))
    assert _refusal(config) == SEED_SENTENCE.format(-1)


def _seed_options(target, path=()):
    """``(path, type)`` of every option named ``seed`` of a config class or function command, recursively."""
    if isinstance(target, type) and dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target, include_extras=True)
        items = [(f.name, hints[f.name], f.default) for f in dataclasses.fields(target) if f.init]
    elif callable(target):
        hints = typing.get_type_hints(inspect.unwrap(target), include_extras=True)
        items = [(n, hints.get(n), p.default) for n, p in inspect.signature(target).parameters.items()]
    else:
        return
    for name, tp, default in items:
        if name == "seed":
            yield path + (name,), tp
        elif dataclasses.is_dataclass(default) and not isinstance(default, type):
            yield from _seed_options(type(default), path + (name,))


def test_every_seed_option_of_every_command_has_the_seed_range():
    from vdm3d.cli import eval as eval_cli
    from vdm3d.cli.data import make
    from vdm3d.cli.trajectory import MAKE
    from vdm3d.data.procedural.dataset import DatasetConfig
    from vdm3d.eval.object import EvalObjectConfig
    from vdm3d.train.explore import train_explore
    from vdm3d.train.run import train_depth, train_vae, train_video
    from vdm3d.train.stylize import train_stylize

    targets = {"fit": FitJobConfig, "object": ObjectConfig, "explore": ExploreConfig, "complete": CompleteConfig,
               "stylize": StylizeConfig, "data make": make, "dataset": DatasetConfig, "eval object": EvalObjectConfig,
               **{f"eval {k}": v for k, v in eval_cli.commands().items()},
               **{f"trajectory make {k}": v for k, v in MAKE.items()},
               "train vae": train_vae, "train video": train_video, "train depth": train_depth,
               "train explore": train_explore, "train stylize": train_stylize}
    found = [(name, path, tp) for name, t in targets.items() for path, tp in _seed_options(t)]
    assert len(found) >= 20  # the jobs, fit's nested FitConfig, the eval harnesses, the trainers' loops
    unranged = [(name, ".".join(path)) for name, path, tp in found if options.SEED not in options._ranges(tp)]
    assert unranged == []


def test_stylize_takes_zero_style_lora_steps_as_its_help_says():
    """``--style-lora-steps 0`` ("0: no LoRA", and the job's own check takes it) was refused as < 1."""
    config = StylizeConfig(mesh=Path("m.glb"), trajectory=Path("t.json"), style=Path("s.png"))
    options.check_options(dataclasses.replace(config, style_lora_steps=0))
    assert _refusal(dataclasses.replace(config, style_lora_steps=-1)) == \
        "--style-lora-steps -1 is out of range: it must be >= 0; pass a value in that range."
