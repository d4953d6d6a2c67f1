"""`vdm3d view PATH [--host H] [--port P] [--screenshot FILE]`: a viser page for any vdm3d output.

PATH is a run folder (splats, mesh, cameras with their frames), a splat PLY, a mesh or a camera
file (:mod:`vdm3d.viewer.content`). The page binds 127.0.0.1 unless ``--host`` says otherwise (viser
takes the next free port when ``--port`` is busy; the URL printed is the one bound).
``--screenshot FILE`` serves the page on a free local port, photographs it in headless Chromium and
exits, for reports and CI; an existing FILE is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import tyro

from vdm3d.options import Range
from vdm3d.viewer.content import MeshUp

HELP = "open a run folder, splat PLY, mesh or camera path in a browser viewer (viser)"
EXAMPLES = """inputs: runs/demo/object is the --out folder of a job's run, such as `vdm3d object --image cup.png --out runs/demo/object` writes.

examples:
  vdm3d view runs/demo/object                        # splats, mesh, orbit cameras with frames, frame slider
  vdm3d view runs/demo/object/splats.ply --port 8090
  vdm3d view runs/demo/object --screenshot shot.png  # headless Chromium screenshot, then exit"""


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """Open vdm3d outputs in a browser viewer."""

    path: tyro.conf.Positional[Path]
    """a run folder, a splat .ply, a mesh (.glb/.obj/.ply) or a camera file (.json/.txt/.npy)"""
    host: str = "127.0.0.1"
    """address to bind; 0.0.0.0 serves every network interface (anyone who can reach it sees the page)"""
    port: Annotated[int, Range(0, 65535)] = 8080
    """port to serve on (the next free one is taken when it is busy)"""
    mesh_up: MeshUp = "auto"
    """up axis of mesh files: auto (GLB/glTF/OBJ are y-up, turned to vdm3d's z-up; PLY/STL/OFF are z-up), y or z"""
    max_splats: Annotated[int, Range(1)] = 500_000
    """show at most this many splats (the most opaque) so the page stays responsive"""
    max_faces: Annotated[int, Range(1)] = 200_000
    """draw a mesh with more faces simplified to at most this many (a browser showed 1.6 M as an empty page)"""
    screenshot: Path | None = None
    """write a PNG of the page from headless Chromium and exit instead of serving"""
    overwrite: bool = False
    """replace the --screenshot file if it already exists"""
    width: Annotated[int, Range(1)] = 960
    """screenshot width in pixels"""
    height: Annotated[int, Range(1)] = 720
    """screenshot height in pixels"""
    wait_ms: Annotated[int, Range(0)] = 30000
    """screenshot: virtual time the page gets to load and draw before the picture is taken"""


def serve(config: ViewConfig, *, port: int | None = None):
    """Start the viser server with the content of ``config.path``; returns ``(server, url)``."""
    from vdm3d.errors import Vdm3dError
    from vdm3d.viewer.content import load_content
    from vdm3d.viewer.origin import guarded_server
    from vdm3d.viewer.server import show

    content = load_content(config.path, config.mesh_up)  # bad input fails before a port is opened
    try:
        import viser
    except ImportError:
        raise Vdm3dError("the viewer needs viser, which is not installed; run: pip install 'vdm3d[viewer]'.") from None
    # refuses other sites' pages (cross-site websocket hijacking, DNS rebinding): viser checks no Origin
    server = guarded_server(viser.ViserServer, host=config.host, port=config.port if port is None else port,
                            verbose=False)
    show(server, content, max_splats=config.max_splats, max_faces=config.max_faces)
    host = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host
    return server, f"http://{host}:{server.get_port()}/", content


LARGE = 100_000  # splats or faces past which a stalled screenshot is more likely the content's size


def size_hint(content, config: ViewConfig) -> str:
    """What to lower when a screenshot of large content times out ('' for small content)."""
    parts = []
    if content.gaussians is not None and min(len(content.gaussians), config.max_splats) > LARGE:
        parts.append(f"--max-splats (now {config.max_splats:,}; the file has {len(content.gaussians):,})")
    if content.mesh is not None and min(len(content.mesh.faces), config.max_faces) > LARGE:
        parts.append(f"--max-faces (now {config.max_faces:,}; the mesh has {len(content.mesh.faces):,})")
    return "lower " + " or ".join(parts) if parts else ""


def main(argv, prog: str = "vdm3d view") -> int:
    from vdm3d.cli.config import cli

    config = cli(ViewConfig, argv, prog, description=HELP, examples=EXAMPLES)
    if config.screenshot is not None:
        from vdm3d.io.runs import check_new_output, check_writable
        from vdm3d.viewer.browser import screenshot

        check_writable(config.screenshot, "--screenshot")  # before Chromium starts (20 s)
        check_new_output(config.screenshot, config.overwrite, "--screenshot", file=True)
        server, url, content = serve(dataclasses.replace(config, host="127.0.0.1"), port=0)
        try:
            out = screenshot(url, config.screenshot, config.width, config.height, config.wait_ms,
                             hint=size_hint(content, config))
        finally:
            server.stop()
        print(f"screenshot: {out}")
        return 0
    server, url, content = serve(config)
    shown = ", ".join(content.sources) or "nothing"
    print(f"viewer: {url} ({shown} from {config.path}); Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0
