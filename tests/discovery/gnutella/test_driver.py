"""The trio driver: overlay links over real sockets and the in-memory network, and what a
hostile peer wire client can (not) do to a node (docs/limits.md item 12)."""

from __future__ import annotations

import random

import trio
import trio.testing

from torrentkit.discovery.gnutella import (
    EXTENSION_NAME,
    OVERLAY_INFO_HASH,
    FileEntry,
    OverlayConfig,
    OverlayDriver,
    Role,
)
from torrentkit.discovery.gnutella import messages as m
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.net import TrioNetwork
from torrentkit.testing.network import SimNetwork
from torrentkit.wire import (
    DEFAULT_RESERVED,
    NEED_DATA,
    Extended,
    ExtendedHandshake,
    Handshake,
    PeerConnection,
)
from torrentkit.wire.peer_id import generate_peer_id

ISO = FileEntry(name="debian-12.iso", size=1 << 20, info_hash=InfoHash(b"\x22" * 20))


async def wait_for_links(node: OverlayDriver, count: int) -> None:
    while sum(nb.role is not None for nb in node.neighbours()) < count:
        await trio.sleep(0.01)


async def test_three_nodes_on_loopback_find_a_file_and_fill_in_the_holder_address() -> None:
    net = TrioNetwork()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nodes: list[OverlayDriver] = []
            for _ in range(3):
                boot = [nodes[-1].address] if nodes else []
                node = OverlayDriver(net, bind="127.0.0.1", bootstrap=boot)
                await nursery.start(node.run)
                nodes.append(node)
            a, b, c = nodes
            # c holds the file and does not know its own address ("0.0.0.0").
            c.holder = PeerAddr("0.0.0.0", 6881)
            c.publish([ISO])
            await wait_for_links(b, 2)
            hits = await a.search("DEBIAN iso", wait=10.0, stop_after=1)
            assert [(h.name, h.size, h.info_hash, h.peers) for h in hits] == [
                (ISO.name, ISO.size, ISO.info_hash, (PeerAddr("127.0.0.1", 6881),))
            ]
            assert a.counters.sent["query"] >= 1
            assert c.counters.sent["hit"] == 1
            nursery.cancel_scope.cancel()


class RawPeer:
    """A hand-driven peer wire client speaking to one overlay node."""

    def __init__(self, stream: trio.abc.Stream, conn: PeerConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.inbox: list[Extended] = []

    @classmethod
    async def connect(
        cls,
        net: SimNetwork,
        host: str,
        addr: PeerAddr,
        *,
        info_hash: bytes = OVERLAY_INFO_HASH,
        reserved: bytes = DEFAULT_RESERVED,
    ) -> RawPeer:
        stream = await net.view(host).connect_tcp(addr)
        peer_id = generate_peer_id(random.Random(host))
        conn = PeerConnection(initiator=True, info_hash=info_hash, our_peer_id=peer_id)
        peer = cls(stream, conn)
        hs = Handshake(info_hash=info_hash, peer_id=peer_id, reserved=reserved)
        await stream.send_all(conn.send(hs))
        return peer

    async def extended_handshake(self, extensions: dict[str, int] | None = None) -> None:
        while self.conn.peer_handshake is None:
            await self._more()
        m_ = {EXTENSION_NAME: 7} if extensions is None else extensions
        await self.stream.send_all(self.conn.send(ExtendedHandshake(m=m_)))
        while self.conn.peer_extended_handshake is None:
            await self._more()

    async def send(self, payload: bytes) -> None:
        ext = self.conn.peer_extension_id(EXTENSION_NAME)
        assert ext is not None
        await self.stream.send_all(self.conn.send(Extended(ext_id=ext, payload=payload)))

    async def next_message(self) -> m.Message:
        while not self.inbox:
            await self._more()
        return m.parse(self.inbox.pop(0).payload)

    async def next_of(self, kind: type) -> m.Message:
        """The next message of type ``kind`` (the node's own pings are skipped)."""
        while True:
            msg = await self.next_message()
            if isinstance(msg, kind):
                return msg

    async def closed(self) -> bool:
        """Read until the node closes the connection (True) or 200 s pass (False)."""
        with trio.move_on_after(200):
            try:
                while True:
                    await self._more()
            except (RemoteProtocolError, trio.BrokenResourceError):
                return True
        return False

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise RemoteProtocolError("closed")
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not NEED_DATA:
            if isinstance(event, Extended):
                self.inbox.append(event)


async def start_node(
    nursery: trio.Nursery, net: SimNetwork, host: str, **kw: object
) -> OverlayDriver:
    node = OverlayDriver(
        net.view(host),
        holder=PeerAddr(host, 6881),
        rng=random.Random(host),
        **kw,  # type: ignore[arg-type]
    )
    await nursery.start(node.run)
    return node


async def test_a_raw_peer_gets_hello_and_pong_then_malformed_bytes_close_only_its_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(1))
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, net, "10.0.0.1")
            good = await RawPeer.connect(net, "10.0.0.2", node.address)
            await good.extended_handshake()
            assert await good.next_message() == m.Hello(role=Role.PEER, port=node.address.port)
            await good.send(m.encode(m.Hello(role=Role.PEER, port=0)))
            await good.send(m.encode(m.Ping(msg_id=b"p" * 16, ttl=1, hops=0)))
            pong = await good.next_of(m.Pong)
            assert pong == m.Pong(msg_id=b"p" * 16, ttl=1, hops=0, host="", port=node.address.port)

            bad = await RawPeer.connect(net, "10.0.0.3", node.address)
            await bad.extended_handshake()
            await bad.send(b"d1:y5:hello")  # truncated bencode
            assert await bad.closed()
            assert node.counters.dropped["malformed"] == 1

            # The good link still works.
            await good.send(m.encode(m.Ping(msg_id=b"q" * 16, ttl=1, hops=0)))
            assert isinstance(await good.next_of(m.Pong), m.Pong)
            nursery.cancel_scope.cancel()


