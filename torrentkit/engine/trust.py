"""Who sent bad data: trust points and smart ban (pure).

Two mechanisms, both in docs/limits.md (Trust):

- **Trust points**: every peer that contributed a block to a piece gets +1 when the piece
  passes its hash check and -2 when it fails; a peer at -7 or below is banned. This alone
  would punish an honest peer that happened to share failed pieces with a liar, so:
- **Smart ban** (libtorrent's idea): when a piece fails, remember the SHA-1 of every block and
  who sent it. When the same piece later passes, compare: a peer whose remembered block
  differs from the good block sent bad data and is banned at once; a peer whose blocks were
  all right is cleared of that failure (its -2 is given back).

Peers are identified by an opaque hashable key the engine chooses (address and port, never
IP alone: on loopback and behind NAT many honest peers share one IP).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

BAN_THRESHOLD = -7
PASS_POINTS = 1
FAIL_POINTS = -2
#: How many failed attempts per piece are remembered (bounds memory against a flood of lies).
MAX_ATTEMPTS_PER_PIECE = 4
#: How many pieces with remembered failures at once.
MAX_PIECES_REMEMBERED = 256


@dataclass(slots=True)
class _Attempt:
    blocks: dict[int, tuple[Hashable, bytes]]  # begin -> (peer, sha1 of the block)


@dataclass(slots=True)
class Trust:
    """Trust bookkeeping for one torrent."""

    points: dict[Hashable, int] = field(default_factory=dict)
    banned: set[Hashable] = field(default_factory=set)
    _failed: dict[int, list[_Attempt]] = field(default_factory=dict)

    def piece_failed(
        self, index: int, blocks: Mapping[int, tuple[Hashable, bytes]]
    ) -> set[Hashable]:
        """A piece failed its hash check. ``blocks`` maps each block's offset to
        (peer, block data). Returns the peers newly banned by trust points."""
        attempt = _Attempt(
            {begin: (peer, hashlib.sha1(data).digest()) for begin, (peer, data) in blocks.items()}
        )
        attempts = self._failed.setdefault(index, [])
        if len(attempts) < MAX_ATTEMPTS_PER_PIECE:
            attempts.append(attempt)
        while len(self._failed) > MAX_PIECES_REMEMBERED:
            del self._failed[next(iter(self._failed))]
        contributors = {peer for peer, _ in attempt.blocks.values()}
        return self._adjust(contributors, FAIL_POINTS)

    def piece_passed(
        self,
        index: int,
        data: bytes | bytearray | memoryview,
        senders: Mapping[int, Hashable],
        block_size: int,
    ) -> set[Hashable]:
        """A piece passed. ``senders`` maps block offsets to the peer that sent each block;
        ``data`` is only read (and only when the piece had failed before). Returns the peers
        newly banned (by smart ban: their earlier blocks of this piece
        differed from the good data)."""
        newly: set[Hashable] = set()
        self._adjust(set(senders.values()), PASS_POINTS)
        for attempt in self._failed.pop(index, []):
            liars: set[Hashable] = set()
            contributors: set[Hashable] = set()
            for begin, (peer, digest) in attempt.blocks.items():
                contributors.add(peer)
                good = hashlib.sha1(data[begin : begin + block_size]).digest()
                if digest != good:
                    liars.add(peer)
            for peer in liars:
                if peer not in self.banned:
                    self.banned.add(peer)
                    newly.add(peer)
            # Honest contributors to the failed attempt get their penalty back.
            self._adjust(contributors - liars, -FAIL_POINTS)
        return newly

    def is_banned(self, peer: Hashable) -> bool:
        return peer in self.banned

    def _adjust(self, peers: set[Hashable], delta: int) -> set[Hashable]:
        newly: set[Hashable] = set()
        for peer in peers:
            score = self.points.get(peer, 0) + delta
            self.points[peer] = score
            if score <= BAN_THRESHOLD and peer not in self.banned:
                self.banned.add(peer)
                newly.add(peer)
        return newly
