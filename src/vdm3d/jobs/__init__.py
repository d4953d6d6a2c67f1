"""Jobs: each a config dataclass, a result dataclass and a run function of named stages.

What every job's ``run_*`` does before and around its stages, whoever calls it (the CLI, a batch, a
script), is :func:`job_entry`:

* The config is checked first: every declared option range and ``Literal`` choice
  (:func:`vdm3d.options.check_options`), then the job's own cross-option check. A bad config raises
  :class:`~vdm3d.errors.ConfigError` before any folder is made or model loaded, with the sentence the CLI
  prints for the same value (the CLI has already run the same checks, which pass again unchanged).
* The caller's global torch random state is left as it was: a job draws from its own seeded generators,
  but building a model (random initialisation before its weights are loaded) or a hub pipeline
  (``torch.manual_seed``) uses the global one, which would shift the numbers of the caller's own seeded
  code after the job. The state is saved on entry and restored on the way out, so the job's own numbers
  are exactly those it drew before.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import torch

from vdm3d.options import check_options

F = TypeVar("F", bound=Callable[..., Any])


def _rng_devices() -> list[int]:
    """The CUDA devices whose random state to keep: those of an initialized CUDA context (forking an
    uninitialized one would initialize it, and warn on a machine with several devices)."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


def job_entry(check: Callable[[Any], None] | None = None) -> Callable[[F], F]:
    """Decorate a job's ``run_*(config, ...)``: check ``config`` (options, then ``check``) before the job
    starts, and keep the caller's torch random state around it."""

    def wrap(run: F) -> F:
        @functools.wraps(run)
        def checked_run(config, *args, **kwargs):
            check_options(config, fields=True)
            if check is not None:
                check(config)
            with torch.random.fork_rng(devices=_rng_devices()):
                return run(config, *args, **kwargs)

        return checked_run  # type: ignore[return-value]

    return wrap


__all__ = ["job_entry"]
