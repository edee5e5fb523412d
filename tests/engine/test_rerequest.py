"""Requests a peer gives back (it chokes us or leaves) are asked of the other peers at once.

Hand-driven peers on the in-memory network under the virtual clock: A unchokes the leecher
and receives every request; B unchokes it too but gets none (all blocks are with A, one
requester per block). When A chokes or leaves, B must get the blocks' requests within a few
network round trips, not at the engine's next one-second tick (at the end of a swarm the
leechers holding the last blocks complete and leave together: that second was the tail).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import Torrent
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Info
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent
from torrentkit.wire.connection import NEED_DATA, PeerConnection, PieceGeometry
from torrentkit.wire.events import (
    DEFAULT_RESERVED,
    Bitfield,
    Choke,
    Handshake,
    RejectRequest,
    Request,
    Unchoke,
)
from torrentkit.wire.peer_id import generate_peer_id

KIB = 1024
LATENCY = 0.01


class Seed:
    """A hand-driven seed: it unchokes the leecher and records its requests, never answering
    them."""

    def __init__(self, stream: trio.abc.Stream, conn: PeerConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.requests: list[Request] = []
        self.first_request_at: float | None = None

    @classmethod
    async def connect(
        cls, net: SimNetwork, host: str, addr: PeerAddr, info: Info, *, fast: bool = False
    ) -> Seed:
        stream = await net.view(host).connect_tcp(addr)
        peer_id = generate_peer_id(random.Random(host))
        conn = PeerConnection(
            initiator=True,
            info_hash=info.info_hash,
            our_peer_id=peer_id,
            geometry=PieceGeometry(piece_length=info.piece_length, total_length=info.total_length),
        )
        reserved = DEFAULT_RESERVED if fast else bytes(8)
        hs = Handshake(info_hash=info.info_hash, peer_id=peer_id, reserved=reserved)
        await stream.send_all(conn.send(hs))
        seed = cls(stream, conn)
        full = bytearray(b"\xff" * ((info.num_pieces + 7) // 8))
        if info.num_pieces % 8:
            full[-1] = (0xFF << (8 - info.num_pieces % 8)) & 0xFF
        while conn.peer_handshake is None:
            await seed._more()
        await stream.send_all(conn.send(Bitfield(bitfield=bytes(full))) + conn.send(Unchoke()))
        return seed

    async def read(self) -> None:
        """Record requests until the leecher closes the connection."""
        try:
            while True:
                await self._more()
        except (RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise RemoteProtocolError("closed")
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not NEED_DATA:
            assert not isinstance(event, RejectRequest)  # (we never choke the leecher)
            if isinstance(event, Request):
                self.requests.append(event)
                if self.first_request_at is None:
                    self.first_request_at = trio.current_time()


async def held_blocks_move_to(how: str) -> float:
    """Seconds from A giving its requests back (``how``: "choke", "leave", or "reject": a
    fast peer's choke, which rejects the four requests in the same send) until B has been
    asked for them."""
    rng = random.Random(3)
    info, _ = make_torrent(rng, 64 * KIB, 64 * KIB)  # one piece, four blocks
    net = SimNetwork(rng, latency=LATENCY)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            session = Session(
                net.view("127.3.0.2"),
                SessionOptions(bind="127.3.0.2", port=6881),
                rng=random.Random(2),
            )
            await nursery.start(session.run)
            torrent: Torrent = await session.add_torrent(info, MemoryStorage(info))
            torrent.picker.endgame_requesters = 1  # B gets no duplicates: only A's release
            rounds = 0
            rerequest = torrent._rerequest

            def counted(gone: Any, now: float) -> None:
                nonlocal rounds
                rounds += 1
                rerequest(gone, now)

            torrent._rerequest = counted  # type: ignore[method-assign]
            fast = how == "reject"
            a = await Seed.connect(net, "127.3.0.3", session.address, info, fast=fast)
            nursery.start_soon(a.read)
            while len(a.requests) < 4:
                await trio.sleep(0.01)
            b = await Seed.connect(net, "127.3.0.4", session.address, info, fast=fast)
            nursery.start_soon(b.read)
            await trio.sleep(2.5)  # B unchokes us, is interesting, yet has nothing to send
            assert not b.requests
            released_at = trio.current_time()
            if how in ("choke", "reject"):
                # (a fast connection appends a REJECT for every request it holds)
                await a.stream.send_all(a.conn.send(Choke()))
            else:
                await a.stream.aclose()
            while b.first_request_at is None:
                await trio.sleep(0.001)
            rounds_then = rounds
            nursery.cancel_scope.cancel()
    assert sorted((r.index, r.begin) for r in b.requests) == [(0, i * 16 * KIB) for i in range(4)]
    # One round of asking the others per release, not one per REJECT of the burst.
    assert rounds_then == 1
    return b.first_request_at - released_at


@pytest.mark.parametrize("how", ["choke", "leave", "reject"])
async def test_released_requests_go_to_other_peers_at_once(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    # The release reaches the leecher after one LATENCY, its requests reach B after another.
    assert await held_blocks_move_to(how) <= 4 * LATENCY
