"""What the asyncio services (the HTTP tracker, the Napster index) share: a one-line log
filter for aiohttp's errors, :func:`serve_http` (an aiohttp server on a bound socket with a
periodic chore, until told to stop), and running a service on a background thread.

docs/design.md (layer 5) keeps asyncio out of the trio engine: a face that needs one of
these services next to trio code (the demo, tests) runs it in :class:`ServiceThread`, which
owns an asyncio loop on its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Self

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest

#: Idle keep-alive connections are closed after this long (seconds).
KEEPALIVE_TIMEOUT = 30.0
#: On stop, requests in flight get this long before their connections are closed.
SHUTDOWN_TIMEOUT = 2.0
#: aiohttp's own limit on a request line or header line (longer ones get HTTP 400).
MAX_LINE_SIZE = 8190


class OneLineErrors(logging.Filter):
    """Keep tracebacks and hostile bytes out of the log (and so off the CLI's stderr).

    A request that is not valid HTTP already got aiohttp's HTTP 400: it is the client's fault
    and is not logged at all. Anything else (a bug of ours) is logged as one printable line,
    without the traceback.
    """

    def __init__(self, printable: Callable[[str], str]) -> None:
        super().__init__()
        self._printable = printable

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if isinstance(exc, HttpProcessingError):
            return False
        detail = " ".join(str(exc).split())[:300]
        record.msg = self._printable(f"{record.getMessage()}: {type(exc).__name__}: {detail}")
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


def open_listen_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0 = any free port). Raises OSError.

    ``reuse_port``: SO_REUSEPORT, so that several sockets (one per worker process) listen on
    one port and the kernel spreads the connections over them.
    """
    return bind_socket(host, port, socket.SOCK_STREAM, reuse_port=reuse_port)


def bind_socket(
    host: str,
    port: int,
    kind: socket.SocketKind,
    *,
    reuse_port: bool = False,
    receive_buffer: int | None = None,
) -> socket.socket:
    """A non-blocking socket of ``kind`` bound to ``host``:``port`` (an IPv6 one also takes
    IPv4); a TCP one listens. ``reuse_port`` as in :func:`open_listen_socket`. Raises OSError."""
    infos = socket.getaddrinfo(
        host, port, type=kind, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
    )
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if receive_buffer is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind(addr)
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def host_port(sock: socket.socket) -> str:
    """``HOST:PORT`` of a bound socket (``[HOST]:PORT`` for IPv6), as a URL wants it."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_http(
    handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    logger: logging.Logger,
    chore: Callable[[], object],
    every: float,
    max_line_size: int = MAX_LINE_SIZE,
) -> None:
    """Serve ``handler`` on the bound ``sock`` until ``stop`` is set; then close every
    connection. ``chore()`` (expiring old state; awaited if it returns an awaitable) runs
    every ``every`` seconds in a task group this coroutine owns. aiohttp's per-connection
    errors go to ``logger``; no access log."""
    server = web.Server(
        handler,
        access_log=None,
        logger=logger,
        max_line_size=max_line_size,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
    )
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        async with asyncio.TaskGroup() as tasks:
            chores = tasks.create_task(_every(chore, every))
            await stop.wait()
            chores.cancel()
    finally:
        await runner.cleanup()


async def _every(chore: Callable[[], object], seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        done = chore()
        if inspect.isawaitable(done):
            await done


#: ``serve(sock, stop)``: serve on an already bound socket until ``stop`` is set.
Serve = Callable[[socket.socket, asyncio.Event], Coroutine[Any, Any, None]]


class ServiceThread:
    """An asyncio service on a background thread with its own loop.

    ``with ServiceThread(sock, serve) as t: ...``: the socket is bound before ``__enter__``
    (so the address is known at once); on exit the service is stopped and the thread
    joined; an error the service died of is raised to the owner.
    """

    def __init__(self, sock: socket.socket, serve: Serve, name: str) -> None:
        self._sock = sock
        self._serve = serve
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            task = asyncio.create_task(self._serve(self._sock, self._stop))
            await asyncio.sleep(0)
            self._ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the owner on exit
            self._error = exc
            self._ready.set()

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the service's loop (where its state lives) and return its result."""
        assert self._loop is not None
        future: Any = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        return future.result(10)

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._sock.close()
        if self._error is not None:
            raise self._error


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()
