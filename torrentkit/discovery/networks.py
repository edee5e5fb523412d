"""Joining the discovery networks a :class:`~torrentkit.settings.Settings` enables, once per
session (the public API calls these; no face does this itself). Each network implements
docs/design.md's join / publish / search; every torrent of the session gets its own presence
in each (``torrent_source``), which keeps publishing and searching until the torrent stops.

- Chord (:class:`~torrentkit.discovery.chord.discovery.ChordRing`): the session joins the
  ring as a member on its listen port's number over UDP (the socket is bound together with
  the TCP listener, see :func:`torrentkit.net.listen_tcp_and_udp`); publish announces the
  info-hash with our port; search asks the ring for its peers.
- Napster (:class:`NapsterNetwork`): join checks that the index answers; publish keeps our
  public torrents listed (one :class:`NapsterPublisher` for the session: heartbeats, re-join
  after an index restart, ``leave`` at the end); search asks the index for the info-hash.
- Gnutella / KaZaA (:class:`OverlayNetwork`): an overlay node on the session's listen port
  (:mod:`torrentkit.discovery.gnutella.session_port`); publish shares our public torrents'
  names; search floods the torrent's *name* (overlay nodes match names only) and keeps the
  holders whose hits carry exactly its info-hash. A magnet's name is its ``dn`` (for
  ``torrentkit get --name WORDS``, the words); one without a name cannot be searched for.

:class:`~torrentkit.discovery.base.SearchLoop` repeats the searches with backoff for the
ring, Napster and the overlays. Private torrents (BEP 27) never reach any of these networks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import trio

from torrentkit.discovery.base import (
    DiscoveryNetwork,
    Listing,
    NetworkError,
    PeerSink,
    SearchHit,
    SearchLoop,
    TorrentDiscovery,
)
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.net import DatagramEndpoint, Network
from torrentkit.settings import ChordSettings, NapsterSettings, OverlaySettings

# Each network's modules are imported when the settings enable it (in the functions and
# methods below): a session with none of them (a plain download) never loads them.
if TYPE_CHECKING:
    from torrentkit.api import Session
    from torrentkit.discovery.chord.discovery import ChordRing
    from torrentkit.discovery.gnutella import FileEntry, OverlayDriver, Role
    from torrentkit.discovery.napster.client import NapsterClient, SearchReply
    from torrentkit.discovery.napster.index import SearchQuery, SharedFile

#: Told of the new holders a torrent's search found (``NapsterNetwork.on_found``).
FoundHook = Callable[[InfoHash, Sequence[PeerAddr]], None]
#: How long an overlay search by a torrent's name collects hits.
OVERLAY_SEARCH_WAIT: Final = 2.0


#: The session's Chord ring membership: the ring as a ``Discovery`` whose torrents' presences
#: are ``SearchLoop``s (see :mod:`torrentkit.discovery.chord.discovery`).
if TYPE_CHECKING:
    ChordNetwork = ChordRing


def __getattr__(name: str) -> Any:
    if name == "ChordNetwork":  # imported on first use, as the ring's modules are
        from torrentkit.discovery.chord.discovery import ChordRing

        return ChordRing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@asynccontextmanager
async def open_chord(
    network: Network,
    host: str,
    port: int,
    settings: ChordSettings,
    *,
    endpoint: DatagramEndpoint | None = None,
) -> AsyncIterator[ChordNetwork]:
    """A ring member on UDP ``host:port`` (or ``endpoint``): joined through the first
    bootstrap node that answers, or the first node of a new ring when none is given."""
    from torrentkit.discovery.chord.discovery import ChordRing
    from torrentkit.discovery.chord.driver import open_chord_node
    from torrentkit.discovery.chord.node import ChordConfig

    config = ChordConfig(stabilize_interval=settings.stabilize_interval)
    ctx = open_chord_node(
        network, host, port, config=config, advertise=settings.advertise, endpoint=endpoint
    )
    async with ctx as chord:
        ring = ChordRing(
            chord, bootstrap=settings.bootstrap, announce_interval=settings.announce_interval
        )
        await ring.join()
        yield ring


# ----------------------------------------------------------------------------- napster


class NapsterNetwork:
    """The session's membership of a Napster-style index (a ``Discovery``)."""

    name = "napster"

    def __init__(self, client: NapsterClient, port: int, *, session: Session | None = None):
        from torrentkit.discovery.napster.client import NapsterPublisher

        self.client = client
        self.url = client.url
        self.publisher = NapsterPublisher(client, port)
        self._session = session
        self._files: dict[InfoHash, SharedFile] = {}
        #: Searches by info-hash asked so far; ``on_found(info_hash, peers)`` hears of every
        #: new holder a torrent's search found (a face reporting them).
        self.searches = 0
        self.on_found: FoundHook | None = None

    async def join(self) -> None:
        """Check that the index answers (a search for an info-hash nobody has)."""
        await self.find_peers(InfoHash(bytes(20)))

    async def publish(self, listing: Listing, port: int) -> None:
        if listing.name is None or listing.size is None:
            await trio.lowlevel.checkpoint()
            return  # a magnet without its metadata: nothing to list yet
        from torrentkit.discovery.napster.index import SharedFile

        entry = SharedFile(name=listing.name, size=listing.size, info_hash=listing.info_hash)
        if self._files.get(listing.info_hash) != entry:
            self._files[listing.info_hash] = entry
        self.publisher.set_files(self._files.values())  # sent at once; heartbeats after
        await trio.lowlevel.checkpoint()

    def withdraw(self, info_hash: InfoHash) -> None:
        if self._files.pop(info_hash, None) is not None:
            self.publisher.set_files(self._files.values())

    async def search(self, listing: Listing) -> Sequence[PeerAddr]:
        self.searches += 1
        return await self.find_peers(listing.info_hash)

    async def find_peers(self, info_hash: InfoHash) -> tuple[PeerAddr, ...]:
        from torrentkit.discovery.napster.client import IndexUnreachable
        from torrentkit.discovery.napster.index import IndexRequestError
        from torrentkit.discovery.napster.protocol import IndexResponseError

        try:
            return await self.client.find_peers(info_hash)
        except (IndexUnreachable, IndexRequestError, IndexResponseError) as exc:
            raise NetworkError(f"napster index {self.url}: {exc}") from None

    async def search_keywords(self, query: SearchQuery) -> SearchReply:
        """Keyword search (``torrentkit search``): the index's hits, as it ranks them."""
        return await self.client.search(query)

    def torrent_source(
        self, info_hash: InfoHash, *, port: int, sink: PeerSink, publish: bool
    ) -> TorrentDiscovery:
        return _source(self, self._session, info_hash, port=port, sink=sink, publish=publish)


