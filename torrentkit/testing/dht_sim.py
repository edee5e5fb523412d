"""Many :class:`~torrentkit.dht.node.DhtNode` objects on one virtual clock, no trio.

A discrete-event loop: datagrams are delivered after a seeded latency (and dropped with
``loss``), each node's timers run at its :meth:`next_deadline`. The production node code runs
unchanged; only the transport is this heap. Fast enough for thousands of nodes (tools/ use it
for the Kademlia columns; tests use a few hundred). Addresses are public-looking IPv4
addresses (``1.x.y.z``) so BEP 42 ids and the one-entry-per-IP rule apply as on the
Internet.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torrentkit.dht.node import DhtConfig, DhtNode, Event
from torrentkit.ids import PeerAddr

PORT = 6881


def sim_addr(i: int) -> PeerAddr:
    return PeerAddr(f"1.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", PORT)


@dataclass(slots=True)
class SimStats:
    #: Datagrams the nodes sent (lost ones included).
    sent: int = 0
    delivered: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Host:
    node: DhtNode
    alive: bool = True
    events: list[Event] = field(default_factory=list)


class DhtSim:
    def __init__(
        self,
        *,
        seed: int = 1,
        latency: float = 0.02,
        jitter: float = 0.01,
        loss: float = 0.0,
        config: DhtConfig | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.config = config or DhtConfig()
        self.now = 0.0
        self.hosts: dict[PeerAddr, _Host] = {}
        self.stats = SimStats()
        self._queue: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        #: Called with (addr, event) for every event a node emits.
        self.on_event: Callable[[PeerAddr, Event], None] | None = None

    def add_node(self, addr: PeerAddr, config: DhtConfig | None = None) -> DhtNode:
        node = DhtNode(
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.now,
            config=config or self.config,
            external_ip=addr.host,
        )
        self.hosts[addr] = _Host(node=node)
        self._flush(addr)
        return node

    def kill(self, addr: PeerAddr) -> None:
        self.hosts[addr].alive = False

    def node(self, addr: PeerAddr) -> DhtNode:
        return self.hosts[addr].node

    def alive(self) -> list[PeerAddr]:
        return [a for a, h in self.hosts.items() if h.alive]

    def call(self, addr: PeerAddr, fn: Callable[[DhtNode, float], int]) -> int:
        """Run an operation on a node now; returns its op number."""
        op = fn(self.hosts[addr].node, self.now)
        self._flush(addr)
        return op

    def take_events(self, addr: PeerAddr) -> list[Event]:
        host = self.hosts[addr]
        out, host.events = host.events, []
        return out

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` at virtual time ``when`` (it may call :meth:`call`, :meth:`kill`)."""
        self._push(max(when, self.now), 2, fn)

    def _push(self, when: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, kind, payload))

    def _flush(self, addr: PeerAddr) -> None:
        host = self.hosts[addr]
        node = host.node
        for data, dst in node.datagrams_to_send():
            self.stats.sent += 1
            if self.loss and self.rng.random() < self.loss:
                self.stats.dropped += 1
                continue
            delay = self.latency + self.rng.random() * self.jitter
            self._push(self.now + delay, 0, (data, addr, dst))
        for ev in node.events():
            host.events.append(ev)
            if self.on_event is not None:
                self.on_event(addr, ev)
        deadline = node.next_deadline()
        if deadline != float("inf"):
            self._push(deadline, 1, addr)

    def run_until(self, t: float, stop: Callable[[], bool] | None = None) -> None:
        """Process everything due up to virtual time ``t`` (or until ``stop()`` is true)."""
        while self._queue and self._queue[0][0] <= t:
            when, _, kind, payload = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            if kind == 0:
                data, src, dst = payload
                host = self.hosts.get(dst)
                if host is None or not host.alive:
                    self.stats.dropped += 1
                    continue
                self.stats.delivered += 1
                host.node.receive_datagram(data, src, self.now)
                self._flush(dst)
            elif kind == 2:
                payload()
            else:
                host = self.hosts[payload]
                if not host.alive or host.node.next_deadline() > self.now:
                    continue
                host.node.handle_timers(self.now)
                self._flush(payload)
            if stop is not None and stop():
                return
        self.now = max(self.now, t)

    def run_for(self, seconds: float, stop: Callable[[], bool] | None = None) -> None:
        self.run_until(self.now + seconds, stop)

    def grow(self, n: int, *, join_gap: float = 0.05, settle: float = 30.0) -> list[PeerAddr]:
        """Add ``n`` nodes one after another (``sim_addr(0..n-1)``), each bootstrapping from
        a random earlier one, ``join_gap`` seconds apart; then run ``settle`` seconds."""
        start = len(self.hosts)
        addrs = [sim_addr(start + i) for i in range(n)]
        for i, a in enumerate(addrs):
            self.add_node(a)
            known = start + i
            if known:
                boot = sim_addr(self.rng.randrange(known))
                self.hosts[a].node.bootstrap([boot], self.now)
                self._flush(a)
            self.run_for(join_gap)
        self.run_for(settle)
        return addrs
