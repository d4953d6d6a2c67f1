"""The manifest's provenance beside the options (QA s34 finding 7): the code revision of a git checkout, the
libraries that shape the files, the CPU, and the GL renderer of the meshes a run drew."""

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from vdm3d.io import provenance
from vdm3d.io.runs import MANIFEST, RunFolder

HAS_GIT = shutil.which("git") is not None


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_the_manifest_names_the_code_cpu_and_libraries(tmp_path):
    with RunFolder(tmp_path / "run", config={"steps": 1}):
        pass
    m = json.loads((tmp_path / "run" / MANIFEST).read_text())
    for name in ("numba", "Pillow", "imageio", "imageio-ffmpeg", "moderngl", "scipy", "plyfile", "xatlas"):
        try:
            assert m["packages"][name] == metadata.version(name)
        except metadata.PackageNotFoundError:
            assert name not in m["packages"]
    assert m["cpu"]["flags"] == provenance.cpu_tag()
    cpp = pytest.importorskip("vdm3d.splat.backends.cpp")
    if cpp.available()[0]:  # the same hash names the -march=native module built here
        assert f"_{m['cpu']['flags']}_" in cpp._load().__name__
    assert m["cpu"]["model"]
    assert m["code"] == provenance.code_revision()
    if HAS_GIT and (provenance.PACKAGE_DIR.parents[1] / ".git").exists():  # tests run from the checkout
        assert m["code"].removesuffix("-dirty").endswith(git(provenance.PACKAGE_DIR, "rev-parse", "HEAD"))


@pytest.mark.skipif(not HAS_GIT, reason="needs git")
def test_the_code_revision_is_the_packages_own_checkout_or_none(tmp_path, monkeypatch):
    """A hash plus ``-dirty`` in a checkout; None outside one, in another project's repository (a virtual
    environment inside a project's folder), or where git is missing, and never an error."""
    repo, pkg = tmp_path / "repo", tmp_path / "repo" / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    git(repo, "init", "-q")
    assert provenance.code_revision(pkg) is None  # a repository that does not track the package
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = git(repo, "rev-parse", "HEAD")
    assert provenance.code_revision(pkg) == head
    (pkg / "__init__.py").write_text("x = 1\n")
    assert provenance.code_revision(pkg) == f"{head}-dirty"
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # the user's git settings do not redirect it
    assert provenance.code_revision(pkg) == f"{head}-dirty"
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert provenance.code_revision(pkg) is None
    plain = tmp_path / "site-packages" / "pkg"
    plain.mkdir(parents=True)
    assert provenance.code_revision(plain) is None


def test_a_run_that_draws_meshes_names_the_gl_renderer(tmp_path):
    """stylize's manifest had ``"backends": {}``: the driver that drew its edges, depth and flow was not named."""
    import torch
    import trimesh

    from vdm3d.cameras.camera import Cameras, look_at
    from vdm3d.geometry.mesh_render import RenderBackendError, render_buffers

    c2w = look_at(torch.tensor([0.0, -3.0, 0.5]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cams = Cameras.from_fov(40.0, 16, 16, c2w[None])
    with RunFolder(tmp_path / "run", config={"steps": 1}):
        try:
            render_buffers(trimesh.creation.box(), cams)
        except RenderBackendError as e:
            pytest.skip(f"no GL here: {e}")
    backends = json.loads((tmp_path / "run" / MANIFEST).read_text())["backends"]
    assert len(backends["gl"]) == 1 and "OpenGL" in backends["gl"][0]
