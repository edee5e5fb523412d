"""The tracker's UDP side (BEP 15): an asyncio reader over :class:`~.udp.UdpTrackerCore`.

It runs on the HTTP server's event loop and hands every verified announce and scrape to the
same :class:`~.store.SwarmStore` ``announce`` and ``scrape`` the HTTP handler calls, so a
peer announcing over UDP and one announcing over HTTP meet in one swarm, whichever store
holds it. Connects, drops and malformed requests are answered as they are read. Nothing is
kept per client (the connection ids are HMACs; see :mod:`.udp`).

With the in-memory store every datagram is answered as it is read: the core calls the
swarm state directly (:meth:`~.state.TrackerState.reannounce_compact` for the usual
re-announce, :meth:`~.state.TrackerState.announce_compact` for the rest: no request or reply
object, no coroutine, no task; docs/tracker.md, "UDP"). Any other store's call (a Redis round
trip, whose client wants to run inside a task) runs as a task, its reply sent when it
returns.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from torrentkit.discovery.aioservice import bind_socket
from torrentkit.discovery.tracker.protocol import TrackerRequestError
from torrentkit.discovery.tracker.store import MemoryStore, SwarmStore
from torrentkit.discovery.tracker.udp import UdpPending, UdpTrackerCore

log = logging.getLogger(__name__)

#: Receive buffer asked of the kernel, so bursts of announces are queued rather than lost.
RECEIVE_BUFFER = 4 << 20
#: Store calls in flight at most; datagrams past it are dropped (the clients retransmit).
MAX_PENDING = 10_000
#: Datagrams read per wake-up of the loop, at most (others wait for the next one): about
#: a millisecond of work, so the HTTP side on the same loop waits no longer than that.
BATCH = 128
#: Longest request read (a 74-hash scrape is 1,496 bytes); a longer one is cut there.
MAX_REQUEST = 2048


def open_udp_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound UDP socket on ``host``:``port`` (0 = any free port). Raises OSError."""
    return bind_socket(
        host, port, socket.SOCK_DGRAM, reuse_port=reuse_port, receive_buffer=RECEIVE_BUFFER
    )


class _Server:
    """Reads datagrams straight off the socket when the loop says it is readable, up to
    :data:`BATCH` per wake-up (asyncio's datagram transport takes one per wake-up, an extra
    epoll round per announce), and answers them with non-blocking ``sendto`` calls made
    back to back after the batch is read. (Sent as each was read, every reply found its
    client asleep and paid the kernel's wake-up; sent together, the first wakes it and the
    rest find it running: 124k -> 137k announces/s, and the clients' CPU halved, in
    tools/bench_tracker.py.) A reply the kernel cannot take now is dropped: the client
    retransmits (BEP 15)."""

    def __init__(
        self,
        core: UdpTrackerCore,
        store: SwarmStore,
        clock: Callable[[], float],
        sock: socket.socket,
    ) -> None:
        self.core = core
        self.store = store
        self.clock = clock
        self.sock = sock
        self.tasks: set[asyncio.Task[None]] = set()

    def readable(self) -> None:
        sock = self.sock
        recvfrom, handle = sock.recvfrom, self.core.handle
        now = self.clock()  # one reading per batch: the batch takes about a millisecond
        replies: list[tuple[bytes, Any]] = []
        append = replies.append
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(MAX_REQUEST)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error for an earlier reply: nothing to do
                log.debug("udp tracker: %s", exc)
                continue
            try:
                out = handle(data, addr[0], now)
            except Exception as exc:  # a bug of ours: one line, keep serving
                _log_bug(exc)
                continue
            if out is None:
                continue
            if out.__class__ is bytes:
                append((out, addr))
            else:
                self.answer(out, addr)  # type: ignore[arg-type]
        sendto = sock.sendto
        for out, addr in replies:
            try:
                sendto(out, addr)
            except OSError:  # the send buffer is full, or the address went away
                self.core.counters.dropped += 1

    def send(self, data: bytes, addr: Any) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError:  # the send buffer is full, or the address went away
            self.core.counters.dropped += 1

    def answer(self, pending: UdpPending, addr: Any) -> None:
        if len(self.tasks) >= MAX_PENDING:
            self.core.counters.dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._answer(pending, addr))
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
        self.send(out, addr)


def _log_bug(exc: Exception) -> None:
    log.error("udp tracker: %s: %s", type(exc).__name__, " ".join(str(exc).split())[:200])


class UdpService:
    """A running UDP side: its core (with the counters ``/stats`` shows); close to stop."""

    def __init__(self, core: UdpTrackerCore, server: _Server) -> None:
        self.core = core
        self._server = server

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._server.sock.fileno())
        for task in self._server.tasks:
            task.cancel()


async def start_udp(
    store: SwarmStore,
    sock: socket.socket,
    *,
    clock: Callable[[], float],
    master: bytes | None = None,
) -> UdpService:
    """Serve BEP 15 on the bound, non-blocking ``sock`` from the running loop, over
    ``store``. ``master``: the connection-id secret, shared by worker processes (random when
    None). The caller keeps the socket and closes it after :meth:`UdpService.close`."""
    # The in-memory store never waits: the core answers from its state as it reads
    # (exactly it: a subclass may wait or refuse).
    swarms = store.state if type(store) is MemoryStore else None
    core = UdpTrackerCore(trust_ip_param=store.config.trust_ip_param, master=master, swarms=swarms)
    server = _Server(core, store, clock, sock)
    sock.setblocking(False)
    asyncio.get_running_loop().add_reader(sock.fileno(), server.readable)
    await asyncio.sleep(0)
    return UdpService(core, server)
