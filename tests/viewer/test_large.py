"""Large content in the viewer: meshes simplified to a face budget, splats capped, each said in one line,
and a stalled screenshot of large content names the option that shrinks it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh

from vdm3d.errors import Vdm3dError
from vdm3d.viewer.content import ViewerContent
from vdm3d.viewer.server import cluster_vertices, reduce_mesh


def dense_sphere() -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=5, radius=1.0)  # 20,480 faces
    m.apply_scale([2.0, 1.0, 0.5])  # an ellipsoid: bounds differ per axis
    return m


def test_reduce_mesh_keeps_the_budget_and_the_shape():
    m = dense_sphere()
    assert reduce_mesh(m, 30_000) is m  # under the budget: untouched
    for budget in (5000, 1200):
        r = reduce_mesh(m, budget)
        assert budget / 4 <= len(r.faces) <= budget  # not needlessly coarse
        # every vertex moves by less than one grid cube's diagonal, so the bounds do too
        cell = 4.0 / np.sqrt(budget)  # the coarsest grid reduce_mesh ends at is finer than this (longest side 4)
        np.testing.assert_allclose(r.bounds, m.bounds, atol=cell * np.sqrt(3))
        # still a closed ellipsoid surface: its points stay near x^2/4 + y^2 + 4 z^2 = 1
        v = np.asarray(r.vertices)
        assert np.abs(np.sqrt(v[:, 0] ** 2 / 4 + v[:, 1] ** 2 + 4 * v[:, 2] ** 2) - 1).max() < 0.15
        assert abs(r.area / m.area - 1) < 0.05


def test_cluster_vertices_merges_per_cube_and_averages_colours():
    # two triangles sharing an edge; a grid of 1 cube a side merges everything into one vertex: nothing left
    m = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]],
                        vertex_colors=[[255, 0, 0, 255], [0, 0, 255, 255], [255, 0, 0, 255], [0, 0, 255, 255]],
                        process=False)
    assert len(cluster_vertices(m, 1).faces) == 0
    # fine enough: unchanged geometry and colours
    r = cluster_vertices(m, 8)
    assert len(r.faces) == 2 and np.allclose(np.sort(r.vertices, 0), np.sort(m.vertices, 0))
    # 2 cubes across ([0, .5) and [.5, 1]): the 4 corners stay apart
    assert len(cluster_vertices(m, 2).vertices) == 4
    # duplicate vertices at one corner merge and average their colours
    d = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.01, 0, 0], [1, 1, 0]], [[0, 1, 2], [3, 4, 2]],
                        vertex_colors=[[200, 0, 0, 255], [0, 0, 0, 255], [0, 0, 0, 255], [100, 0, 0, 255],
                                       [0, 0, 0, 255]], process=False)
    r = cluster_vertices(d, 10)
    assert len(r.vertices) == 4 and len(r.faces) == 2
    assert int(r.visual.vertex_colors[np.argmin(np.linalg.norm(r.vertices, axis=1)), 0]) == 150


def test_show_says_when_splats_are_capped_and_the_mesh_simplified():
    viser = pytest.importorskip("viser")
    from vdm3d.viewer.server import show
    from tests.viewer.test_content import two_colour_splats

    content = ViewerContent("big", gaussians=two_colour_splats(400), mesh=dense_sphere())
    lines: list[str] = []
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        show(server, content, max_splats=150, max_faces=2000, say=lines.append)
    finally:
        server.stop()
    assert lines[0] == "showing 150 of 400 splats (the most opaque); --max-splats N shows more or fewer"
    shown = int(lines[1].split("simplified to ")[1].split(" of")[0].replace(",", ""))
    assert 500 <= shown <= 2000 and "of 20,480 faces" in lines[1] and "--max-faces N" in lines[1]
    assert len(content.mesh.faces) == 20480  # the content itself is left whole
    lines.clear()
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        show(server, content, max_splats=400, max_faces=30_000, say=lines.append)
    finally:
        server.stop()
    assert lines == []  # nothing dropped, nothing said


def test_a_stalled_screenshot_of_large_content_names_the_caps(tmp_path, monkeypatch):
    import vdm3d.viewer.browser as browser
    from vdm3d.cli.view import ViewConfig, size_hint

    class Many:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    cfg = ViewConfig(path=tmp_path)
    big = ViewerContent("big", gaussians=Many(800_000))
    hint = size_hint(big, cfg)
    assert hint == "lower --max-splats (now 500,000; the file has 800,000)"
    assert size_hint(ViewerContent("small", gaussians=Many(50_000)), cfg) == ""
    assert size_hint(big, ViewConfig(path=tmp_path, max_splats=50_000)) == ""  # already capped small
    mesh = ViewerContent("mesh", mesh=dense_sphere())
    assert size_hint(mesh, ViewConfig(path=tmp_path, max_faces=10_000)) == ""
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(browser, "find_chromium", lambda: str(fake))
    t0 = time.time()
    with pytest.raises(Vdm3dError, match=r"was stopped; lower --max-splats \(now 500,000; the file has 800,000\), "
                                         r"try again"):
        browser.screenshot("http://127.0.0.1:1/", tmp_path / "shot.png", timeout_s=1.0, hint=hint)
    assert time.time() - t0 < 20


def test_a_screenshot_where_nothing_can_be_written_is_refused_before_the_browser(tmp_path, capsys, monkeypatch):
    """--screenshot into a place that cannot be written ran Chromium for 20 s, then printed its GL log."""
    from vdm3d.cli.main import main
    from vdm3d.viewer import browser

    monkeypatch.setattr(browser, "screenshot", lambda *a, **k: pytest.fail("the browser started"))
    (tmp_path / "afile").write_text("")
    assert main(["view", str(tmp_path), "--screenshot", str(tmp_path / "afile" / "shot.png")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'afile' / 'shot.png'}: cannot write there, because "
                                               f"{tmp_path / 'afile'} is a file, not a folder; choose another --screenshot.")
