"""Screenshots of a viewer page in headless Chromium (for ``vdm3d view --screenshot`` and the tests).

The page draws with WebGL; headless Chromium without a GPU renders it with SwiftShader, which newer
versions only use when ``--enable-unsafe-swiftshader`` opts in (without it Chromium warns that the
automatic fallback is deprecated). ``--virtual-time-budget`` lets the page load, open its websocket,
receive the scene and draw before the screenshot is taken (measured: about 8 s wall for 2,000
splats on 2 CPU cores). Every run gets a fresh, temporary profile and no background networking.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
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


def _stop(proc: subprocess.Popen) -> None:
    """Kill the browser with its renderer and GPU processes (its whole session) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def screenshot(url: str, out: str | Path, width: int = 960, height: int = 720, wait_ms: int = 30000,
               timeout_s: float = 120.0, hint: str = "") -> Path:
    """Load ``url`` in headless Chromium, let it run for ``wait_ms`` of virtual time, save a PNG;
    ``hint`` (what to lower for large content) leads the advice when it times out."""
    exe = find_chromium()
    if exe is None:
        raise BrowserMissingError("no Chromium found for the screenshot; install it (Debian: apt-get install "
                                  "chromium) or open the page in a browser instead of passing --screenshot.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Chromium writes a hidden file beside ``out``, renamed over it only once the picture is whole: a stalled,
    # failed or interrupted browser leaves an existing ``out`` as it was (it wrote into ``out`` itself, which a
    # stall then removed). Beside ``out``, not in the temporary folder: a snap's Chromium has its own /tmp.
    shot = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}{out.suffix or '.png'}"
    try:
        with tempfile.TemporaryDirectory(prefix="vdm3d-chromium-") as profile:
            cmd = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                   f"--virtual-time-budget={wait_ms}", f"--screenshot={shot.resolve()}", url]
            # its own session, so that a stalled browser is stopped with its renderer and GPU processes, which
            # would otherwise keep writing into the profile while it is removed
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            try:
                _, stderr = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _stop(proc)
                raise Vdm3dError(f"Chromium took more than {timeout_s:.0f} s to screenshot {url} and was stopped; "
                                 + (f"{hint}, " if hint else "") + "try again (a loaded machine can stall headless "
                                 "Chromium) or open the page in a browser.") from None
            except BaseException:  # Ctrl-C, SIGTERM: the browser's own session would outlive us, orphaned
                _stop(proc)
                raise
        if not shot.is_file() or shot.stat().st_size == 0:
            tail = (stderr or "").strip().splitlines()[-3:]
            raise Vdm3dError(f"Chromium wrote no screenshot of {url} (exit {proc.returncode}): {' / '.join(tail)}")
        os.replace(shot, out)
    finally:
        shot.unlink(missing_ok=True)
    return out
