"""What a run's manifest records about the machine and the code beside its options: what a reproduction
needs to know that the config does not say.

Two runs with the same options, seed and thread count write byte-identical files on one machine, but
outputs also change with the code (between commits, at the same version number), the libraries that
compute or encode them (numba's rasterizer, Pillow's PNGs, imageio-ffmpeg's H.264), the CPU (the C++
rasterizer is built with ``-march=native``) and the GL driver (stylize's edges, depth and flow). Each
helper here is cheap and never fails: where something cannot be known it says ``None``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

#: distributions whose version shapes the numbers or the files of a run
VERSIONED = ("vdm3d", "torch", "numpy", "diffusers", "transformers", "accelerate", "trimesh",
             "scikit-image", "opencv-python-headless", "gsplat", "safetensors",
             "numba", "Pillow", "imageio", "imageio-ffmpeg", "moderngl", "scipy", "plyfile", "xatlas")

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""the installed ``vdm3d`` package"""


def package_versions() -> dict[str, str]:
    """Python's version and those of the :data:`VERSIONED` distributions that are installed."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _in_work_tree(folder: Path) -> bool:
    return any((p / ".git").exists() for p in (folder, *folder.parents))


def code_revision(package_dir: Path = PACKAGE_DIR) -> str | None:
    """``git describe --always --dirty`` (full commit hash) of the checkout vdm3d runs from, or None when it
    is not run from one: an installed wheel, no ``git``, or a package inside some other repository (a
    virtual environment in a project's folder) where ``__init__.py`` is not a tracked file. A checkout's
    outputs change between commits while the version number stays, so the manifest needs the commit.
    Costs two ``git`` calls (about 30 ms) where there is a ``.git`` above the package, nothing elsewhere."""
    if not _in_work_tree(package_dir):
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # the package's repository, no other

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True,
                                  env=env, timeout=10, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return None
    return git("describe", "--always", "--dirty", "--abbrev=40") or None


def cpu_tag() -> str:
    """A short hash of this CPU's instruction-set flags (the architecture and ``/proc/cpuinfo``'s first
    ``flags`` line): the C++ rasterizer is built with ``-march=native``, so two CPUs with different flags
    can render different last bits. The same hash names the built module (``splat/backends/cpp.py``)."""
    flags = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            flags += next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    return hashlib.sha1(flags.encode()).hexdigest()[:8]


@functools.lru_cache(maxsize=1)
def cpu_record() -> dict[str, str]:
    """``{"model": ..., "flags": cpu_tag()}``: the CPU's name (``/proc/cpuinfo``'s ``model name``, else what
    :func:`platform.processor` says, else the architecture) and the hash of its flags."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("model name")), "")
        model = line.partition(":")[2].strip()
    except OSError:
        pass
    return {"model": model or platform.processor() or platform.machine(), "flags": cpu_tag()}
