"""Training, validation and held-out sets come from disjoint seed ranges and differ in content."""

from __future__ import annotations

import numpy as np

from vdm3d.train.datasets import SEED_OFFSETS, ObjectSetConfig, build_object_set


def test_seed_ranges_are_disjoint_for_any_realistic_set_size():
    starts = sorted(SEED_OFFSETS.values())
    assert starts[0] == 0 and all(b - a >= 1_000_000 for a, b in zip(starts, starts[1:]))


def test_splits_render_different_objects_and_the_same_split_is_reproducible():
    sets = {s: build_object_set(ObjectSetConfig(count=2, views=2, resolution=32, split=s))["rgb"]
            for s in ("train", "val", "heldout")}
    assert np.array_equal(sets["val"], build_object_set(ObjectSetConfig(count=2, views=2, resolution=32,
                                                                         split="val"))["rgb"])
    for a in sets:
        for b in sets:
            if a < b:
                diff = np.abs(sets[a].astype(int) - sets[b].astype(int)).mean()
                assert diff > 5, (a, b, diff)  # different objects, not the same renders