@asynccontextmanager
async def open_napster(
    settings: NapsterSettings, port: int, *, session: Session | None = None, join: bool = True
) -> AsyncIterator[NapsterNetwork]:
    """Joined to the index at ``settings.url`` (NetworkError when it does not answer and
    ``join``); our torrents listed from ``port`` while inside; ``leave`` on the way out."""
    from torrentkit.discovery.napster.client import NapsterClient

    try:
        client = NapsterClient(settings.url)
    except ValueError as exc:
        raise NetworkError(f"napster index: {exc}") from None
    try:
        net = NapsterNetwork(client, port, session=session)
        if join:
            await net.join()
        async with trio.open_nursery() as nursery:
            await nursery.start(net.publisher.run)
            yield net
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()


# ----------------------------------------------------------------------------- overlays


class OverlayNetwork:
    """The session's node in a Gnutella or KaZaA overlay (a ``Discovery``)."""

    def __init__(self, node: OverlayDriver, kind: str, *, session: Session | None = None):
        self.node = node
        self.name = kind
        self.bootstrap: tuple[PeerAddr, ...] = ()
        #: How long a search by name collects hits.
        self.search_wait = OVERLAY_SEARCH_WAIT
        self._session = session
        self._files: dict[InfoHash, FileEntry] = {}
        self.searches = 0
        self.on_found: FoundHook | None = None

    async def join(self) -> None:
        """Until a neighbour carries our queries (NetworkError after a while); at once for
        a first node (no bootstrap)."""
        from torrentkit.discovery.gnutella.session_port import wait_for_neighbours

        if self.bootstrap:
            await wait_for_neighbours(self.node)
        await trio.lowlevel.checkpoint()

    async def publish(self, listing: Listing, port: int) -> None:
        if listing.name is not None and listing.size is not None:
            from torrentkit.discovery.gnutella import FileEntry

            entry = FileEntry(name=listing.name, size=listing.size, info_hash=listing.info_hash)
            if self._files.get(listing.info_hash) != entry:
                self._files[listing.info_hash] = entry
                self.node.publish(self._files.values())
        await trio.lowlevel.checkpoint()

    def withdraw(self, info_hash: InfoHash) -> None:
        if self._files.pop(info_hash, None) is not None:
            self.node.publish(self._files.values())

    @property
    def files(self) -> list[FileEntry]:
        return list(self._files.values())

    async def search(self, listing: Listing) -> Sequence[PeerAddr]:
        self.searches += 1
        text = query_text(listing.name or "")
        if not text:
            await trio.sleep(self.search_wait)
            return ()
        hits = await self.node.search(text, wait=self.search_wait)
        return [p for h in hits if h.info_hash == listing.info_hash for p in h.peers]

    async def search_keywords(self, text: str, *, wait: float) -> list[SearchHit]:
        """Keyword search (``torrentkit search``): flood ``text``, collect hits ``wait`` s."""
        return await self.node.search(text, wait=wait)

    def torrent_source(
        self, info_hash: InfoHash, *, port: int, sink: PeerSink, publish: bool
    ) -> TorrentDiscovery:
        return _source(self, self._session, info_hash, port=port, sink=sink, publish=publish)


