"""The engine's side of BEP 6 (fast extension) and BEP 11 (PEX), with hand-driven peers.

Each test runs our Session on the in-memory network under the virtual clock and talks to it
through a :class:`HandPeer`: a sans-IO PeerConnection we drive message by message, so the
test sees exactly what our engine sends and can send it anything (hostile included).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing

from torrentkit.engine import pex as pex_policy
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import Torrent
from torrentkit.errors import RemoteProtocolError
from torrentkit.events import Event as EngineEvent
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Info, build_info, parse_info
from torrentkit.testing.network import SimNetwork
from torrentkit.wire import pex
from torrentkit.wire.codec import encode
from torrentkit.wire.connection import NEED_DATA, PeerConnection, PieceGeometry
from torrentkit.wire.events import (
    AllowedFast,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    HaveAll,
    HaveNone,
    Interested,
    Piece,
    RejectRequest,
    Request,
    SuggestPiece,
)
from torrentkit.wire.fast import allowed_fast_set
from torrentkit.wire.peer_id import generate_peer_id
from torrentkit.wire.pex import PexPeer

KIB = 1024
US = "127.3.0.2"
PORT = 6881
PEER_PEX_ID = 7


def make_info(
    rng: random.Random, size: int, plen: int, *, private: bool = False
) -> tuple[Info, bytes]:
    payload = rng.randbytes(size)
    hashes = b"".join(hashlib.sha1(payload[i : i + plen]).digest() for i in range(0, size, plen))
    raw = build_info(
        name="f.bin",
        files=None,
        length=size,
        piece_length=plen,
        piece_hashes=hashes,
        private=private,
    )
    return parse_info(raw), payload


class HandPeer:
    """A peer we drive by hand; ``events`` is everything our engine sent it."""

    def __init__(self, stream: trio.abc.Stream, conn: PeerConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.events: list[Event] = []
        self.closed = trio.Event()

    @classmethod
    async def connect(
        cls, net: SimNetwork, host: str, info: Info, *, ext: ExtendedHandshake | None = None
    ) -> HandPeer:
        stream = await net.view(host).connect_tcp(PeerAddr(US, PORT))
        peer_id = generate_peer_id(random.Random(host))
        conn = PeerConnection(
            initiator=True,
            info_hash=info.info_hash,
            our_peer_id=peer_id,
            geometry=PieceGeometry(piece_length=info.piece_length, total_length=info.total_length),
        )
        await stream.send_all(conn.send(Handshake(info_hash=info.info_hash, peer_id=peer_id)))
        peer = cls(stream, conn)
        while conn.peer_handshake is None:
            await peer._more()
        if ext is not None:
            await peer.send(ext)
        return peer

    async def send(self, *events: Event) -> None:
        await self.stream.send_all(b"".join(self.conn.send(e) for e in events))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_raw_request(self, index: int, begin: int, length: int) -> None:
        """A REQUEST our own checks would refuse to send (choked, bad length), recorded as
        outstanding so that the answer (a REJECT) is accepted."""
        self.conn._requested[(index, begin, length)] = None
        await self.send_raw(
            b"\x00\x00\x00\x0d\x06" + b"".join(x.to_bytes(4, "big") for x in (index, begin, length))
        )

    async def read(self) -> None:
        try:
            while True:
                await self._more()
        except (RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.closed.set()

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise trio.ClosedResourceError("closed")
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not NEED_DATA:
            self.events.append(event)

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 30) -> None:
        with trio.move_on_after(timeout):
            while not check():
                await trio.sleep(0.05)
            return
        raise AssertionError(f"timed out; the peer got {self.events[-12:]}")


@asynccontextmanager
async def running(
    info: Info, payload: bytes | None
) -> AsyncIterator[tuple[SimNetwork, Torrent, list[EngineEvent], trio.Nursery]]:
    """Our session serving ``info`` (seeding when ``payload`` is given)."""
    rng = random.Random(5)
    net = SimNetwork(rng, latency=0.01)
    events: list[EngineEvent] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        session = Session(
            net.view(US),
            SessionOptions(bind=US, port=PORT),
            rng=random.Random(2),
            on_event=events.append,
        )
        await nursery.start(session.run)
        torrent = await session.add_torrent(info, MemoryStorage(info, payload))
        yield net, torrent, events, nursery
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------ BEP 6


async def test_seeder_sends_have_all_and_the_canonical_allowed_fast_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    info, payload = make_info(random.Random(1), 40 * 16 * KIB, 16 * KIB)  # 40 pieces
    with trio.fail_after(60):
        async with running(info, payload) as (net, _torrent, events, nursery):
            peer = await HandPeer.connect(net, "127.3.0.9", info)
            nursery.start_soon(peer.read)
            await peer.wait_for(lambda: len(peer.of(AllowedFast)) == 10)
            assert peer.of(HaveAll) and not peer.of(HaveNone)
            allowed = [e.index for e in peer.of(AllowedFast)]  # type: ignore[attr-defined]
            assert allowed == allowed_fast_set("127.3.0.9", info.info_hash, 40)
            # We choke it (it never said interested): an allowed-fast block is served, any
            # other request is rejected, and so is a request for a block past the piece end.
            inside, outside = allowed[0], next(i for i in range(40) if i not in allowed)
            await peer.send(Request(index=inside, begin=0, length=16 * KIB))
            await peer.send_raw_request(outside, 0, 16 * KIB)
            await peer.send_raw_request(0, 0, 32 * KIB)
            await peer.wait_for(
                lambda: len(peer.of(Piece)) == 1 and len(peer.of(RejectRequest)) == 2
            )
            got = peer.of(Piece)[0]
            assert (got.index, got.data) == (
                inside,
                payload[inside * 16 * KIB : (inside + 1) * 16 * KIB],
            )  # type: ignore[attr-defined]
            rejected = {(e.index, e.length) for e in peer.of(RejectRequest)}  # type: ignore[attr-defined]
            assert rejected == {(outside, 16 * KIB), (0, 32 * KIB)}
            fast = [e.to_json() for e in events if e.kind == "fast"]
            assert {"have_all", "allowed_fast", "reject"} <= {e["message"] for e in fast}


async def test_leecher_uses_allowed_fast_while_choked_and_requeues_rejects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    info, payload = make_info(random.Random(1), 8 * 32 * KIB, 32 * KIB)  # 8 pieces, 2 blocks
    with trio.fail_after(60):
        async with running(info, None) as (net, torrent, events, nursery):
            peer = await HandPeer.connect(net, "127.3.0.9", info)
            nursery.start_soon(peer.read)
            await peer.send(HaveAll(), AllowedFast(index=5))
            await peer.wait_for(lambda: len(peer.of(Request)) == 2)
            await trio.sleep(1.5)  # a tick: still nothing outside the allowed piece
            reqs = peer.of(Request)
            assert {(r.index, r.begin) for r in reqs} == {(5, 0), (5, 32 * KIB // 2)}  # type: ignore[attr-defined]
            assert peer.of(HaveNone)  # we had nothing: HAVE NONE, not silence
            # It rejects one: not asked of it again while it chokes us (no ping-pong) ...
            await peer.send(RejectRequest(index=5, begin=0, length=16 * KIB))
            await trio.sleep(2)
            assert len(peer.of(Request)) == 2
            # ... the other block, sent while choked (allowed fast), is taken ...
            half = 16 * KIB
            await peer.send(
                Piece(index=5, begin=half, data=payload[5 * 32 * KIB + half : 6 * 32 * KIB])
            )
            # ... and once it unchokes us, the rejected block is asked again.
            from torrentkit.wire.events import Unchoke

            await peer.send(Unchoke())
            await peer.wait_for(
                lambda: (5, 0) in [(r.index, r.begin) for r in peer.of(Request)[2:]]
            )  # type: ignore[attr-defined]
            await peer.send(
                Piece(index=5, begin=0, data=payload[5 * 32 * KIB : 5 * 32 * KIB + half])
            )
            await peer.wait_for(lambda: torrent.picker.have(5))
            # A reject for a block we never asked for: the peer is dropped.
            await peer.send_raw(
                b"\x00\x00\x00\x0d\x10"
                + (7).to_bytes(4, "big")
                + bytes(4)
                + (16 * KIB).to_bytes(4, "big")
            )
            await peer.wait_for(lambda: peer.closed.is_set())
            gone = [e.to_json() for e in events if e.kind == "peer_disconnected"]
            assert "never requested" in gone[-1]["reason"]


async def test_fast_choke_keeps_requests_until_rejected_or_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from torrentkit.wire.events import Unchoke

    info, _ = make_info(random.Random(1), 4 * 32 * KIB, 32 * KIB)
    with trio.fail_after(120):
        async with running(info, None) as (net, torrent, _events, nursery):
            peer = await HandPeer.connect(net, "127.3.0.9", info)
            nursery.start_soon(peer.read)
            await peer.send(HaveAll(), Unchoke())
            await peer.wait_for(lambda: len(peer.of(Request)) >= 4)
            await trio.sleep(0.5)
            n = len(peer.of(Request))
            # A choke with no rejects after it (our side's conn would add them): the peer
            # still owes an answer to each request.
            await peer.send_raw(b"\x00\x00\x00\x01\x00")
            await trio.sleep(5)
            link = next(iter(torrent.links))
            assert link.conn.outstanding_requests == n  # not voided by the choke
            assert len(torrent.picker.requests_of(link)) == n
            await trio.sleep(20)  # past the grace: withdrawn (cancelled) and free again
            assert not torrent.picker.requests_of(link)
            from torrentkit.wire.events import Cancel

            assert len(peer.of(Cancel)) == n


async def test_suggestions_steer_the_picker_and_are_capped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from torrentkit.wire.events import Unchoke

    info, _ = make_info(random.Random(1), 64 * 16 * KIB, 16 * KIB)  # 64 one-block pieces
    with trio.fail_after(60):
        async with running(info, None) as (net, torrent, _events, nursery):
            peer = await HandPeer.connect(net, "127.3.0.9", info)
            nursery.start_soon(peer.read)
            # A flood of suggestions (and some out of range, ignored and counted).
            await peer.send(HaveAll(), *[SuggestPiece(index=i % 64) for i in range(2000)])
            await peer.send_raw(
                b"".join(b"\x00\x00\x00\x05\x0d" + (100 + i).to_bytes(4, "big") for i in range(50))
            )
            await trio.sleep(1)
            link = next(iter(torrent.links))
            assert len(torrent._suggested_in[link]) <= 16
            await peer.send(SuggestPiece(index=61), SuggestPiece(index=62))
            await trio.sleep(0.5)
            await peer.send(Unchoke())
            await peer.wait_for(lambda: len(peer.of(Request)) >= 2)
            first = [r.index for r in peer.of(Request)[:2]]  # type: ignore[attr-defined]
            assert set(first) <= set(torrent._suggested_in[link]) | {61, 62}
            assert not peer.closed.is_set()


# ------------------------------------------------------------------------------ BEP 11


def pex_payload(added: list[PeerAddr]) -> bytes:
    return pex.encode([PexPeer(a, 0) for a in added], [])


async def test_pex_learns_peers_under_caps_and_ignores_ourselves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    info, _ = make_info(random.Random(1), 4 * 32 * KIB, 32 * KIB)
    with trio.fail_after(120):
        async with running(info, None) as (net, torrent, events, nursery):
            ext = ExtendedHandshake(m={"ut_pex": PEER_PEX_ID}, p=7000)
            peer = await HandPeer.connect(net, "203.0.113.5", info, ext=ext)  # a public peer
            nursery.start_soon(peer.read)
            await peer.wait_for(lambda: bool(peer.of(ExtendedHandshake)))
            ours = peer.of(ExtendedHandshake)[0]
            our_id = ours.m["ut_pex"]  # type: ignore[attr-defined]
            hostile = (
                [PeerAddr(US, PORT), PeerAddr("127.0.0.1", PORT)]  # ourselves
                + [PeerAddr("192.168.1.7", 6881), PeerAddr("10.0.0.1", 1)]  # private ranges
                + [PeerAddr(f"198.51.{i >> 8}.{i & 255}", 6881) for i in range(3000)]
            )
            await peer.send(Extended(ext_id=our_id, payload=pex_payload(hostile)))
            await peer.wait_for(lambda: any(e.kind == "pex" for e in events))
            book = torrent.known.sources()
            from_pex = [a for a, s in book.items() if s == "pex"]
            assert 0 < len(from_pex) <= pex_policy.MAX_ADDED_PER_MESSAGE
            assert PeerAddr(US, PORT) not in book and PeerAddr("127.0.0.1", PORT) not in book
            assert not any(pex.is_local(a.host) for a in from_pex)
            # A malformed one is skipped; five more within the minute are tolerated, the
            # seventh is a flood: the peer is dropped.
            await peer.send(Extended(ext_id=our_id, payload=b"d5:added3:abce"))
            for i in range(4):
                more = [PeerAddr(f"198.18.{i}.{j}", 6881) for j in range(60)]
                await peer.send(Extended(ext_id=our_id, payload=pex_payload(more)))
                await trio.sleep(1)
            assert not peer.closed.is_set()
            # Per peer per interval: at most 100 new addresses believed.
            assert len([a for a, s in torrent.known.sources().items() if s == "pex"]) <= 100
            await peer.send(Extended(ext_id=our_id, payload=pex_payload([])))
            await peer.wait_for(lambda: peer.closed.is_set())
            gone = [e.to_json() for e in events if e.kind == "peer_disconnected"]
            assert "PEX messages" in gone[-1]["reason"]


async def test_pex_from_a_local_peer_keeps_private_ranges_and_total_is_capped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    info, _ = make_info(random.Random(1), 4 * 32 * KIB, 32 * KIB)
    with trio.fail_after(600):
        async with running(info, None) as (net, torrent, _events, nursery):
            peers = []
            for n in range(12):
                ext = ExtendedHandshake(m={"ut_pex": PEER_PEX_ID}, p=7000)
                p = await HandPeer.connect(net, f"127.3.1.{n}", info, ext=ext)
                nursery.start_soon(p.read)
                peers.append(p)
            await peers[0].wait_for(lambda: all(p.of(ExtendedHandshake) for p in peers))
            for n, p in enumerate(peers):
                our_id = p.of(ExtendedHandshake)[0].m["ut_pex"]  # type: ignore[attr-defined]
                addrs = [PeerAddr(f"10.{n}.{j >> 8}.{j & 255}", 6881) for j in range(50)]
                await p.send(Extended(ext_id=our_id, payload=pex_payload(addrs)))
            await trio.sleep(2)
            from_pex = [a for a, s in torrent.known.sources().items() if s == "pex"]
            assert len(from_pex) == pex_policy.MAX_FROM_PEX  # 12 x 50 offered, 500 believed
            assert all(a.host.startswith("10.") for a in from_pex)


async def test_pex_sent_once_a_minute_with_flags(autojump_clock: trio.testing.MockClock) -> None:
    info, _ = make_info(random.Random(1), 4 * 32 * KIB, 32 * KIB)
    with trio.fail_after(300):
        async with running(info, None) as (net, _torrent, _events, nursery):
            listener = await HandPeer.connect(
                net, "127.3.0.9", info, ext=ExtendedHandshake(m={"ut_pex": PEER_PEX_ID}, p=7009)
            )
            nursery.start_soon(listener.read)
            other = await HandPeer.connect(
                net, "127.3.0.10", info, ext=ExtendedHandshake(m={}, p=7010)
            )
            nursery.start_soon(other.read)
            await other.send(HaveAll())

            def pex_msgs() -> list[pex.PexMessage]:
                return [
                    pex.parse(e.payload)  # type: ignore[attr-defined]
                    for e in listener.of(Extended)
                    if e.ext_id == PEER_PEX_ID  # type: ignore[attr-defined]
                ]

            await listener.wait_for(lambda: bool(pex_msgs()))
            first = pex_msgs()[0]
            assert [p.addr for p in first.added] == [PeerAddr("127.3.0.10", 7010)]
            assert first.added[0].flags & pex.SEED and not first.added[0].flags & pex.REACHABLE
            # The other one leaves: "dropped" comes with the next message, a minute later.
            t0 = trio.current_time()
            await other.stream.aclose()
            await listener.wait_for(lambda: len(pex_msgs()) == 2, timeout=120)
            assert trio.current_time() - t0 >= 30  # at most once a minute
            assert pex_msgs()[1].dropped == (PeerAddr("127.3.0.10", 7010),)
            assert not other.of(Extended)  # it has no ut_pex: nothing sent to it


async def test_private_torrent_offers_no_pex_and_ignores_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    info, _ = make_info(random.Random(1), 4 * 32 * KIB, 32 * KIB, private=True)
    with trio.fail_after(120):
        async with running(info, None) as (net, torrent, _events, nursery):
            ext = ExtendedHandshake(m={"ut_pex": PEER_PEX_ID}, p=7000)
            peer = await HandPeer.connect(net, "127.3.0.9", info, ext=ext)
            nursery.start_soon(peer.read)
            await peer.wait_for(lambda: bool(peer.of(ExtendedHandshake)))
            assert "ut_pex" not in peer.of(ExtendedHandshake)[0].m  # type: ignore[attr-defined]
            # Sent anyway under the id a public torrent would use: not interpreted.
            await peer.send_raw(
                encode(Extended(ext_id=1, payload=pex_payload([PeerAddr("127.9.9.9", 1)])))
            )
            await trio.sleep(65)
            assert not [e for e in peer.of(Extended) if e.ext_id == PEER_PEX_ID]  # type: ignore[attr-defined]
            assert "pex" not in torrent.known.sources().values()


async def test_seeder_suggests_cached_pieces_only_when_rarest_and_covered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from torrentkit.wire.events import Bitfield, Unchoke

    info, payload = make_info(random.Random(1), 3 * 16 * KIB, 16 * KIB)  # 3 one-block pieces
    with trio.fail_after(60):
        async with running(info, payload) as (net, _torrent, _events, nursery):
            peers = {}
            # a and b lack piece 0, c lacks piece 1: every piece has a copy besides ours,
            # and piece 0 is the rarest (1 copy).
            for host, have in (
                ("127.3.0.11", [1, 2]),
                ("127.3.0.12", [1, 2]),
                ("127.3.0.13", [0, 2]),
            ):
                p = await HandPeer.connect(net, host, info)
                nursery.start_soon(p.read)
                await p.send(Bitfield.from_indices(3, have), Interested())
                peers[host] = p
            a, b, c = peers.values()
            await a.wait_for(lambda: bool(a.of(Unchoke)))
            await a.send(Request(index=0, begin=0, length=16 * KIB))
            await a.wait_for(lambda: bool(a.of(Piece)))
            await b.wait_for(lambda: bool(b.of(SuggestPiece)))
            assert b.of(SuggestPiece) == [SuggestPiece(index=0)]
            assert not c.of(SuggestPiece)  # it has piece 0
            # c asks for piece 1 (two copies, not the rarest): nobody is told.
            await c.wait_for(lambda: bool(c.of(Unchoke)))
            await c.send(Request(index=1, begin=0, length=16 * KIB))
            await c.wait_for(lambda: len(c.of(Piece)) == 1)
            await trio.sleep(1)
            assert [e.index for e in a.of(SuggestPiece) + b.of(SuggestPiece)] == [0, 0]  # type: ignore[attr-defined]


async def test_no_suggestions_while_some_piece_has_no_other_copy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from torrentkit.wire.events import Unchoke

    info, payload = make_info(random.Random(1), 3 * 16 * KIB, 16 * KIB)
    with trio.fail_after(60):
        async with running(info, payload) as (net, _torrent, _events, nursery):
            a = await HandPeer.connect(net, "127.3.0.11", info)
            b = await HandPeer.connect(net, "127.3.0.12", info)
            for p in (a, b):
                nursery.start_soon(p.read)
                await p.send(HaveNone(), Interested())
            await a.wait_for(lambda: bool(a.of(Unchoke)))
            await a.send(Request(index=0, begin=0, length=16 * KIB))
            await a.wait_for(lambda: bool(a.of(Piece)))
            await trio.sleep(2)
            assert not a.of(SuggestPiece) and not b.of(SuggestPiece)


async def test_a_reject_from_an_unchoking_peer_pauses_requests_to_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No request/reject ping-pong: after a reject, nothing new goes to that peer for a
    second; then the block is asked again."""
    from torrentkit.wire.events import Unchoke

    info, _ = make_info(random.Random(1), 1 * 32 * KIB, 32 * KIB)  # one piece, two blocks
    with trio.fail_after(60):
        async with running(info, None) as (net, _torrent, _events, nursery):
            peer = await HandPeer.connect(net, "127.3.0.9", info)
            nursery.start_soon(peer.read)
            await peer.send(HaveAll(), Unchoke())
            await peer.wait_for(lambda: len(peer.of(Request)) == 2)
            await peer.send(RejectRequest(index=0, begin=0, length=16 * KIB))
            t0 = trio.current_time()
            await peer.wait_for(lambda: len(peer.of(Request)) == 3)
            assert trio.current_time() - t0 >= 0.9
            assert (peer.of(Request)[2].index, peer.of(Request)[2].begin) == (0, 0)  # type: ignore[attr-defined]
