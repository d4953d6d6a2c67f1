"""`vdm3d doctor`: what this installation can do, each part tried for real, and the fix for each that cannot.

Installing a video-diffusion tool is where users of the field lose their first hour (compiled extensions,
OpenGL on a headless machine, a CPU-only torch where a GPU was meant). One command answers it: every part a
command needs is tried the way that command would use it (the C++ renderer built or loaded, an OpenGL
context made and read back, each embedded model's file read, the cache folder written), one line each, with
what it is for and, where it fails, what to do. The exit status is 0 when the embedded path works (what
`make demo` runs: torch, the embedded models, OpenGL, a writable cache) and 1 otherwise; the optional parts
(CUDA, the viewer, Chromium, Ray, pycolmap, hub weights) only say what their absence costs. ``--json`` prints
the same rows as one JSON object, for a bug report.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import sys
from typing import Callable

HELP = "check this installation (torch, CUDA, the C++ and GL renderers, models, viewer, Ray) and say how to fix it"
EXAMPLES = """examples:
  vdm3d doctor          # one line per part: what it found, what it is for, the fix for what fails
  vdm3d doctor --json   # the same as JSON, to paste into a bug report"""


@dataclasses.dataclass(frozen=True)
class Check:
    """One part of the installation: ``state`` is ``ok``, ``missing`` (an optional part: the commands that need
    it say so) or ``failed`` (a part the embedded path needs)."""

    part: str
    state: str
    found: str
    use: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch() -> list[Check]:
    import torch

    from vdm3d.threads import current_threads

    threads = current_threads()
    rows = [Check("torch", "ok", f"{torch.__version__}, {threads} thread{'s' if threads != 1 else ''}", "every command")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(Check("CUDA", "ok", f"{torch.cuda.device_count()} device(s): {names}",
                          "--device cuda (hub backbones), batch --gpus-per-case"))
    else:
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no device visible"
        rows.append(Check("CUDA", "missing", build, "--device cuda (hub backbones), batch --gpus-per-case",
                          "install a CUDA build of torch on a machine with an NVIDIA GPU; everything else runs on the CPU"))
    return rows


def _cpp() -> Check:
    from vdm3d.splat.backends import cpp

    ok, why = cpp.available()
    if ok:
        return Check("C++ renderer", "ok", "built and loaded", "splatting (fit, object, explore, complete)")
    return Check("C++ renderer", "missing", f"not in use: {why}", "splatting: the numba backend draws the same images, slower",
                 "install a C++ compiler and ninja (Debian: apt-get install g++ ninja-build), then run doctor again")


def _gl() -> Check:
    use = "ground truth and geometry buffers (data make, stylize, eval)"
    try:
        from vdm3d.geometry.mesh_render import get_renderer

        return Check("OpenGL (EGL)", "ok", get_renderer().name, use)
    except Exception as e:  # noqa: BLE001 - no EGL library, no context, moderngl missing: each is this row's answer
        return Check("OpenGL (EGL)", "failed", f"{type(e).__name__}: {e}".splitlines()[0], use,
                     "install software OpenGL (Debian: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri)")


REINSTALL = "reinstall vdm3d: the package ships them (pip install -c constraints.txt -e .)"


def _embedded() -> Check:
    from vdm3d.models.tiny import WEIGHTS_DIR, available, load_tiny

    names = sorted(available())
    size = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.safetensors"))
    use = "every job's default backbone (--backbone tiny)"
    if not names:
        return Check("embedded models", "failed", f"none in {WEIGHTS_DIR}", use, REINSTALL)
    broken = []
    for name in names:
        try:
            load_tiny(name)
        except Exception as e:  # noqa: BLE001 - a doctor reports every broken file, not the first
            broken.append(f"{name} ({type(e).__name__})")
    if broken:
        return Check("embedded models", "failed", f"{len(broken)} of {len(names)} do not load: {', '.join(broken)}",
                     use, REINSTALL)
    return Check("embedded models", "ok", f"{len(names)} load ({size / 1e6:.1f} MB): {', '.join(names)}", use)


def _hub() -> Check:
    from vdm3d.models import registry

    hub = [n for n in registry.names() if registry._resolve(n)[0] == "hub"]
    present = [n for n in hub if registry.installed(n)]
    use = "--backbone hub / sv3d-p / ... (published weights)"
    if present:
        return Check("hub weights", "ok", f"{len(present)} of {len(hub)} present: {', '.join(present)}", use)
    return Check("hub weights", "missing", f"none of {len(hub)} present (looked in {registry.models_root()} and the "
                 "Hugging Face cache)", use, "`vdm3d models info NAME` prints the download command of each")


def _cache() -> Check:
    import tempfile

    from vdm3d.io.cache import cache_root

    root = cache_root()
    use = "rendered training sets, style LoRAs, weight fingerprints"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor-"):
            pass
    except OSError as e:
        return Check("cache folder", "failed", f"{root}: {e.strerror or e}", use,
                     "make it writable, or set VDM3D_CACHE to a folder you can write")
    return Check("cache folder", "ok", f"{root} (writable)", use)


def _optional(part: str, dist: str, use: str, fix: str) -> Check:
    version = _version(dist)
    return Check(part, "ok", version, use) if version else Check(part, "missing", "not installed", use, fix)


def _chromium() -> Check:
    from vdm3d.viewer.browser import find_chromium

    path = find_chromium()
    use = "vdm3d view --screenshot (the viewer itself needs none)"
    return Check("Chromium", "ok", path, use) if path else Check(
        "Chromium", "missing", "not on PATH", use, "install it (Debian: apt-get install chromium)")


def checks() -> list[Check]:
    """Every part, tried in the order a user meets them."""
    parts: list[Callable[[], Check | list[Check]]] = [
        lambda: Check("python", "ok", f"{platform.python_version()} ({sys.executable})", "every command"),
        _torch, _embedded, _gl, _cpp, _cache, _hub,
        lambda: _optional("viser", "viser", "vdm3d view", "pip install 'vdm3d[viewer]'"),
        _chromium,
        lambda: _optional("ray", "ray", "vdm3d batch, eval --manifest (--no-ray runs without it)",
                          "pip install 'vdm3d[batch]'"),
        lambda: _optional("pycolmap", "pycolmap", "trajectory make from-video, COLMAP folders",
                          "pip install pycolmap"),
    ]
    rows: list[Check] = []
    for part in parts:
        got = part()
        rows += got if isinstance(got, list) else [got]
    return rows


def main(argv, prog: str = "vdm3d doctor") -> int:
    import argparse

    from vdm3d import __version__
    from vdm3d.cli.help_layout import wrap_help_text

    parser = argparse.ArgumentParser(prog=prog, description=f"{HELP}.",
                                     epilog=wrap_help_text(EXAMPLES, examples=True),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    args = parser.parse_args(list(argv))
    rows = checks()
    failed = [r for r in rows if r.state == "failed"]
    if args.json:
        print(json.dumps({"vdm3d": __version__, "ok": not failed, "checks": [dataclasses.asdict(r) for r in rows]},
                         indent=1))
        return 1 if failed else 0
    width = max(len(r.part) for r in rows)
    print(f"vdm3d {__version__}")
    for r in rows:
        print(f"{r.part:<{width}}  {r.state:<7}  {r.found}")
        print(f"{'':<{width}}  {'':<7}  for: {r.use}" + (f"\n{'':<{width}}  {'':<7}  fix: {r.fix}" if r.fix else ""))
    if failed:
        print(f"\n{len(failed)} part(s) the embedded path needs failed: {', '.join(r.part for r in failed)}; "
              "the fix lines say what to do.")
        return 1
    print("\nthe embedded path works (make demo, every job with --backbone tiny); "
          + ("missing optional parts: " + ", ".join(r.part for r in rows if r.state == "missing")
             if any(r.state == "missing" for r in rows) else "nothing optional is missing") + ".")
    return 0
