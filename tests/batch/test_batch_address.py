"""`--address host:port` where nothing answers: one sentence within seconds, exit 2, nothing written (Ray
retried it for minutes, printing its connection warnings)."""

from __future__ import annotations

import json
import socket
import sys
import time
import types

import pytest

from vdm3d.batch import runner
from vdm3d.cli.main import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: nothing listens there


@pytest.fixture
def ray_not_reached(monkeypatch):
    def init(**kwargs):
        raise AssertionError(f"ray.init reached with {kwargs}")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(init=init, shutdown=lambda: None))


@pytest.mark.parametrize("command", ["batch", "eval"])
def test_an_address_where_nothing_listens_fails_fast(tmp_path, capsys, ray_not_reached, command):
    address = f"127.0.0.1:{_free_port()}"
    case = {"name": "a", "rooms": 1} if command == "eval" else {"name": "a", "job": "trajectory", "argv": ["make"]}
    (tmp_path / "m.jsonl").write_text(json.dumps(case) + "\n")
    out = tmp_path / "runs"
    argv = (["batch", str(tmp_path / "m.jsonl"), "--out", str(out), "--address", address] if command == "batch" else
            ["eval", "depth", "--manifest", str(tmp_path / "m.jsonl"), "--out", str(out), "--address", address])
    start = time.time()
    assert main(argv) == 2
    assert time.time() - start < 30
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"error: --address {address}: no Ray cluster answers there (Connection refused); "
                                    "start one on that machine (`ray start --head`) and give its address, or leave "
                                    "--address out to start Ray on this machine.")
    assert captured.out == ""  # refused before the header line ("eval depth: 1 cases from ...")
    assert not out.exists()


@pytest.mark.parametrize("address", ["auto", "ray://head:10001", "local", None])
def test_ray_addresses_are_left_to_ray(address, monkeypatch):
    monkeypatch.setattr(runner.socket, "create_connection", lambda *a, **k: pytest.fail("probed"))
    runner.check_address(address)


def test_a_listening_address_passes(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        runner.check_address(f"127.0.0.1:{s.getsockname()[1]}")
