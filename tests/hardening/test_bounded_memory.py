"""Drawing a camera path takes memory bounded by the drawing, not by the path's length: a
100,000-frame path (which once grew `trajectory preview` to 6 GB) previews in about the memory of a
1,000-frame one. Peak memory is measured with tracemalloc (Python and numpy allocations), never time."""

from __future__ import annotations

import tracemalloc

import torch

from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.cameras.preview import evenly_spaced, preview_png


def _spiral(frames: int):
    t = torch.linspace(0, 1, frames, dtype=torch.float64)
    return cameras_from_sv3d(10 + 20 * t, 720 * t, 2.5 + t, 40.0, 64, 48)


def _peak_bytes(cameras) -> tuple[int, bytes]:
    tracemalloc.start()
    try:
        png = preview_png(cameras, title="path")
        return tracemalloc.get_traced_memory()[1], png
    finally:
        tracemalloc.stop()


def test_a_100000_frame_preview_needs_about_the_memory_of_a_1000_frame_one():
    short, long = _spiral(1_000), _spiral(100_000)
    _peak_bytes(short)  # matplotlib's first-use caches (fonts, colormaps) are not the path's cost
    peak_short, png_short = _peak_bytes(short)
    peak_long, png_long = _peak_bytes(long)
    assert png_long.startswith(b"\x89PNG") and png_short.startswith(b"\x89PNG")
    assert peak_long < 2 * peak_short, (peak_short, peak_long)  # before the bound: 571 MB at 3,000 frames
    assert peak_long < 200e6


def test_the_thinned_path_keeps_its_ends_and_spacing():
    idx = evenly_spaced(100_000, 240)
    assert len(idx) == 240 and idx[0] == 0 and idx[-1] == 99_999
    assert abs(int(idx[1] - idx[0]) - 418) <= 1
    assert list(evenly_spaced(5, 240)) == [0, 1, 2, 3, 4]