def overlay_role(settings: OverlaySettings) -> Role:
    """Gnutella: a peer. KaZaA: a supernode when asked, otherwise a leaf."""
    from torrentkit.discovery.gnutella import Role

    if settings.kind == "gnutella":
        return Role.PEER
    return Role.SUPERNODE if settings.supernode else Role.LEAF


def query_text(name: str) -> str:
    """A name as an overlay query: its words, as many as fit in a query."""
    from torrentkit.discovery.gnutella.messages import MAX_QUERY
    from torrentkit.discovery.gnutella.overlay import query_words

    words: list[str] = []
    for word in query_words(name):
        if len(" ".join([*words, word]).encode("utf-8", "replace")) > MAX_QUERY:
            break
        words.append(word)
    return " ".join(words)


@asynccontextmanager
async def open_overlay_network(
    settings: OverlaySettings, session: Session, *, join: bool = True
) -> AsyncIterator[OverlayNetwork]:
    """An overlay node on ``session``'s listen port, joined through ``settings.bootstrap``."""
    from torrentkit.discovery.gnutella.session_port import open_overlay

    role = overlay_role(settings)
    async with open_overlay(
        session.network, role=role, bootstrap=settings.bootstrap, session=session.engine
    ) as node:
        net = OverlayNetwork(node, settings.kind, session=session)
        net.bootstrap = settings.bootstrap
        if join:
            await net.join()
        yield net


# ----------------------------------------------------------------------------- per torrent


class _Idle:
    """A presence that does nothing (a private torrent: never in a network, BEP 27)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def completed(self) -> None:
        pass


def _source(
    net: NapsterNetwork | OverlayNetwork,
    session: Session | None,
    info_hash: InfoHash,
    *,
    port: int,
    sink: PeerSink,
    publish: bool,
) -> TorrentDiscovery:
    listing = Listing(info_hash=info_hash)
    exclude: list[PeerAddr] = []
    handle = session.find(bytes(info_hash)) if session is not None else None
    if session is not None:
        exclude.append(session.address)
    if handle is not None:
        meta = handle.metainfo
        if meta is not None:
            if meta.info.private:
                return _Idle(net.name)
            listing = Listing(info_hash=info_hash, name=meta.name, size=meta.info.total_length)
        elif handle.name != info_hash.hex():
            listing = Listing(info_hash=info_hash, name=handle.name)

    def found(peers: Sequence[PeerAddr], source: str) -> None:
        sink(peers, source)
        if net.on_found is not None:
            net.on_found(info_hash, peers)

    return SearchLoop(net, listing, port=port, sink=found, publish=publish, exclude=exclude)


async def open_other_networks(session: Session, stack: AsyncExitStack) -> list[DiscoveryNetwork]:
    """The Napster index and the overlay ``session.settings`` enable (the api's ``Session``
    calls this once at start; each lives until ``stack`` closes). As with a tracker that is
    down, an index that does not answer or an overlay with no neighbour yet does not stop
    the session: publishing and searching retry (a face that must fail fast calls the
    network's ``join()``)."""
    from torrentkit.api import SessionError

    settings = session.settings
    out: list[DiscoveryNetwork] = []
    try:
        if settings.napster is not None:
            out.append(
                await stack.enter_async_context(
                    open_napster(
                        settings.napster, session.address.port, session=session, join=False
                    )
                )
            )
        if settings.overlay is not None:
            out.append(
                await stack.enter_async_context(
                    open_overlay_network(settings.overlay, session, join=False)
                )
            )
        if settings.lsd:
            from torrentkit.discovery.lsd.driver import open_lsd

            out.append(await stack.enter_async_context(open_lsd(session)))
    except NetworkError as exc:
        raise SessionError(str(exc)) from None
    return out


__all__ = [
    "ChordNetwork",
    "DiscoveryNetwork",
    "NapsterNetwork",
    "NetworkError",
    "OverlayNetwork",
    "open_chord",
    "open_napster",
    "open_other_networks",
    "open_overlay_network",
]
