"""What a Chord node keeps for others, and the guards around it (docs/limits.md item 12).

- :class:`PeerStore`: key (info-hash) -> peer addresses, each with an expiry time. Caps: keys
  in total, keys created per source, peers per key. A value refused by a cap is dropped, and
  counted; the store never grows past its caps.
- :class:`RateLimiter`: datagrams per source address, ``limit`` per ``window`` seconds as a
  token bucket per source (:mod:`torrentkit.tokenbucket`: bursts up to ``limit``, refilled
  at ``limit / window`` per second); over it the source's datagrams are dropped until its
  bucket refills. Sources are told apart by address *and port* (on loopback and behind NAT
  many honest nodes share an IP), and the table of sources is bounded: when it is full, a
  flood of fresh (possibly spoofed) sources makes it forget its oldest half, never refuse.
- :class:`Tokens`: ``put`` needs a token that an earlier ``get`` handed to the same address
  for the same key (so a spoofed source address cannot store a victim's IP); tokens are a
  keyed hash under a secret that rotates, and the previous secret is still accepted.

All pure: times are passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from torrentkit.ids import PeerAddr
from torrentkit.tokenbucket import KeyedBuckets


@dataclass(slots=True)
class _Entry:
    source: PeerAddr
    peers: dict[PeerAddr, float] = field(default_factory=dict)


class PeerStore:
    def __init__(self, *, max_keys: int, max_keys_per_source: int, max_peers_per_key: int) -> None:
        self.max_keys = max_keys
        self.max_keys_per_source = max_keys_per_source
        self.max_peers_per_key = max_peers_per_key
        self._entries: dict[bytes, _Entry] = {}
        self._per_source: dict[PeerAddr, int] = {}
        self.refused = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[bytes]:
        """The keys (a snapshot: the store may change while the caller iterates)."""
        return iter(list(self._entries))

    def add(self, key: bytes, peer: PeerAddr, expires: float, source: PeerAddr) -> bool:
        """Store ``peer`` under ``key`` until ``expires``; False if a cap refused it."""
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_keys:
                self.refused += 1
                return False
            count = self._per_source.get(source, 0)
            if count >= self.max_keys_per_source:
                self.refused += 1
                return False
            self._per_source[source] = count + 1
            entry = self._entries[key] = _Entry(source=source)
        if peer not in entry.peers and len(entry.peers) >= self.max_peers_per_key:
            self.refused += 1
            return False
        if expires > entry.peers.get(peer, 0.0):
            entry.peers[peer] = expires
        return True

    def peers(self, key: bytes, now: float, limit: int) -> list[PeerAddr]:
        entry = self._entries.get(key)
        if entry is None:
            return []
        return [p for p, exp in entry.peers.items() if exp > now][:limit]

    def peers_with_ttl(self, key: bytes, now: float) -> tuple[tuple[PeerAddr, int], ...]:
        """The live peers of ``key`` with whole seconds left (for replicas and hand-over)."""
        entry = self._entries.get(key)
        if entry is None:
            return ()
        return tuple((p, int(exp - now)) for p, exp in entry.peers.items() if exp - now >= 1)

    def remove(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._release(entry.source)

    def expire(self, now: float) -> int:
        """Drop expired peers and keys left empty; return how many keys went."""
        gone = 0
        for key, entry in list(self._entries.items()):
            for p, exp in list(entry.peers.items()):
                if exp <= now:
                    del entry.peers[p]
            if not entry.peers:
                del self._entries[key]
                self._release(entry.source)
                gone += 1
        return gone

    def _release(self, source: PeerAddr) -> None:
        count = self._per_source.get(source, 0) - 1
        if count <= 0:
            self._per_source.pop(source, None)
        else:
            self._per_source[source] = count


class RateLimiter:
    """At most ``limit`` datagrams per ``window`` seconds from one source address."""

    def __init__(self, *, limit: int, window: float, max_sources: int) -> None:
        self.limit = limit
        self.window = window
        self._buckets: KeyedBuckets[PeerAddr] = KeyedBuckets(
            limit / window, limit, max_keys=max_sources, when_full="forget_oldest"
        )
        self.dropped = 0

    def allow(self, src: PeerAddr, now: float, factor: int = 1) -> bool:
        """One datagram from ``src``; ``factor`` times the allowance for a neighbour."""
        if self._buckets.allow(src, now, scale=factor):
            return True
        self.dropped += 1
        return False

    def __len__(self) -> int:
        """Sources tracked now."""
        return len(self._buckets)


class Tokens:
    """Write tokens bound to (address, key) under a rotating secret."""

    def __init__(self, secret: bytes) -> None:
        self._current = secret
        self._previous = secret

    def rotate(self, secret: bytes) -> None:
        self._previous, self._current = self._current, secret

    @staticmethod
    def _make(secret: bytes, addr: PeerAddr, key: bytes) -> bytes:
        text = f"{addr.host}|{addr.port}|".encode()
        return hashlib.sha1(secret + text + key).digest()[:8]

    def issue(self, addr: PeerAddr, key: bytes) -> bytes:
        return self._make(self._current, addr, key)

    def check(self, token: bytes, addr: PeerAddr, key: bytes) -> bool:
        return token in (
            self._make(self._current, addr, key),
            self._make(self._previous, addr, key),
        )
