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

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from torrentkit.errors import TorrentkitError
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


# ----------------------------------------------------------- join / publish / search

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """What a network is told about, or asked for, one torrent: its info-hash, and (for the
    designs that match names: Napster's index lists them, overlays match only them) its name
    and size. A magnet still waiting for its metadata has a name (its ``dn``, or the words a
    user gave) but no size."""

    info_hash: InfoHash
    name: str | None = None
    size: int | None = None


class Discovery(Protocol):
    """One network, the shape of docs/design.md: join it, publish what we hold, search by
    info-hash. :class:`SearchLoop` turns any of these into a torrent's
    :class:`TorrentDiscovery` (repeats, backoff, the sink). Keyword search (Napster, Gnutella,
    KaZaA) is a separate call on the network, returning :class:`SearchHit`."""

    name: str

    async def join(self) -> None:
        """Become part of the network; raises when it cannot be reached."""
        ...

    async def publish(self, listing: Listing, port: int) -> None:
        """Tell the network we hold ``listing`` at our ``port`` (idempotent; called again
        periodically to refresh it). Never called for a private torrent (BEP 27)."""
        ...

    def withdraw(self, info_hash: InfoHash) -> None:
        """Stop publishing ``info_hash`` (the torrent stopped)."""
        ...

    async def search(self, listing: Listing) -> Sequence[PeerAddr]:
        """Who holds ``listing`` now (may be empty; network errors raise)."""
        ...


#: Search again this long after each search that found nothing new: 1, 2, 4, 8 s, then
#: every 30 s (docs/design.md: the search-with-backoff loop, once for every design).
SEARCH_SCHEDULE: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 30.0)
#: Publish again this often (a Napster index or an overlay forgets after a while).
REPUBLISH_INTERVAL = 300.0
#: After a failed publish, try again this soon.
REPUBLISH_RETRY = 5.0


class SearchLoop:
    """A torrent's presence in a :class:`Discovery` network (a :class:`TorrentDiscovery`).

    ``run`` publishes ``listing`` (when ``publish``) and again every ``republish`` seconds,
    and searches for holders forever: after a search that found nobody new it waits the next
    step of ``schedule`` (1, 2, 4, 8 s, then 30 s each time); after one that found someone
    new, the same step again. :meth:`completed` wakes the search at once. It never stops by
    itself -- not after the metadata arrived, not after the download completed: holders
    that join later are still found, until the task is cancelled (then it withdraws).
    Every new address (not ``exclude``, not one reported before) goes to ``sink``."""

    def __init__(
        self,
        network: Discovery,
        listing: Listing,
        *,
        port: int,
        sink: PeerSink,
        publish: bool,
        exclude: Sequence[PeerAddr] = (),
        schedule: Sequence[float] = SEARCH_SCHEDULE,
        republish: float = REPUBLISH_INTERVAL,
    ) -> None:
        if not schedule or any(not d > 0 for d in schedule):
            raise ValueError("schedule: positive delays, at least one")
        self.network = network
        self.name = network.name
        self.listing = listing
        self.port = port
        self._sink = sink
        self._publish = publish
        self._schedule = tuple(schedule)
        self._republish = republish
        self._exclude = set(exclude)
        self._wake = trio.Event()
        self.known: set[PeerAddr] = set()
        self.searches = 0
        self.publishes = 0
        self.errors = 0
        self.last_error: str | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                if self._publish:
                    nursery.start_soon(self._publish_loop)
                await self._search_loop()
        finally:
            if self._publish:
                self.network.withdraw(self.listing.info_hash)

    def completed(self) -> None:
        self._wake.set()

    async def _publish_loop(self) -> None:
        while True:
            try:
                await self.network.publish(self.listing, self.port)
                self.publishes += 1
                wait = self._republish
            except Exception as exc:  # a network's errors vary: log, retry
                self._failed(exc)
                wait = REPUBLISH_RETRY
            await trio.sleep(wait)

    async def _search_loop(self) -> None:
        step = 0
        while True:
            try:
                found = await self.network.search(self.listing)
            except Exception as exc:  # a network's errors vary: log, retry
                self._failed(exc)
                found = ()
            self.searches += 1
            fresh = list(
                dict.fromkeys(p for p in found if p not in self.known and p not in self._exclude)
            )
            if fresh:
                self.known.update(fresh)
                self._sink(fresh, self.name)
            else:
                step += 1
            delay = self._schedule[min(max(step - 1, 0), len(self._schedule) - 1)]
            with trio.move_on_after(delay):
                await self._wake.wait()
            self._wake = trio.Event()

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = str(exc) or type(exc).__name__
        log.info("%s: %s", self.name, self.last_error)


class NetworkError(TorrentkitError):
    """A discovery network could not be joined or asked; the message says which and why."""
