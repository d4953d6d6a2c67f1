"""`vdm3d doctor`: each row is what the part really does here, and a part the embedded path needs that fails
makes the exit status 1 with its fix."""

from __future__ import annotations

import json

import torch

from vdm3d.cli.main import main


def _rows(capsys, *argv) -> tuple[int, dict]:
    capsys.readouterr()
    status = main(["doctor", "--json", *argv])
    report = json.loads(capsys.readouterr().out)
    return status, {row["part"]: row for row in report["checks"]}


def test_the_rows_say_what_this_installation_does(capsys):
    from vdm3d.geometry.mesh_render import get_renderer
    from vdm3d.models.tiny import available
    from vdm3d.splat.backends import cpp

    status, rows = _rows(capsys)
    assert status == 0
    assert rows["torch"]["found"].startswith(torch.__version__ + ", ")
    assert rows["CUDA"]["state"] == ("ok" if torch.cuda.is_available() else "missing")
    assert rows["C++ renderer"]["state"] == ("ok" if cpp.available()[0] else "missing")
    assert rows["OpenGL (EGL)"] == {"part": "OpenGL (EGL)", "state": "ok", "found": get_renderer().name,
                                    "use": "ground truth and geometry buffers (data make, stylize, eval)", "fix": ""}
    assert rows["embedded models"]["found"].startswith(f"{len(available())} load (")
    assert all(row["state"] in ("ok", "missing") for row in rows.values())


def test_a_part_the_embedded_path_needs_that_fails_is_named_with_its_fix(tmp_path, monkeypatch, capsys):
    from vdm3d.geometry import mesh_render
    from vdm3d.geometry.mesh_render import RenderBackendError
    from vdm3d.models import tiny

    def no_gl():
        raise RenderBackendError("could not start OpenGL through EGL: no display")

    monkeypatch.setattr(mesh_render, "get_renderer", no_gl)
    real = tiny.load_tiny
    monkeypatch.setattr(tiny, "load_tiny", lambda name, *a, **k: (_ for _ in ()).throw(OSError("cut short"))
                        if name == "vae" else real(name, *a, **k))
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "file" / "cache"))  # under a file: not a folder to write
    status, rows = _rows(capsys)
    assert status == 1
    assert rows["OpenGL (EGL)"]["state"] == "failed" and "apt-get install libegl1" in rows["OpenGL (EGL)"]["fix"]
    assert rows["embedded models"]["state"] == "failed" and "vae (OSError)" in rows["embedded models"]["found"]
    assert rows["cache folder"]["state"] == "failed" and "VDM3D_CACHE" in rows["cache folder"]["fix"]
    assert main(["doctor"]) == 1
    assert capsys.readouterr().out.rstrip().endswith(
        "3 part(s) the embedded path needs failed: embedded models, OpenGL (EGL), cache folder; the fix lines say "
        "what to do.")
