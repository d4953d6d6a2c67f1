"""`vdm3d eval complete`: an unknown method is refused before any work, and the v3d COLMAP rows print."""

from __future__ import annotations

from vdm3d.cli.main import main as cli_main
from vdm3d.eval.complete import _table


def test_an_unknown_method_exits_2_with_one_sentence(tmp_path, capsys):
    assert cli_main(["eval", "complete", "--methods", "plain", "v3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "v3" in err and "v3d" in err and err.count("\n") == 0
    assert not (tmp_path / "o").exists()


def test_the_table_has_a_colmap_section_for_v3d():
    row = {"psnr": 24.0, "ssim": 0.9, "empty": 0.03}
    res = {"room 0": {"baseline": row, "plain": row, "v3d": row,
                      "colmap": {"frames": 12, "points_truth": 89, "v3d": {"points": 7, "chamfer": 0.31},
                                 "baseline_renders": {"points": 132, "chamfer": 0.208}}}}
    table = _table(res, ("plain", "v3d"))
    assert "| room 0 | v3d | 24.00 | 0.9000 | 3.00 % |" in table
    assert "| room 0 | 12 | 89 | 7 (0.310) | 132 (0.208) |" in table
