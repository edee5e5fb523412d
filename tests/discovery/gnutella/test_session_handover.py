"""An overlay link that reaches us through the BitTorrent session's listener: once handed to
the overlay node, the overlay's 4 kB message limit applies (not the peer wire's 1 MiB), so a
peer announcing a huge message is cut off at its length prefix, before anything is buffered."""

from __future__ import annotations

import random

import trio
import trio.testing

from torrentkit.discovery.gnutella import OVERLAY_INFO_HASH, OverlayDriver
from torrentkit.engine.session import Session, SessionOptions
from torrentkit.net import read_handshake
from torrentkit.testing.network import SimNetwork
from torrentkit.wire.connection import PeerConnection
from torrentkit.wire.events import Handshake


async def test_a_huge_message_prefix_closes_the_handed_over_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(3))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            session = Session(net.view("127.6.0.1"), SessionOptions(bind="x", port=6881))
            await nursery.start(session.run)
            node = OverlayDriver(
                net.view("127.6.0.1"), bind="127.6.0.1", port=7000, peer_id=session.peer_id
            )
            await nursery.start(node.run)
            session.add_handler(OVERLAY_INFO_HASH, node.accept)

            stream = await net.view("127.6.0.2").connect_tcp(session.address)
            me = b"-TK0100-handovertest"
            conn = PeerConnection(initiator=True, info_hash=OVERLAY_INFO_HASH, our_peer_id=me)
            await stream.send_all(conn.send(Handshake(info_hash=OVERLAY_INFO_HASH, peer_id=me)))
            await read_handshake(stream, conn)  # the node answered: the link is handed over
            # An extension message that claims 100,000 bytes, then only a few of them.
            await stream.send_all((100_000).to_bytes(4, "big") + b"\x14\x01" + b"x" * 10)
            closed_at = None
            start = trio.current_time()
            with trio.move_on_after(30):
                while True:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        data = b""
                    if not data:
                        closed_at = trio.current_time() - start
                        break
            nursery.cancel_scope.cancel()
    # Cut off at once, not after waiting for the body (or a timeout).
    assert closed_at is not None and closed_at < 1.0, closed_at
