"""Peers announced to us (BEP 5 ``announce_peer``), with expiry and caps.

- A peer lives ``ttl`` (30 minutes) unless announced again.
- Caps: ``max_hashes`` info-hashes in total, ``max_peers`` peers per info-hash, and per
  announcing IP: ``max_per_ip`` peers under one info-hash (the announced address always
  carries the sender's IP, so a single host can only vary the port) and ``max_hashes_per_ip``
  info-hashes it created. One address cannot fill the store (docs/limits.md item 14); what a
  cap refuses is counted in ``refused``.
- ``sample`` gives BEP 51's random subset of stored info-hashes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from torrentkit.ids import PeerAddr

PEER_TTL: Final = 30 * 60.0


@dataclass(slots=True)
class _Swarm:
    creator: str
    #: peer -> (expires, seed)
    peers: dict[PeerAddr, tuple[float, bool]] = field(default_factory=dict)


class PeerStore:
    def __init__(
        self,
        *,
        ttl: float = PEER_TTL,
        max_hashes: int = 2000,
        max_peers: int = 300,
        max_per_ip: int = 4,
        max_hashes_per_ip: int = 64,
    ) -> None:
        self.ttl = ttl
        self.max_hashes = max_hashes
        self.max_peers = max_peers
        self.max_per_ip = max_per_ip
        self.max_hashes_per_ip = max_hashes_per_ip
        self._swarms: dict[bytes, _Swarm] = {}
        self._created: dict[str, int] = {}
        self.refused = 0

    def __len__(self) -> int:
        return len(self._swarms)

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._swarms))

    def peer_count(self) -> int:
        return sum(len(s.peers) for s in self._swarms.values())

    def add(self, info_hash: bytes, peer: PeerAddr, now: float, *, seed: bool = False) -> bool:
        """Store ``peer`` (announced from ``peer.host``); False if a cap refused it."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            if len(self._swarms) >= self.max_hashes:
                self.refused += 1
                return False
            made = self._created.get(peer.host, 0)
            if made >= self.max_hashes_per_ip:
                self.refused += 1
                return False
            self._created[peer.host] = made + 1
            swarm = self._swarms[info_hash] = _Swarm(creator=peer.host)
        if peer not in swarm.peers:
            if len(swarm.peers) >= self.max_peers:
                self.refused += 1
                return False
            same_ip = sum(1 for p in swarm.peers if p.host == peer.host)
            if same_ip >= self.max_per_ip:
                self.refused += 1
                return False
        swarm.peers[peer] = (now + self.ttl, seed)
        return True

    def peers(
        self, info_hash: bytes, now: float, limit: int, rng: random.Random, *, noseed: bool = False
    ) -> list[PeerAddr]:
        """Up to ``limit`` live peers (a random choice when there are more)."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return []
        live = [p for p, (exp, seed) in swarm.peers.items() if exp > now and not (noseed and seed)]
        if len(live) > limit:
            live = rng.sample(live, limit)
        return live

    def expire(self, now: float) -> int:
        """Drop expired peers and emptied info-hashes; return how many info-hashes went."""
        gone = 0
        for key, swarm in list(self._swarms.items()):
            for p, (exp, _) in list(swarm.peers.items()):
                if exp <= now:
                    del swarm.peers[p]
            if not swarm.peers:
                del self._swarms[key]
                count = self._created.get(swarm.creator, 0) - 1
                if count <= 0:
                    self._created.pop(swarm.creator, None)
                else:
                    self._created[swarm.creator] = count
                gone += 1
        return gone

    def sample(self, count: int, rng: random.Random) -> list[bytes]:
        keys = list(self._swarms)
        return keys if len(keys) <= count else rng.sample(keys, count)
