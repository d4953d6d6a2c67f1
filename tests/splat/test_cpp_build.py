"""The C++ renderer's build cache: one build per source content, shared by every checkout.

Two checkouts with the same ``cpu_raster/`` source at different paths used to rewrite one shared
``build.ninja`` with their own paths and rebuild each other's module at every switch (35-40 s each,
silently). These tests put the package's source in two temporary folders and check, from the build
folder's ninja log and the compile notice (never from a wall-clock time), that only the first use of a
content compiles and that the second checkout imports that build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vdm3d.splat.backends import cpp

SRC = Path(cpp.__file__).parents[3]  # the folder holding the vdm3d package


def _checkout(root: Path) -> Path:
    """A copy of the vdm3d package (without the shipped weights, which loading the renderer never reads)."""
    shutil.copytree(SRC / "vdm3d", root / "vdm3d", ignore=shutil.ignore_patterns("weights", "__pycache__"))
    return root


def _use_renderer(checkout: Path, extensions: Path) -> tuple[str, str]:
    """Load the C++ renderer from ``checkout`` in a fresh process; its module file and its stderr."""
    env = dict(os.environ, PYTHONPATH=str(checkout), TORCH_EXTENSIONS_DIR=str(extensions), VDM3D_NO_CPP="")
    script = ("import vdm3d.splat.backends.cpp as c; ok, why = c.available(); assert ok, why; "
              "print(c._state['module'].__file__)")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                          timeout=300)  # a run that waits forever on a build lock fails, rather than hangs
    return done.stdout.strip(), done.stderr


def _cache_for(library: Path, root: Path, *, with_library: bool = True) -> tuple[Path, Path]:
    """An extension cache under ``root`` with the build folder of ``library``'s content, holding a copy of
    that library (so nothing compiles) unless ``with_library`` is false: ``(cache, build folder)``."""
    extensions = root / "ext"
    folder = extensions / library.parent.name
    folder.mkdir(parents=True)
    if with_library:
        shutil.copy2(library, folder / library.name)
    return extensions, folder


def _built_library() -> Path:
    module = cpp._load()
    if module is None:
        pytest.skip(f"the C++ kernels cannot be built here: {cpp.available()[1]}")
    return Path(module.__file__)


def test_two_checkouts_import_one_build_without_compiling(tmp_path):
    # A cache that holds this content's build (copied from this process's, so nothing compiles): both
    # checkouts import that library, neither prints the compile notice nor runs ninja.
    library = _built_library()
    extensions, folder = _cache_for(library, tmp_path)
    a, b = _checkout(tmp_path / "a"), _checkout(tmp_path / "b")
    for checkout in (a, b, a):
        used, stderr = _use_renderer(checkout, extensions)
        assert Path(used) == folder / library.name
        assert cpp.COMPILE_NOTICE not in stderr
    assert not (folder / ".ninja_log").exists() and not (folder / "build.ninja").exists()


def test_a_missing_build_is_announced_and_built_from_a_copy_of_the_source(tmp_path, monkeypatch, capsys):
    # Without a build, load() compiles a copy of the source placed in the build folder (so that
    # build.ninja names no checkout's path), after one line on stderr; with the library there, the
    # next call imports it without a line and without load().
    import torch.utils.cpp_extension

    calls = []

    def fake_load(name, sources, build_directory, **kwargs):
        calls.append((name, sources, build_directory))
        Path(build_directory, f"{name}.so").write_bytes(b"")
        return "built"

    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load)
    monkeypatch.setattr(cpp, "_import_built", lambda name, library: ("imported", library))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    a, b = _checkout(tmp_path / "a"), _checkout(tmp_path / "b")
    monkeypatch.setattr(cpp, "SOURCE_DIR", a / "vdm3d/splat/backends/cpu_raster")
    assert cpp._build_and_import() == "built"
    assert capsys.readouterr().err.splitlines() == [cpp.COMPILE_NOTICE]
    (name, sources, folder), = calls
    assert Path(folder) == tmp_path / "ext" / name
    assert sources == [str(Path(folder) / source) for source in cpp.SOURCES]
    # every file the units include is copied too (the headers), byte for byte
    copied = {f.name: f.read_bytes() for f in Path(folder).iterdir() if f.suffix in (".cpp", ".h")}
    assert copied == cpp._source_files() and {"kernels.h", "projection.h"} <= set(copied)
    monkeypatch.setattr(cpp, "SOURCE_DIR", b / "vdm3d/splat/backends/cpu_raster")
    assert cpp._build_and_import() == ("imported", Path(folder) / f"{name}.so")
    assert capsys.readouterr().err == "" and len(calls) == 1
    # another source is another build: a header's change counts as much as a unit's
    header = cpp.SOURCE_DIR / "projection.h"
    header.write_bytes(header.read_bytes() + b"\n// changed\n")
    assert cpp._build_and_import() == "built" and len(calls) == 2 and calls[1][0] != name


def test_sources_are_every_unit_of_the_source_folder():
    # A unit added to cpu_raster/ but not to SOURCES would be hashed and copied but never compiled (its
    # symbols missing at import); one listed twice would be compiled twice. Every part is also in a wheel
    # (package-data's pattern, checked by tests/test_packaging.py).
    units = sorted(f.name for f in cpp.SOURCE_DIR.glob("*.cpp"))
    assert sorted(cpp.SOURCES) == units and len(set(cpp.SOURCES)) == len(cpp.SOURCES)


def test_the_module_exports_no_kernel_symbol():
    # The kernels' names are hidden (kernels.h, projection.h): exported, the template instances of a
    # reopened namespace were called through the PLT and could be interposed by another library's.
    library = _built_library()
    if shutil.which("nm") is None:
        pytest.skip("needs binutils' nm to list the module's dynamic symbols")
    listed = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True)
    exported = [line.split()[-1] for line in listed.stdout.splitlines() if line.strip()]
    assert any(name.startswith("PyInit_") for name in exported)
    assert [name for name in exported if "vdm3d_raster" in name] == []


@pytest.mark.slow
def test_first_use_compiles_once_for_two_checkouts(tmp_path):
    # The real thing in an empty cache: the first checkout compiles (notice, one compile in the ninja
    # log); the second and then the first again import that build (no notice, no further compile).
    a, b = _checkout(tmp_path / "a"), _checkout(tmp_path / "b")
    extensions = tmp_path / "ext"
    used, stderr = _use_renderer(a, extensions)
    assert cpp.COMPILE_NOTICE in stderr
    log = Path(used).with_name(".ninja_log")
    compiles = log.read_text().count(".o\t")
    assert compiles == len(cpp.SOURCES)  # each unit once
    for checkout in (b, a):
        again, stderr = _use_renderer(checkout, extensions)
        assert again == used and cpp.COMPILE_NOTICE not in stderr
    assert log.read_text().count(".o\t") == compiles


def test_a_build_folder_that_cannot_be_written_is_one_line_and_numba(tmp_path):
    """A read-only cache (HOME on a read-only mount) fell back to numba with a Python warning that echoed
    a source line of vdm3d; now one line names the build folder and the fix, and rendering still works."""
    (tmp_path / "afile").write_text("")
    env = dict(os.environ, PYTHONPATH=str(SRC), TORCH_EXTENSIONS_DIR=str(tmp_path / "afile" / "ext"), VDM3D_NO_CPP="")
    script = "import vdm3d.splat.backends.cpp as c; ok, why = c.available(); print(ok)"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Warning" not in lines[0]
    assert lines[0].startswith("vdm3d: the C++ rasterizer could not be built (")
    assert f"Its build folder is {tmp_path / 'afile' / 'ext'}: set TORCH_EXTENSIONS_DIR to a writable folder" in lines[0]


def test_a_dead_builders_lock_does_not_make_the_next_run_wait_forever(tmp_path):
    # A build killed with SIGKILL leaves torch's empty `lock` file; torch's load() waits while it exists,
    # without end (a run after such a kill hung until someone deleted the file). The build folder's own
    # flock went with the dead builder, so the next run removes the file and imports the library.
    library = _built_library()
    extensions, folder = _cache_for(library, tmp_path)
    (folder / "lock").touch()
    used, _ = _use_renderer(SRC, extensions)
    assert Path(used) == folder / library.name and not (folder / "lock").exists()


def test_a_second_process_waits_for_a_live_builder_then_imports_its_build(tmp_path):
    # While another process builds (it holds the folder's flock and torch's lock file), a new run waits for
    # it rather than compiling too or removing the live builder's lock; once it is done, its library is used.
    import fcntl
    import time

    library = _built_library()
    extensions, folder = _cache_for(library, tmp_path, with_library=False)
    (folder / "lock").touch()
    env = dict(os.environ, PYTHONPATH=str(SRC), TORCH_EXTENSIONS_DIR=str(extensions), VDM3D_NO_CPP="")
    script = "import vdm3d.splat.backends.cpp as c; ok, why = c.available(); assert ok, why; print(c._state['module'].__file__)"
    said = tmp_path / "stderr.txt"
    with open(folder / "vdm3d-build.lock", "a") as held, open(said, "w") as stderr:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiter = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=stderr,
                                  text=True)
        deadline = time.time() + 120
        while cpp.COMPILE_NOTICE not in said.read_text():  # it has found no library and goes for the lock
            assert waiter.poll() is None and time.time() < deadline, said.read_text()
            time.sleep(0.1)
        time.sleep(1)
        assert waiter.poll() is None and (folder / "lock").exists()  # still waiting; the live lock is kept
        shutil.copy2(library, folder / library.name)  # the "builder" finishes: its library, then its lock goes
        (folder / "lock").unlink()
    out, _ = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, said.read_text()
    assert Path(out.strip()) == folder / library.name
