"""The trio driver of a Gnutella / KaZaA overlay node: peer wire links around an OverlayNode.

    node = OverlayDriver(network, role=Role.PEER, holder=session.address, bootstrap=[addr])
    listen = await nursery.start(node.run)          # the overlay listen address
    node.publish([FileEntry(name=..., size=..., info_hash=...)])
    hits = await node.search("ubuntu iso", wait=3.0)   # list[SearchHit]

Every overlay link is a peer wire connection (:class:`PeerConnection`) that handshakes with
:data:`OVERLAY_INFO_HASH` and speaks the ``tk_overlay`` BEP 10 extension; the node logic is
the sans-IO :class:`OverlayNode`. Tasks, all in the nursery of :meth:`OverlayDriver.run`:
the accept loop, one task per link (a reader, plus a writer fed by a bounded outbox: a slow
neighbour drops messages instead of stalling the flood), one per dial, and two timers --
ping every ``ping_interval`` and neighbour refill every ``refill_interval`` (and at once when
a link closes). Cancelling ``run`` (or :meth:`OverlayDriver.stop`) closes every link.

A BitTorrent session that accepts connections for its torrents can hand over the ones that
handshook with the overlay info-hash: :meth:`OverlayDriver.accept`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from torrentkit.discovery.base import SearchHit
from torrentkit.discovery.gnutella import messages
from torrentkit.discovery.gnutella.messages import (
    EXTENSION_NAME,
    OVERLAY_INFO_HASH,
    FileEntry,
    Message,
    Role,
)
from torrentkit.discovery.gnutella.overlay import (
    Action,
    Close,
    Counters,
    Dial,
    Hit,
    HitsArrived,
    LinkId,
    Neighbour,
    OverlayConfig,
    OverlayNode,
    Send,
)
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.net import Listener, Network, close_quietly, read_handshake
from torrentkit.wire import codec
from torrentkit.wire.connection import (
    NEED_DATA,
    HandshakeRejected,
    PeerConnection,
    RejectReason,
)
from torrentkit.wire.events import Extended, ExtendedHandshake, Handshake, KeepAlive
from torrentkit.wire.peer_id import CLIENT_VERSION, generate_peer_id

log = logging.getLogger(__name__)

#: The id we ask neighbours to send overlay messages with (our side of BEP 10's ``m``).
OUR_EXTENSION_ID: Final = 1
#: Timeouts (s), as for torrent peers (docs/limits.md, Timeouts).
CONNECT_TIMEOUT: Final = 15.0
HANDSHAKE_TIMEOUT: Final = 10.0
KEEPALIVE_INTERVAL: Final = 90.0
SILENCE_LIMIT: Final = 120.0
#: Largest peer wire message on an overlay link: a 4 kB payload plus the two id bytes
#: (extended handshakes are small too).
MAX_LINK_MESSAGE: Final = messages.MAX_MESSAGE + 2
#: Messages queued per link before new ones are dropped.
OUTBOX: Final = 256
DEFAULT_WAIT: Final = 3.0
MAX_INCOMING_HANDSHAKES: Final = 32
#: How long a link the core closed may take to send what was queued before it.
FLUSH_TIMEOUT: Final = 5.0

_LINK_ERRORS = (
    RemoteProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    OSError,
)


@dataclass(slots=True)
class _LinkHandle:
    outbox: trio.MemorySendChannel[Message]
    scope: trio.CancelScope


class OverlayDriver:
    """One overlay node on a :class:`~torrentkit.net.Network`.

    ``role``: ``Role.PEER`` (Gnutella), ``Role.SUPERNODE`` or ``Role.LEAF`` (KaZaA).
    ``bind`` / ``port``: where to listen for overlay links (port 0: any free port).
    ``holder``: our BitTorrent listen address, given out in hits for our files (its host may be
    unspecified, ``0.0.0.0``: the first overlay hop fills in the address it sees us at).
    ``bootstrap``: overlay nodes to join through. ``config``: the node's tunables (its ``role``
    is replaced by ``role``). ``rng``: seeds message ids and neighbour choice.
    """

    def __init__(
        self,
        network: Network,
        *,
        role: Role = Role.PEER,
        bind: str = "0.0.0.0",
        port: int = 0,
        holder: PeerAddr | None = None,
        bootstrap: Sequence[PeerAddr] = (),
        peer_id: bytes | None = None,
        config: OverlayConfig | None = None,
        rng: random.Random | None = None,
        ping_interval: float = 30.0,
        refill_interval: float = 5.0,
    ) -> None:
        self.network = network
        self.bind = bind
        self.port = port
        self.rng = rng or random.Random()
        self.peer_id = peer_id or generate_peer_id(self.rng if rng is not None else None)
        self.config = dataclasses.replace(config or OverlayConfig(), role=role)
        self.core = OverlayNode(self.config, peer_id=self.peer_id, rng=self.rng, holder=holder)
        self.core.add_known(bootstrap)
        self.ping_interval = ping_interval
        self.refill_interval = refill_interval
        self._address: PeerAddr | None = None
        self._nursery: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None
        self._links: dict[LinkId, _LinkHandle] = {}
        self._refill_now = trio.Event()
        self._search_events: dict[bytes, trio.Event] = {}
        self._handshakes = trio.Semaphore(MAX_INCOMING_HANDSHAKES)

    # ------------------------------------------------------------------ public API

    @property
    def role(self) -> Role:
        return self.config.role

    @property
    def address(self) -> PeerAddr:
        """Where this node accepts overlay links (after :meth:`run` started)."""
        if self._address is None:
            raise RuntimeError("the overlay node is not running")
        return self._address

    @property
    def counters(self) -> Counters:
        """Messages sent / received per kind by this node, and drops per reason (live)."""
        return self.core.counters

    @property
    def holder(self) -> PeerAddr | None:
        return self.core.holder

    @holder.setter
    def holder(self, addr: PeerAddr | None) -> None:
        self.core.holder = addr

    def neighbours(self) -> list[Neighbour]:
        return self.core.neighbours()

    def add_bootstrap(self, addrs: Iterable[PeerAddr]) -> None:
        """More overlay nodes to join through (dialled by the next refill)."""
        self.core.add_known(addrs)
        self._refill_now.set()

    def publish(self, files: Iterable[FileEntry]) -> None:
        """Replace the files we answer queries for (a leaf re-uploads its list)."""
        self._apply(self.core.publish(trio.current_time(), files))

    async def search_hits(
        self,
        query: str,
        *,
        wait: float = DEFAULT_WAIT,
        ttl: int | None = None,
        stop_after: int | None = None,
    ) -> list[Hit]:
        """Flood ``query`` and collect hits for ``wait`` seconds (or until ``stop_after``
        hits); one :class:`Hit` per file per holder, with the overlay distance."""
        search, actions = self.core.start_search(trio.current_time(), query, ttl=ttl)
        self._search_events[search] = trio.Event()
        try:
            self._apply(actions)
            with trio.move_on_after(wait):
                while stop_after is None or len(self.core.results(search)) < stop_after:
                    await self._search_events[search].wait()
                    self._search_events[search] = trio.Event()
        finally:
            del self._search_events[search]
            hits = self.core.finish_search(search)
        return hits

    async def search(
        self,
        query: str,
        *,
        wait: float = DEFAULT_WAIT,
        ttl: int | None = None,
        stop_after: int | None = None,
    ) -> list[SearchHit]:
        """Like :meth:`search_hits`, grouped: one SearchHit per (info-hash, name, size) with
        every holder that answered, in order of arrival."""
        return group_hits(await self.search_hits(query, wait=wait, ttl=ttl, stop_after=stop_after))

    def stop(self) -> None:
        """Leave the overlay: cancel :meth:`run`."""
        if self._scope is not None:
            self._scope.cancel()

    async def run(
        self, *, task_status: trio.TaskStatus[PeerAddr] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, join and serve until cancelled. ``await nursery.start(node.run)`` returns
        the overlay listen address."""
        with trio.CancelScope() as scope:
            self._scope = scope
            listener = await self.network.listen_tcp(self.bind, self.port)
            try:
                self._address = listener.address
                self.core.listen_port = listener.address.port
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._accept_loop, listener)
                    nursery.start_soon(self._refill_loop)
                    nursery.start_soon(self._ping_loop)
                    task_status.started(listener.address)
                    await trio.sleep_forever()
            finally:
                self._nursery = None
                with trio.CancelScope(shield=True):
                    await listener.aclose()

    async def accept(self, stream: trio.abc.Stream, conn: PeerConnection, remote: PeerAddr) -> None:
        """Serve a connection whose peer handshake (with the overlay info-hash) was read
        elsewhere, e.g. by a BitTorrent session's listener; returns when the link ends."""
        # The session read the handshake with the peer wire's 1 MiB limit; from here on the
        # overlay's own (4 kB messages) applies, before anything more is buffered.
        conn.max_message_length = min(conn.max_message_length, MAX_LINK_MESSAGE)
        try:
            if conn.our_handshake is None:
                await stream.send_all(
                    conn.send(Handshake(info_hash=OVERLAY_INFO_HASH, peer_id=self.peer_id))
                )
        except _LINK_ERRORS:
            await close_quietly(stream)
            return
        await self._serve(stream, conn, remote, dialed=None)

    # ------------------------------------------------------------------ actions

    def _apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                handle = self._links.get(action.link)
                if handle is None:
                    continue
                try:
                    handle.outbox.send_nowait(action.message)
                except trio.WouldBlock:
                    self.core.counters.dropped["outbox_full"] += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            elif isinstance(action, Close):
                handle = self._links.get(action.link)
                log.debug("closing overlay link %s: %s", action.link, action.reason)
                if handle is not None:
                    # The writer flushes what is queued (a refusal's pongs), then ends the link.
                    handle.outbox.close()
                    handle.scope.deadline = min(
                        handle.scope.deadline, trio.current_time() + FLUSH_TIMEOUT
                    )
            elif isinstance(action, Dial):
                if self._nursery is None:
                    self.core.dial_failed(trio.current_time(), action.addr)
                else:
                    self._nursery.start_soon(self._dial, action.addr)
            elif isinstance(action, HitsArrived):
                event = self._search_events.get(action.search)
                if event is not None:
                    event.set()

    # ------------------------------------------------------------------ tasks

    async def _refill_loop(self) -> None:
        while True:
            self._refill_now = trio.Event()
            self._apply(self.core.refill(trio.current_time()))
            with trio.move_on_after(self.refill_interval):
                await self._refill_now.wait()
            # A burst of closes (a neighbour's neighbours leaving) refills once, not per close.
            await trio.sleep(0.05)

    async def _ping_loop(self) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            self._apply(self.core.ping(trio.current_time()))

    async def _accept_loop(self, listener: Listener) -> None:
        assert self._nursery is not None
        while True:
            stream, remote = await listener.accept()
            self._nursery.start_soon(self._incoming, stream, remote)

    async def _incoming(self, stream: trio.abc.Stream, remote: PeerAddr) -> None:
        if self._handshakes.value == 0:
            await close_quietly(stream)
            return
        async with self._handshakes:
            conn = _connection(initiator=False, peer_id=self.peer_id)
            try:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    await read_handshake(stream, conn)
                    assert conn.peer_handshake is not None
                    peer_id = conn.peer_handshake.peer_id
                    if self.core.is_banned(trio.current_time(), peer_id=peer_id):
                        raise RemoteProtocolError("a banned peer")
                    await stream.send_all(
                        conn.send(Handshake(info_hash=OVERLAY_INFO_HASH, peer_id=self.peer_id))
                    )
            except HandshakeRejected as exc:
                if exc.reason is RejectReason.SELF_CONNECTION:
                    # We dialled ourselves: answer with our handshake so that the dialling
                    # side sees its own peer id too and never dials this address again.
                    with contextlib.suppress(*_LINK_ERRORS):
                        hs = Handshake(info_hash=OVERLAY_INFO_HASH, peer_id=self.peer_id)
                        await stream.send_all(codec.encode_handshake(hs))
                await close_quietly(stream)
                return
            except _LINK_ERRORS as exc:
                log.debug("overlay handshake from %s failed: %s", remote, exc)
                await close_quietly(stream)
                return
        await self._serve(stream, conn, remote, dialed=None)

    async def _dial(self, addr: PeerAddr) -> None:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                stream = await self.network.connect_tcp(addr)
        except (OSError, trio.TooSlowError) as exc:
            log.debug("dialling overlay node %s failed: %s", addr, exc)
            self.core.dial_failed(trio.current_time(), addr)
            return
        conn = _connection(initiator=True, peer_id=self.peer_id)
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await stream.send_all(
                    conn.send(Handshake(info_hash=OVERLAY_INFO_HASH, peer_id=self.peer_id))
                )
                await read_handshake(stream, conn)
        except HandshakeRejected as exc:
            self.core.dial_failed(
                trio.current_time(), addr, permanent=exc.reason is RejectReason.SELF_CONNECTION
            )
            await close_quietly(stream)
            return
        except _LINK_ERRORS:
            self.core.dial_failed(trio.current_time(), addr)
            await close_quietly(stream)
            return
        await self._serve(stream, conn, addr, dialed=addr)

    async def _serve(
        self,
        stream: trio.abc.Stream,
        conn: PeerConnection,
        remote: PeerAddr,
        *,
        dialed: PeerAddr | None,
    ) -> None:
        """Run one link whose BitTorrent handshakes are done, until either side ends it."""
        try:
            try:
                if not conn.extension_protocol:
                    raise RemoteProtocolError("the peer does not speak the extension protocol")
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    await stream.send_all(
                        conn.send(
                            ExtendedHandshake(
                                m={EXTENSION_NAME: OUR_EXTENSION_ID},
                                v=CLIENT_VERSION,
                                p=self.core.listen_port or None,
                            )
                        )
                    )
                    await _read_extended_handshake(stream, conn)
                if conn.peer_extension_id(EXTENSION_NAME) is None:
                    raise RemoteProtocolError(f"the peer does not offer {EXTENSION_NAME}")
            except _LINK_ERRORS as exc:
                log.debug("overlay link to %s failed to open: %s", remote, exc)
                if dialed is not None:
                    self.core.dial_failed(trio.current_time(), dialed)
                return
            assert conn.peer_handshake is not None
            link, actions = self.core.link_opened(
                trio.current_time(),
                remote=remote,
                peer_id=conn.peer_handshake.peer_id,
                outgoing=dialed is not None,
                dialed=dialed,
            )
            send, receive = trio.open_memory_channel[Message](OUTBOX)
            try:
                with trio.CancelScope() as scope:
                    self._links[link] = _LinkHandle(outbox=send, scope=scope)
                    self._apply(actions)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._writer, stream, conn, receive, scope)
                        await self._reader(stream, conn, link)
                        scope.cancel()
            finally:
                self._links.pop(link, None)
                send.close()
                self._apply(self.core.link_closed(trio.current_time(), link))
                self._refill_now.set()
        finally:
            await close_quietly(stream)

    async def _reader(self, stream: trio.abc.Stream, conn: PeerConnection, link: LinkId) -> None:
        try:
            while True:
                while True:
                    event = conn.next_event()
                    if event is NEED_DATA:
                        break
                    if (
                        isinstance(event, Extended)
                        and conn.extension_name(event.ext_id) == EXTENSION_NAME
                    ):
                        self._apply(self.core.receive(trio.current_time(), link, event.payload))
                    # Keep-alives and anything else a BitTorrent peer may send: ignored.
                with trio.fail_after(SILENCE_LIMIT):
                    data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
        except _LINK_ERRORS as exc:
            log.debug("overlay link %s ended: %s", link, exc)

    async def _writer(
        self,
        stream: trio.abc.Stream,
        conn: PeerConnection,
        outbox: trio.MemoryReceiveChannel[Message],
        scope: trio.CancelScope,
    ) -> None:
        """Send what the core queued, in batches; a keep-alive when idle. When the outbox is
        closed (the core closed the link) it flushes what is left, then ends the link."""
        is_open = True
        try:
            while is_open:
                batch: list[Message] = []
                with trio.move_on_after(KEEPALIVE_INTERVAL):
                    try:
                        batch.append(await outbox.receive())
                    except trio.EndOfChannel:
                        is_open = False
                while is_open and len(batch) < 64:
                    try:
                        batch.append(outbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                    except trio.EndOfChannel:
                        is_open = False
                if not batch:
                    if is_open:
                        await stream.send_all(conn.send(KeepAlive()))
                    continue
                ext = conn.peer_extension_id(EXTENSION_NAME)
                if ext is None:
                    raise RemoteProtocolError(f"the peer withdrew {EXTENSION_NAME}")
                data = b"".join(
                    conn.send(Extended(ext_id=ext, payload=messages.encode(m))) for m in batch
                )
                await stream.send_all(data)
        except _LINK_ERRORS as exc:
            log.debug("overlay link writer ended: %s", exc)
        scope.cancel()


def group_hits(hits: Iterable[Hit]) -> list[SearchHit]:
    """One SearchHit per (info-hash, name, size), holders in order of arrival."""
    grouped: dict[tuple[bytes, str, int], list[PeerAddr]] = {}
    first: dict[tuple[bytes, str, int], Hit] = {}
    for hit in hits:
        key = (bytes(hit.info_hash), hit.name, hit.size)
        first.setdefault(key, hit)
        holders = grouped.setdefault(key, [])
        if hit.holder not in holders:
            holders.append(hit.holder)
    return [
        SearchHit(name=h.name, size=h.size, info_hash=h.info_hash, peers=tuple(grouped[key]))
        for key, h in first.items()
    ]


def _connection(*, initiator: bool, peer_id: bytes) -> PeerConnection:
    return PeerConnection(
        initiator=initiator,
        info_hash=OVERLAY_INFO_HASH,
        our_peer_id=peer_id,
        max_message_length=MAX_LINK_MESSAGE,
        max_buffer=64 * 1024 + 2 * MAX_LINK_MESSAGE,
    )


async def _read_extended_handshake(stream: trio.abc.Stream, conn: PeerConnection) -> None:
    while conn.peer_extended_handshake is None:
        event = conn.next_event()
        if event is NEED_DATA:
            await _receive_into(stream, conn)
        elif isinstance(event, Extended):
            raise RemoteProtocolError("an extension message before the extended handshake")


async def _receive_into(stream: trio.abc.Stream, conn: PeerConnection) -> None:
    data = await stream.receive_some(65536)
    if not data:
        raise RemoteProtocolError("the peer closed the connection")
    conn.receive_data(data)
