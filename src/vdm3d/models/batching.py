"""Joining encoded conditions along the batch, so both CFG branches run in one denoiser call.

Classifier-free guidance evaluates the denoiser twice per step, on the same ``x`` and ``sigma`` with
the conditional and the unconditional (null) encoding. When the encoded conditions can be stacked on
the batch axis, one call on ``[x; x]`` does both: the network sees a batch of ``2B`` instead of two
batches of ``B``, which is how diffusers' pipelines run CFG, and which halves the per-call overhead
(weights read once, larger matrix products).

A backbone opts in by providing ``concat_conditions(conds, batch)`` (the samplers look for it;
:func:`join_batch` is the usual implementation). An encoded condition is a tensor, a dataclass or
dict of them, or ``None``; every tensor is **batch-first**, with batch ``B`` or ``1`` (broadcast).
Fields that differ in kind between the branches (a map in one, ``None`` in the other) or non-tensor
fields that differ cannot be joined: :func:`join_batch` then returns ``None`` and the sampler falls
back to two calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class _Unjoinable(Exception):
    """Raised inside :func:`join_batch` when two conditions differ in structure."""


def _join(values: Sequence[Any], batch: int) -> Any:
    first = values[0]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise _Unjoinable
    if isinstance(first, Tensor):
        if not all(isinstance(v, Tensor) and v.ndim == first.ndim and v.shape[1:] == first.shape[1:]
                   for v in values):
            raise _Unjoinable
        if any(v.shape[0] not in (1, batch) for v in values):
            raise _Unjoinable
        return torch.cat([v.expand(batch, *v.shape[1:]) for v in values])
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        if any(type(v) is not type(first) for v in values):
            raise _Unjoinable
        fields = {f.name: _join([getattr(v, f.name) for v in values], batch)
                  for f in dataclasses.fields(first) if f.init}
        return type(first)(**fields)
    if isinstance(first, dict):
        if any(not isinstance(v, dict) or v.keys() != first.keys() for v in values):
            raise _Unjoinable
        return {k: _join([v[k] for v in values], batch) for k in first}
    if all(v == first for v in values[1:]):
        return first
    raise _Unjoinable


def join_batch(conds: Sequence[Any], batch: int) -> Any | None:
    """Encoded conditions, each for ``batch`` samples (or 1, broadcast), stacked into one for
    ``len(conds) * batch`` samples in the given order; ``None`` when they cannot be joined."""
    try:
        return _join(list(conds), batch)
    except _Unjoinable:
        return None


__all__ = ["join_batch"]
