"""The discovery interface every design implements (docs/design.md: join, publish, search).

For the swarm engine, a discovery source works per torrent: it *announces* that we have or
want an info-hash (publish), and *finds* peers for it (search), feeding every address it
learns into one callback, whatever design found it. The engine gives it a way to read the
transfer totals, and tells it when the download completes; cancelling ``run`` leaves the
network (a tracker gets ``event=stopped``).

Keyword search (Napster, Gnutella, KaZaA) has its own, separate call, and returns hits that
are just an info-hash plus peers, like a magnet link.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from torrentkit.ids import InfoHash, PeerAddr


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferTotals:
    """What a tracker is told: bytes up and down this session, and bytes still missing."""

    uploaded: int
    downloaded: int
    left: int


#: Called with newly learnt peer addresses and the name of the source that found them.
PeerSink = Callable[[Sequence[PeerAddr], str], None]


class TorrentDiscovery(Protocol):
    """One torrent's presence in one discovery network."""

    #: Short name shown in logs and the UI (``tracker``, ``chord``, ...).
    name: str

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Join, announce, and keep finding peers until cancelled; then leave cleanly."""
        ...

    def completed(self) -> None:
        """The download just completed: tell the network soon (``event=completed``)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHit:
    """A keyword search result: enough to fetch it through the peer wire layer."""

    name: str
    size: int
    info_hash: InfoHash
    peers: tuple[PeerAddr, ...]


class DiscoveryNetwork(Protocol):
    """A discovery network the whole session has joined (a Chord ring, a Napster index, a
    Gnutella/KaZaA overlay): every torrent of the session gets its own presence in it."""

    #: Short name shown in logs and the UI (``chord``, ``napster``, ...).
    name: str

    def torrent_source(
        self, info_hash: InfoHash, *, port: int, sink: PeerSink, publish: bool
    ) -> TorrentDiscovery:
        """One torrent's presence: publishes it (when ``publish``: we hold or fetch it; a
        magnet still waiting for its metadata publishes nothing) and keeps searching for
        peers, feeding them into ``sink``, until cancelled."""
        ...
