"""`vdm3d view` refuses other web pages: a websocket or page request whose ``Origin`` is not the server
(cross-site websocket hijacking: any page open in the browser could read the user's scene from
ws://127.0.0.1:PORT) and, on a loopback-bound server, a request under a foreign host name (DNS rebinding)
get 403; clients without ``Origin`` and the page's own requests are served as before.

Each test starts the real server (the CLI's ``serve``) on a free port with 20 splats and talks to it with
the ``websockets`` client and ``http.client``.
"""

from __future__ import annotations

import http.client
import socket

import pytest

viser = pytest.importorskip("viser")
ws_client = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import InvalidStatus  # noqa: E402

from vdm3d.cli.view import ViewConfig, serve  # noqa: E402
from vdm3d.splat.ply import save_ply  # noqa: E402
from vdm3d.viewer.origin import UNGUARDED, refusal  # noqa: E402

from .test_content import two_colour_splats  # noqa: E402

SUBPROTOCOL = f"viser-v{viser.__version__}"  # viser closes a websocket that names no matching version


@pytest.fixture(scope="module")
def ply(tmp_path_factory):
    return save_ply(tmp_path_factory.mktemp("origin") / "splats.ply", two_colour_splats(20))


def start(ply, host: str = "127.0.0.1"):
    server, _, _ = serve(ViewConfig(path=ply, host=host), port=0)
    return server, server.get_port()


@pytest.fixture
def local(ply, capfd):
    server, port = start(ply)
    assert UNGUARDED not in capfd.readouterr().err  # the guard found viser's serve call
    yield port
    server.stop()


def ws(port: int, *, origin: str | None = None, host: str | None = None):
    """A websocket to the server on 127.0.0.1:port that sends ``Host: host`` (default 127.0.0.1:port);
    returns the first message (the scene), raises InvalidStatus when the handshake is refused."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    uri = f"ws://{host or f'127.0.0.1:{port}'}/"
    with ws_client.connect(uri, sock=sock, origin=origin, subprotocols=[SUBPROTOCOL], open_timeout=10) as c:
        return c.recv(timeout=10)


def refused(port: int, **kw) -> int:
    with pytest.raises(InvalidStatus) as e:
        ws(port, **kw)
    return e.value.response.status_code


def get(port: int, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_websockets_without_origin_or_from_the_page_itself_get_the_scene(local):
    assert ws(local)  # a Python client: no Origin
    assert ws(local, origin=f"http://127.0.0.1:{local}")
    assert ws(local, origin=f"http://localhost:{local}", host=f"localhost:{local}")
    assert ws(local, origin=f"http://[::1]:{local}", host=f"[::1]:{local}")


def test_a_websocket_from_another_site_is_refused(local):
    assert refused(local, origin="http://evil.example") == 403
    assert refused(local, origin=f"http://127.0.0.1:{local + 1}") == 403  # another local page, another port
    assert refused(local, origin="null") == 403  # a sandboxed frame or a file:// page


def test_a_rebound_host_name_is_refused_on_a_loopback_server(local):
    evil = f"evil.example:{local}"  # the attacker's name resolved to 127.0.0.1: its page is same-origin
    assert refused(local, origin=f"http://{evil}", host=evil) == 403
    assert refused(local, host=evil) == 403
    assert get(local, {"Host": evil}) == 403


def test_the_page_is_served_to_itself_and_refused_to_other_sites(local):
    assert get(local, {}) == 200
    assert get(local, {"Origin": f"http://127.0.0.1:{local}"}) == 200  # module scripts send Origin
    assert get(local, {"Origin": "http://evil.example"}) == 403


def test_a_server_on_every_interface_serves_browsers_on_other_machines(ply, capfd):
    try:
        server, port = start(ply, host="0.0.0.0")
    except OSError as e:
        pytest.skip(f"cannot bind 0.0.0.0 here: {e}")
    try:
        assert UNGUARDED not in capfd.readouterr().err
        lan = f"192.0.2.10:{port}"  # the address the other machine's browser used
        assert ws(port, origin=f"http://{lan}", host=lan)
        assert get(port, {"Host": lan, "Origin": f"http://{lan}"}) == 200
        assert refused(port, origin="http://evil.example", host=lan) == 403
    finally:
        server.stop()


def test_refusal_compares_origin_and_host_by_name_and_port():
    from websockets.datastructures import Headers

    def why(loopback=True, **headers):
        return refusal(Headers(**headers), loopback)

    assert why() is None and why(Host="127.0.0.1:8080") is None
    assert why(Host="127.0.0.1:8080", Origin="http://127.0.0.1:8080") is None
    assert why(Host="LOCALHOST:8080", Origin="http://localhost:8080") is None
    assert why(Host="127.0.0.1", Origin="http://127.0.0.1:80") is None  # default ports on either side
    assert why(False, Host="example.org", Origin="https://example.org") is None  # behind a TLS proxy
    assert why(Host="127.0.0.1:8080", Origin="http://127.0.0.1:8081")
    assert why(Host="127.0.0.1", Origin="http://127.0.0.1:8080")  # Host's missing port is 80
    assert why(Origin="http://127.0.0.1:8080")  # an Origin with no Host to match
    assert why(Host="user@127.0.0.1:8080")  # malformed
    assert why(False, Host="10.0.0.2:8080") is None and why(Host="10.0.0.2:8080")


def test_a_viser_that_no_longer_calls_serve_starts_unguarded_with_a_warning(monkeypatch):
    from vdm3d.viewer.origin import guarded_server

    said = []
    made = guarded_server(lambda host, port: (host, port), host="127.0.0.1", port=1, say=said.append)
    assert made == ("127.0.0.1", 1) and said == [UNGUARDED]
