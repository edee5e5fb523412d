"""Peer book: the addresses one torrent knows and when to dial them (pure: time passed in).

A **known peer** is an address a discovery source gave us (a tracker, the DHT, an overlay);
a **connected peer** is a live connection, which the engine owns. The book decides which known
peers to dial and when, and remembers who must never be dialled or accepted. Rules:

- **Adding.** Never an address we banned, never one of our own addresses, never port 0, never
  one already known (its first source stays). At most ``max_known`` (:data:`MAX_KNOWN_PEERS`)
  at once: past that, new addresses are refused, so no source can flood memory. Peers that
  never answer leave by themselves (the failure limit below), which makes room again.
- **Dialling.** :meth:`PeerBook.candidates` hands out addresses to dial now and marks them
  *connecting*; each ends with :meth:`~PeerBook.dial_succeeded` or :meth:`~PeerBook.dial_failed`.
  Not handed out: one already connecting, one whose next attempt is later, one connected, a
  banned one, and, while we are finished, a seed we parted from.
- **Backoff.** After the n-th failure in a row the next attempt waits
  ``min(300, 5 * 2**(n-1))`` seconds (5, 10, 20, ... 300); after :data:`MAX_DIAL_FAILURES`
  (8) the address is forgotten. A success resets the count.
- **Redial pause.** When a connection to a known address ends, it is not dialled again for
  :data:`RECONNECT_AFTER` (30 s), so a peer that just closed on us is not hammered
  (libtorrent waits 60 s).
- **Bans** name an address (the peer's address and listen port, never the IP alone) and,
  once we know it, its peer id; a banned peer is forgotten and never dialled or accepted.
- **Self.** An address that turned out to be ourselves is forgotten and never added again.
- **Parted seeds**: seeds we closed on once both sides were done. An ordered set of at most
  :data:`MAX_PARTED_SEEDS`, oldest dropped first.

:func:`keep_new_connection` settles two connections to the same peer id (both sides dialled
each other at once).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass

from torrentkit.ids import PeerAddr

#: Wait this long before dialling a peer again after a connection to it ended.
RECONNECT_AFTER = 30.0
#: Remember at most this many seeds we parted from (not dialled again while we are done).
MAX_PARTED_SEEDS = 4096
#: Know at most this many addresses per torrent (a tracker answer holds 50-200).
MAX_KNOWN_PEERS = 2000
#: Forget an address after this many failed dials in a row.
MAX_DIAL_FAILURES = 8
#: Backoff after the n-th failure in a row: min(BACKOFF_MAX, BACKOFF_FIRST * 2**(n-1)).
BACKOFF_FIRST = 5.0
BACKOFF_MAX = 300.0


def dial_backoff(failures: int) -> float:
    """Seconds to wait before the next dial after ``failures`` failures in a row (>= 1)."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** (failures - 1))


@dataclass(slots=True)
class KnownPeer:
    addr: PeerAddr
    source: str
    failures: int = 0
    next_attempt: float = 0.0
    connecting: bool = False


