"""What the resumable evaluations' tests share: a case function whose second call is a Ctrl-C, and the
checks of the interrupted run (only case 0 checkpointed; a resume with another option refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from vdm3d.errors import ConfigError
from vdm3d.io.runs import partial_folder


class StopsAtSecondCase:
    """``real`` wrapped so that its second call is a Ctrl-C (an evaluation interrupted between cases), until
    :meth:`resume`; ``ran`` names each call (``name(*args, **kwargs)``)."""

    def __init__(self, real: Callable, name: Callable[..., Any]):
        self.real, self.name, self.ran, self.resumed = real, name, [], False

    def __call__(self, *args, **kwargs):
        self.ran.append(self.name(*args, **kwargs))
        if len(self.ran) == 2 and not self.resumed:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)

    def resume(self) -> None:
        self.resumed, self.ran[:] = True, []


@pytest.fixture
def stop_at_second_case(monkeypatch):
    """``(owner, attribute, name) -> StopsAtSecondCase`` patched in place of ``owner.attribute``."""
    def patch(owner: Any, attribute: str, name: Callable[..., Any]) -> StopsAtSecondCase:
        wrapper = StopsAtSecondCase(getattr(owner, attribute), name)
        monkeypatch.setattr(owner, attribute, wrapper)
        return wrapper
    return patch


def _interrupted_after_one_case(evaluate: Callable[..., Any], out: Path, changed: dict[str, Any], flag: str) -> None:
    """``evaluate(out=out)`` is stopped at its second case: no results folder, only case 0's checkpoint, a
    message that says how to continue, and a resume with ``changed`` options refused naming ``flag``."""
    with pytest.raises(KeyboardInterrupt) as info:
        evaluate(out=out)
    assert not out.exists() and "--resume continues" in info.value.outcome
    assert sorted(p.name for p in (partial_folder(out) / "checkpoints").iterdir()) == ["stage-case-0000.safetensors"]
    with pytest.raises(ConfigError, match=flag):
        evaluate(out=out, resume=True, **changed)


@pytest.fixture
def interrupted_after_one_case():
    """:func:`_interrupted_after_one_case`, for the tests of each evaluation."""
    return _interrupted_after_one_case
