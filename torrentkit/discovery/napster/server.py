"""The napster-index service: a thin aiohttp (asyncio) adapter over the pure index.

The API (routes, bodies, status codes) is documented in :mod:`.protocol`; the index's rules
and search kinds in :mod:`.index`. This module only moves bytes: it reads a body of at most
``MAX_BODY`` bytes, applies the per-IP rate limit, calls the core with ``now`` from its clock,
and answers JSON. Every refusal is a 4xx (or 503) JSON ``{"error": "..."}``, never a traceback.

The connecting IP is the peer's address (a dual-stack socket's ``::ffff:a.b.c.d`` is written
``a.b.c.d``); no request field can claim another address. POST bodies must be declared
``Content-Type: application/json``, so a web page cannot make a visitor's browser publish
through a plain form.

One process, one event loop, one :class:`~.index.NapsterIndex`. Searches run on the loop: they
are bounded (``max_scan`` entries, ``search_time_budget`` seconds), so none stalls the rest.

Use :func:`serve` (the CLI does), or :class:`NapsterIndexThread` to run an index in a
background thread of a sync or trio program (tests, demos).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_request import BaseRequest

import torrentkit
from torrentkit.discovery.aioservice import (
    OneLineErrors,
    ServiceThread,
    host_port,
    open_listen_socket,
    serve_http,
)
from torrentkit.discovery.napster import protocol
from torrentkit.discovery.napster.index import IndexRequestError, NapsterIndex, RateLimiter

log = logging.getLogger(__name__)
#: aiohttp's per-connection errors go here (see :class:`_OneLine`).
http_log = logging.getLogger(__name__ + ".http")

#: Default per-IP request rate (requests per second) and burst.
DEFAULT_RATE = 20.0
DEFAULT_BURST = 100.0

_JSON = "application/json"
_Handler = Callable[[BaseRequest, str], Awaitable[bytes]]

__all__ = ["NapsterIndexThread", "host_port", "open_listen_socket", "serve", "url_of"]


http_log.addFilter(
    OneLineErrors(lambda text: text.encode("ascii", "backslashreplace").decode("ascii"))
)


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT/`` for a listening socket."""
    return f"http://{host_port(sock)}/"


