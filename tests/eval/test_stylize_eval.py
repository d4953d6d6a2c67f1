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


def test_paired_comparison_counts_per_case_wins():
    from vdm3d.eval.stylize import paired, paired_table

    def case(job, base):
        baselines = ("warp-anchors", "per-frame", "fresh-noise")
        return {"job": {"psnr": job[0], "warp_err": job[1]},
                **{b: {"psnr": base[0], "warp_err": base[1]} for b in baselines}}

    pairs = paired({"a": case((15.0, 0.008), (14.5, 0.010)), "b": case((16.0, 0.012), (16.2, 0.010))})
    p = pairs["fresh-noise"]
    assert p["psnr_gain"] == pytest.approx(0.15) and p["psnr_gain_min"] == pytest.approx(-0.2)
    assert p["psnr_wins"] == 1 and p["warp_wins"] == 1 and p["cases"] == 2
    assert p["warp_change"] == pytest.approx(0.0) and p["warp_change_max"] == pytest.approx(0.2)
    row = "| fresh-noise | +0.150 (-0.20..+0.50) | 1/2 | +0.0% (-20.0%..+20.0%) | 1/2 |"
    assert row in paired_table(pairs)


@pytest.mark.slow
def test_an_interrupted_evaluation_resumes_after_its_last_finished_case(
        tmp_path, capsys, stop_at_second_case, interrupted_after_one_case):
    """Ctrl-C during case 2 keeps case 1's checkpoint (with the strip's frames); --resume loads case 1 (not run
    again) and runs case 2, and results.json, table.md and the strip equal an uninterrupted run's; a resume with
    another option is refused."""
    import vdm3d.eval.stylize as ev

    small = dict(procedural=2, frames=8, resolution=32, meshes=(), arc_frames=4, steps=2, split="val")
    stylize(out=tmp_path / "whole", **small)
    stop = stop_at_second_case(ev, "run_case", lambda case, *args: case.name)
    out = tmp_path / "cut"
    interrupted_after_one_case(lambda **kw: stylize(**{**small, **kw}), out, {"steps": 3}, "--steps")
    capsys.readouterr()
    first = stop.ran[0]
    stop.resume()
    stylize(out=out, resume=True, **small)
    assert len(stop.ran) == 1 and stop.ran[0] != first  # case 1 came from the checkpoint
    lines = [line for line in capsys.readouterr().out.splitlines() if "] [" in line]
    assert f"[1/2] {first}:" in lines[0] and lines[0].endswith("(from the checkpoint)")
    assert "[2/2]" in lines[1] and "checkpoint" not in lines[1]
    for name in ("results.json", "table.md", "strip.png", "strip_style.png"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
