"""One iterative Kademlia lookup (BEP 5), pure: which nodes to ask next, and when it is done.

- Candidates are kept sorted by XOR distance to the target, at most ``max_candidates``
  (the farthest unasked ones fall off). A candidate is *new*, *in flight*, *answered* or
  *failed*. Seeds whose id is unknown (bootstrap routers) sort last until they answer.
- Only the ``k`` closest candidates that have not failed are asked (Kademlia's rule), at
  most ``alpha`` (3) at a time; a query that is *slow* (no answer after the node's short
  timeout) stops counting against ``alpha``, so one dead node does not stall the others
  while its full timeout runs; once it fails, the next candidate moves into the ``k``
  closest: lookups route around dead nodes.
- Done when the ``k`` closest candidates that have not failed have all answered (those that
  do not count, see below, are skipped), or nothing is left to ask and nothing is in flight,
  or ``max_queries`` were sent.
- ``depth``: a seed is at depth 1; a node named by an answer from depth ``d`` is at ``d + 1``.
  :attr:`Lookup.hops` is the depth of the closest node that answered: the number of
  dependent round trips the lookup needed to reach it.
- With BEP 42 enforcement, an answer from a node whose id does not match its IP is used for
  routing but does not count for the termination rule nor as a storage target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from torrentkit.ids import PeerAddr

NEW: Final = 0
IN_FLIGHT: Final = 1
ANSWERED: Final = 2
FAILED: Final = 3

_UNKNOWN: Final = 1 << 161


@dataclass(slots=True)
class Candidate:
    id: bytes | None
    addr: PeerAddr
    dist: int
    depth: int
    state: int = NEW
    slow: bool = False
    counts: bool = True
    token: bytes | None = None


class Lookup:
    def __init__(
        self,
        target: bytes,
        *,
        k: int = 8,
        alpha: int = 3,
        max_candidates: int = 64,
        max_queries: int = 200,
    ) -> None:
        self.target = target
        self._t = int.from_bytes(target, "big")
        self.k = k
        self.alpha = alpha
        self.max_candidates = max_candidates
        self.max_queries = max_queries
        self.candidates: list[Candidate] = []
        self._by_addr: dict[PeerAddr, Candidate] = {}
        self._seen_ids: set[bytes] = set()
        self.queries = 0
        self.answers = 0
        self.timeouts = 0

    def add(self, node_id: bytes | None, addr: PeerAddr, depth: int) -> None:
        """A node to consider (known to the table, or named by an answer)."""
        if addr in self._by_addr or (node_id is not None and node_id in self._seen_ids):
            return
        dist = _UNKNOWN if node_id is None else int.from_bytes(node_id, "big") ^ self._t
        if len(self.candidates) >= self.max_candidates:
            # Make room by dropping the farthest node not asked yet, if it is farther.
            victim = next((c for c in reversed(self.candidates) if c.state == NEW), None)
            if victim is not None:
                if victim.dist <= dist:
                    return
                self.candidates.remove(victim)
                del self._by_addr[victim.addr]
                if victim.id is not None:
                    self._seen_ids.discard(victim.id)
            elif dist >= self.candidates[-1].dist:
                return
        c = Candidate(id=node_id, addr=addr, dist=dist, depth=depth)
        self._by_addr[addr] = c
        if node_id is not None:
            self._seen_ids.add(node_id)
        self._insert(c)

    def _insert(self, c: Candidate) -> None:
        lo, hi = 0, len(self.candidates)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.candidates[mid].dist <= c.dist:
                lo = mid + 1
            else:
                hi = mid
        self.candidates.insert(lo, c)

    def get(self, addr: PeerAddr) -> Candidate | None:
        return self._by_addr.get(addr)

    def to_query(self) -> list[Candidate]:
        """The candidates to ask now (marked in flight): new ones among the ``k`` closest
        that have not failed, while fewer than ``alpha`` queries are in flight."""
        busy = sum(1 for c in self.candidates if c.state == IN_FLIGHT and not c.slow)
        out = []
        window = 0
        for c in self.candidates:
            if busy >= self.alpha or self.queries >= self.max_queries or window >= self.k:
                break
            if c.state == FAILED or (c.state == ANSWERED and not c.counts):
                continue
            window += 1
            if c.state == NEW:
                c.state = IN_FLIGHT
                busy += 1
                self.queries += 1
                out.append(c)
        return out

    def answered(self, addr: PeerAddr, node_id: bytes, *, counts: bool = True) -> Candidate | None:
        c = self._by_addr.get(addr)
        if c is None or c.state != IN_FLIGHT:
            return None
        c.state = ANSWERED
        c.counts = counts
        self.answers += 1
        if c.id != node_id:
            # A seed told us its id (or a node answered with another id than we were told).
            self.candidates.remove(c)
            if c.id is not None:
                self._seen_ids.discard(c.id)
            c.id = node_id
            c.dist = int.from_bytes(node_id, "big") ^ self._t
            self._seen_ids.add(node_id)
            self._insert(c)
        return c

    def failed(self, addr: PeerAddr, *, timeout: bool = True) -> None:
        c = self._by_addr.get(addr)
        if c is not None and c.state == IN_FLIGHT:
            c.state = FAILED
            if timeout:
                self.timeouts += 1

    def mark_slow(self, addr: PeerAddr) -> None:
        c = self._by_addr.get(addr)
        if c is not None and c.state == IN_FLIGHT:
            c.slow = True

    def in_flight(self) -> int:
        return sum(1 for c in self.candidates if c.state == IN_FLIGHT)

    def done(self) -> bool:
        answered = 0
        for c in self.candidates:
            if c.state == FAILED or (c.state == ANSWERED and not c.counts):
                continue
            if c.state != ANSWERED:
                return self.queries >= self.max_queries and self.in_flight() == 0
            answered += 1
            if answered >= self.k:
                return True
        return self.in_flight() == 0 and not any(c.state == NEW for c in self.candidates)

    def closest_answered(self, count: int, *, counting_only: bool = True) -> list[Candidate]:
        out = []
        for c in self.candidates:
            if c.state == ANSWERED and (c.counts or not counting_only):
                out.append(c)
                if len(out) >= count:
                    break
        return out

    @property
    def hops(self) -> int:
        best = self.closest_answered(1, counting_only=False)
        return best[0].depth if best else 0
