"""A real HTTP server for web seed tests: aiohttp on its own thread, on 127.0.0.1.

``/ok/...`` serves the files under ``root`` with aiohttp's ``FileResponse``, which honours
``Range`` (206 and ``Content-Range``) as any ordinary web server does. The other prefixes
misbehave in one way each (docs/limits.md item 16):

- ``/full200/``: ignores ``Range``, answers 200 and the whole file;
- ``/badrange/``: the right bytes under a ``Content-Range`` shifted by one;
- ``/loop/``: redirects to itself forever;
- ``/longer/``: the asked bytes and more, chunked (no length to check up front);
- ``/corrupt/``: the asked range with every byte flipped;
- ``/busy/``: 503 for the first ``busy`` requests, then like ``/ok/``;
- ``/stall/``: a correct 206 header and the first byte, then nothing for 3 s.

``hits`` counts requests per prefix.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web
from aiohttp.web_request import BaseRequest

from torrentkit.discovery.aioservice import ServiceThread, host_port, serve_http


class WebSeedServer:
    def __init__(self, root: Path, *, busy: int = 0) -> None:
        self.root = root.resolve()
        self.busy = busy
        self.hits: collections.Counter[str] = collections.Counter()
        self.base = ""

    def url(self, mode: str) -> str:
        return f"{self.base}/{mode}/"

    def _file(self, rest: str) -> Path:
        path = (self.root / unquote(rest)).resolve()
        if self.root not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        return path

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        _, mode, rest = request.raw_path.split("/", 2)
        self.hits[mode] += 1
        if mode == "loop":
            return web.Response(status=302, headers={"Location": request.raw_path})
        path = self._file(rest)
        if mode == "busy" and self.hits[mode] <= self.busy:
            return web.Response(status=503, text="busy")
        if mode in ("ok", "busy"):
            return web.FileResponse(path)
        data = path.read_bytes()
        if mode == "full200":
            return web.Response(body=data)
        rng = request.http_range
        start = rng.start or 0
        stop = len(data) if rng.stop is None else rng.stop
        part = data[start:stop]
        content_range = f"bytes {start}-{stop - 1}/{len(data)}"
        if mode == "badrange":
            content_range = f"bytes {start + 1}-{stop}/{len(data)}"
        elif mode == "corrupt":
            part = bytes(b ^ 0xFF for b in part)
        elif mode == "stall":
            resp = web.StreamResponse(
                status=206,
                headers={"Content-Range": content_range, "Content-Length": str(len(part))},
            )
            await resp.prepare(request)
            await resp.write(part[:1])
            await asyncio.sleep(3)
            return resp
        elif mode == "longer":
            resp = web.StreamResponse(status=206, headers={"Content-Range": content_range})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(part)
            await resp.write(b"x" * 100_000)
            await resp.write_eof()
            return resp
        return web.Response(status=206, body=part, headers={"Content-Range": content_range})


@contextlib.contextmanager
def web_seed_server(root: Path, *, busy: int = 0) -> Iterator[WebSeedServer]:
    """Serve ``root`` on 127.0.0.1 (a free port) until the block ends."""
    server = WebSeedServer(root, busy=busy)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server.base = f"http://{host_port(sock)}"

    async def serve(s: socket.socket, stop: object) -> None:
        await serve_http(
            server.handle,
            s,
            stop,  # type: ignore[arg-type]
            logger=logging.getLogger("webseed-test-server"),
            chore=lambda: None,
            every=3600,
        )

    with ServiceThread(sock, serve, "webseed-test-server"):
        yield server
