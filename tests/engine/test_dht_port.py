"""The PORT message (BEP 5): peers that both set the DHT bit tell each other their DHT port,
and the node learnt that way is handed to the session's DHT. Never for a private torrent."""

from __future__ import annotations

import hashlib
import random

import trio
import trio.testing

from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.torrent import DhtContact
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Info, build_info, parse_info
from torrentkit.testing.network import SimNetwork
from torrentkit.wire.connection import NEED_DATA, PeerConnection, PieceGeometry
from torrentkit.wire.events import DEFAULT_RESERVED, Handshake, Port
from torrentkit.wire.extensions import supports_dht, with_dht_bit
from torrentkit.wire.peer_id import generate_peer_id

PIECE = 16 * 1024


def small_torrent(*, private: bool) -> Info:
    payload = random.Random(1).randbytes(PIECE)
    raw = build_info(
        name="d.bin",
        files=None,
        length=PIECE,
        piece_length=PIECE,
        piece_hashes=hashlib.sha1(payload).digest(),
        private=private,
    )
    return parse_info(raw)


def test_reserved_bit() -> None:
    assert not supports_dht(DEFAULT_RESERVED)
    reserved = with_dht_bit(DEFAULT_RESERVED)
    assert reserved[7] == DEFAULT_RESERVED[7] | 0x01 and reserved[:7] == DEFAULT_RESERVED[:7]
    assert supports_dht(reserved)


async def dht_session(
    nursery: trio.Nursery, net: SimNetwork, host: str, learnt: list[PeerAddr], dht_port: int
) -> Session:
    """An engine session on ``host`` whose DHT node is at ``dht_port`` and records in
    ``learnt`` the nodes peers tell it of."""
    session = Session(net.view(host), SessionOptions(bind=host, port=6881), rng=random.Random(2))
    session.dht = DhtContact(port=dht_port, add_node=learnt.append)
    await nursery.start(session.run)
    return session


async def handshake_with(
    net: SimNetwork, host: str, addr: PeerAddr, info: Info, reserved: bytes
) -> tuple[Handshake, list[Port]]:
    """Dial the session as a hand-driven peer; return its handshake and the PORT messages
    it sends within a second."""
    stream = await net.view(host).connect_tcp(addr)
    peer_id = generate_peer_id(random.Random(host))
    conn = PeerConnection(
        initiator=True,
        info_hash=info.info_hash,
        our_peer_id=peer_id,
        geometry=PieceGeometry(piece_length=info.piece_length, total_length=info.total_length),
    )
    await stream.send_all(
        conn.send(Handshake(info_hash=info.info_hash, peer_id=peer_id, reserved=reserved))
    )
    ports: list[Port] = []
    with trio.move_on_after(1.0):
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            conn.receive_data(data)
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, Port):
                    ports.append(event)
    await stream.aclose()
    assert conn.peer_handshake is not None
    return conn.peer_handshake, ports


async def test_port_exchanged_and_node_handed_to_the_dht(
    autojump_clock: trio.testing.MockClock,
) -> None:
    info = small_torrent(private=False)
    net = SimNetwork(random.Random(5), latency=0.01)
    learnt: dict[str, list[PeerAddr]] = {"a": [], "b": []}
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            sessions = {
                "a": await dht_session(nursery, net, "127.4.0.1", learnt["a"], 7001),
                "b": await dht_session(nursery, net, "127.4.0.2", learnt["b"], 7002),
            }
            ta = await sessions["a"].add_torrent(info, MemoryStorage(info))
            await sessions["b"].add_torrent(info, MemoryStorage(info))
            ta.add_peers([sessions["b"].address], "test")
            while not (learnt["a"] and learnt["b"]):
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert learnt["a"] == [PeerAddr("127.4.0.2", 7002)]
    assert learnt["b"] == [PeerAddr("127.4.0.1", 7001)]


async def test_one_node_per_link_however_many_port_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    info = small_torrent(private=False)
    net = SimNetwork(random.Random(9), latency=0.01)
    learnt: list[PeerAddr] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            session = await dht_session(nursery, net, "127.4.4.1", learnt, 7001)
            torrent = await session.add_torrent(info, MemoryStorage(info))
            stream = await net.view("127.4.4.2").connect_tcp(session.address)
            peer_id = generate_peer_id(random.Random(1))
            conn = PeerConnection(initiator=True, info_hash=info.info_hash, our_peer_id=peer_id)
            hs = Handshake(
                info_hash=info.info_hash, peer_id=peer_id, reserved=with_dht_bit(DEFAULT_RESERVED)
            )
            opening = conn.send(hs)
            flood = b"".join(conn.send(Port(port=9000 + i)) for i in range(50))
            await stream.send_all(opening + flood)
            await trio.sleep(1.0)
            assert torrent.links  # PORT is legal: the peer stays
            await stream.aclose()
            nursery.cancel_scope.cancel()
    assert learnt == [PeerAddr("127.4.4.2", 9000)]


async def test_no_port_without_both_bits(autojump_clock: trio.testing.MockClock) -> None:
    info = small_torrent(private=False)
    net = SimNetwork(random.Random(6), latency=0.01)
    learnt: list[PeerAddr] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            session = await dht_session(nursery, net, "127.4.1.1", learnt, 7001)
            await session.add_torrent(info, MemoryStorage(info))
            # A peer with the bit gets a PORT, and the session's handshake carries the bit.
            hs, ports = await handshake_with(
                net, "127.4.1.2", session.address, info, with_dht_bit(DEFAULT_RESERVED)
            )
            assert supports_dht(hs.reserved)
            assert ports == [Port(port=7001)]
            # A peer without it gets none.
            hs, ports = await handshake_with(
                net, "127.4.1.3", session.address, info, DEFAULT_RESERVED
            )
            assert ports == []
            nursery.cancel_scope.cancel()


async def test_private_torrent_never_uses_the_dht(autojump_clock: trio.testing.MockClock) -> None:
    info = small_torrent(private=True)
    net = SimNetwork(random.Random(7), latency=0.01)
    learnt: list[PeerAddr] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            session = await dht_session(nursery, net, "127.4.2.1", learnt, 7001)
            await session.add_torrent(info, MemoryStorage(info))
            hs, ports = await handshake_with(
                net, "127.4.2.2", session.address, info, with_dht_bit(DEFAULT_RESERVED)
            )
            assert not supports_dht(hs.reserved)
            assert ports == []
            nursery.cancel_scope.cancel()
    assert learnt == []


async def test_port_from_a_peer_of_a_private_torrent_is_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    info = small_torrent(private=True)
    net = SimNetwork(random.Random(8), latency=0.01)
    learnt: list[PeerAddr] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            session = await dht_session(nursery, net, "127.4.3.1", learnt, 7001)
            torrent = await session.add_torrent(info, MemoryStorage(info))
            stream = await net.view("127.4.3.2").connect_tcp(session.address)
            peer_id = generate_peer_id(random.Random(1))
            conn = PeerConnection(initiator=True, info_hash=info.info_hash, our_peer_id=peer_id)
            hs = Handshake(
                info_hash=info.info_hash, peer_id=peer_id, reserved=with_dht_bit(DEFAULT_RESERVED)
            )
            await stream.send_all(conn.send(hs) + conn.send(Port(port=9999)))
            while not torrent.links:
                await trio.sleep(0.01)
            await trio.sleep(1.0)
            assert torrent.links  # still connected: PORT is legal, just not used
            await stream.aclose()
            nursery.cancel_scope.cancel()
    assert learnt == []
