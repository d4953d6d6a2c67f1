"""Screenshots of a viewer page in headless Chromium (for ``vdm3d view --screenshot`` and the tests).

The page draws with WebGL; headless Chromium without a GPU renders it with SwiftShader, which newer
versions only use when ``--enable-unsafe-swiftshader`` opts in (without it Chromium warns that the
automatic fallback is deprecated). ``--virtual-time-budget`` lets the page load, open its websocket,
receive the scene and draw before the screenshot is taken (measured: about 8 s wall for 2,000
splats on 2 CPU cores). Every run gets a fresh, temporary profile and no background networking.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from vdm3d.errors import Vdm3dError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-swiftshader", "--hide-scrollbars", "--mute-audio")


class BrowserMissingError(Vdm3dError):
    """No Chromium to take a screenshot with."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH, or None."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    return None


def screenshot(url: str, out: str | Path, width: int = 960, height: int = 720, wait_ms: int = 30000,
               timeout_s: float = 120.0) -> Path:
    """Load ``url`` in headless Chromium, let it run for ``wait_ms`` of virtual time, save a PNG."""
    exe = find_chromium()
    if exe is None:
        raise BrowserMissingError("no Chromium found for the screenshot; install it (Debian: apt-get install "
                                  "chromium) or open the page in a browser instead of passing --screenshot.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vdm3d-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--virtual-time-budget={wait_ms}", f"--screenshot={out.resolve()}", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if not out.is_file():
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise Vdm3dError(f"Chromium wrote no screenshot of {url} (exit {proc.returncode}): {' / '.join(tail)}")
    return out
