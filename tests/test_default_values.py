"""Every default value in vdm3d satisfies its parameter's own type hint.

beartype checks defaults against hints when it decorates a function (0.18.0 did so for every function of
a package named in ``--jaxtyping-packages``, which pyproject's pytest options do for vdm3d), so a default
such as ``inputs: list[str] = ()`` stops the module from importing in the tests, and it tells a reader a
type the function does not in fact need. Checked here with :func:`beartype.door.is_bearable` whatever the
installed beartype does; a dataclass field's ``default_factory`` is not a value and is left out.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing

import pytest
from beartype.door import is_bearable

import vdm3d


def _functions():
    """Functions and methods defined in vdm3d's modules (``__main__`` would run the CLI on import)."""
    for info in pkgutil.walk_packages(vdm3d.__path__, "vdm3d."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield obj
            elif inspect.isclass(obj):
                for member in vars(obj).values():
                    member = getattr(member, "__func__", member)  # staticmethod, classmethod
                    if inspect.isfunction(member):
                        yield member


@pytest.mark.slow  # imports every module of vdm3d: about 20 s
def test_every_default_value_fits_its_hint():
    wrong, checked = [], 0
    for func in _functions():
        func = inspect.unwrap(func)
        try:
            hints = typing.get_type_hints(func)
        except NameError:  # a hint naming what only a TYPE_CHECKING block imports
            continue
        for param in inspect.signature(func).parameters.values():
            default, hint = param.default, hints.get(param.name)
            if default is param.empty or default is dataclasses._HAS_DEFAULT_FACTORY or hint is None:
                continue
            checked += 1
            if not is_bearable(default, hint):
                wrong.append(f"{func.__module__}.{func.__qualname__}: {param.name}={default!r} is not {hint}")
    assert checked > 1000  # the walk reached the package, not an empty corner of it
    assert wrong == []