async def test_wrong_info_hash_no_extension_and_oversized_messages_are_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(2))
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, net, "10.0.0.1")
            stranger = await RawPeer.connect(net, "10.0.0.2", node.address, info_hash=bytes(20))
            assert await stranger.closed()

            plain = await RawPeer.connect(net, "10.0.0.3", node.address)
            await plain.extended_handshake(extensions={"ut_metadata": 3})  # no tk_overlay
            assert await plain.closed()

            # A BitTorrent peer without the extension protocol bit (BEP 10).
            old = await RawPeer.connect(net, "10.0.0.5", node.address, reserved=bytes(8))
            assert await old.closed()

            big = await RawPeer.connect(net, "10.0.0.4", node.address)
            await big.extended_handshake()
            await big.send(b"x" * (m.MAX_MESSAGE + 1))  # over 4 kB: refused by its length
            assert await big.closed()
            assert node.neighbours() == []
            nursery.cancel_scope.cancel()


async def test_a_flooding_peer_is_cut_off_and_banned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(3))
    config = OverlayConfig(rate=20.0, burst=40.0, ban_after=100, ban_seconds=300.0)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, net, "10.0.0.1", config=config)
            flooder = await RawPeer.connect(net, "10.0.0.2", node.address)
            await flooder.extended_handshake()
            await flooder.send(m.encode(m.Hello(role=Role.PEER, port=0)))
            burst = b"".join(
                flooder.conn.send(
                    Extended(
                        ext_id=flooder.conn.peer_extension_id(EXTENSION_NAME) or 0,
                        payload=m.encode(
                            m.Query(msg_id=i.to_bytes(16, "big"), ttl=7, hops=0, text="x")
                        ),
                    )
                )
                for i in range(500)
            )
            await flooder.stream.send_all(burst)
            assert await flooder.closed()
            assert node.counters.dropped["rate_limited"] >= 100
            assert node.counters.received["query"] <= 60  # the burst, and a little refill
            # It is banned: a new connection with the same peer id is closed at once.
            again = await RawPeer.connect(net, "10.0.0.2", node.address)
            assert await again.closed()
            assert again.conn.peer_handshake is None  # refused before the node answered
            assert not again.inbox
            nursery.cancel_scope.cancel()


async def test_a_node_that_bootstraps_to_itself_gives_up_on_that_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(4))
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, net, "10.0.0.1", refill_interval=1.0)
            node.add_bootstrap([node.address])
            await trio.sleep(120)
            assert node.neighbours() == []
            assert node.core.known_addresses() == []
            # One attempt (both ends of it are us), then never again.
            assert node.counters.sent["hello"] == 0
            nursery.cancel_scope.cancel()


async def test_a_session_can_hand_over_an_overlay_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A BitTorrent listener (here a bare one) reads the handshake, sees the overlay
    # info-hash and passes the connection to the overlay node.
    net = SimNetwork(random.Random(5))
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, net, "10.0.0.1")
            node.publish([ISO])
            listener = await net.view("10.0.0.1").listen_tcp("0.0.0.0", 6881)

            async def session_listener() -> None:
                stream, remote = await listener.accept()
                conn = PeerConnection(
                    initiator=False,
                    info_hash=lambda ih: ih == OVERLAY_INFO_HASH,
                    our_peer_id=node.peer_id,
                )
                while conn.peer_handshake is None:
                    conn.receive_data(await stream.receive_some(65536))
                    conn.next_event()
                await node.accept(stream, conn, remote)

            nursery.start_soon(session_listener)
            other = await start_node(nursery, net, "10.0.0.2", bootstrap=[listener.address])
            await wait_for_links(other, 1)
            hits = await other.search("debian", wait=5.0, stop_after=1)
            assert [h.peers for h in hits] == [(PeerAddr("10.0.0.1", 6881),)]
            nursery.cancel_scope.cancel()
