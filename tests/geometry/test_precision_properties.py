"""Property tests (hypothesis) of geometry/precision.py against numpy's own float32 spacing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vdm3d.geometry.precision import far_offset, float32_spacing

coords = st.floats(-1e8, 1e8, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(d=st.floats(1e-30, 1e38))
def test_float32_spacing_bounds_the_true_gap_within_a_factor_of_two(d):
    """An upper bound: the gap between float32 numbers at ``d`` (``np.spacing``) is at most it and more than half
    of it (the bound is exact at powers of two), so a test against it never calls a coarse grid fine."""
    gap = float(np.spacing(np.float32(d)))
    at = float(np.float32(d))  # the float32 number nearest d (the gap is that of its binade)
    assert float32_spacing(at) / 2 < gap <= float32_spacing(at)
    assert float32_spacing(-at) == float32_spacing(at)


@settings(max_examples=200, deadline=None)
@given(lo=st.tuples(coords, coords, coords), size=st.tuples(*[st.one_of(st.just(0.0), st.floats(1e-6, 1e4))] * 3))
def test_far_offset_moves_bounds_to_where_float32_places_them_finely(lo, size):
    """After the move (or without one, when None) float32 steps by at most ``1e-4`` of the bounds' size
    everywhere inside them."""
    lo = np.array(lo)
    hi = lo + np.array(size)
    extent = float((hi - lo).max())
    offset = far_offset(lo, hi)
    moved = np.abs(np.stack([lo, hi]) - (0 if offset is None else offset)).max()
    if extent > 0:
        assert float(np.spacing(np.float32(moved))) <= 1e-4 * extent
    if offset is not None:
        np.testing.assert_array_equal(offset, (lo + hi) / 2)
