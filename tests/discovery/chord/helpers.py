"""A sans-IO harness: ChordNode objects joined by an instant in-memory wire, clock by hand."""

from __future__ import annotations

import random
from collections import defaultdict

from torrentkit.discovery.chord.node import ChordConfig, ChordNode, Event
from torrentkit.ids import PeerAddr

M = 8
CONFIG = ChordConfig(m=M, r=3, stabilize_interval=1.0, rpc_timeout=0.5)


def addr(node_id: int) -> PeerAddr:
    """The address whose id (in these tests) is ``node_id``."""
    return PeerAddr(f"10.1.0.{node_id}", 7000)


def id_of(a: PeerAddr) -> int | None:
    if a.port != 7000 or not a.host.startswith("10.1.0."):
        return None
    return int(a.host.rsplit(".", 1)[1]) % (1 << M)


class Wire:
    """Delivers every datagram at once. Datagrams to addresses with no node are kept in
    ``undelivered`` (a victim that runs no Chord node, or a test playing a remote party)."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes: dict[PeerAddr, ChordNode] = {}
        self.undelivered: dict[PeerAddr, list[tuple[bytes, PeerAddr]]] = defaultdict(list)
        self.events: list[Event] = []

    def node(self, node_id: int, config: ChordConfig = CONFIG) -> ChordNode:
        n = ChordNode(addr(node_id), rng=self.rng, now=self.now, config=config, id_of=id_of)
        self.nodes[n.address] = n
        return n

    def inject(self, data: bytes, src: PeerAddr, dst: PeerAddr) -> None:
        self.nodes[dst].receive_datagram(data, src, self.now)
        self.flush()

    def flush(self) -> None:
        moved = True
        while moved:
            moved = False
            for src, node in list(self.nodes.items()):
                self.events.extend(node.events())
                for data, dst in node.datagrams_to_send():
                    moved = True
                    target = self.nodes.get(dst)
                    if target is None:
                        self.undelivered[dst].append((data, src))
                    else:
                        target.receive_datagram(data, src, self.now)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            self.flush()
            due = min((n.next_deadline() for n in self.nodes.values()), default=end)
            if due > end:
                break
            self.now = max(self.now, due)
            for n in list(self.nodes.values()):
                n.handle_timers(self.now)
        self.now = end
        self.flush()

    def ring(
        self, *ids: int, config: ChordConfig = CONFIG, settle: float = 30.0
    ) -> list[ChordNode]:
        """Nodes with these ids, joined one after another, then stabilized."""
        nodes = [self.node(ids[0], config)]
        nodes[0].create(self.now)
        for node_id in ids[1:]:
            n = self.node(node_id, config)
            n.join(nodes[0].address, self.now)
            self.advance(3.0)
            nodes.append(n)
        self.advance(settle)
        return nodes
