"""`vdm3d eval stylize` end to end on one small validation case: every method is scored in one run,
and temporal fusion lowers the job's warp error below its unfused frames and the warped anchors."""

from __future__ import annotations

import json

import pytest

from vdm3d.eval.stylize import METHODS, stylize

pytest.importorskip("moderngl")


@pytest.mark.slow
def test_eval_scores_every_method_and_fusion_removes_flicker(tmp_path):
    means = stylize(out=tmp_path / "eval", procedural=1, frames=8, resolution=32, meshes=(), arc_frames=4,
                    steps=2, split="val")
    assert set(means) == set(METHODS) | {"ground-truth"}
    assert means["job"]["warp_err"] < 0.5 * means["job-no-fusion"]["warp_err"]
    assert means["job"]["warp_err"] < means["warp-anchors"]["warp_err"]
    assert means["per-frame"]["warp_err"] > means["job-no-fusion"]["warp_err"]  # no video model: flicker
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["arcs"] == [[0, 3], [3, 6], [6, 7]]
    assert (tmp_path / "eval" / "strip.png").is_file() and (tmp_path / "eval" / "table.md").is_file()
