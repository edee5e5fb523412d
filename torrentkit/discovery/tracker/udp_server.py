"""The tracker's UDP side (BEP 15): an asyncio datagram endpoint over :class:`~.udp.UdpTrackerCore`.

It runs on the HTTP server's event loop and hands every verified announce and scrape to the
same :class:`~.store.SwarmStore` ``announce`` and ``scrape`` the HTTP handler calls, so a
peer announcing over UDP and one announcing over HTTP meet in one swarm, whichever store
holds it. Connects, drops and malformed requests are answered inside
``datagram_received``; a store call runs as a task (a Redis store waits on the network),
its reply sent when it returns. Nothing is kept per client (the connection ids are HMACs;
see :mod:`.udp`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from torrentkit.discovery.aioservice import bind_socket
from torrentkit.discovery.tracker.protocol import TrackerRequestError
from torrentkit.discovery.tracker.store import SwarmStore
from torrentkit.discovery.tracker.udp import UdpPending, UdpTrackerCore

log = logging.getLogger(__name__)

#: Receive buffer asked of the kernel, so bursts of announces are queued rather than lost.
RECEIVE_BUFFER = 4 << 20
#: Store calls in flight at most; datagrams past it are dropped (the clients retransmit).
MAX_PENDING = 10_000


def open_udp_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound UDP socket on ``host``:``port`` (0 = any free port). Raises OSError."""
    return bind_socket(
        host, port, socket.SOCK_DGRAM, reuse_port=reuse_port, receive_buffer=RECEIVE_BUFFER
    )


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, core: UdpTrackerCore, store: SwarmStore, clock: Callable[[], float]):
        self.core = core
        self.store = store
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            out = self.core.handle(data, addr[0], self.clock())
        except Exception as exc:  # a bug of ours: one line, keep serving
            _log_bug(exc)
            return
        if out is None or self.transport is None:
            return
        if isinstance(out, bytes):
            self.transport.sendto(out, addr)
        elif len(self.tasks) >= MAX_PENDING:
            self.core.counters.dropped += 1
        else:
            task = asyncio.get_running_loop().create_task(self._answer(out, addr))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, pending: UdpPending, addr: Any) -> None:
        core = self.core
        try:
            if pending.announce is not None:
                reply = await self.store.announce(
                    pending.announce, remote_ip=pending.ip, now=self.clock()
                )
                out = core.announce_reply(pending, reply)
            else:
                out = core.scrape_reply(pending, await self.store.scrape(pending.scrape))
        except TrackerRequestError as exc:  # refused, or the store is down
            out = core.error_reply(pending, str(exc))
        except Exception as exc:
            _log_bug(exc)
            return
        if self.transport is not None:
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (the peer went away): nothing to do.
        log.debug("udp tracker: %s", exc)


def _log_bug(exc: Exception) -> None:
    log.error("udp tracker: %s: %s", type(exc).__name__, " ".join(str(exc).split())[:200])


class UdpService:
    """A running UDP side: its core (with the counters ``/stats`` shows); close to stop."""

    def __init__(self, core: UdpTrackerCore, protocol: _Protocol) -> None:
        self.core = core
        self._protocol = protocol

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
        for task in self._protocol.tasks:
            task.cancel()


async def start_udp(
    store: SwarmStore,
    sock: socket.socket,
    *,
    clock: Callable[[], float],
    master: bytes | None = None,
) -> UdpService:
    """Serve BEP 15 on the bound ``sock`` from the running loop, over ``store``.
    ``master``: the connection-id secret, shared by worker processes (random when None)."""
    core = UdpTrackerCore(trust_ip_param=store.config.trust_ip_param, master=master)
    protocol = _Protocol(core, store, clock)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    return UdpService(core, protocol)
