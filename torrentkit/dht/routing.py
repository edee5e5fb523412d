"""The Kademlia routing table (BEP 5), pure: entries in, closest nodes out; times passed in.

Rules (all here):

- Ids are 160 bits; distance is XOR. Buckets are indexed by the length of the prefix an id
  shares with our own id: bucket ``i < last`` holds ids sharing exactly ``i`` leading bits,
  the last bucket holds every id sharing ``last`` bits or more (it covers our own id). A
  bucket holds at most ``k`` (8) nodes. Only the last bucket splits: when it is full and a
  new node would land in it, it becomes two (``last`` and ``last + 1``), so buckets split
  along our own id, and the table is dense near us and sparse far away.
- Node states (BEP 5, the 15-minute rule): *good* if it answered one of our queries within
  ``good_for`` (15 minutes), or answered one ever and sent us a query within ``good_for``;
  *questionable* after ``good_for`` of silence; *bad* once it failed ``bad_after`` (2)
  queries in a row. Bad nodes are replaced first.
- Only nodes that answered one of our queries enter the table (:meth:`RoutingTable.heard`
  with ``answered=True``): an address that merely sent us something, or that another node
  named, is never added on its word (routing-table poisoning, docs/limits.md item 14).
- A full bucket: a bad entry is replaced at once; otherwise the newcomer waits in the
  bucket's replacement cache (``k`` newest, by last answer), and the oldest questionable
  entry is returned to the caller to be pinged; if that ping fails it turns bad and the best
  replacement takes its place.
- One address, one entry: an ``(ip, port)`` pair maps to one id (a new id from the same
  address replaces the old entry, after answering). With ``one_per_ip`` (default), a public
  IP holds at most one entry in the whole table; private and loopback addresses (where many
  honest nodes share an IP) are limited per ``(ip, port)`` only.
- A bucket not changed for ``refresh_after`` (15 minutes) is due a refresh: a ``find_node``
  for a random id in its range (:meth:`RoutingTable.stale_buckets`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from torrentkit.dht.nodeid import ID_BITS, is_exempt
from torrentkit.ids import PeerAddr

K: Final = 8
GOOD_FOR: Final = 15 * 60.0
REFRESH_AFTER: Final = 15 * 60.0
BAD_AFTER: Final = 2


@dataclass(slots=True)
class Entry:
    id: bytes
    addr: PeerAddr
    #: When it last answered one of our queries (None: never).
    last_answer: float | None = None
    #: When it last sent us a query.
    last_query: float | None = None
    #: Queries in a row it did not answer.
    fails: int = 0

    @property
    def int_id(self) -> int:
        return int.from_bytes(self.id, "big")

    def last_seen(self) -> float:
        return max(self.last_answer or 0.0, self.last_query or 0.0)


@dataclass(slots=True)
class Bucket:
    nodes: list[Entry] = field(default_factory=list)
    replacements: list[Entry] = field(default_factory=list)
    last_changed: float = 0.0


def common_prefix(a: int, b: int) -> int:
    x = a ^ b
    return ID_BITS - x.bit_length()


class RoutingTable:
    def __init__(
        self,
        own_id: bytes,
        now: float,
        *,
        k: int = K,
        good_for: float = GOOD_FOR,
        bad_after: int = BAD_AFTER,
        refresh_after: float = REFRESH_AFTER,
        one_per_ip: bool = True,
    ) -> None:
        self.own_id = own_id
        self._own = int.from_bytes(own_id, "big")
        self.k = k
        self.good_for = good_for
        self.bad_after = bad_after
        self.refresh_after = refresh_after
        self.one_per_ip = one_per_ip
        self.buckets: list[Bucket] = [Bucket(last_changed=now)]
        self._by_addr: dict[PeerAddr, Entry] = {}
        self._by_ip: dict[str, PeerAddr] = {}

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return sum(len(b.nodes) for b in self.buckets)

    def __iter__(self) -> Iterator[Entry]:
        for b in self.buckets:
            yield from b.nodes

    def get(self, addr: PeerAddr) -> Entry | None:
        entry = self._by_addr.get(addr)
        return entry if entry is not None and self._in_table(entry) else None

    def replacements(self) -> int:
        return sum(len(b.replacements) for b in self.buckets)

    def bucket_index(self, node_id: bytes) -> int:
        cp = common_prefix(self._own, int.from_bytes(node_id, "big"))
        return min(cp, len(self.buckets) - 1)

    def is_good(self, e: Entry, now: float) -> bool:
        if e.fails >= self.bad_after or e.last_answer is None:
            return False
        if now - e.last_answer < self.good_for:
            return True
        return e.last_query is not None and now - e.last_query < self.good_for

    def is_bad(self, e: Entry) -> bool:
        return e.fails >= self.bad_after

    def closest(self, target: bytes, count: int, now: float | None = None) -> list[Entry]:
        """The ``count`` entries nearest ``target`` by XOR, bad ones left out."""
        t = int.from_bytes(target, "big")
        live = [e for e in self if not self.is_bad(e)]
        live.sort(key=lambda e: e.int_id ^ t)
        return live[:count]

    def stale_buckets(self, now: float) -> list[int]:
        return [i for i, b in enumerate(self.buckets) if now - b.last_changed >= self.refresh_after]

    def random_id_in(self, index: int, rng: random.Random) -> bytes:
        """A random id that falls into bucket ``index``."""
        last = len(self.buckets) - 1
        rand = rng.getrandbits(ID_BITS)
        if index >= last:
            # Shares at least ``last`` bits with us.
            keep = ID_BITS - last
            value = (self._own >> keep << keep) | (rand & ((1 << keep) - 1))
        else:
            # Shares exactly ``index`` bits: same prefix, then the next bit flipped.
            keep = ID_BITS - index
            flip = 1 << (keep - 1)
            value = (self._own >> keep << keep) | ((self._own & flip) ^ flip)
            value |= rand & (flip - 1)
        return value.to_bytes(20, "big")

    def questionable(self, now: float) -> list[Entry]:
        """Entries that are neither good nor bad (candidates for a liveness ping)."""
        return [e for e in self if not self.is_good(e, now) and not self.is_bad(e)]

    # ------------------------------------------------------------------ updates

    def heard(self, node_id: bytes, addr: PeerAddr, now: float, *, answered: bool) -> Entry | None:
        """Note a message from ``node_id`` at ``addr``. ``answered``: it answered our query
        (only then may it enter the table). Returns an entry the caller should ping to
        check it is still alive (the bucket is full of live-looking nodes), or None."""
        if node_id == self.own_id:
            return None
        entry = self._by_addr.get(addr)
        if entry is not None and entry.id != node_id:
            if not answered:
                return None
            self.remove(addr)
            entry = None
        if entry is not None:
            if answered:
                entry.last_answer = now
                entry.fails = 0
            else:
                entry.last_query = now
            bucket = self.buckets[self.bucket_index(entry.id)]
            if entry in bucket.replacements and answered and len(bucket.nodes) < self.k:
                bucket.replacements.remove(entry)  # room has come free: it moves in
                bucket.nodes.append(entry)
            if entry in bucket.nodes:
                bucket.last_changed = now
            return None
        if not answered:
            return None
        if self.one_per_ip and not is_exempt(addr.host):
            other = self._by_ip.get(addr.host)
            if other is not None and other != addr:
                return None  # one entry per public IP
        return self._insert(Entry(id=node_id, addr=addr, last_answer=now), now)

    def failed(self, addr: PeerAddr, now: float) -> None:
        """A query to ``addr`` timed out. A node that turns bad is swapped for a
        replacement when its bucket has one."""
        entry = self._by_addr.get(addr)
        if entry is None:
            return
        entry.fails += 1
        index = self.bucket_index(entry.id)
        bucket = self.buckets[index]
        if entry in bucket.replacements and entry.fails >= self.bad_after:
            bucket.replacements.remove(entry)
            self._forget(entry)
            return
        if self.is_bad(entry) and entry in bucket.nodes and bucket.replacements:
            bucket.nodes.remove(entry)
            self._forget(entry)
            best = max(bucket.replacements, key=lambda e: e.last_seen())
            bucket.replacements.remove(best)
            bucket.nodes.append(best)
            bucket.last_changed = now

    def remove(self, addr: PeerAddr) -> None:
        entry = self._by_addr.get(addr)
        if entry is None:
            return
        bucket = self.buckets[self.bucket_index(entry.id)]
        if entry in bucket.nodes:
            bucket.nodes.remove(entry)
        if entry in bucket.replacements:
            bucket.replacements.remove(entry)
        self._forget(entry)

    def _forget(self, entry: Entry) -> None:
        self._by_addr.pop(entry.addr, None)
        if self._by_ip.get(entry.addr.host) == entry.addr:
            del self._by_ip[entry.addr.host]

    def _remember(self, entry: Entry) -> None:
        self._by_addr[entry.addr] = entry
        if not is_exempt(entry.addr.host):
            self._by_ip[entry.addr.host] = entry.addr

    def _in_table(self, entry: Entry) -> bool:
        return entry in self.buckets[self.bucket_index(entry.id)].nodes

    def _insert(self, entry: Entry, now: float) -> Entry | None:
        while True:
            index = self.bucket_index(entry.id)
            bucket = self.buckets[index]
            if len(bucket.nodes) < self.k:
                bucket.nodes.append(entry)
                bucket.last_changed = now
                self._remember(entry)
                return None
            bad = [e for e in bucket.nodes if self.is_bad(e)]
            if bad:
                bucket.nodes.remove(bad[0])
                self._forget(bad[0])
                bucket.nodes.append(entry)
                bucket.last_changed = now
                self._remember(entry)
                return None
            if index == len(self.buckets) - 1 and len(self.buckets) < ID_BITS:
                self._split()
                continue
            # Full: wait in the replacement cache; the oldest questionable node gets pinged.
            if len(bucket.replacements) >= self.k:
                oldest = min(bucket.replacements, key=lambda e: e.last_seen())
                bucket.replacements.remove(oldest)
                self._forget(oldest)
            bucket.replacements.append(entry)
            self._remember(entry)
            doubtful = [e for e in bucket.nodes if not self.is_good(e, now)]
            return min(doubtful, key=lambda e: e.last_seen()) if doubtful else None

    def _split(self) -> None:
        last = len(self.buckets) - 1
        old = self.buckets[last]
        near = Bucket(last_changed=old.last_changed)
        far = Bucket(last_changed=old.last_changed)
        for e in old.nodes:
            (far if common_prefix(self._own, e.int_id) == last else near).nodes.append(e)
        for e in old.replacements:
            target = far if common_prefix(self._own, e.int_id) == last else near
            target.replacements.append(e)
        self.buckets[last] = far
        self.buckets.append(near)
        # Replacements whose bucket now has room move in.
        for b in (far, near):
            while b.replacements and len(b.nodes) < self.k:
                b.nodes.append(b.replacements.pop())
