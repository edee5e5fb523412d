"""Fetching a magnet link's info dictionary from peers (BEP 9 over BEP 10).

A :class:`MetadataFetcher` dials the peers its sources find (trackers from the magnet's
``tr=``, its ``x.pe`` peers, ``--peer``, a DHT), a few at a time. Each connection fetches the
whole info dictionary by itself -- it is small -- so a dictionary that does not hash to the
info-hash came from exactly one peer, which is banned (never asked again), while the other
connections carry on. The first dictionary that checks out wins; the connections close and
the caller starts an ordinary torrent with it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import trio

from torrentkit.engine.encryption import Encryption, PeerEncryption, dial_peer
from torrentkit.engine.torrent import (
    CONNECT_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    OUR_UT_METADATA_ID,
)
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.net import Network, close_quietly
from torrentkit.wire import metadata
from torrentkit.wire.connection import NEED_DATA, PeerConnection
from torrentkit.wire.events import (
    EXTENSION_ONLY_RESERVED,
    Extended,
    ExtendedHandshake,
    Handshake,
)
from torrentkit.wire.extensions import UT_METADATA
from torrentkit.wire.peer_id import CLIENT_VERSION

log = logging.getLogger(__name__)

#: How long one peer may take to deliver the whole dictionary.
PER_PEER_TIMEOUT = 60.0
#: Requests in flight per peer.
PIPELINE = 4


class MetadataFetcher:
    """Finds the info dictionary for ``info_hash``; ``await fetch()`` returns its bytes."""

    def __init__(
        self,
        info_hash: bytes,
        *,
        network: Network,
        peer_id: bytes,
        listen_port: int | None = None,
        max_connections: int = 8,
        rng: random.Random | None = None,
        encryption: Encryption = "prefer",
    ) -> None:
        self.info_hash = info_hash
        self.network = network
        self.peer_id = peer_id
        self.listen_port = listen_port
        self.max_connections = max_connections
        self.encryption = PeerEncryption(encryption)
        self.rng = rng or random.Random()
        self.known: dict[PeerAddr, str] = {}
        self.tried: set[PeerAddr] = set()
        self.banned: set[PeerAddr] = set()
        self.failures: dict[PeerAddr, str] = {}
        self._wakeup = trio.Event()
        self._result: bytes | None = None
        self._done = trio.Event()

    def add_peers(self, addrs: Sequence[PeerAddr], source: str) -> None:
        """The PeerSink: addresses from any discovery source."""
        for addr in addrs:
            if addr.port and addr not in self.known:
                self.known[addr] = source
        self._wakeup.set()

    async def fetch(self) -> bytes:
        """Dial peers until one delivers a dictionary that hashes right; return it."""
        async with trio.open_nursery() as nursery:
            active: set[PeerAddr] = set()

            async def attempt(addr: PeerAddr) -> None:
                try:
                    raw = await self._from_peer(addr)
                except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                    self.failures[addr] = f"connection: {exc.__class__.__name__}"
                    raw = None
                except RemoteProtocolError as exc:
                    self.failures[addr] = str(exc)
                    raw = None
                finally:
                    active.discard(addr)
                    self._wakeup.set()
                if raw is not None and self._result is None:
                    self._result = raw
                    self._done.set()
                    nursery.cancel_scope.cancel()

            while self._result is None:
                fresh = [a for a in self.known if a not in self.tried and a not in self.banned]
                self.rng.shuffle(fresh)
                for addr in fresh[: max(0, self.max_connections - len(active))]:
                    self.tried.add(addr)
                    active.add(addr)
                    nursery.start_soon(attempt, addr)
                await self._wakeup.wait()
                self._wakeup = trio.Event()
        assert self._result is not None
        return self._result

    async def _from_peer(self, addr: PeerAddr) -> bytes | None:
        stream, conn, _, _ = await dial_peer(
            self.network,
            addr,
            lambda: PeerConnection(
                initiator=True, info_hash=self.info_hash, our_peer_id=self.peer_id
            ),
            # Metadata only: no fast extension (it would oblige us to send a have-set).
            Handshake(
                info_hash=self.info_hash, peer_id=self.peer_id, reserved=EXTENSION_ONLY_RESERVED
            ),
            self.encryption,
            connect_timeout=CONNECT_TIMEOUT,
            handshake_timeout=HANDSHAKE_TIMEOUT,
        )
        try:
            with trio.fail_after(PER_PEER_TIMEOUT):
                return await self._exchange(stream, conn, addr)
        finally:
            await close_quietly(stream)

    async def _exchange(
        self, stream: trio.abc.Stream, conn: PeerConnection, addr: PeerAddr
    ) -> bytes | None:
        if not conn.extension_protocol:
            raise RemoteProtocolError("peer does not speak the extension protocol (BEP 10)")
        await stream.send_all(
            conn.send(
                ExtendedHandshake(
                    m={UT_METADATA: OUR_UT_METADATA_ID},
                    v=CLIENT_VERSION,
                    p=self.listen_port or None,
                )
            )
        )
        assembler: metadata.MetadataAssembler | None = None
        asked: set[int] = set()
        while True:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, ExtendedHandshake):
                    if conn.peer_extension_id(UT_METADATA) is None:
                        raise RemoteProtocolError("peer does not offer ut_metadata")
                    size = event.metadata_size
                    if size is None:
                        raise RemoteProtocolError("peer does not say the metadata size")
                    if assembler is None:
                        assembler = metadata.MetadataAssembler(self.info_hash, size)
                elif isinstance(event, Extended) and conn.extension_name(event.ext_id) == (
                    UT_METADATA
                ):
                    msg = metadata.parse(event.payload)
                    if isinstance(msg, metadata.MetadataRequest):
                        reply = conn.peer_extension_id(UT_METADATA)
                        if reply is not None:  # we have nothing to give yet
                            answer = metadata.MetadataReject(piece=msg.piece)
                            await stream.send_all(
                                conn.send(Extended(ext_id=reply, payload=metadata.encode(answer)))
                            )
                    elif isinstance(msg, metadata.MetadataReject):
                        raise RemoteProtocolError(f"peer rejected metadata piece {msg.piece}")
                    elif assembler is not None:
                        assembler.add(addr, msg)
                        asked.discard(msg.piece)
                        if assembler.complete:
                            raw, liars = assembler.result()
                            if raw is None:
                                self.banned.update(a for a in liars if isinstance(a, PeerAddr))
                                log.warning("metadata from %s does not match the info-hash", addr)
                                raise RemoteProtocolError("metadata does not match the info-hash")
                            return raw
            if assembler is not None:
                ext = conn.peer_extension_id(UT_METADATA)
                assert ext is not None
                out = bytearray()
                while len(asked) < PIPELINE:
                    piece = assembler.next_request(addr)
                    if piece is None or piece in asked:
                        break
                    asked.add(piece)
                    req = metadata.MetadataRequest(piece=piece)
                    out += conn.send(Extended(ext_id=ext, payload=metadata.encode(req)))
                if out:
                    await stream.send_all(bytes(out))
            data = await stream.receive_some(65536)
            if not data:
                raise RemoteProtocolError("closed before the metadata arrived")
            conn.receive_data(data)
