"""The tracker service: a thin aiohttp (asyncio) adapter over the pure tracker core, plus
the UDP side (BEP 15, :mod:`.udp_server`) on the same loop and the same swarm store.

Routes: ``/announce`` and ``/scrape`` (bencoded, HTTP 200 even for a failure reason, as
trackers do), ``/stats`` (JSON) and ``/stats.html``. The query string is read *raw* from the
request line (``request.raw_path``) and parsed by :mod:`.protocol`, because aiohttp's decoded
query would mangle the binary ``info_hash`` and ``peer_id``.

This is aiohttp's low-level server (one handler, a dict of routes) rather than
``web.Application`` with a router and middlewares: the per-request saving is measurable on
the announce path, and four fixed routes need no router.

The swarms live in a :class:`~.store.SwarmStore`: by default one process's memory (one
process, one event loop: every announce sees every peer of its swarm), or Redis, which any
number of processes share (``torrentkit tracker --store redis://... --workers N``). A store
that is down makes announces and scrapes answer a failure reason and ``/stats`` answer
HTTP 503 saying so; the server keeps running.

Use :func:`open_listen_socket` + :func:`serve` (the CLI does), or :class:`TrackerThread`
to run a tracker in a background thread of a sync or trio program (tests, demos).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_request import BaseRequest

from torrentkit.discovery.aioservice import OneLineErrors, ServiceThread, serve_http

# Re-exported: the CLI and tools/ open the tracker's socket through this module.
from torrentkit.discovery.aioservice import host_port as host_port
from torrentkit.discovery.aioservice import open_listen_socket as open_listen_socket
from torrentkit.discovery.tracker import protocol, stats
from torrentkit.discovery.tracker.state import TrackerState, TrackerStats
from torrentkit.discovery.tracker.stats import ServedCounts
from torrentkit.discovery.tracker.store import StoreUnavailable, SwarmStore, as_store
from torrentkit.discovery.tracker.udp_server import open_udp_socket as open_udp_socket
from torrentkit.discovery.tracker.udp_server import start_udp

log = logging.getLogger(__name__)
#: aiohttp's per-connection errors go here (see :class:`_OneLineErrors`).
http_log = logging.getLogger(__name__ + ".http")


http_log.addFilter(OneLineErrors(lambda text: stats.printable(text.encode("utf-8", "replace"))))

#: Request lines up to this long reach our parser and get a bencoded answer (a 1,000-hash
#: scrape, every byte escaped, is ~71 KB); longer ones get aiohttp's HTTP 400.
MAX_REQUEST_LINE = protocol.MAX_QUERY_LENGTH + 1024
#: /stats and /stats.html are recomputed at most this often (seconds).
STATS_MAX_AGE = 1.0

_TEXT = "text/plain"
_Handler = Callable[[BaseRequest, str], Awaitable[web.StreamResponse]]


class TrackerHandler:
    """Maps HTTP requests onto a :class:`~.store.SwarmStore` (a bare :class:`TrackerState`
    is served from memory); ``clock`` gives ``now`` (seconds; default: the store's clock)."""

    def __init__(
        self, state: TrackerState | SwarmStore, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.store = as_store(state)
        self.clock = clock if clock is not None else self.store.clock
        self.routes: dict[str, _Handler] = {
            "/announce": self.announce,
            "/scrape": self.scrape,
            "/stats": self.stats_json,
            "/stats.html": self.stats_html,
        }
        self._stats_cache: tuple[float, TrackerStats] | None = None
        #: Requests served per protocol, for ``/stats``; ``serve`` adds ``udp`` when it runs.
        self.served: dict[str, ServedCounts] = {"http": ServedCounts()}

    async def __call__(self, request: BaseRequest) -> web.StreamResponse:
        # The raw request target, split by hand: the query must stay percent-encoded.
        path, _, query = request.raw_path.partition("?")
        route = self.routes.get(path) or self.routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="not found\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="use GET\n", headers={"Allow": "GET, HEAD"})
        return await route(request, query)

    @staticmethod
    def _bencoded(body: bytes) -> web.Response:
        return web.Response(body=body, content_type=_TEXT)

    async def announce(self, request: BaseRequest, query: str) -> web.StreamResponse:
        try:
            req = protocol.parse_announce_query(query)
            remote = request.remote or ""
            reply = await self.store.announce(req, remote_ip=remote, now=self.clock())
        except protocol.TrackerRequestError as exc:
            self.served["http"].errors += 1
            return self._bencoded(protocol.encode_failure(str(exc)))
        self.served["http"].announces += 1
        body = protocol.encode_announce_response(
            reply, compact=req.compact, no_peer_id=req.no_peer_id
        )
        return self._bencoded(body)

    async def scrape(self, request: BaseRequest, query: str) -> web.StreamResponse:
        try:
            hashes = protocol.parse_scrape_query(query)
            scraped = await self.store.scrape(hashes)
        except protocol.TrackerRequestError as exc:
            self.served["http"].errors += 1
            return self._bencoded(protocol.encode_failure(str(exc)))
        self.served["http"].scrapes += 1
        return self._bencoded(protocol.encode_scrape_response(scraped))

    async def _stats(self) -> TrackerStats:
        if self.store.down is not None:
            raise StoreUnavailable(self.store.down)
        # Walking every swarm costs time on a big tracker: at most once a second.
        now = self.clock()
        if self._stats_cache is None or now - self._stats_cache[0] >= STATS_MAX_AGE:
            self._stats_cache = (now, await self.store.stats())
        return self._stats_cache[1]

    def _store_down(self, exc: StoreUnavailable) -> web.Response:
        # The store's own account (with the cause) when it has one.
        body = json.dumps({"store": "down", "error": self.store.down or str(exc)}).encode()
        return web.Response(status=503, body=body, content_type="application/json")

    async def stats_json(self, request: BaseRequest, query: str) -> web.StreamResponse:
        try:
            body = stats.render_json(await self._stats(), self.served)
        except StoreUnavailable as exc:
            return self._store_down(exc)
        return web.Response(body=body, content_type="application/json")

    async def stats_html(self, request: BaseRequest, query: str) -> web.StreamResponse:
        try:
            body = stats.render_html(await self._stats(), self.served)
        except StoreUnavailable as exc:
            return self._store_down(exc)
        return web.Response(
            body=body,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
        )


def announce_url(sock: socket.socket) -> str:
    """``http://HOST:PORT/announce`` for a listening socket."""
    return f"http://{host_port(sock)}/announce"


def udp_url(sock: socket.socket) -> str:
    """``udp://HOST:PORT/announce`` for a bound UDP socket."""
    return f"udp://{host_port(sock)}/announce"


async def serve(
    state: TrackerState | SwarmStore,
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    clock: Callable[[], float] | None = None,
    purge_every: float | None = None,
    udp_sock: socket.socket | None = None,
    udp_master: bytes | None = None,
) -> None:
    """Serve the tracker on ``sock`` (and UDP on the bound ``udp_sock``, if given) until
    ``stop`` is set; then close every connection. ``udp_master``: the connection-id secret
    (worker processes share one; random when None).

    A background task purges expired peers every ``purge_every`` seconds (default: a tenth
    of the interval, at most 60 s); it lives in a task group this coroutine owns.
    """
    handler = TrackerHandler(state, clock=clock)
    store, now = handler.store, handler.clock

    async def purge() -> None:
        try:
            dropped = await store.purge(now())
        except StoreUnavailable:
            return  # the store logged it; the next round tries again
        if dropped:
            log.debug("purged %d expired peers", dropped)

    every = purge_every if purge_every is not None else min(60.0, store.config.interval / 10)
    udp = None
    if udp_sock is not None:
        udp = await start_udp(store, udp_sock, clock=now, master=udp_master)
        handler.served["udp"] = udp.core.counters
    try:
        await serve_http(
            handler,
            sock,
            stop,
            logger=http_log,
            chore=purge,
            every=every,
            max_line_size=MAX_REQUEST_LINE,
        )
    finally:
        if udp is not None:
            udp.close()


class TrackerThread(ServiceThread):
    """A tracker serving from a background thread with its own asyncio loop.

    For sync or trio programs (tests, demos) that need a real tracker without a subprocess:
    ``with TrackerThread(state) as t: ... t.announce_url ...``. It binds ``host``:``port``
    (port 0 by default) before ``__enter__`` returns, and stops and joins on exit.
    """

    def __init__(
        self,
        state: TrackerState | SwarmStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        udp: bool = False,
    ) -> None:
        self.state = state
        sock = open_listen_socket(host, port)
        self.address = host_port(sock)
        self.announce_url = announce_url(sock)
        #: With ``udp``: a UDP socket on any free port, served on the same store (BEP 15).
        self.udp_sock = open_udp_socket(host, 0) if udp else None
        self.udp_url = udp_url(self.udp_sock) if self.udp_sock is not None else None
        super().__init__(
            sock, lambda s, stop: serve(state, s, stop, udp_sock=self.udp_sock), "tracker"
        )

    def __exit__(self, *exc_info: object) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            if self.udp_sock is not None:
                self.udp_sock.close()
