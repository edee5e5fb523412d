"""The one aiohttp service runner, on a background thread and a real socket (port 0)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Coroutine
from typing import Any

import pytest
from aiohttp import web
from aiohttp.web_request import BaseRequest

from torrentkit.discovery.aioservice import (
    ServiceThread,
    host_port,
    open_listen_socket,
    serve_http,
)


async def hello(request: BaseRequest) -> web.StreamResponse:
    return web.Response(body=b"hello " + request.path.encode())


def test_serves_runs_its_chore_and_stops() -> None:
    ticks = threading.Event()
    count = [0]

    def chore() -> None:
        count[0] += 1
        ticks.set()

    def serve(sock: socket.socket, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        log = logging.getLogger("test.aioservice")
        return serve_http(hello, sock, stop, logger=log, chore=chore, every=0.01)

    sock = open_listen_socket("127.0.0.1", 0)
    address = host_port(sock)
    with ServiceThread(sock, serve, "test-service"):
        with urllib.request.urlopen(f"http://{address}/x", timeout=10) as reply:
            assert reply.read() == b"hello /x"
        assert ticks.wait(10)
    # Stopped: the chore is no longer called and the port no longer answers.
    stopped_at = count[0]
    time.sleep(0.05)
    assert count[0] == stopped_at
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{address}/x", timeout=2)


def test_host_port_brackets_ipv6() -> None:
    with open_listen_socket("127.0.0.1", 0) as sock:
        assert host_port(sock) == f"127.0.0.1:{sock.getsockname()[1]}"
    try:
        six = open_listen_socket("::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with six:
        assert host_port(six) == f"[::1]:{six.getsockname()[1]}"
