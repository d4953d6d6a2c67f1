"""Shared test fixtures: deterministic torch, the real data folder, and a cheap thread budget."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Two cores, two pytest workers: one torch thread per worker avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session", autouse=True)
def _cpp_renderer_ready():
    """Load (building on first use) the C++ renderer before any test captures output: a compile prints one
    line on stderr, which would otherwise land in whichever test renders first (in a fresh extension cache)
    and break its one-line stderr checks. Loading a built one takes milliseconds."""
    from vdm3d.splat.backends import cpp

    cpp._load()


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip with the reason when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (it lives in ../shared/data beside the checkout)")
    return SHARED_DATA


class StopHere(Exception):
    """Raised by the stage a test stopped a job at (:func:`stop_at`)."""


@pytest.fixture
def stop_at(monkeypatch):
    """``stop_at(module, "name")``: that stage of a job raises :class:`StopHere` (returned), so a test sees what
    the job said and did before it without running the rest."""

    def patch(module, name: str) -> type[StopHere]:
        def stop(*_args, **_kwargs):
            raise StopHere

        monkeypatch.setattr(module, name, stop)
        return StopHere

    return patch


@pytest.fixture
def at_once():
    """``at_once(work, n, timeout)``: ``work(i)`` for i < n in n threads started together; their results in
    order, after asserting that none raised (a race between writers of one cache, say)."""
    import threading

    def run(work, n: int = 2, timeout: float = 120.0) -> list:
        results, errors = [None] * n, []

        def one(i: int) -> None:
            try:
                results[i] = work(i)
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        assert errors == [] and not any(t.is_alive() for t in threads), errors
        return results

    return run


def cuda_available() -> bool:
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not cuda_available():
            item.add_marker(skip_cuda)


@pytest.fixture
def fake_cli_command(monkeypatch):
    """``register(body)``: makes ``vdm3d fake`` a command whose ``main()`` runs ``body()`` in this process (for
    what the CLI entry makes of what a command raises or prints)."""
    import importlib.machinery
    import sys
    import types

    from vdm3d.cli import main as cli_main

    def register(body) -> None:
        module = types.ModuleType("vdm3d_fake_command")
        module.__spec__ = importlib.machinery.ModuleSpec("vdm3d_fake_command", None)
        module.HELP = "a fake command"
        module.main = lambda argv, prog: body()
        monkeypatch.setitem(sys.modules, "vdm3d_fake_command", module)
        monkeypatch.setitem(cli_main.GROUPS, "fake", "vdm3d_fake_command")

    return register
