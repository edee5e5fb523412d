"""Sans-IO overlay nodes joined by in-memory links, for core tests (no trio, no clock).

``Mesh`` plays the driver: it opens links (both ends' ``link_opened``), delivers every Send as
encoded bytes to the other end's ``receive`` (breadth first, so floods spread in order), and
closes both ends on a Close. Every delivered message is logged as ``(from, to, message)``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from typing import Any

from torrentkit.discovery.gnutella import messages
from torrentkit.discovery.gnutella.messages import Message, Role
from torrentkit.discovery.gnutella.overlay import (
    Action,
    Close,
    Dial,
    HitsArrived,
    LinkId,
    OverlayConfig,
    OverlayNode,
    Send,
)
from torrentkit.ids import PeerAddr

OVERLAY_PORT = 7000
BT_PORT = 6881


class Mesh:
    def __init__(self, seed: int = 1) -> None:
        self.now = 0.0
        self.seed = seed
        self.nodes: dict[str, OverlayNode] = {}
        self.hosts: dict[str, str] = {}
        self.ends: dict[tuple[str, LinkId], tuple[str, LinkId]] = {}
        self.log: list[tuple[str, str, Message]] = []
        self.dials: list[tuple[str, PeerAddr]] = []
        self.closed: list[tuple[str, str]] = []  # (node, reason)
        self.arrived: list[tuple[str, bytes]] = []

    def add(self, name: str, role: Role = Role.PEER, **config: Any) -> OverlayNode:
        host = f"10.0.0.{len(self.nodes) + 1}"
        node = OverlayNode(
            OverlayConfig(role=role, **config),
            peer_id=name.encode().ljust(20, b"-"),
            rng=random.Random(f"{self.seed}-{name}"),
            listen_port=OVERLAY_PORT,
            holder=PeerAddr(host, BT_PORT),
        )
        self.nodes[name] = node
        self.hosts[name] = host
        return node

    def addr(self, name: str) -> PeerAddr:
        return PeerAddr(self.hosts[name], OVERLAY_PORT)

    def name_of(self, host: str) -> str:
        return next(n for n, h in self.hosts.items() if h == host)

    def connect(self, a: str, b: str) -> tuple[LinkId, LinkId]:
        """``a`` dials ``b``; returns (a's link id, b's link id) after the hellos."""
        na, nb = self.nodes[a], self.nodes[b]
        la, acts_a = na.link_opened(
            self.now, remote=self.addr(b), peer_id=nb.peer_id, outgoing=True, dialed=self.addr(b)
        )
        ephemeral = PeerAddr(self.hosts[a], 50000 + len(self.ends))
        lb, acts_b = nb.link_opened(self.now, remote=ephemeral, peer_id=na.peer_id, outgoing=False)
        self.ends[(a, la)] = (b, lb)
        self.ends[(b, lb)] = (a, la)
        # Both hellos are queued before either is delivered, as each driver queues its hello
        # before it reads anything.
        self.run(a, acts_a, also=[(b, x) for x in acts_b])
        return la, lb

    def link(self, a: str, b: str) -> LinkId:
        """a's link id towards b."""
        return next(lid for (n, lid), (m, _) in self.ends.items() if n == a and m == b)

    def run(
        self, origin: str, actions: list[Action], also: Sequence[tuple[str, Action]] = ()
    ) -> None:
        queue: deque[tuple[str, Action]] = deque((origin, x) for x in actions)
        queue.extend(also)
        while queue:
            name, action = queue.popleft()
            if isinstance(action, Send):
                far = self.ends.get((name, action.link))
                if far is None:
                    continue
                other, other_link = far
                self.log.append((name, other, action.message))
                out = self.nodes[other].receive(
                    self.now, other_link, messages.encode(action.message)
                )
                queue.extend((other, x) for x in out)
            elif isinstance(action, Close):
                self.closed.append((name, action.reason))
                far = self.ends.pop((name, action.link), None)
                self.nodes[name].link_closed(self.now, action.link)
                if far is not None:
                    self.ends.pop(far, None)
                    self.nodes[far[0]].link_closed(self.now, far[1])
            elif isinstance(action, Dial):
                self.dials.append((name, action.addr))
            elif isinstance(action, HitsArrived):
                self.arrived.append((name, action.search))

    def inject(self, sender: str, receiver: str, payload: bytes) -> list[Action]:
        """Bytes arriving at ``receiver`` on its link from ``sender`` (not run further)."""
        return self.nodes[receiver].receive(self.now, self.link(receiver, sender), payload)

    def search(self, name: str, text: str, ttl: int | None = None) -> bytes:
        search, actions = self.nodes[name].start_search(self.now, text, ttl=ttl)
        self.run(name, actions)
        return search

    def sent(self, kind: type, *, to: str | None = None) -> list[tuple[str, str, Message]]:
        return [e for e in self.log if isinstance(e[2], kind) and (to is None or e[1] == to)]
