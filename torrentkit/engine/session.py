"""The session: one listen socket and many torrents (docs/design.md layer 4).

A :class:`Session` owns the listener, every :class:`Torrent` and the global rate limits.
Incoming connections, plaintext or encrypted (MSE/PE, engine/encryption.py), are read up
to the peer's handshake (10 s at most for both handshakes), matched by
info-hash to a torrent, and handed to it. Everything runs in the nursery of
:meth:`Session.run`; cancelling it stops every torrent (their discovery sources send
``stopped`` on the way out).

One timer serves every torrent: the session's :class:`~torrentkit.engine.tick.TickWheel`
(its one task runs in :meth:`Session.run`) visits only the torrents that have peer links,
every second for their links' keep-alives, silence, snubs and request refills, and at each
one's rechoke times. Torrents without links cost nothing per second, so thousands of idle
seeding torrents leave the process asleep.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from torrentkit.engine.encryption import Encryption, ServedHashes, accept_incoming
from torrentkit.engine.ratelimit import RateLimiter
from torrentkit.engine.storage import PieceStorage
from torrentkit.engine.tick import TickWheel
from torrentkit.engine.torrent import (
    HANDSHAKE_TIMEOUT,
    DhtContact,
    EventSink,
    Torrent,
    TorrentOptions,
)
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Info
from torrentkit.net import Listener, Network, close_quietly
from torrentkit.wire.connection import PeerConnection
from torrentkit.wire.peer_id import generate_peer_id

#: Serves an incoming connection whose handshake was read (see Session.add_handler).
ConnectionHandler = Callable[[trio.abc.Stream, PeerConnection, PeerAddr], Awaitable[None]]


@dataclass(slots=True)
class SessionOptions:
    bind: str = "0.0.0.0"
    port: int = 0
    down_limit: float = 0.0
    up_limit: float = 0.0
    max_incoming_handshakes: int = 64
    #: MSE/PE for incoming connections: prefer (both kinds), require, disable.
    encryption: Encryption = "prefer"
    peer_id: bytes = field(default_factory=generate_peer_id)


class Session:
    def __init__(
        self,
        network: Network,
        options: SessionOptions | None = None,
        *,
        rng: random.Random | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.network = network
        self.options = options or SessionOptions()
        self.peer_id = self.options.peer_id
        self.rng = rng or random.Random()
        self.on_event = on_event
        self.torrents: dict[bytes, Torrent] = {}
        self.listener: Listener | None = None
        # Always present (rate 0 = unlimited), so a session-wide limit can be set at any time.
        self.down_limiter = RateLimiter(self.options.down_limit)
        self.up_limiter = RateLimiter(self.options.up_limit)
        self._nursery: trio.Nursery | None = None
        self._handshakes = trio.Semaphore(self.options.max_incoming_handshakes)
        self._handlers: dict[bytes, ConnectionHandler] = {}
        self._served = ServedHashes()
        #: drives every torrent of this session that has links (see the module docstring)
        self.ticker = TickWheel()
        #: the session's DHT node, for the PORT message (BEP 5); set before torrents are made
        self.dht: DhtContact | None = None

    @property
    def address(self) -> PeerAddr:
        assert self.listener is not None, "the session is not running"
        return self.listener.address

    async def run(
        self,
        *,
        listener: Listener | None = None,
        task_status: trio.TaskStatus[PeerAddr] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until cancelled. ``nursery.start(session.run)`` returns the
        address the session listens on. ``listener``: one already bound (the session closes
        it), e.g. from :func:`torrentkit.net.listen_tcp_and_udp`; else the options' port."""
        if listener is None:
            listener = await self.network.listen_tcp(self.options.bind, self.options.port)
        self.listener = listener
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._accept_loop, listener)
                nursery.start_soon(self.ticker.run)
                task_status.started(listener.address)
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()

    def new_torrent(
        self,
        info: Info,
        storage: PieceStorage,
        options: TorrentOptions | None = None,
        *,
        on_event: EventSink | None = None,
    ) -> Torrent:
        """A torrent bound to this session (peer id, listen port, session limits), not yet
        running nor reachable: :meth:`attach` it, then run it in a nursery of yours."""
        return Torrent(
            info,
            storage,
            network=self.network,
            peer_id=self.peer_id,
            listen_port=self.address.port,
            options=options,
            rng=random.Random(self.rng.random()),
            on_event=on_event if on_event is not None else self.on_event,
            session_limits=(self.down_limiter, self.up_limiter),
            ticker=self.ticker,
            dht=self.dht,
        )

    def attach(self, torrent: Torrent) -> None:
        """Hand incoming connections for the torrent's info-hash to it."""
        if torrent.info_hash in self.torrents:
            raise ValueError("torrent already added")
        torrent.peers.self_connection(self.address)
        self.torrents[torrent.info_hash] = torrent

    def detach(self, info_hash: bytes) -> None:
        """Stop handing incoming connections to that torrent (it stopped running)."""
        self.torrents.pop(info_hash, None)

    async def add_torrent(
        self,
        info: Info,
        storage: PieceStorage,
        options: TorrentOptions | None = None,
    ) -> Torrent:
        """Create a torrent and start it (after its recheck) in the session's nursery."""
        assert self._nursery is not None, "start Session.run first"
        torrent = self.new_torrent(info, storage, options)
        self.attach(torrent)
        await self._nursery.start(torrent.run)
        return torrent

    async def _accept_loop(self, listener: Listener) -> None:
        assert self._nursery is not None
        while True:
            stream, addr = await listener.accept()
            self._nursery.start_soon(self._incoming, stream, addr)

    async def _incoming(self, stream: trio.abc.Stream, addr: PeerAddr) -> None:
        if self._handshakes.value == 0:
            await close_quietly(stream)
            return
        async with self._handshakes:
            try:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    stream, conn, hs, kind = await accept_incoming(
                        stream,
                        policy=self.options.encryption,
                        find_skey=self._find_skey,
                        make_conn=self._incoming_connection,
                    )
            except (RemoteProtocolError, trio.TooSlowError, trio.BrokenResourceError, OSError):
                await close_quietly(stream)
                return
        handler = self._handlers.get(hs.info_hash)
        if handler is not None:
            await handler(stream, conn, addr)
            return
        torrent = self.torrents.get(hs.info_hash)
        if torrent is None:
            await close_quietly(stream)
            return
        await torrent.accept(stream, conn, addr, hs, encryption=kind)

    def _incoming_connection(self, info_hash: bytes | None) -> PeerConnection:
        """Reads an incoming handshake: for ``info_hash`` (named by an encrypted handshake)
        or for any torrent we serve."""
        return PeerConnection(
            initiator=False,
            info_hash=info_hash
            if info_hash is not None
            else lambda ih: ih in self.torrents or ih in self._handlers,
            our_peer_id=self.peer_id,
        )

    def _find_skey(self, req2: bytes) -> bytes | None:
        """The info-hash we serve whose HASH('req2', ...) an encrypted handshake names."""
        return self._served.find(req2, itertools.chain(self.torrents, self._handlers))

    def add_handler(self, info_hash: bytes, handler: ConnectionHandler) -> None:
        """Hand incoming connections for ``info_hash`` to ``handler`` (after the peer's
        handshake was read and checked) instead of to a torrent: e.g. the Gnutella overlay,
        whose links are peer-wire connections with one fixed overlay info-hash."""
        self._handlers[bytes(info_hash)] = handler
