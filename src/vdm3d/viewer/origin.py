"""Refuse requests to the viewer that come from other web pages (cross-site websocket hijacking) or
under a foreign host name (DNS rebinding).

viser serves its page and the scene (the user's splats, meshes, the frames of their photos) on one
port: the page over HTTP, the scene over a websocket. It checks neither the ``Origin`` nor the
``Host`` header, and browsers let any page open a websocket to any address, so a page the user
visits in the same browser could connect to ``ws://127.0.0.1:PORT`` and read the scene; a page
whose host name is made to resolve to 127.0.0.1 (DNS rebinding) could even load the page itself.

This guard is hand-written because viser (1.1.1) has no option or hook for it: its
``WebsockServer`` calls ``websockets.asyncio.server.serve(..., process_request=<its file server>)``
in a background thread while ``ViserServer`` is being constructed. :func:`guarded_server` replaces
that function only for the duration of the construction (under a lock) with one that puts
:func:`refusal` in front of viser's own ``process_request``. A request is answered 403 when

* it carries an ``Origin`` whose host and port differ from its ``Host`` (a browser sends ``Origin``
  with every websocket handshake and with cross-origin requests; the page's own requests match);
* the server is bound to a loopback address and ``Host`` is not a loopback name (127.0.0.1,
  localhost, [::1], ...), whatever the port: only a rebound name can bring a browser there.

Requests without ``Origin`` (Python clients, curl) are served as before; so is a browser on another
machine when the server is bound to 0.0.0.0 (its Host and Origin are both the server's address).
Should a future viser no longer call the function while it is constructed, the viewer starts
without the guard and says so on stderr (and tests/viewer/test_origin.py fails).
"""

from __future__ import annotations

import http
import ipaddress
import re
import sys
import threading
from typing import Callable, TypeVar

T = TypeVar("T")

_LOCK = threading.Lock()  # the patched function is a module global: one construction at a time
_HOSTPORT = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")
_ORIGIN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<hostport>[^/?#]*)")
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
UNGUARDED = ("vdm3d view: warning: this viser no longer calls websockets.asyncio.server.serve while its "
             "server starts, so the viewer could not add its Origin/Host check; other web pages open in "
             "this browser may be able to read the scene.")


def _host_port(text: str) -> tuple[str, int | None] | None:
    """``("name", port)`` of a Host header's ``name[:port]`` (IPv6 in brackets), lowercased;
    None when it is malformed."""
    m = _HOSTPORT.fullmatch(text.strip())
    if m is None:
        return None
    return m["name"].lower(), int(m["port"]) if m["port"] else None


def is_loopback(name: str) -> bool:
    """Whether a bind address or host name (``[::1]`` with its brackets or without) is the loopback."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refusal(headers, loopback: bool) -> str | None:
    """Why a request with these headers (``websockets.Headers``) is refused, or None when it is served.

    ``loopback``: the server is bound to a loopback address, so only loopback names may be its Host."""
    hosts, origins = headers.get_all("Host"), headers.get_all("Origin")
    if len(hosts) > 1 or len(origins) > 1:
        return "more than one Host or Origin header"
    host = _host_port(hosts[0]) if hosts else None
    if hosts and host is None:
        return f"malformed Host {hosts[0]!r}"
    if loopback and host is not None and not is_loopback(host[0]):
        return f"Host {hosts[0]!r} is not a loopback name, and the viewer is bound to the loopback"
    if origins:
        m = _ORIGIN.fullmatch(origins[0].strip())
        origin = _host_port(m["hostport"]) if m else None
        if origin is None or host is None:
            return f"Origin {origins[0]!r} is not this server (Host {hosts[0] if hosts else None!r})"
        default = _DEFAULT_PORTS.get(m["scheme"].lower())
        same = origin[0] == host[0] and (origin[1] or default) == (host[1] or default)
        if not same:
            return f"Origin {origins[0]!r} is not this server (Host {hosts[0]!r})"
    return None


def guard(process_request, loopback: bool, say: Callable[[str], None]):
    """A websockets ``process_request`` that answers 403 to refused requests and hands the rest to
    ``process_request`` (viser's page server; None: go on with the websocket handshake)."""
    said = []

    async def checked(connection, request):
        why = refusal(request.headers, loopback)
        if why is not None:
            if not said:  # once: a page retrying should not flood the terminal
                said.append(why)
                say(f"vdm3d view: refused a request from another site ({why}); "
                    "further refusals are not reported")
            return connection.respond(http.HTTPStatus.FORBIDDEN, "Forbidden: cross-site request refused.\n")
        if process_request is None:
            return None
        response = process_request(connection, request)
        if hasattr(response, "__await__"):
            response = await response
        return response

    return checked


def guarded_server(factory: Callable[..., T], *, host: str, say: Callable[[str], None] | None = None,
                   **kwargs) -> T:
    """``factory(host=host, **kwargs)`` (``viser.ViserServer``) with :func:`refusal` in front of every
    request its websockets server gets. Starts it unguarded, with a warning on stderr, when the server
    was built without calling ``websockets.asyncio.server.serve``."""
    def to_stderr(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    say = say or to_stderr
    try:
        import websockets.asyncio.server as ws_server
        original = ws_server.serve
    except (ImportError, AttributeError):
        say(UNGUARDED)
        return factory(host=host, **kwargs)
    loopback = is_loopback(host)
    calls = []

    def serve(*args, process_request=None, **kw):
        calls.append(1)
        return original(*args, process_request=guard(process_request, loopback, say), **kw)

    with _LOCK:
        ws_server.serve = serve
        try:
            server = factory(host=host, **kwargs)
        finally:
            ws_server.serve = original
    if not calls:
        say(UNGUARDED)
    return server
