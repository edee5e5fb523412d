"""One torrent's swarm: peers, picker, choker, trust and storage, driven by trio.

The :class:`Torrent` is the coordinator. Pure cores decide (picker: which block; choker: who
is unchoked; trust: who lied); the torrent feeds them events from its :class:`PeerLink`
drivers and carries out what they decide. Its tasks, all in one nursery it owns:

- one task per peer link (``PeerLink.run``), and one per outgoing dial attempt;
- the **connector**: keeps dialling known peers up to ``max_peers``, with backoff per
  address after failures, never a banned one, never one already connected;
- its **tick wheel**'s task, only when the torrent was made without one (the engine
  session runs one wheel for all its torrents, engine/tick.py). The wheel visits the torrent
  only while it has links: every second :meth:`Torrent.tick` (keep-alives after 90 s idle,
  drop peers silent for 120 s, snubbing: no block for 60 s from a peer that unchokes us, its
  requests are given back to the picker for others; request refills), and every
  ``rechoke_interval`` (10 s) a rechoke. A torrent without links costs nothing per second;
- the **discovery sources** (tracker announces, later DHT and overlays), which report peers
  through :meth:`Torrent.add_peers`;
- the **piece writer** (storage.py's :class:`~torrentkit.engine.storage.PieceWriter`),
  started with the first complete piece: worker threads verify and write the pieces, and
  its task hands each outcome to the torrent.

Handlers for peer events (:meth:`Torrent.on_event`) are synchronous and never block.
Engine events (``peer_connected``, ``unchoke``, ``piece``, ``banned``, ...) go to the
``on_event`` callback as dicts with the fields docs/cli.md names, for ``--json`` and the UI.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import trio

from torrentkit.discovery.base import TorrentDiscovery, TransferTotals
from torrentkit.engine.assembly import Assemblies, Assembly
from torrentkit.engine.choker import Choker, PeerStats, RechokeResult
from torrentkit.engine.encryption import Encryption, Kind, PeerEncryption, dial_peer
from torrentkit.engine.peer import PeerLink
from torrentkit.engine.peerbook import PeerBook, keep_new_connection
from torrentkit.engine.pex import MAX_FROM_PEX, PexIn, PexOut, flags_for
from torrentkit.engine.picker import Picker
from torrentkit.engine.ratelimit import RateLimiter
from torrentkit.engine.snapshot import PeerSnapshot, TorrentSnapshot
from torrentkit.engine.storage import Outcome, PieceStorage, PieceWriter
from torrentkit.engine.tick import TickWheel
from torrentkit.engine.trust import Trust
from torrentkit.engine.upload_cache import UploadCache
from torrentkit.errors import HandshakeRefused, RemoteProtocolError, StorageError
from torrentkit.events import (
    Choked,
    FastMessage,
    HashFailed,
    OptimisticUnchoke,
    PeerBanned,
    PeerConnected,
    PeerDisconnected,
    PexReceived,
    PieceVerified,
    Snubbed,
    TorrentChecked,
    TorrentCompleted,
    TorrentError,
    Unchoked,
)
from torrentkit.events import Event as EngineEvent
from torrentkit.events import Interested as InterestedEvent
from torrentkit.events import NotInterested as NotInterestedEvent
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Info
from torrentkit.net import Network, close_quietly
from torrentkit.wire import pex as pex_wire
from torrentkit.wire.connection import (
    HandshakeRejected,
    PeerConnection,
    PieceGeometry,
    RejectReason,
)
from torrentkit.wire.events import (
    DEFAULT_RESERVED,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    InvalidRequest,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    RequestProblem,
    SuggestPiece,
    Unchoke,
)
from torrentkit.wire.extensions import (
    UT_METADATA,
    UT_PEX,
    supports_dht,
    supports_extension_protocol,
    with_dht_bit,
)
from torrentkit.wire.fast import ALLOWED_FAST_K, allowed_fast_set
from torrentkit.wire.peer_id import CLIENT_VERSION

if TYPE_CHECKING:
    # Imported where used: only a torrent with web seeds (url-list) runs WebSeedLinks (and
    # httpx under them), only a peer asking for the info dictionary needs ut_metadata.
    import httpx

    from torrentkit.engine.webseed import WebSeedKey
    from torrentkit.engine.webseed_link import WebSeedLink

CONNECT_TIMEOUT = 15.0
HANDSHAKE_TIMEOUT = 10.0
KEEPALIVE_INTERVAL = 90.0
SILENCE_LIMIT = 120.0
SNUB_TIMEOUT = 60.0
RECHOKE_INTERVAL = 10.0
#: A seed slot's turn ends after this many pieces' worth of data (libtorrent's quota).
SEED_TURN_PIECES = 20
PIECE_CACHE_BYTES = 32 * 1024 * 1024
#: The id we ask peers to send ut_metadata messages with (BEP 10 ids are per direction).
OUR_UT_METADATA_ID = 2
#: The id we ask peers to send ut_pex messages with (not offered for private torrents).
OUR_UT_PEX_ID = 1
#: BEP 6: a fast peer that choked us answers our requests with blocks or rejects; if some
#: are still unanswered this long after its choke, they are withdrawn and asked elsewhere.
FAST_CHOKE_GRACE = 20.0
#: At most this many of a peer's SUGGEST PIECE hints are kept (newest), and at most this
#: many suggestions sent to one peer (docs/limits.md).
MAX_SUGGESTS_KEPT = 16
MAX_SUGGESTS_SENT = 64
#: After a peer that unchokes us rejects a request, no new requests to it for this long.
REJECT_PAUSE = 1.0
#: At most this many ``fast`` engine events per peer (docs/cli.md).
MAX_FAST_EVENTS = 100
#: Why two peers that both have what they want close their connection.
PARTING = "both have what they want"

#: The receive gate of a torrent with no piece writer yet: always open.
_OPEN_GATE = trio.Event()
_OPEN_GATE.set()

EventSink = Callable[[EngineEvent], None]
#: Who sent a block: a peer (address and listen port) or a web seed (its URL).
SenderKey: TypeAlias = "PeerAddr | WebSeedKey"

#: BEP 6 events -> their name in ``fast`` engine events (docs/cli.md).
_FAST_NAMES: dict[type, str] = {
    HaveAll: "have_all",
    HaveNone: "have_none",
    RejectRequest: "reject",
    AllowedFast: "allowed_fast",
    SuggestPiece: "suggest",
}
_FAST_EVENTS = frozenset(_FAST_NAMES)
DiscoveryFactory = Callable[["Torrent"], TorrentDiscovery]


@dataclass(slots=True)
class TorrentOptions:
    max_peers: int = 50
    down_limit: float = 0.0  # bytes/s, 0 = unlimited
    up_limit: float = 0.0
    file_priorities: Sequence[int] | None = None  # per file in info.files order; 0 = skip
    upload_slots: int = 4
    optimistic_slots: int = 1  # 0 with upload_slots 0: never uploads (a free rider)
    #: Seconds between rechokes; the optimistic turn is three of them (BitTorrent: 10 / 30).
    #: Only the demo changes it, to show a minutes-long dynamic within a minute.
    rechoke_interval: float = RECHOKE_INTERVAL
    #: MSE/PE for the peers we dial: prefer, require or disable (engine/encryption.py).
    encryption: Encryption = "prefer"


@dataclass(frozen=True, slots=True)
class DhtContact:
    """The session's mainline DHT node as the peer wire sees it (BEP 5): its UDP ``port``,
    sent in a PORT message to peers whose handshake has the DHT bit, and ``add_node``, which
    hears of the DHT nodes peers announce that way (the node pings them)."""

    port: int
    add_node: Callable[[PeerAddr], None]


class Torrent:
    """A torrent being downloaded and/or seeded."""

    def __init__(
        self,
        info: Info,
        storage: PieceStorage,
        *,
        network: Network,
        peer_id: bytes,
        listen_port: int,
        options: TorrentOptions | None = None,
        rng: random.Random | None = None,
        on_event: EventSink | None = None,
        session_limits: tuple[RateLimiter | None, RateLimiter | None] = (None, None),
        ticker: TickWheel | None = None,
        dht: DhtContact | None = None,
    ) -> None:
        """``ticker``: the wheel that drives :meth:`tick` and the rechokes (the session's);
        without one the torrent runs a wheel of its own in its nursery. ``dht``: the
        session's DHT node, told to peers and told of theirs (never for a private torrent,
        BEP 27: no DHT bit, no PORT sent, PORT messages ignored)."""
        self.info = info
        self._info_hash_hex = info.info_hash.hex()  # every engine event carries it
        self.storage = storage
        self.network = network
        self.peer_id = peer_id
        self.listen_port = listen_port
        self.dht = dht if not info.private else None
        self._reserved = DEFAULT_RESERVED if self.dht is None else with_dht_bit(DEFAULT_RESERVED)
        self.options = options or TorrentOptions()
        self.rng = rng or random.Random()
        self._emit_cb = on_event
        self.geometry = PieceGeometry(
            piece_length=info.piece_length, total_length=info.total_length
        )
        self.picker: Picker[PeerLink | WebSeedLink] = Picker(
            piece_length=info.piece_length, total_length=info.total_length, rng=self.rng
        )
        if self.options.file_priorities is not None:
            self.picker.set_file_priorities(info.files, self.options.file_priorities)
        self.choker: Choker[PeerLink] = Choker(
            rng=self.rng,
            slots=self.options.upload_slots,
            optimistic_slots=self.options.optimistic_slots,
            rechoke_interval=self.options.rechoke_interval,
            optimistic_interval=3 * self.options.rechoke_interval,
            # 20 pieces' worth (libtorrent's quota), but at most 1/32 of the torrent, so that
            # on a small torrent the seed still rotates among all its leechers.
            seed_quota=max(
                info.piece_length,
                min(SEED_TURN_PIECES * info.piece_length, info.total_length // 32),
            ),
        )
        self.trust = Trust()
        self.links: dict[PeerLink, None] = {}
        #: the last engine events but pieces, for the UI's event log
        self.recent_events: deque[EngineEvent] = deque(maxlen=100)
        #: peer id -> [seconds unchoked, seconds of it optimistic], closed intervals only
        self.unchoke_totals: dict[bytes, list[float]] = {}
        #: known peers, backoff, bans, our own addresses, parted seeds (pure, see peerbook.py)
        self.peers = PeerBook(self.rng)
        self.encryption = PeerEncryption(self.options.encryption)
        self.assemblies: Assemblies[SenderKey] = Assemblies(
            piece_length=info.piece_length, total_length=info.total_length
        )
        self.upload_cache = UploadCache(PIECE_CACHE_BYTES)
        # BEP 6 / BEP 11 state per link (engine/pex.py; the suggestions each peer made us
        # and those we made it); dropped with the link.
        self._pex_out: dict[PeerLink, PexOut] = {}
        self._pex_in: dict[PeerLink, PexIn] = {}
        self._suggested_in: dict[PeerLink, deque[int]] = {}
        self._suggested_out: dict[PeerLink, set[int]] = {}
        self._fast_choked_at: dict[PeerLink, float] = {}
        #: the DHT port each link told us (BEP 5 PORT): one node pinged per link, not one
        #: per message
        self._dht_ports: dict[PeerLink, int] = {}
        self._fast_given: dict[int, PeerLink] = {}  # allowed-fast piece -> the peer served
        # Allowed-fast pieces a peer that chokes us rejected (not asked again until it
        # unchokes us), when requests to a peer that rejected one may go out again (no
        # request/reject ping-pong), and how many fast events each peer has caused.
        self._fast_refused: dict[PeerLink, set[int]] = {}
        self._reject_pause: dict[PeerLink, float] = {}
        self._fast_events: dict[PeerLink, int] = {}
        #: a link whose REJECTs released requests while its received events were handled:
        #: the other peers are asked once for them all, after that receive (after_receive)
        self._rerequest_pending: PeerLink | None = None
        #: hosts that are us (peers' ``yourip``), for ignoring our own address in PEX
        self._own_hosts: set[str] = set()
        self.uploaded = 0
        self.downloaded = 0  # verified payload bytes received this session
        #: payload bytes received that were not needed (an endgame duplicate, a block that
        #: arrived after we cancelled it or after its piece was done): libtorrent's
        #: "redundant bytes"
        self.redundant = 0
        self.started_at = 0.0
        self.completed_at: float | None = None
        self.error: str | None = None
        self.complete = trio.Event()
        self.failed = trio.Event()
        self.checked = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._connect_wakeup = trio.Event()
        self._own_ticker = ticker is None
        self._ticker = ticker if ticker is not None else TickWheel()
        self._next_rechoke = 0.0
        #: when the last link left (the start counts), None while there are links
        self.idle_since: float | None = None
        self._active = trio.Event()  # set while there are links
        self._discoveries: list[TorrentDiscovery] = []
        #: web seeds (BEP 19): the second kind of link, fetching runs of pieces over HTTP
        self.web_seeds: dict[WebSeedLink, None] = {}
        self._web_urls: list[str] = []  # every usable url-list URL
        self._web_http: httpx.AsyncClient | None = None
        #: URLs of web seeds dropped for good (bad data or replies) this run
        self.dropped_web_seeds: set[str] = set()
        self._web_work = trio.Event()  # set when web seeds may find new work
        # Own limiters always exist (rate 0 = unlimited, skipped when acquiring), so that
        # set_rate_limits takes effect at once on every link.
        own_down = RateLimiter(self.options.down_limit)
        own_up = RateLimiter(self.options.up_limit)
        self.down_limiters = [x for x in (own_down, session_limits[0]) if x is not None]
        self.up_limiters = [x for x in (own_up, session_limits[1]) if x is not None]
        self._down_limiter = own_down
        self._up_limiter = own_up

    # ------------------------------------------------------------------ public state

    @property
    def info_hash(self) -> bytes:
        return self.info.info_hash

    @property
    def is_complete(self) -> bool:
        """Every wanted piece verified *and* the completion done (empty files created,
        ``completed`` emitted, trackers told): the CLI exits as soon as this is true."""
        return self.complete.is_set()

    def left(self) -> int:
        """Bytes of wanted pieces still missing (what a tracker is told); O(1)."""
        picker, info = self.picker, self.info
        missing = picker.wanted_missing
        if not missing:
            return 0
        left = missing * info.piece_length
        last = info.num_pieces - 1
        if not picker.have(last) and picker.priority(last):
            left -= info.piece_length - info.piece_size(last)
        return left

    def totals(self) -> TransferTotals:
        return TransferTotals(uploaded=self.uploaded, downloaded=self.downloaded, left=self.left())

    def emit(self, kind: type[EngineEvent], **fields: Any) -> None:
        """Build a typed event (``t`` and ``info_hash`` filled in) and hand it on."""
        event = kind(
            t=round(trio.current_time() - self.started_at, 3),
            info_hash=self._info_hash_hex,
            **fields,
        )
        if kind is not PieceVerified:
            self.recent_events.append(event)
        if self._emit_cb is not None:
            self._emit_cb(event)

    def snapshot(self, now: float, *, map_cells: int = 256) -> TorrentSnapshot:
        """An immutable view of this torrent for faces (see engine/snapshot.py)."""
        info = self.info
        num = info.num_pieces
        unchoked = self.unchoked_seconds(now)
        peers = tuple(
            PeerSnapshot(
                addr=str(link.addr),
                client=link.client,
                outgoing=link.outgoing,
                am_choking=link.conn.am_choking,
                am_interested=link.conn.am_interested,
                peer_choking=link.conn.peer_choking,
                peer_interested=link.conn.peer_interested,
                optimistic=link.optimistic,
                snubbed=link.snubbed,
                down_rate=link.down.rate(now),
                up_rate=link.up.rate(now),
                downloaded=link.downloaded,
                uploaded=link.uploaded,
                progress=link.conn.peer_have_count / num if num else 0.0,
                connected_for=now - link.connected_at,
                unchoked_seconds=unchoked.get(link.peer_id, (0.0, 0.0))[0],
                peer_id=link.peer_id,
            )
            for link in self.links
            if link.conn.peer_handshake is not None
        ) + tuple(self._web_seed_snapshot(seed, now) for seed in self.web_seeds)
        down = sum(p.down_rate for p in peers)
        up = sum(p.up_rate for p in peers)
        left = self.left()
        return TorrentSnapshot(
            t=now - self.started_at,
            name=info.name,
            info_hash=info.info_hash.hex(),
            total_size=info.total_length,
            piece_length=info.piece_length,
            num_pieces=num,
            pieces_have=self.picker.num_have,
            wanted_left=left,
            complete=self.is_complete,
            error=self.error,
            down_rate=down,
            up_rate=up,
            downloaded=self.downloaded,
            uploaded=self.uploaded,
            ratio=self.uploaded / info.total_length,
            eta=None if self.is_complete or down <= 0 else left / down,
            peers=peers,
            known_peers=len(self.peers),
            banned=len(self.peers.banned_addrs),
            piece_map=tuple(self.picker.piece_map(map_cells)),
            events=tuple(self.recent_events),
        )

    def add_discovery(self, source: TorrentDiscovery) -> None:
        self._discoveries.append(source)
        if self._nursery is not None:
            self._nursery.start_soon(source.run)

    def set_rate_limits(self, *, down: float | None = None, up: float | None = None) -> None:
        """Change this torrent's limits (bytes/s, 0 = unlimited); every link obeys at once."""
        if down is not None:
            self._down_limiter.set_rate(down)
        if up is not None:
            self._up_limiter.set_rate(up)

    def set_file_priorities(self, priorities: Sequence[int]) -> None:
        """Per file (``info.files`` order), 0 = skip; takes effect at once: requests for
        skipped pieces stop, interest is updated, and completion follows the new wish."""
        info = self.info
        if len(priorities) != len(info.files):
            raise ValueError(f"expected {len(info.files)} file priorities, got {len(priorities)}")
        self.options.file_priorities = list(priorities)
        self.picker.set_file_priorities(info.files, priorities)
        if self._nursery is None:
            return
        now = trio.current_time()
        if self.picker.is_finished():
            if not self.complete.is_set():
                self._nursery.start_soon(self._finish_download)
        elif self.complete.is_set():
            # More is wanted now: downloading again (a new event for the next completion).
            self.complete = trio.Event()
            self.completed_at = None
            self.peers.want_again()
            self._connect_wakeup.set()
            self._start_web_seeds()
        for link in list(self.links):
            if link.conn.our_handshake is not None:
                self._update_interest(link)
                self.fill_requests(link, now)

    # ------------------------------------------------------------------ running

    async def run(
        self,
        *,
        have: Sequence[bool] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Swarm until cancelled. ``have``: the pieces already checked (e.g. by fast resume);
        without it, everything on disk is rechecked first."""
        self.started_at = trio.current_time()
        self._next_rechoke = self.started_at
        self.idle_since = self.started_at
        if have is None:
            try:
                have = await self.storage.recheck()
            except StorageError as exc:
                self._fail(str(exc))
                task_status.started()
                return
            self.emit(TorrentChecked, pieces=sum(have), num_pieces=self.info.num_pieces)
        for index, ok in enumerate(have):
            if ok:
                self.picker.set_have(index)
        self.checked.set()
        if self.picker.is_finished():
            await self._finish_download(at_start=True)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._connector)
                if self._own_ticker:
                    nursery.start_soon(self._ticker.run)
                for source in self._discoveries:
                    nursery.start_soon(source.run)
                self._start_web_seeds()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None  # stopped: new connections are refused, not started
            self._ticker.deactivate(self)

    def storage_failed(self, message: str) -> None:
        """The disk failed under us (full, read-only, gone): pause the torrent."""
        self._fail(message)

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
            self.emit(TorrentError, message=message)
        self.failed.set()
        for link in list(self.links):
            link.close("torrent stopped: " + message)

    # ------------------------------------------------------------------ peers in

    def add_peers(self, addrs: Sequence[PeerAddr], source: str) -> None:
        """A discovery source found these addresses (the PeerSink)."""
        if self.peers.add(addrs, source, trio.current_time()):
            self._connect_wakeup.set()

    @property
    def banned_addrs(self) -> AbstractSet[PeerAddr]:
        return self.peers.banned_addrs

    @property
    def parted_seeds(self) -> AbstractSet[PeerAddr]:
        return self.peers.parted_seeds

    @property
    def known(self) -> PeerBook:
        """The known peers (an address book: ``len``, ``in``, iteration, ``sources()``)."""
        return self.peers

    def _connected_keys(self) -> set[PeerAddr]:
        return {link.key for link in self.links}

    async def _connector(self) -> None:
        """Dials what the peer book hands out, then sleeps until woken (new peers, a link or
        a dial ended, more wanted) or until the book's next backoff ends; never polls."""
        while True:
            self._connect_wakeup = trio.Event()
            now = trio.current_time()
            nursery = self._nursery
            assert nursery is not None
            wake = math.inf
            if not self.failed.is_set():
                connected = self._connected_keys()
                finished = self.picker.is_finished()
                room = self.options.max_peers - len(self.links)
                for addr in self.peers.candidates(
                    now, room, connected=connected, finished=finished
                ):
                    nursery.start_soon(self._dial, addr)
                if room - self.peers.connecting > 0:  # else a link or dial ending wakes us
                    wake = self.peers.next_attempt_at(connected=connected, finished=finished)
                    if wake <= now:  # cannot be (candidates took every ready one): no spin
                        wake = now + 1.0
            with trio.move_on_at(wake):
                await self._connect_wakeup.wait()

    async def _dial(self, addr: PeerAddr) -> None:
        try:
            stream, conn, hs, kind = await dial_peer(
                self.network,
                addr,
                self._new_connection,
                Handshake(info_hash=self.info_hash, peer_id=self.peer_id, reserved=self._reserved),
                self.encryption,
                connect_timeout=CONNECT_TIMEOUT,
                handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except HandshakeRejected as exc:
            if exc.reason is RejectReason.SELF_CONNECTION:
                self.peers.self_connection(addr)
            else:
                self.peers.dial_failed(addr, trio.current_time())
            self._connect_wakeup.set()  # its slot is free, its backoff set
            return
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, RemoteProtocolError) as exc:
            self.peers.dial_failed(addr, trio.current_time())
            self._connect_wakeup.set()
            if isinstance(exc, HandshakeRefused) and self._only_given_peers():
                why = self.encryption.all_refused(self.peers)
                if why is not None:
                    self._fail(why)
            return
        self.peers.dial_succeeded(addr)
        await self._run_link(stream, conn, addr, hs, outgoing=True, encryption=kind)

    def _only_given_peers(self) -> bool:
        """We still want data and the addresses we were given (``--peer``, a magnet's
        ``x.pe``) are our only hope: no discovery source, link or web seed, and no address
        learnt otherwise (PEX). Then a download that every peer refuses stops at once."""
        if self._discoveries or self.links or self.web_seeds or self.picker.is_finished():
            return False
        return all(source in ("api", "magnet") for source in self.peers.sources().values())

    def _new_connection(self) -> PeerConnection:
        return PeerConnection(
            initiator=True,
            info_hash=self.info_hash,
            our_peer_id=self.peer_id,
            geometry=self.geometry,
        )

    async def accept(
        self,
        stream: trio.abc.Stream,
        conn: PeerConnection,
        addr: PeerAddr,
        hs: Handshake,
        *,
        encryption: Kind = "none",
    ) -> None:
        """A peer dialled us and sent a handshake for this torrent (the session checked it).
        The link runs in this torrent's nursery, like the ones we dial: stopping or pausing
        the torrent ends it; the session's accept task returns at once."""
        nursery = self._nursery
        if nursery is None or len(self.links) >= self.options.max_peers or self.failed.is_set():
            await close_quietly(stream)
            return
        nursery.start_soon(self._accepted, stream, conn, addr, hs, encryption)

    async def _accepted(
        self,
        stream: trio.abc.Stream,
        conn: PeerConnection,
        addr: PeerAddr,
        hs: Handshake,
        encryption: Kind,
    ) -> None:
        conn.set_geometry(self.geometry)
        try:
            await stream.send_all(
                conn.send(
                    Handshake(
                        info_hash=self.info_hash, peer_id=self.peer_id, reserved=self._reserved
                    )
                )
            )
        except (trio.BrokenResourceError, OSError):
            await close_quietly(stream)
            return
        await self._run_link(stream, conn, addr, hs, outgoing=False, encryption=encryption)

    async def _run_link(
        self,
        stream: trio.abc.Stream,
        conn: PeerConnection,
        addr: PeerAddr,
        hs: Handshake,
        *,
        outgoing: bool,
        encryption: Kind = "none",
    ) -> None:
        now = trio.current_time()
        link = PeerLink(self, stream, conn, addr, outgoing=outgoing, now=now)
        link.set_peer_id(hs.peer_id)
        link.prefers_encryption = encryption != "none"  # its handshake was MSE: PEX flag 0x01
        if self.peers.is_banned(link.key, hs.peer_id):
            await close_quietly(stream)
            return
        for other in self.links:
            if other.peer_id == hs.peer_id:
                # Both sides dialled each other at once. Both keep the same connection: the
                # one dialled by the smaller peer id (else each might keep a different one
                # and close the other's, leaving none).
                if not keep_new_connection(
                    self.peer_id, (other.outgoing, other.peer_id), (link.outgoing, link.peer_id)
                ):
                    await close_quietly(stream)
                    return
                other.close("duplicate connection")
                break
        self.links[link] = None
        if len(self.links) == 1:
            self._became_active()
        self.emit(PeerConnected, peer=str(addr), client=link.client, encryption=encryption)
        # Our opening: extension handshake, then what we have.
        if supports_extension_protocol(hs.reserved) and conn.extension_protocol:
            m = {UT_METADATA: OUR_UT_METADATA_ID}
            if not self.info.private:
                m[UT_PEX] = OUR_UT_PEX_ID
            link.send(
                ExtendedHandshake(
                    m=m,
                    v=CLIENT_VERSION,
                    reqq=conn.max_pending_requests,
                    p=self.listen_port or None,
                    metadata_size=len(self.info.raw),
                )
            )
        if self.dht is not None and supports_dht(hs.reserved):
            link.send(Port(port=self.dht.port))
        self._send_have_set(link)
        try:
            await link.run()
        finally:
            self._link_gone(link)

    def _send_have_set(self, link: PeerLink) -> None:
        """Our bitfield; to a fast peer (BEP 6) HAVE ALL / HAVE NONE where they fit, always
        one of the three, then our allowed-fast set (k = 10) if we have pieces to give."""
        conn, picker = link.conn, self.picker
        fast = conn.fast
        if fast and picker.num_have == self.info.num_pieces:
            self._send_fast(link, HaveAll())
        elif fast and not picker.num_have:
            self._send_fast(link, HaveNone())
        elif picker.num_have:
            link.send(Bitfield(bitfield=picker.have_bitfield()))
        if fast and picker.num_have:
            for index in allowed_fast_set(link.addr.host, self.info_hash, self.info.num_pieces):
                self._send_fast(link, AllowedFast(index=index))

    def _send_fast(
        self, link: PeerLink, event: HaveAll | HaveNone | AllowedFast | SuggestPiece | RejectRequest
    ) -> None:
        link.send(event)
        self._emit_fast(link, event, "ours")

    def _emit_fast(
        self, link: PeerLink, event: Event, direction: Literal["ours", "theirs"]
    ) -> None:
        count = self._fast_events.get(link, 0)
        if count >= MAX_FAST_EVENTS:
            return  # (a peer's rejects or suggestions must not flood the event stream)
        self._fast_events[link] = count + 1
        name = _FAST_NAMES[type(event)]
        index = getattr(event, "index", None)
        self.emit(FastMessage, peer=str(link.addr), direction=direction, message=name, index=index)

    def _link_gone(self, link: PeerLink) -> None:
        for table in (
            self._pex_out,
            self._pex_in,
            self._suggested_in,
            self._suggested_out,
            self._fast_choked_at,
            self._dht_ports,
            self._fast_refused,
            self._reject_pause,
            self._fast_events,
        ):
            table.pop(link, None)
        if link in self.links:
            del self.links[link]
            if not self.links and not self.web_seeds:
                self._became_idle()
        self._account_unchoke(link, trio.current_time())
        # Its outstanding requests go back to the picker; blocks it already sent stay in
        # their assemblies (trust needs to know who sent them when the piece is checked).
        if self.picker.remove_peer(link) or self._rerequest_pending is link:
            self._rerequest(link, trio.current_time())
        self.emit(
            PeerDisconnected,
            peer=str(link.addr),
            reason=link.close_reason,
            client=link.client,
            downloaded=link.downloaded,
            uploaded=link.uploaded,
            unchoked_seconds=round(self.unchoke_totals.get(link.peer_id, [0.0])[0], 3),
        )
        # Not straight back to a peer that just left (libtorrent: 60 s) -- unless we parted
        # as both done and want more since (file priorities changed).
        if link.close_reason != PARTING or self.picker.is_finished():
            self.peers.connection_ended(link.key, trio.current_time())
        self._connect_wakeup.set()
        if self.choker.is_unchoked(link):
            self._fill_slots(trio.current_time())  # its slot goes to a waiting peer at once

    # ------------------------------------------------------------------ events from peers

    def on_event(self, link: PeerLink, event: Event, now: float) -> None:
        kind = type(event)
        if kind is Piece:
            assert isinstance(event, Piece)
            self._on_piece(link, event, now)
        elif kind is Request:
            assert isinstance(event, Request)
            if self.picker.have(event.index) and (
                not link.conn.am_choking or self._give_fast(link, event.index)
            ):
                link.queue_upload(event)
            elif link.conn.fast:  # BEP 6: every request is answered, a piece we lack too
                self._send_fast(
                    link,
                    RejectRequest(index=event.index, begin=event.begin, length=event.length),
                )
            else:
                link.conn.drop_peer_request(event.index, event.begin, event.length)
        elif kind is Have:
            assert isinstance(event, Have)
            self.picker.peer_have(link, event.index)
            self._update_interest(link)
            # Its slot frees when it finished the pieces it kept it for past its seed turn,
            # or when this HAVE completes it (a seed wants nothing from us).
            if (
                self.choker.finishing(link)
                and self.choker.peer_has(link, event.index, self._partial_pieces(link))
            ) or (self.choker.is_unchoked(link) and self.picker.peer_is_seed(link)):
                self._fill_slots(now)
            self._close_if_both_done(link)
        elif kind is Bitfield:
            assert isinstance(event, Bitfield)
            self.picker.peer_bitfield(link, event.bitfield)
            self._update_interest(link)
            self._close_if_both_done(link)
        elif kind is Unchoke:
            link.unchoked_us_at = now
            link.last_block = now
            self._fast_choked_at.pop(link, None)
            self._fast_refused.pop(link, None)
        elif kind is Choke:
            link.unchoked_us_at = None
            if link.conn.fast:
                # BEP 6: our requests stand; the peer serves or rejects each one.
                self._fast_choked_at[link] = now
            elif self.picker.release_requests(link):
                self._rerequest(link, now)
        elif kind is Interested:
            self.emit(InterestedEvent, peer=str(link.addr), direction="theirs")
            self._maybe_unchoke_now(link, now)
        elif kind is NotInterested:
            self.emit(NotInterestedEvent, peer=str(link.addr), direction="theirs")
            if self.choker.is_unchoked(link):
                self._fill_slots(now)  # its slot goes to a waiting peer at once
        elif kind is ExtendedHandshake:
            assert isinstance(event, ExtendedHandshake)
            if event.p is not None and not link.outgoing:
                link.listen_port = event.p
            if event.yourip is not None and len(self._own_hosts) < 16:
                self._own_hosts.add(str(ipaddress.ip_address(event.yourip)))
        elif kind is Extended:
            assert isinstance(event, Extended)
            self._on_extension(link, event)
        elif kind is Port:
            assert isinstance(event, Port)
            if self.dht is not None and event.port and link not in self._dht_ports:
                self._dht_ports[link] = event.port
                self.dht.add_node(PeerAddr(link.addr.host, event.port))
        elif kind is InvalidRequest:
            # The connection counts these and errors out past its limit. BEP 6: a fast peer
            # hears "no" (a duplicate's first copy is still queued and will be answered).
            assert isinstance(event, InvalidRequest)
            if link.conn.fast and event.problem is not RequestProblem.DUPLICATE:
                self._send_fast(
                    link,
                    RejectRequest(index=event.index, begin=event.begin, length=event.length),
                )
        elif kind in _FAST_EVENTS:
            self._on_fast(link, event, now)
        elif kind is Handshake:
            raise RemoteProtocolError("second handshake")

    def _on_fast(self, link: PeerLink, event: Event, now: float) -> None:
        """A BEP 6 message from a fast peer (the connection checked it)."""
        if not isinstance(event, SuggestPiece):
            self._emit_fast(link, event, "theirs")
        if isinstance(event, HaveAll | HaveNone):
            if isinstance(event, HaveAll):
                self.picker.peer_have_all(link)
            else:
                self.picker.peer_have_none(link)
            self._update_interest(link)
            self._close_if_both_done(link)
        elif isinstance(event, RejectRequest):
            # Asked elsewhere at once; not of this peer again for a while, or the two of us
            # would loop: an allowed-fast piece it refused while choking us not until it
            # unchokes us, anything else not for REJECT_PAUSE.
            if link.conn.peer_choking:
                self._fast_refused.setdefault(link, set()).add(event.index)
            else:
                self._reject_pause[link] = now + REJECT_PAUSE
            if self.picker.request_released(link, event.index, event.begin):
                # A peer that chokes us rejects every request it held, in one burst: the
                # others are asked once for the lot (after_receive), not once per REJECT.
                self._rerequest_pending = link
        elif isinstance(event, AllowedFast):
            if link.conn.peer_choking:
                self.fill_requests(link, now)
        elif isinstance(event, SuggestPiece):
            hints = self._suggested_in.setdefault(link, deque(maxlen=MAX_SUGGESTS_KEPT))
            if event.index not in hints and not self.picker.have(event.index):
                hints.append(event.index)
                self._emit_fast(link, event, "theirs")

    def _give_fast(self, link: PeerLink, index: int) -> bool:
        """A choked peer asks for a piece of its allowed-fast set: serve it? Only to a
        starting peer (fewer than k pieces, the BEP's own rule), only while no connected peer
        has the piece, and to one choked peer at a time. Peers on one /24 share one set, so
        without the last two rules a seed would upload the same ten pieces once per choked
        peer instead of new pieces (docs/design.md)."""
        giver = self._fast_given.get(index)
        if (
            link.conn.peer_have_count < ALLOWED_FAST_K
            and self.picker.availability(index) == 0
            and (giver is None or giver is link or giver not in self.links)
        ):
            self._fast_given[index] = link
            return True
        return False

    def _suggest_cached(self, index: int) -> None:
        """Seeding, piece ``index`` was just read into the upload cache: suggest it (BEP 6)
        to fast peers that lack it and want data, so they fetch what is cheap for us -- only
        while it is among the rarest pieces and every piece has a copy besides ours (else
        every peer would chase the same piece, and a seed's upload would go to duplicates
        instead of new pieces; docs/design.md)."""
        picker = self.picker
        if not picker.is_finished():
            return
        least = picker.min_availability()
        if least == 0 or picker.availability(index) > least:
            return
        for link in self.links:
            conn = link.conn
            if not conn.fast or not conn.peer_interested or conn.peer_has(index):
                continue
            sent = self._suggested_out.setdefault(link, set())
            if index in sent or len(sent) >= MAX_SUGGESTS_SENT:
                continue
            sent.add(index)
            self._send_fast(link, SuggestPiece(index=index))

    # ------------------------------------------------------------------ peer exchange

    def _on_pex(self, link: PeerLink, payload: bytes, now: float) -> None:
        """A peer's PEX message (engine/pex.py): the believable new addresses go into the
        peer book under the source ``pex``, within the caps."""
        msg = pex_wire.parse(payload)
        state = self._pex_in.setdefault(link, PexIn())
        addrs, ignored = state.receive(now, msg, sender=link.key, is_self=self._is_own_address)
        added = self.peers.add(addrs, "pex", now, limit=MAX_FROM_PEX)
        ignored += len(addrs) - added
        self.emit(PexReceived, peer=str(link.addr), added=added, ignored=ignored)
        if added:
            self._connect_wakeup.set()

    def _is_own_address(self, addr: PeerAddr) -> bool:
        if self.peers.is_self(addr):
            return True
        if addr.port != self.listen_port:
            return False
        host = addr.host
        return host in self._own_hosts or host in ("127.0.0.1", "::1", "0.0.0.0", "::")

    def _pex_tick(self, now: float) -> None:
        """Send each ut_pex peer what changed in our peer set, at most once a minute."""
        if self.info.private:
            return
        current: dict[PeerAddr, int] | None = None
        for link in self.links:
            ext_id = link.conn.peer_extension_id(UT_PEX) if link.conn.extension_protocol else None
            if ext_id is None:
                continue
            out = self._pex_out.setdefault(link, PexOut())
            if not out.due(now):
                continue
            if current is None:
                current = self._pex_peers()
            mine = dict(current)
            mine.pop(link.key, None)
            payload = out.message(now, mine)
            if payload is not None:
                link.send(Extended(ext_id=ext_id, payload=payload))

    def _pex_peers(self) -> dict[PeerAddr, int]:
        """Our connected peers that others could dial (we dialled them, or they told us
        their listen port), with their PEX flags."""
        out: dict[PeerAddr, int] = {}
        for link in self.links:
            if link.conn.peer_handshake is None or not (
                link.outgoing or link.listen_port is not None
            ):
                continue
            out[link.key] = flags_for(
                seed=self.picker.peer_is_seed(link),
                reachable=link.outgoing,
                encryption=link.prefers_encryption,
            )
        return out

    def _on_extension(self, link: PeerLink, event: Extended) -> None:
        name = link.conn.extension_name(event.ext_id)
        if name == UT_PEX and not self.info.private:
            self._on_pex(link, event.payload, trio.current_time())
            return
        if name != UT_METADATA:
            return  # an extension we offered no id for: ignore
        from torrentkit.wire import metadata

        msg = metadata.parse(event.payload)
        if isinstance(msg, metadata.MetadataRequest):
            reply_id = link.conn.peer_extension_id(UT_METADATA)
            if reply_id is not None:
                answer = metadata.serve(self.info.raw, msg)
                link.send(Extended(ext_id=reply_id, payload=metadata.encode(answer)))

    #: Verifies and writes complete pieces; started in the nursery by the first one.
    _piece_writer: PieceWriter[Assembly[SenderKey]] | None = None

    @property
    def receive_gate(self) -> trio.Event:
        """Set while the piece writer's backlog leaves room (``PieceWriter.room``): the peer
        readers wait on it before each receive, so a stalled disk stops the download
        instead of piling pieces up in memory."""
        writer = self._piece_writer
        return _OPEN_GATE if writer is None else writer.room

    def _on_piece(self, link: PeerLink, event: Piece, now: float) -> None:
        self.on_blocks(link, ((event.index, event.begin, event.data),), now)

    def on_blocks(
        self, link: PeerLink, blocks: Sequence[tuple[int, int, bytes | memoryview]], now: float
    ) -> None:
        """PIECE messages from one receive (``PeerConnection.next_blocks``): the picker takes
        them in one call (``Picker.blocks_received``), the accepted ones go straight into
        their pieces' buffers, and the link's counters and rates are updated once for the
        batch, not per block."""
        total = self._accept_blocks(link, link.key, blocks)
        link.downloaded += total
        link.down.add(now, total)
        link.short_down.add(now, total)
        link.last_block = now

    def _accept_blocks(
        self,
        peer: PeerLink | WebSeedLink,
        key: SenderKey,
        blocks: Sequence[tuple[int, int, bytes | memoryview]],
    ) -> int:
        """Blocks from a peer or a web seed into the picker and the assemblies (the CANCELs
        the endgame calls for sent, complete pieces handed to the writer, refused bytes
        counted as redundant); returns the bytes in ``blocks``."""
        got = self.picker.blocks_received(peer, blocks)
        for other, index, begin, size in got.cancels:
            if isinstance(other, PeerLink) and other.conn.is_outstanding(index, begin, size):
                other.send(Cancel(index=index, begin=begin, length=size))
        self.assemblies.add_blocks(blocks, got.accepted, key)
        self._submit_pieces(got.complete)
        total = sum([len(b[2]) for b in blocks])
        if not all(got.accepted):
            self.redundant += total - sum(
                [len(b[2]) for b in itertools.compress(blocks, got.accepted)]
            )
        return total

    def _submit_pieces(self, indices: Sequence[int]) -> None:
        """Hand the pieces the picker completed to the piece writer (verify and write)."""
        assemblies = self.assemblies
        for index in indices:
            if assemblies.is_complete(index):
                writer = self._piece_writer
                if writer is None or writer.closed:
                    assert self._nursery is not None
                    writer = self._piece_writer = PieceWriter(self.storage, self._finish_piece)
                    self._nursery.start_soon(writer.run)
                writer.submit(assemblies.take(index))

    async def _finish_piece(self, assembly: Assembly[SenderKey], outcome: Outcome) -> None:
        """The piece writer verified and wrote ``assembly`` (or failed to): its buffer is
        free again once this is done."""
        index = assembly.index
        if isinstance(outcome, StorageError):
            self.picker.piece_failed(index)
            self.assemblies.recycle(assembly)
            self._fail(str(outcome))
            return
        if outcome:
            self.picker.piece_passed(index)
            self.downloaded += len(assembly.data)
            banned = assembly.passed(self.trust)
            self.emit(PieceVerified, index=index)
            have = Have(index=index)
            for link in list(self.links):
                if link.conn.our_handshake is not None:
                    link.send(have)
                    if link.conn.am_interested and not self.picker.is_interesting(link):
                        link.send(NotInterested())
                        self.emit(NotInterestedEvent, peer=str(link.addr), direction="ours")
            if self.picker.is_finished() and not self.complete.is_set():
                await self._finish_download()
        else:
            self.picker.piece_failed(index)
            senders = assembly.contributors()
            banned = assembly.failed(self.trust)
            self.emit(HashFailed, index=index, peers=tuple(sorted(str(k) for k in senders)))
            # A web seed that alone sent a piece failing its hash is dropped for good
            # (BEP 19); one that shares the piece with peers is judged by trust like them.
            # (A sender that is no PeerAddr is a WebSeedKey: see SenderKey.)
            if len(senders) == 1 and not isinstance(key := next(iter(senders)), PeerAddr):
                banned.add(key)
            self._web_work.set()
        self.assemblies.recycle(assembly)  # its buffer receives a later piece
        if self.picker.is_finished():
            self.assemblies.drop_spares()  # nothing more to receive
        for key in banned:
            self._ban(key, "sent corrupt data")
        now = trio.current_time()
        for link in list(self.links):
            self.fill_requests(link, now)

    def _ban(self, key: SenderKey, reason: str) -> None:
        if not isinstance(key, PeerAddr):  # a WebSeedKey
            self._drop_web_seed(key, reason)
            return
        self.peers.ban(key)
        for link in list(self.links):
            if link.key == key:
                self.peers.ban(key, link.peer_id)
                self.emit(PeerBanned, peer=str(link.addr), reason=reason)
                link.close("banned: " + reason)

    async def _finish_download(self, *, at_start: bool = False) -> None:
        """Every wanted piece is verified. ``at_start``: it was so when the torrent started
        (a seed), so trackers hear no ``completed`` (BEP 3: not sent "if the file was
        complete when started")."""
        try:
            await self._create_empty_files()
        except StorageError as exc:
            self._fail(str(exc))
            return
        if not self.complete.is_set():
            self._mark_complete(trio.current_time(), at_start=at_start)

    async def _create_empty_files(self) -> None:
        """Zero-length files hold no piece, so no write creates them: make the wanted ones
        before the download counts as complete."""
        prios = self.options.file_priorities
        empty = [
            i
            for i, f in enumerate(self.info.files)
            if f.length == 0 and not f.pad and (prios is None or prios[i] > 0)
        ]
        if empty:
            await self.storage.allocate(empty)

    def _mark_complete(self, now: float, *, at_start: bool = False) -> None:
        self.completed_at = now
        self.complete.set()
        self._web_work.set()  # web seeds leave
        self.emit(TorrentCompleted, seconds=round(now - self.started_at, 3))
        if not at_start:
            for source in self._discoveries:
                source.completed()
        for link in list(self.links):
            self._close_if_both_done(link)
        self._fill_slots(now)  # seeding now: snubbed peers may hold slots, seeds leave

    def _close_if_both_done(self, link: PeerLink) -> None:
        """Two peers that each want nothing from the other part (libtorrent closes such
        redundant connections too), and we do not dial that seed again while we are done."""
        if self.picker.is_finished() and self.picker.peer_is_seed(link):
            if link.outgoing or link.listen_port is not None:  # an address we could dial
                self.peers.parted(link.key)
            link.close_when_sent(PARTING)

    def _update_interest(self, link: PeerLink) -> None:
        interesting = self.picker.is_interesting(link)
        if interesting and not link.conn.am_interested:
            link.send(Interested())
            self.emit(InterestedEvent, peer=str(link.addr), direction="ours")
        elif not interesting and link.conn.am_interested:
            link.send(NotInterested())
            self.emit(NotInterestedEvent, peer=str(link.addr), direction="ours")

    def after_receive(self, link: PeerLink, now: float) -> None:
        """The events of one receive from ``link`` were handled: if its REJECTs released
        requests, ask the other peers for them now (one round for the whole burst)."""
        if self._rerequest_pending is link:
            self._rerequest(link, now)

    def _rerequest(self, gone: PeerLink, now: float) -> None:
        """``gone`` gave its requests back (it choked us or left): ask the peers that unchoke
        us for those blocks now. A peer with nothing outstanding (everything else was asked
        of others) would otherwise sit idle until the next tick, up to a second: at the end of
        a swarm, when the leechers that held the last blocks complete and leave at once, that
        second was most of the tail."""
        self._rerequest_pending = None
        for link in list(self.links):
            if link is not gone and link.conn.am_interested:  # (fill_requests' first test)
                self.fill_requests(link, now)
        self._web_work.set()

    def fill_requests(self, link: PeerLink, now: float) -> None:
        conn = link.conn
        if not conn.am_interested:
            return
        if conn.peer_choking:
            # BEP 6: a peer that chokes us still serves its allowed-fast pieces. (Called for
            # every link whenever requests are released: the cheapest tests first.)
            outstanding = conn.outstanding_requests
            if outstanding < 4 and conn.fast:
                allowed = conn.allowed_fast_in
                if allowed:
                    pieces = sorted(allowed - self._fast_refused.get(link, set()))
                    link.send_requests(self.picker.pick_blocks_in(link, 4 - outstanding, pieces))
            return
        if self._reject_pause and self._reject_pause.get(link, 0.0) > now:
            return
        # A snubbed peer keeps one request, so that a block can still clear its name.
        depth = 1 if link.snubbed else link.request_depth(now)
        room = depth - conn.outstanding_requests
        if room <= 0:
            return
        hints = self._suggested_in.get(link)
        if hints:  # BEP 6 suggestions first (pieces that are cheap for the peer to send)
            blocks = self.picker.pick_blocks_in(link, room, hints)
            if len(blocks) < room:
                blocks += self.picker.pick_blocks(link, room - len(blocks))
            link.send_requests(blocks)
            return
        link.send_requests(self.picker.pick_blocks(link, room))

    # ------------------------------------------------------------------ uploads

    async def read_block(self, index: int, begin: int, length: int) -> memoryview:
        """A view into the cached piece (never changed once read, so the view stays valid
        after the piece leaves the cache): the block is copied once, into the socket."""
        piece = self.upload_cache.get(index)
        if piece is None:
            piece = await self.storage.read_piece(index)
            self.upload_cache.put(index, piece)
            self._suggest_cached(index)
        return memoryview(piece)[begin : begin + length]

    def cached_block(self, index: int, begin: int, length: int) -> memoryview | None:
        """:meth:`read_block` for a piece in the upload cache (no coroutine); else None."""
        piece = self.upload_cache.get(index)
        if piece is None:
            return None
        return memoryview(piece)[begin : begin + length]

    def count_upload(self, nbytes: int) -> None:
        self.uploaded += nbytes

    # ------------------------------------------------------------------ choking

    def _peer_stats(
        self, link: PeerLink, now: float, *, mid_piece: bool = False
    ) -> PeerStats[PeerLink]:
        """A complete peer counts as not interested (it wants nothing, whatever its flag
        says until its NOT_INTERESTED arrives). ``mid_piece``: fill in the pieces it is in
        the middle of (the choker's mid-piece rule, for the peers we unchoke while seeding)."""
        conn = link.conn
        return PeerStats(
            peer=link,
            connected_at=link.connected_at,
            interested=conn.peer_interested and not self.picker.peer_is_seed(link),
            am_interested=conn.am_interested,
            download_rate=link.down.rate(now),
            upload_rate=link.up.rate(now),
            unchoked_us_at=link.unchoked_us_at,
            last_block_at=link.last_block,
            uploaded=link.uploaded,
            partial_pieces=self._partial_pieces(link) if mid_piece else frozenset(),
        )

    def _partial_pieces(self, link: PeerLink) -> frozenset[int]:
        """Pieces ``link`` has requests pending with us for, but not for all of the piece:
        it is in the middle of them (part sent already, or the rest asked of others)."""
        conn = link.conn
        if not conn.pending_peer_requests:
            return frozenset()
        pending: dict[int, int] = {}
        for r in conn.peer_requests():
            pending[r.index] = pending.get(r.index, 0) + r.length
        size = self.info.piece_size
        return frozenset(i for i, n in pending.items() if n < size(i))

    def _maybe_unchoke_now(self, link: PeerLink, now: float) -> None:
        """A peer became interested: if a slot is free, unchoke it at once rather than
        making it wait for the next rechoke (libtorrent does the same). Only the free slot
        is filled; the holders keep theirs."""
        if not self.choker.is_unchoked(link) and self.choker.has_free_slot():
            self._fill_slots(now)

    def next_rechoke(self, now: float) -> float:
        """The first rechoke time after ``now`` on this torrent's grid (its start + k x
        ``rechoke_interval``); times that passed while it had no links are skipped (a
        rechoke without links does nothing). The tick wheel asks when the torrent activates."""
        due = self._next_rechoke
        if due <= now:
            interval = self.options.rechoke_interval
            due += (math.floor((now - due) / interval) + 1) * interval
            self._next_rechoke = due
        return due

    def rechoke_tick(self, now: float) -> float:
        """Rechoke (the wheel calls this every ``rechoke_interval`` while there are links);
        returns when the next one is due."""
        self._rechoke(now)
        return self.next_rechoke(now)

    def _rechoke(self, now: float) -> None:
        ready = [link for link in self.links if link.conn.our_handshake is not None]
        seeding = self.picker.is_finished()
        choker = self.choker
        peers = [
            self._peer_stats(link, now, mid_piece=seeding and choker.is_unchoked(link))
            for link in ready
        ]
        result = choker.rechoke(now, peers, seeding=seeding)
        # Close every open unchoke interval under the reason it had, so the totals split
        # regular and optimistic time exactly.
        for link in ready:
            if link.unchoked_at is not None:
                self._account_unchoke(link, now)
                link.unchoked_at = now
        self._apply_choking(result, now)
        for link in ready:
            reason = result.unchoked.get(link)
            link.optimistic = reason == "optimistic"

    def _fill_slots(self, now: float) -> None:
        """A slot may be free (a holder left, lost interest, completed, finished its
        mid-piece grace; or a peer became interested): give it to a waiting peer now, every
        other holder untouched (Choker.fill)."""
        ready = [link for link in self.links if link.conn.our_handshake is not None]
        peers = [self._peer_stats(link, now) for link in ready]
        result = self.choker.fill(now, peers, seeding=self.picker.is_finished())
        self._apply_choking(result, now)

    def _apply_choking(self, result: RechokeResult[PeerLink], now: float) -> None:
        """Send the choker's CHOKE / UNCHOKE messages; unchoked time is accounted per link
        under the reason it had (``link.optimistic``)."""
        for peer in result.optimistic:
            self.emit(OptimisticUnchoke, peer=str(peer.addr))
        for decision in result.decisions:
            link = decision.peer
            if link not in self.links:
                continue
            if decision.choke:
                self._account_unchoke(link, now)
                link.send(Choke())
                link.optimistic = False
                self.emit(Choked, peer=str(link.addr), reason=decision.reason)
            else:
                link.send(Unchoke())
                link.unchoked_at = now
                link.optimistic = decision.reason == "optimistic"
                self.emit(Unchoked, peer=str(link.addr), reason=decision.reason)

    def _account_unchoke(self, link: PeerLink, now: float) -> None:
        if link.unchoked_at is not None:
            spent = now - link.unchoked_at
            link.unchoked_time += spent
            totals = self.unchoke_totals.setdefault(link.peer_id, [0.0, 0.0])
            totals[0] += spent
            if link.optimistic:
                link.optimistic_time += spent
                totals[1] += spent
            link.unchoked_at = None

    def unchoked_seconds(self, now: float) -> dict[bytes, tuple[float, float]]:
        """Per peer id: (seconds we kept it unchoked, of which optimistic), up to ``now``,
        over every connection to it."""
        out = {pid: (t[0], t[1]) for pid, t in self.unchoke_totals.items()}
        for link in self.links:
            if link.unchoked_at is not None:
                spent = now - link.unchoked_at
                total, opt = out.get(link.peer_id, (0.0, 0.0))
                out[link.peer_id] = (total + spent, opt + (spent if link.optimistic else 0.0))
        return out

    # ------------------------------------------------------------------ timers

    def _became_active(self) -> None:
        self.idle_since = None
        self._active.set()
        self._ticker.activate(self)

    def _became_idle(self) -> None:
        self.idle_since = trio.current_time()
        self._active = trio.Event()
        self._ticker.deactivate(self)

    async def wait_active(self) -> None:
        """Until the torrent has a link (at once if it has one)."""
        await self._active.wait()

    def tick(self, now: float) -> None:
        """The per-second round over the links (the tick wheel calls it while there are
        links): silence, keep-alives, snubbing, request refills."""
        paused = not self.receive_gate.is_set()
        for link in list(self.links):
            if paused:
                # Our readers wait for the disk (backpressure): that time is neither the
                # peer's silence nor its snubbing, so its clocks do not run meanwhile.
                link.last_receive = max(link.last_receive, now - 1.0)
                link.last_block = max(link.last_block, now - 1.0)
            if now - link.last_receive > SILENCE_LIMIT:
                link.close("silent for 120 s")
                continue
            link.send_keepalive_if_idle(now, KEEPALIVE_INTERVAL)
            snubbed = self._snubbed(link, now)
            if snubbed and not link.snubbed:
                link.snubbed = True
                for block in self.picker.requests_of(link):
                    self.picker.request_released(link, block.piece, block.begin)
                    if link.conn.is_outstanding(block.piece, block.begin, block.length):
                        link.send(Cancel(index=block.piece, begin=block.begin, length=block.length))
                self.emit(Snubbed, peer=str(link.addr))
            elif link.snubbed and not snubbed:
                link.snubbed = False
            choked_at = self._fast_choked_at.get(link)
            if choked_at is not None and now - choked_at >= FAST_CHOKE_GRACE:
                del self._fast_choked_at[link]
                self._withdraw_unanswered(link, now)
            self.fill_requests(link, now)
        self._pex_tick(now)

    def _withdraw_unanswered(self, link: PeerLink, now: float) -> None:
        """A fast peer choked us and left requests unanswered past the grace: cancel them
        (a late block or reject is still accepted) and ask others."""
        allowed = link.conn.allowed_fast_in
        released = False
        for block in self.picker.requests_of(link):
            if block.piece in allowed:
                continue
            released |= self.picker.request_released(link, block.piece, block.begin)
            if link.conn.is_outstanding(block.piece, block.begin, block.length):
                link.send(Cancel(index=block.piece, begin=block.begin, length=block.length))
        if released:
            self._rerequest(link, now)

    @staticmethod
    def _snubbed(link: PeerLink, now: float) -> bool:
        """It unchokes us, we want its data and asked for some, yet no block came for 60 s
        (the choker's rule, checked here without building its inputs)."""
        if link.unchoked_us_at is None or not link.conn.am_interested:
            return False
        since = max(link.unchoked_us_at, link.last_block)
        return now - since >= SNUB_TIMEOUT and (link.snubbed or link.conn.outstanding_requests > 0)

    # ------------------------------------------------------------------ web seeds (BEP 19)

    def add_web_seeds(self, urls: Sequence[str], http: httpx.AsyncClient) -> None:
        """Fetch from these ``url-list`` URLs too (``http``/``https`` ones; others are
        ignored, as BEP 19 allows). Each runs as a :class:`WebSeedLink` in our nursery
        while pieces are wanted: it leaves once the download is complete (as libtorrent's
        do) and comes back if more is wanted (file priorities)."""
        from torrentkit.engine.webseed import usable_url

        self._web_http = http
        for url in urls:
            if url not in self._web_urls and usable_url(url):
                self._web_urls.append(url)
        self._start_web_seeds()

    def _start_web_seeds(self) -> None:
        nursery, http = self._nursery, self._web_http
        if nursery is None or http is None or self.picker.is_finished():
            return
        from torrentkit.engine.webseed_link import WebSeedLink

        running = {seed.url for seed in self.web_seeds}
        for url in self._web_urls:
            if url in running or url in self.dropped_web_seeds:
                continue
            seed = WebSeedLink(self, self.info, url, http, now=trio.current_time())
            self.web_seeds[seed] = None
            nursery.start_soon(self._run_web_seed, seed)

    async def _run_web_seed(self, seed: WebSeedLink) -> None:
        """One web seed's life; it counts as a link for the torrent's activity (the
        resume saver and the tick wheel wake for it)."""
        from torrentkit.engine.webseed_link import WEB_SEED_CLIENT

        self.picker.peer_have_all(seed)
        if self.idle_since is not None:
            self._became_active()
        self.emit(PeerConnected, peer=seed.url, client=WEB_SEED_CLIENT)
        try:
            with seed.scope:
                await seed.run()
        finally:
            self.web_seeds.pop(seed, None)
            if seed.fatal or seed.dropped:
                self.dropped_web_seeds.add(seed.url)
            released = self.picker.remove_peer(seed)
            self.emit(
                PeerDisconnected,
                peer=seed.url,
                reason=seed.close_reason,
                client=WEB_SEED_CLIENT,
                downloaded=seed.downloaded,
            )
            if not self.links and not self.web_seeds:
                self._became_idle()
            if released and self._nursery is not None:
                self._rerequest_all()

    def _rerequest_all(self) -> None:
        now = trio.current_time()
        for link in list(self.links):
            self.fill_requests(link, now)
        self._web_work.set()

    def _drop_web_seed(self, key: WebSeedKey, reason: str) -> None:
        for seed in list(self.web_seeds):
            if seed.key == key and not seed.dropped:
                self.emit(PeerBanned, peer=seed.url, reason=reason)
                seed.close("banned: " + reason)

    def pick_web_run(self, seed: WebSeedLink, max_pieces: int) -> list[tuple[int, int, int]] | None:
        if self.picker.is_finished():
            return None
        if self.failed.is_set():
            return []
        return self.picker.pick_run(seed, max_pieces)

    def on_web_blocks(
        self, seed: WebSeedLink, blocks: Sequence[tuple[int, int, bytes]], now: float
    ) -> None:
        """Blocks a web seed fetched: into the picker and the assemblies like a peer's."""
        self._accept_blocks(seed, seed.key, blocks)

    def release_web_requests(
        self, seed: WebSeedLink, blocks: Sequence[tuple[int, int, int]]
    ) -> None:
        released = False
        for piece, begin, _ in blocks:
            released |= self.picker.request_released(seed, piece, begin)
        if released:
            self._rerequest_all()

    async def wait_web_work(self) -> None:
        if self._web_work.is_set():
            self._web_work = trio.Event()  # a signal since the last wait: look again now
            return
        await self._web_work.wait()

    @staticmethod
    def _web_seed_snapshot(seed: WebSeedLink, now: float) -> PeerSnapshot:
        from torrentkit.engine.webseed_link import WEB_SEED_CLIENT

        return PeerSnapshot(
            addr=seed.url,
            client=WEB_SEED_CLIENT,
            outgoing=True,
            am_choking=True,
            am_interested=seed.fetching,
            peer_choking=False,
            peer_interested=False,
            optimistic=False,
            snubbed=False,
            down_rate=seed.down.rate(now),
            up_rate=0.0,
            downloaded=seed.downloaded,
            uploaded=0,
            progress=1.0,
            connected_for=now - seed.connected_at,
            unchoked_seconds=0.0,
        )
