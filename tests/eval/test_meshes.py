"""The shared meshes an evaluation adds: missing ones are named, not dropped in silence."""

from pathlib import Path

from vdm3d.eval.meshes import mesh_files


def test_missing_shared_meshes_are_named_and_the_present_ones_kept(tmp_path):
    (tmp_path / "spot").mkdir()
    (tmp_path / "spot" / "spot.obj").write_text("v 0 0 0\n")
    lines: list[str] = []
    found = mesh_files(("spot/spot.obj:spot/tex.png", "bob/bob.obj", "duck/Duck.glb"), tmp_path, lines.append)
    assert found == [(tmp_path / "spot" / "spot.obj", tmp_path / "spot" / "tex.png")]
    assert lines == [f"note: 2 of the 3 shared meshes are not under --mesh-root {tmp_path} (bob/bob.obj, "
                     "duck/Duck.glb), so they are left out; pass --mesh-root DIR to add them, or --meshes with no "
                     "values to run without them quietly."]
    lines.clear()
    assert mesh_files((), Path("nowhere"), lines.append) == [] and lines == []
