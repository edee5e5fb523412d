"""The trio driver of a :class:`~torrentkit.dht.node.DhtNode`: one UDP endpoint, three tasks.

- *receive*: every datagram from the endpoint goes to the node, unless its first byte is not
  ``d`` (a bencoded dictionary): uTP SYNs and other traffic on the shared BitTorrent port
  number are dropped right there, before any decoding (counted in ``non_krpc``).
- *timers*: sleeps until the node's next deadline, or until a call changed it, then runs
  the node's timers.
- *send*: datagrams the node produced leave in order through the endpoint (a bounded queue:
  when it is full, the newest are dropped, as a congested link would).

Operations (:meth:`DhtDriver.ping`, :meth:`bootstrap`, :meth:`get_peers`,
:meth:`announce`, BEP 44's :meth:`get_item` and :meth:`put_item`, ...) start the node's
operation and wait for its ``...Done`` event; peers found on the way can be handed to a
callback as they arrive. :meth:`add_node` is synchronous (a node learnt from a peer's PORT
message: pinged, kept if it answers).

Host names (the default bootstrap routers) are resolved here, never in the node, with
:func:`resolve` (IPv4; an IP literal needs no lookup). The driver is the same on real
sockets and on the in-memory network (docs/design.md, layer 3).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from torrentkit.dht.items import Item
from torrentkit.dht.node import (
    AnnounceDone,
    DhtNode,
    Event,
    GetPeersDone,
    ItemFound,
    LookupDone,
    PeersFound,
    PingDone,
    PutDone,
)
from torrentkit.ids import PeerAddr
from torrentkit.net import DatagramEndpoint

log = logging.getLogger(__name__)

#: Datagrams waiting to leave; more are dropped.
SEND_QUEUE = 1024
#: The first byte of every KRPC message: ``d``, a bencoded dictionary.
KRPC_FIRST_BYTE = 0x64

T = TypeVar("T")


@dataclass(slots=True)
class _Waiter:
    #: The event that ends the operation (an announce's GetPeersDone comes before it).
    until: type
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    on_peers: Callable[[Sequence[PeerAddr]], None] | None = None


async def resolve(addrs: Iterable[PeerAddr]) -> list[PeerAddr]:
    """IPv4 addresses for ``addrs``: IP literals as they are, host names looked up (a name
    that does not resolve is skipped and logged)."""
    out: list[PeerAddr] = []
    for addr in addrs:
        try:
            ipaddress.IPv4Address(addr.host)
        except ValueError:
            pass
        else:
            out.append(addr)
            continue
        try:
            infos = await trio.socket.getaddrinfo(
                addr.host, addr.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except OSError as exc:
            log.info("dht: cannot resolve %s: %s", addr.host, exc)
            continue
        for info in infos:
            resolved = PeerAddr(str(info[4][0]), addr.port)
            if resolved not in out:
                out.append(resolved)
    return out


class DhtDriver:
    """A :class:`DhtNode` on a UDP ``endpoint``; run :meth:`run` in a nursery first."""

    def __init__(self, node: DhtNode, endpoint: DatagramEndpoint) -> None:
        self.node = node
        self.endpoint = endpoint
        self.non_krpc = 0
        self.send_dropped = 0
        #: Called with every event no operation waits for (PeerAnnounced, ExternalAddress).
        self.on_event: Callable[[Event], None] | None = None
        self._waiters: dict[int, _Waiter] = {}
        self._wake = trio.Event()
        self._send_in, self._send_out = trio.open_memory_channel[tuple[bytes, PeerAddr]](SEND_QUEUE)
        self._running = False

    @property
    def address(self) -> PeerAddr:
        return self.endpoint.address

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive, run timers and send until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_loop)
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._receive_loop)
            self._running = True
            self._flush()
            task_status.started()

    # ------------------------------------------------------------------ operations

    def add_node(self, addr: PeerAddr) -> None:
        """A node learnt from a peer's PORT message: pinged, kept in the table if it answers."""
        self.node.add_node(addr, trio.current_time())
        self._flush()

    async def ping(self, addr: PeerAddr) -> PingDone:
        return await self._wait(PingDone, lambda now: self.node.ping(addr, now))

    async def bootstrap(self, addrs: Sequence[PeerAddr]) -> LookupDone:
        """Join through ``addrs`` (names resolved first): a lookup of our own id."""
        resolved = await resolve(addrs)
        return await self._wait(LookupDone, lambda now: self.node.bootstrap(resolved, now))

    async def find_node(self, target: bytes) -> LookupDone:
        return await self._wait(LookupDone, lambda now: self.node.find_node(target, now))

    async def get_peers(
        self, info_hash: bytes, on_peers: Callable[[Sequence[PeerAddr]], None] | None = None
    ) -> GetPeersDone:
        """Look ``info_hash`` up; ``on_peers`` hears of new peers as they arrive."""
        return await self._wait(
            GetPeersDone, lambda now: self.node.get_peers(info_hash, now), on_peers
        )

    async def announce(
        self,
        info_hash: bytes,
        port: int,
        *,
        implied_port: bool = False,
        seed: bool = False,
        on_peers: Callable[[Sequence[PeerAddr]], None] | None = None,
    ) -> AnnounceDone:
        """get_peers for ``info_hash``, then announce our ``port`` to the closest nodes."""
        return await self._wait(
            AnnounceDone,
            lambda now: self.node.announce_peer(
                info_hash, port, now, implied_port=implied_port, seed=seed
            ),
            on_peers,
        )

    async def get_item(
        self, target: bytes, *, salt: bytes = b"", seq: int | None = None
    ) -> ItemFound:
        """BEP 44 get: the item stored under ``target`` (a mutable one's ``salt`` needed)."""
        return await self._wait(
            ItemFound, lambda now: self.node.get(target, now, salt=salt, seq=seq)
        )

    async def put_item(self, item: Item, *, cas: int | None = None) -> PutDone:
        """BEP 44 put: store ``item`` on the nodes closest to its target."""
        return await self._wait(PutDone, lambda now: self.node.put(item, now, cas=cas))

    async def _wait(
        self,
        until: type[T],
        start: Callable[[float], int],
        on_peers: Callable[[Sequence[PeerAddr]], None] | None = None,
    ) -> T:
        if not self._running:
            raise RuntimeError("start DhtDriver.run in a nursery first")
        op = start(trio.current_time())
        waiter = _Waiter(until=until, on_peers=on_peers)
        self._waiters[op] = waiter
        self._flush()
        try:
            await waiter.done.wait()
        finally:
            self._waiters.pop(op, None)
        result: T = waiter.result
        return result

    # ------------------------------------------------------------------ the tasks

    def _flush(self) -> None:
        """Queue what the node wants sent, hand out its events, re-arm the timer task."""
        for item in self.node.datagrams_to_send():
            try:
                self._send_in.send_nowait(item)
            except trio.WouldBlock:
                self.send_dropped += 1
        for event in self.node.events():
            op = getattr(event, "op", None)
            waiter = self._waiters.get(op) if op is not None else None
            if waiter is None:
                if op is None and self.on_event is not None:
                    self.on_event(event)
                continue
            if isinstance(event, PeersFound):
                if waiter.on_peers is not None:
                    waiter.on_peers(event.peers)
                continue
            if not isinstance(event, waiter.until):
                continue
            waiter.result = event
            waiter.done.set()
        self._wake.set()

    async def _receive_loop(self) -> None:
        while True:
            data, src = await self.endpoint.receive()
            if not data or data[0] != KRPC_FIRST_BYTE:
                self.non_krpc += 1  # uTP and other traffic on the shared port
                continue
            self.node.receive_datagram(data, src, trio.current_time())
            self._flush()

    async def _timer_loop(self) -> None:
        while True:
            with trio.move_on_at(self.node.next_deadline()):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            if now >= self.node.next_deadline():
                self.node.handle_timers(now)
                self._flush()
                self._wake = trio.Event()

    async def _send_loop(self) -> None:
        async for data, addr in self._send_out:
            await self.endpoint.send(data, addr)


@asynccontextmanager
async def open_dht_driver(node: DhtNode, endpoint: DatagramEndpoint) -> AsyncIterator[DhtDriver]:
    """A running driver for ``node`` on ``endpoint``; the endpoint is closed on the way out."""
    driver = DhtDriver(node, endpoint)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            yield driver
            nursery.cancel_scope.cancel()
    finally:
        endpoint.close()