def client_ip(request: BaseRequest) -> str:
    """The connecting IP, IPv4-mapped IPv6 written as IPv4."""
    remote = request.remote or ""
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class IndexHandler:
    """Maps HTTP requests onto a :class:`NapsterIndex`; ``clock`` gives ``now`` (seconds)."""

    def __init__(
        self,
        index: NapsterIndex,
        *,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.index = index
        self.clock = clock
        self.limiter = limiter if limiter is not None else RateLimiter(DEFAULT_RATE, DEFAULT_BURST)
        self.routes: dict[str, tuple[str, _Handler]] = {
            "/": ("GET", self.about),
            "/join": ("POST", self.join),
            "/publish": ("POST", self.publish),
            "/refresh": ("POST", self.refresh),
            "/leave": ("POST", self.leave),
            "/search": ("GET", self.search),
            "/stats": ("GET", self.stats),
        }

    async def __call__(self, request: BaseRequest) -> web.StreamResponse:
        route = self.routes.get(request.path)
        if route is None:
            return _error(404, "not found")
        ip = client_ip(request)
        wait = self.limiter.take(ip, self.clock())
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            return _error(429, "too many requests", {"Retry-After": retry})
        method, handler = route
        allowed = (method, "HEAD") if method == "GET" else (method,)
        if request.method not in allowed:
            return _error(405, f"use {method}", {"Allow": ", ".join(allowed)})
        try:
            body = await handler(request, ip)
        except IndexRequestError as exc:
            return _error(exc.status, str(exc))
        except Exception as exc:  # a bug of ours: one line in the log, a JSON 500 out
            log.error("%s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
            return _error(500, "internal error")
        return web.Response(body=body, content_type=_JSON)

    async def _read(self, request: BaseRequest) -> bytes:
        if request.content_type != _JSON:
            raise IndexRequestError("send the body as Content-Type: application/json", 415)
        cap = protocol.MAX_BODY
        declared = request.content_length
        if declared is not None and declared > cap:
            raise IndexRequestError(f"body larger than {cap} bytes", 413)
        data = bytearray()
        while chunk := await request.content.readany():
            data += chunk
            if len(data) > cap:
                raise IndexRequestError(f"body larger than {cap} bytes", 413)
        return bytes(data)

    async def about(self, request: BaseRequest, ip: str) -> bytes:
        return protocol.dumps(
            {
                "service": "torrentkit napster-index",
                "version": torrentkit.__version__,
                "ttl": self.index.config.ttl,
                "endpoints": [f"{m} {p}" for p, (m, _) in self.routes.items()],
            }
        )

    async def join(self, request: BaseRequest, ip: str) -> bytes:
        port = protocol.parse_join(await self._read(request))
        session = self.index.join(ip=ip, port=port, now=self.clock())
        return protocol.join_reply(session, self.index.config.ttl)

    async def publish(self, request: BaseRequest, ip: str) -> bytes:
        max_files = self.index.config.max_entries_per_peer
        token, files, remove, replace = protocol.parse_publish(await self._read(request), max_files)
        result = self.index.publish(token, files, now=self.clock(), remove=remove, replace=replace)
        return protocol.publish_reply(result, self.index.config.ttl)

    async def refresh(self, request: BaseRequest, ip: str) -> bytes:
        token = protocol.parse_token(protocol.parse_body(await self._read(request), ("session",)))
        self.index.refresh(token, now=self.clock())
        return protocol.dumps({"ttl": self.index.config.ttl})

    async def leave(self, request: BaseRequest, ip: str) -> bytes:
        token = protocol.parse_token(protocol.parse_body(await self._read(request), ("session",)))
        return protocol.dumps({"removed": self.index.leave(token, now=self.clock())})

    async def search(self, request: BaseRequest, ip: str) -> bytes:
        query = protocol.parse_search(request.query.items())
        started = time.perf_counter()
        result = self.index.search(query, now=self.clock(), clock=time.perf_counter)
        took_ms = (time.perf_counter() - started) * 1000
        return protocol.search_reply(result, took_ms)

    async def stats(self, request: BaseRequest, ip: str) -> bytes:
        return protocol.stats_reply(self.index.stats())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=protocol.error_body(message), content_type=_JSON, headers=headers
    )


async def serve(
    index: NapsterIndex,
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
    limiter: RateLimiter | None = None,
    purge_every: float | None = None,
) -> None:
    """Serve the index on ``sock`` until ``stop`` is set; then close every connection.

    A background task drops expired sessions every ``purge_every`` seconds (default: a
    quarter of the TTL, at most 30 s); it lives in a task group this coroutine owns.
    """

    def expire() -> None:
        dropped = index.expire(clock())
        if dropped:
            log.debug("dropped %d expired sessions", dropped)

    every = purge_every if purge_every is not None else min(30.0, index.config.ttl / 4)
    await serve_http(
        IndexHandler(index, clock=clock, limiter=limiter),
        sock,
        stop,
        logger=http_log,
        chore=expire,
        every=every,
    )


class NapsterIndexThread(ServiceThread):
    """An index serving from a background thread with its own asyncio loop.

    For sync or trio programs (tests, demos): ``with NapsterIndexThread() as idx: ... idx.url``.
    It binds ``host``:``port`` (port 0 by default) before ``__enter__`` returns, and stops and
    joins on exit. ``clock`` and ``limiter`` go to :func:`serve` (a test can drive time).
    """

    def __init__(
        self,
        index: NapsterIndex | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.index = index if index is not None else NapsterIndex()
        idx = self.index
        sock = open_listen_socket(host, port)
        self.address = host_port(sock)
        self.url = url_of(sock)
        super().__init__(
            sock,
            lambda s, stop: serve(idx, s, stop, clock=clock, limiter=limiter),
            "napster-index",
        )
