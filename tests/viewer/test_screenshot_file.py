"""`vdm3d view --screenshot FILE` never replaces an existing FILE unasked, and writes it whole or not at all.

The refusal comes before the page is served and before Chromium is looked for, so these tests need no
browser: a fake ``chromium`` (a shell script that writes the file it is told to) stands in for it.
"""

from __future__ import annotations

import pytest

from vdm3d.cli.main import main
from vdm3d.errors import Vdm3dError
from vdm3d.splat.ply import save_ply

from .test_content import two_colour_splats


def fake_chromium(tmp_path, body: str) -> str:
    """A ``chromium`` that runs ``body`` with ``$shot`` set to its ``--screenshot=`` path."""
    exe = tmp_path / "chromium"
    exe.write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in --screenshot=*) shot="${a#--screenshot=}";; esac; '
                   f"done\n{body}\n")
    exe.chmod(0o755)
    return str(exe)


def test_an_existing_screenshot_is_refused_before_the_browser_without_overwrite(tmp_path, capsys, monkeypatch):
    """`--screenshot shot.png` over an existing shot.png replaced it without being asked."""
    from vdm3d.viewer import browser

    monkeypatch.setattr(browser, "find_chromium", lambda: pytest.fail("Chromium was looked for"))
    monkeypatch.setattr(browser, "screenshot", lambda *a, **k: pytest.fail("the browser started"))
    ply = save_ply(tmp_path / "splats.ply", two_colour_splats())
    shot = tmp_path / "shot.png"
    shot.write_bytes(b"an earlier picture")
    assert main(["view", str(ply), "--screenshot", str(shot)]) == 2
    assert capsys.readouterr().err == f"error: {shot}: already exists; choose another --screenshot or pass --overwrite.\n"
    assert shot.read_bytes() == b"an earlier picture"
    (tmp_path / "folder.png").mkdir()  # a folder is not a file to replace, even with --overwrite
    assert main(["view", str(ply), "--screenshot", str(tmp_path / "folder.png"), "--overwrite"]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'folder.png'}: is a folder, and --screenshot names a "
                                       "file to write; give --screenshot a file name.\n")


def test_overwrite_replaces_the_screenshot(tmp_path, capsys, monkeypatch):
    pytest.importorskip("viser")
    from vdm3d.viewer import browser

    exe = fake_chromium(tmp_path, "printf 'the new picture' > \"$shot\"")
    monkeypatch.setattr(browser, "find_chromium", lambda: exe)
    ply = save_ply(tmp_path / "splats.ply", two_colour_splats())
    shot = tmp_path / "shot.png"
    shot.write_bytes(b"an earlier picture")
    assert main(["view", str(ply), "--screenshot", str(shot), "--overwrite"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"screenshot: {shot}")
    assert shot.read_bytes() == b"the new picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chromium", "shot.png", "splats.ply"]  # no temp file left


@pytest.mark.parametrize("body", ["printf 'half a pic' > \"$shot\"; sleep 30",  # stalls after a partial write
                                  "exit 1"])  # fails without writing
def test_a_failed_screenshot_leaves_the_existing_file_as_it_was(tmp_path, monkeypatch, body):
    """Chromium wrote straight into FILE, and a stalled one had it removed: with --overwrite, a screenshot
    that failed cost the earlier one (or left half a file)."""
    from vdm3d.viewer import browser

    monkeypatch.setattr(browser, "find_chromium", lambda: fake_chromium(tmp_path, body))
    shot = tmp_path / "shot.png"
    shot.write_bytes(b"an earlier picture")
    with pytest.raises(Vdm3dError, match="was stopped|wrote no screenshot"):
        browser.screenshot("http://127.0.0.1:1/", shot, timeout_s=1.0)
    assert shot.read_bytes() == b"an earlier picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chromium", "shot.png"]  # no half-written file beside it