class PeerBook:
    """Known peers, bans, our own addresses and parted seeds for one torrent."""

    def __init__(self, rng: random.Random, *, max_known: int = MAX_KNOWN_PEERS) -> None:
        self._rng = rng
        self._max_known = max_known
        self._known: dict[PeerAddr, KnownPeer] = {}
        self._banned_addrs: set[PeerAddr] = set()
        self._banned_ids: set[bytes] = set()
        self._self_addrs: set[PeerAddr] = set()
        self._parted: dict[PeerAddr, None] = {}  # an ordered set, oldest first

    # ------------------------------------------------------------------ known peers

    def add(
        self, addrs: Iterable[PeerAddr], source: str, now: float, *, limit: int | None = None
    ) -> int:
        """A discovery source found these addresses; the new ones may be dialled from ``now``.
        ``limit``: at most this many known addresses may come from ``source`` (PEX: a peer
        must not fill the book with its claims). Returns how many were new."""
        added = 0
        room = self._max_known
        if limit is not None:
            room = min(room, len(self._known) + limit - self.count_from(source))
        for addr in addrs:
            if len(self._known) >= room:
                break
            if (
                addr.port == 0
                or addr in self._known
                or addr in self._banned_addrs
                or addr in self._self_addrs
            ):
                continue
            self._known[addr] = KnownPeer(addr=addr, source=source, next_attempt=now)
            added += 1
        return added

    def __len__(self) -> int:
        return len(self._known)

    def count_from(self, source: str) -> int:
        """How many known addresses came first from ``source``; O(known peers)."""
        return sum(1 for known in self._known.values() if known.source == source)

    def __contains__(self, addr: object) -> bool:
        return addr in self._known

    def __iter__(self) -> Iterator[PeerAddr]:
        return iter(self._known)

    def source(self, addr: PeerAddr) -> str | None:
        """Which discovery source first gave us ``addr`` (None if it is not known)."""
        known = self._known.get(addr)
        return known.source if known is not None else None

    def sources(self) -> dict[PeerAddr, str]:
        """Every known address and its source (a copy, for the UI)."""
        return {addr: known.source for addr, known in self._known.items()}

    @property
    def connecting(self) -> int:
        """How many dials are in progress."""
        return sum(1 for known in self._known.values() if known.connecting)

    # ------------------------------------------------------------------ dialling

    def candidates(
        self, now: float, room: int, *, connected: Set[PeerAddr], finished: bool
    ) -> list[PeerAddr]:
        """Addresses to dial now, in random order, each marked connecting.

        ``room`` is the number of free connection slots (``max_peers`` minus live
        connections); dials already in progress are subtracted here. ``connected``: the keys
        of live connections. ``finished``: we have every wanted piece, so seeds we parted
        from are not dialled (leechers still are: one that announced after us would
        otherwise wait for its next announce).
        """
        room -= self.connecting
        if room <= 0:
            return []
        ready = [
            known
            for addr, known in self._known.items()
            if not known.connecting
            and known.next_attempt <= now
            and addr not in connected
            and addr not in self._banned_addrs
            and not (finished and addr in self._parted)
        ]
        self._rng.shuffle(ready)
        chosen = ready[:room]
        for known in chosen:
            known.connecting = True
        return [known.addr for known in chosen]

    def next_attempt_at(self, *, connected: Set[PeerAddr], finished: bool) -> float:
        """When :meth:`candidates` would next hand out an address (the earliest next attempt
        among those it skips only for their backoff or redial pause); ``inf`` when none
        would ever be handed out without new addresses or a connection ending. Same
        arguments as :meth:`candidates`; O(known peers)."""
        return min(
            (
                known.next_attempt
                for addr, known in self._known.items()
                if not known.connecting
                and addr not in connected
                and addr not in self._banned_addrs
                and not (finished and addr in self._parted)
            ),
            default=math.inf,
        )

    def dial_failed(self, addr: PeerAddr, now: float) -> None:
        """A dial (connect or handshake) failed: back off, or forget it after 8 in a row."""
        known = self._known.get(addr)
        if known is None:  # forgotten meanwhile (banned, or ourselves)
            return
        known.connecting = False
        known.failures += 1
        if known.failures >= MAX_DIAL_FAILURES:
            del self._known[addr]
            return
        known.next_attempt = now + dial_backoff(known.failures)

    def dial_succeeded(self, addr: PeerAddr) -> None:
        """The handshake came back: the failure count starts over."""
        known = self._known.get(addr)
        if known is not None:
            known.connecting = False
            known.failures = 0

    def connection_ended(self, addr: PeerAddr, now: float) -> None:
        """A connection to ``addr`` (a connection's key) ended: no redial for 30 s."""
        known = self._known.get(addr)
        if known is not None:
            known.next_attempt = max(known.next_attempt, now + RECONNECT_AFTER)

    # ------------------------------------------------------------------ never dial these

    def self_connection(self, addr: PeerAddr) -> None:
        """``addr`` is ourselves (a handshake carried our own peer id, or the session
        knows its listen address): forget it and never add it again."""
        self._self_addrs.add(addr)
        self._known.pop(addr, None)

    def is_self(self, addr: PeerAddr) -> bool:
        return addr in self._self_addrs

    def ban(self, addr: PeerAddr, peer_id: bytes | None = None) -> None:
        """Never dial or accept ``addr`` again, nor (when given) ``peer_id``."""
        self._banned_addrs.add(addr)
        if peer_id is not None:
            self._banned_ids.add(peer_id)
        self._known.pop(addr, None)

    def is_banned(self, addr: PeerAddr, peer_id: bytes | None = None) -> bool:
        """Is this address, or this peer id, banned?"""
        return addr in self._banned_addrs or (peer_id is not None and peer_id in self._banned_ids)

    @property
    def banned_addrs(self) -> Set[PeerAddr]:
        """The banned addresses (read only)."""
        return self._banned_addrs

    def parted(self, addr: PeerAddr) -> None:
        """We parted from the seed at ``addr`` because both sides were done."""
        self._parted.pop(addr, None)  # re-parting makes it the newest
        self._parted[addr] = None
        while len(self._parted) > MAX_PARTED_SEEDS:
            del self._parted[next(iter(self._parted))]

    def want_again(self) -> None:
        """We want data again (more files chosen after completing): the seeds we parted
        from are the first to ask, at once."""
        for addr in self._parted:
            known = self._known.get(addr)
            if known is not None:
                known.next_attempt = 0.0
        self._parted.clear()

    @property
    def parted_seeds(self) -> Set[PeerAddr]:
        """Seeds we parted from, oldest first (read only)."""
        return self._parted.keys()


def keep_new_connection(
    our_id: bytes, existing: tuple[bool, bytes], new: tuple[bool, bytes]
) -> bool:
    """Two connections to one peer: keep the new one (and close the existing one)?

    Each connection is given as ``(outgoing, peer_id)`` from our side. When both sides dial
    each other at once, both must keep the *same* connection, or each might close the one
    the other kept, leaving none: so both keep the one dialled by the smaller peer id (our id
    for an outgoing connection, the peer's for an incoming one). Both sides see the same two
    initiator ids, so they agree. When one id dialled both (equal initiators), the new one wins.
    """

    def initiator(conn: tuple[bool, bytes]) -> bytes:
        outgoing, peer_id = conn
        return our_id if outgoing else peer_id

    return initiator(new) <= initiator(existing)
