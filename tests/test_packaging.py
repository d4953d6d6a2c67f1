"""A user who installs vdm3d from a wheel (``pip install .`` or from an index) gets what a checkout has.

The package data (the embedded models' weights and cards, the bundled Spot render, the C++ renderer's
source) reaches a wheel only through ``[tool.setuptools.package-data]`` in pyproject.toml; a new
weights file or asset outside its patterns would be missing from every install but a checkout's
editable one, and no other test would notice (they all import the checkout). So this builds the wheel,
compares its files with what git tracks under ``src/vdm3d``, installs it into a bare folder and, from
a folder with no checkout above it, loads every embedded model and the demo image from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _checkout_files() -> list[str]:
    """The files of the checkout that a clone would have: tracked ones, and new ones git does not ignore."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout of vdm3d (the files git tracks are what a wheel must hold)")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return [line for line in listed.stdout.splitlines() if line and (ROOT / line).is_file()]


def _package_files() -> set[str]:
    return {name.removeprefix("src/") for name in _checkout_files() if name.startswith("src/vdm3d/")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout's files, as ``pip install git+URL`` would build it: the
    checkout's own ``src/vdm3d.egg-info`` (left by the editable install) lists every file it once packed,
    and setuptools adds those to a wheel whatever package-data says, so a build there could not fail."""
    clone = tmp_path_factory.mktemp("clone")
    for name in _checkout_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(clone)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (found,) = out.glob("vdm3d-*.whl")
    return found


@pytest.mark.slow
def test_wheel_holds_every_tracked_package_file(wheel):
    tracked = _package_files()
    with zipfile.ZipFile(wheel) as archive:
        packed = {name for name in archive.namelist() if name.startswith("vdm3d/")}
    missing = sorted(tracked - packed)
    assert not missing, f"tracked under src/vdm3d but not in the wheel (extend package-data): {missing}"
    assert any(name.endswith(".safetensors") for name in packed)


@pytest.mark.slow
def test_installed_wheel_runs_outside_a_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    probe = (
        "import vdm3d, pathlib, sys\n"
        "from vdm3d.models.tiny import available, load_tiny\n"
        "from PIL import Image\n"
        "assert pathlib.Path(vdm3d.__file__).is_relative_to(sys.argv[1]), vdm3d.__file__\n"
        "names = sorted(available())\n"
        "for name in names:\n"
        "    model = load_tiny(name)\n"
        "    assert sum(p.numel() for p in model.parameters()) > 0, name\n"
        "spot = pathlib.Path(vdm3d.__file__).with_name('assets') / 'spot.png'\n"
        "print(len(names), Image.open(spot).size, Image.open(spot).mode)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", probe, str(site)], cwd=elsewhere, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    count, shape = run.stdout.split(maxsplit=1)
    shipped = {p.stem for p in (ROOT / "src/vdm3d/models/tiny/weights").glob("*.safetensors")}
    assert int(count) == len(shipped) > 0
    assert shape.strip() == "(128, 128) RGBA"


def test_the_ray_floor_is_the_first_local_instance_with_authentication():
    """`vdm3d batch` starts a local Ray, whose GCS, raylet and workers listen on every network interface (seen
    with `ss -ltn` under Ray 2.60: ``*:PORT``); before Ray 2.59 they did so with no authentication, so anyone
    who could reach the machine could run code as the user while a batch ran. From 2.59 a local ``ray.init()``
    turns on token authentication (RAY_AUTH_MODE=token, the token in ~/.ray/auth_token)."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    floors = [tuple(int(x) for x in m.group(1).split(".")) for extra in project.values() for r in extra
              if (m := re.fullmatch(r"ray>=([\d.]+)", r))]
    assert len(floors) == 2 and all(f >= (2, 59) for f in floors), floors
