"""The trio driver of a Chord node: one UDP endpoint, one task, the node's timers.

The driver owns nothing but I/O: it feeds every datagram and every due timer to the sans-IO
:class:`~torrentkit.discovery.chord.node.ChordNode`, sends what the node wants sent, and wakes
the callers waiting on an operation when the node reports it done. The endpoint comes from a
:class:`torrentkit.net.Network`, so the very same code runs on real UDP sockets
(:class:`torrentkit.net.TrioNetwork`) and in memory (:class:`torrentkit.testing.network.SimNetwork`
under the virtual clock).

Usage::

    async with open_chord_node(network, "127.0.0.1", 0, config=cfg) as chord:
        await chord.join(bootstrap)        # or chord.create() for the first node
        await chord.announce(info_hash, port)
        done = await chord.get_peers(info_hash)   # done.peers, done.path
        await chord.leave()                # graceful: keys handed to the successor

The node's id is computed from the address it advertises (by default the bound address). A
node bound to a wildcard address (``0.0.0.0`` / ``::``) must be told the address the others
see with ``advertise=`` (its id depends on it).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from torrentkit.discovery.chord.node import (
    AnnounceDone,
    ChordConfig,
    ChordNode,
    Event,
    GetPeersDone,
    IdFunction,
    JoinDone,
    LeaveDone,
    LookupDone,
)
from torrentkit.errors import LocalProtocolError, TorrentkitError
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.net import DatagramEndpoint, Network

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


class ChordJoinError(TorrentkitError):
    """The ring could not be joined through the given bootstrap node."""


@dataclass(slots=True)
class _Waiter:
    done: trio.Event = field(default_factory=trio.Event)
    result: Event | None = None


class ChordDriver:
    """Runs one :class:`ChordNode` over one datagram endpoint. Start :meth:`run` in a nursery
    (``await nursery.start(driver.run)``) before calling the operations."""

    def __init__(self, endpoint: DatagramEndpoint, node: ChordNode) -> None:
        self.endpoint = endpoint
        self.node = node
        self._waiters: dict[int, _Waiter] = {}
        self._scope: trio.CancelScope | None = None
        self._running = False

    @property
    def address(self) -> PeerAddr:
        return self.node.address

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive datagrams and fire timers until cancelled."""
        node = self.node
        receive = self.endpoint.receive
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timers)
            self._running = True
            task_status.started()
            try:
                while True:
                    data, src = await receive()
                    node.receive_datagram(data, src, trio.current_time())
                    await self._pump()
            finally:
                self._running = False

    async def _timers(self) -> None:
        node = self.node
        while True:
            with trio.CancelScope(deadline=node.next_deadline()) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            node.handle_timers(trio.current_time())
            await self._pump()

    # ------------------------------------------------------------------ operations

    def create(self) -> None:
        """Start a new ring with this node alone on it."""
        self.node.create(trio.current_time())
        self._rearm()  # the ring's timers start now

    async def join(self, bootstrap: PeerAddr) -> PeerAddr:
        """Join through ``bootstrap``; returns our successor. Raises :class:`ChordJoinError`."""
        op = self.node.join(bootstrap, trio.current_time())
        done = await self._wait(op)
        assert isinstance(done, JoinDone)
        if not done.ok or done.successor is None:
            raise ChordJoinError(f"could not join the Chord ring through {bootstrap}")
        return done.successor

    async def lookup(self, key: bytes) -> LookupDone:
        """``find_successor(key)``; the result says where the key lives and the path taken."""
        done = await self._wait(self.node.lookup(key, trio.current_time()))
        assert isinstance(done, LookupDone)
        return done

    async def get_peers(self, info_hash: bytes) -> GetPeersDone:
        done = await self._wait(self.node.get_peers(info_hash, trio.current_time()))
        assert isinstance(done, GetPeersDone)
        return done

    async def announce(self, info_hash: bytes, port: int) -> AnnounceDone:
        """Store (our IP, ``port``) under ``info_hash`` at its owner (and its replicas)."""
        done = await self._wait(self.node.announce(info_hash, port, trio.current_time()))
        assert isinstance(done, AnnounceDone)
        return done

    async def leave(self) -> None:
        """Hand our keys to the successor and tell our neighbours; then the node is silent."""
        done = await self._wait(self.node.leave(trio.current_time()))
        assert isinstance(done, LeaveDone)

    # ------------------------------------------------------------------ internals

    async def _wait(self, op: int) -> Event:
        if not self._running:
            raise LocalProtocolError("start ChordDriver.run in a nursery first")
        waiter = self._waiters[op] = _Waiter()
        try:
            await self._pump()
            await waiter.done.wait()
        finally:
            self._waiters.pop(op, None)
        assert waiter.result is not None
        return waiter.result

    def _rearm(self) -> None:
        """The node's next timer may have moved (a new RPC, or answered ones dropped)."""
        scope = self._scope
        if scope is not None:
            deadline = self.node.next_deadline()
            if deadline != scope.deadline:
                scope.deadline = deadline

    async def _pump(self) -> None:
        node = self.node
        for event in node.events():
            waiter = self._waiters.get(event.op)
            if waiter is not None:
                waiter.result = event
                waiter.done.set()
        out = node.datagrams_to_send()
        self._rearm()
        send = self.endpoint.send
        for data, addr in out:
            await send(data, addr)


@asynccontextmanager
async def open_chord_node(
    network: Network,
    host: str,
    port: int = 0,
    *,
    config: ChordConfig | None = None,
    rng: random.Random | None = None,
    id_of: IdFunction | None = None,
    advertise: str | None = None,
    endpoint: DatagramEndpoint | None = None,
) -> AsyncIterator[ChordDriver]:
    """Bind a UDP endpoint, run a node on it, and stop it (without leaving) on exit.

    ``rng`` defaults to :class:`random.SystemRandom` (transaction ids and token secrets must
    not be guessable); simulations pass a seeded one. ``endpoint``: one already bound (it is
    closed on exit), instead of binding ``host:port``.
    """
    if endpoint is None:
        endpoint = await network.bind_udp(host, port)
    try:
        bound = endpoint.address
        if advertise is None and bound.host in _WILDCARDS:
            raise LocalProtocolError(
                f"bound to {bound.host!r}: pass advertise= the address other nodes reach us at"
            )
        address = PeerAddr(advertise or bound.host, bound.port)
        node = ChordNode(
            address,
            rng=rng or random.SystemRandom(),
            now=trio.current_time(),
            config=config,
            id_of=id_of,
        )
        driver = ChordDriver(endpoint, node)
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            try:
                yield driver
            finally:
                nursery.cancel_scope.cancel()
    finally:
        endpoint.close()


def info_hash_key(info_hash: InfoHash | bytes) -> bytes:
    """The ring key of an info-hash: its 20 bytes as they are."""
    return bytes(info_hash)
