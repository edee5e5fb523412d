"""What the asyncio services (the HTTP tracker, the Napster index) share: a one-line log
filter for aiohttp's errors, and running a service on a background thread.

DESIGN.md keeps asyncio out of the trio engine: a face that needs one of these services next
to trio code (the demo, tests) runs it in :class:`ServiceThread`, which owns an asyncio loop
on its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self

from aiohttp.http_exceptions import HttpProcessingError


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
