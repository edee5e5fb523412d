"""Peer exchange policy (BEP 11), per connection and pure (time passed in).

What we tell a peer (:class:`PexOut`): every :data:`PEX_INTERVAL` seconds at most, the
addresses of our other connected peers that it has not been told yet (``added``, with flags:
seed, reachable = we dialled it, prefers encryption) and the ones it was told that are gone
(``dropped``), each list at most :data:`~torrentkit.wire.pex.MAX_ADDED_SENT` (50) long; what
does not fit waits for the next message. Nothing is sent when nothing changed.

What we believe (:class:`PexIn`), docs/limits.md:

- a peer sending more than :data:`MAX_MESSAGES_PER_INTERVAL` (6) PEX messages within
  :data:`PEX_INTERVAL` is flooding: it is dropped (libtorrent's rule);
- from one message at most :data:`MAX_ADDED_PER_MESSAGE` (50) addresses are looked at, and
  from one peer at most :data:`MAX_LEARNED_PER_INTERVAL` (100) new ones per interval;
- in all, at most :data:`MAX_FROM_PEX` (500) known addresses may have come from PEX (the peer
  book's ``limit``), so trackers and the DHT always find room;
- ignored: our own address, the sender itself, entries in private / loopback / link-local
  ranges unless the sender is itself at such an address (libtorrent's ``is_local`` rule: a
  peer on the internet cannot know our LAN), and malformed entries (wire/pex.py).

``dropped`` entries are not acted on: a peer that one of our peers lost may still be fine
for us (libtorrent does the same); the book forgets dead addresses by their failed dials.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.wire import pex
from torrentkit.wire.pex import MAX_ADDED_SENT, PexMessage, PexPeer

PEX_INTERVAL: Final = 60.0
MAX_MESSAGES_PER_INTERVAL: Final = 6
MAX_ADDED_PER_MESSAGE: Final = 50
MAX_LEARNED_PER_INTERVAL: Final = 100
MAX_FROM_PEX: Final = 500


@dataclass(slots=True)
class PexOut:
    """What one peer was told, and when."""

    told: dict[PeerAddr, None] = field(default_factory=dict)
    last_sent: float | None = None

    def due(self, now: float) -> bool:
        return self.last_sent is None or now - self.last_sent >= PEX_INTERVAL

    def message(self, now: float, current: Mapping[PeerAddr, int]) -> bytes | None:
        """The payload to send now (and record as told), or None: not due, or no change.
        ``current``: our connected peers' addresses (the receiver's own left out) -> flags."""
        if not self.due(now):
            return None
        told = self.told
        added = [PexPeer(a, f) for a, f in current.items() if a not in told][:MAX_ADDED_SENT]
        dropped = [a for a in told if a not in current][:MAX_ADDED_SENT]
        if not added and not dropped:
            return None
        for p in added:
            told[p.addr] = None
        for a in dropped:
            del told[a]
        self.last_sent = now
        return pex.encode(added, dropped)


@dataclass(slots=True)
class PexIn:
    """What one peer sent us: message times and how many addresses it taught us lately."""

    times: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_MESSAGES_PER_INTERVAL))
    window_start: float = 0.0
    learned: int = 0

    def receive(
        self,
        now: float,
        msg: PexMessage,
        *,
        sender: PeerAddr,
        is_self: Callable[[PeerAddr], bool],
    ) -> tuple[list[PeerAddr], int]:
        """The addresses to offer the peer book, and how many were ignored. Raises
        RemoteProtocolError if the peer sends PEX messages too often."""
        times = self.times
        if len(times) == MAX_MESSAGES_PER_INTERVAL and now - times[0] < PEX_INTERVAL:
            raise RemoteProtocolError(
                f"more than {MAX_MESSAGES_PER_INTERVAL} PEX messages in {PEX_INTERVAL:.0f} s"
            )
        times.append(now)
        if now - self.window_start >= PEX_INTERVAL:
            self.window_start, self.learned = now, 0
        sender_local = pex.is_local(sender.host)
        out: list[PeerAddr] = []
        ignored = msg.malformed + max(0, len(msg.added) - MAX_ADDED_PER_MESSAGE)
        for peer in msg.added[:MAX_ADDED_PER_MESSAGE]:
            addr = peer.addr
            if (
                self.learned >= MAX_LEARNED_PER_INTERVAL
                or (addr.host == sender.host and addr.port == sender.port)
                or is_self(addr)
                or (not sender_local and pex.is_local(addr.host))
            ):
                ignored += 1
                continue
            out.append(addr)
            self.learned += 1
        return out, ignored


def flags_for(*, seed: bool, reachable: bool, encryption: bool) -> int:
    """The ``added.f`` byte of one of our peers."""
    return (
        (pex.SEED if seed else 0)
        | (pex.REACHABLE if reachable else 0)
        | (pex.PREFERS_ENCRYPTION if encryption else 0)
    )
