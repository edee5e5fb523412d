"""PeerLink's uploader: blocks of cached pieces go out without a read, and a block the peer
cancels while its piece is read from disk is not sent."""

from __future__ import annotations

import trio
import trio.testing

from tests.wire.helpers import open_connection
from torrentkit.engine.peer import PeerLink
from torrentkit.engine.ratelimit import RateLimiter
from torrentkit.ids import PeerAddr
from torrentkit.wire.codec import encode
from torrentkit.wire.connection import NEED_DATA, PeerConnection
from torrentkit.wire.events import Cancel, Request, Unchoke

KIB = 1024


class Owner:
    """The torrent's side: piece 0 is cached, any other is read (waiting for ``disk``)."""

    def __init__(self) -> None:
        self.cache = {0: bytes(range(256)) * 128}
        self.reads: list[tuple[int, int, int]] = []
        self.disk = trio.Event()
        self.uploaded = 0
        self.up_limiters: list[RateLimiter] = []

    def cached_block(self, index: int, begin: int, length: int) -> memoryview | None:
        piece = self.cache.get(index)
        return None if piece is None else memoryview(piece)[begin : begin + length]

    async def read_block(self, index: int, begin: int, length: int) -> bytes:
        self.reads.append((index, begin, length))
        await self.disk.wait()
        return bytes([index]) * length

    def count_upload(self, nbytes: int) -> None:
        self.uploaded += nbytes


def unchoked_link(asked: list[Request]) -> tuple[Owner, PeerConnection, PeerLink]:
    """A link we unchoked whose peer has asked for ``asked`` (queued for the uploader)."""
    owner = Owner()
    conn = open_connection()
    conn.send(Unchoke())
    stream, _ = trio.testing.memory_stream_pair()
    link = PeerLink(owner, stream, conn, PeerAddr("10.0.0.2", 6881), outgoing=True, now=0.0)  # type: ignore[arg-type]
    conn.receive_data(b"".join(encode(r) for r in asked))
    for r in asked:
        assert conn.next_event() == r
        link.queue_upload(r)
    return owner, conn, link


async def test_cached_blocks_skip_the_read_and_cancelled_ones_are_not_sent() -> None:
    asked = [Request(index=0, begin=0, length=16 * KIB), Request(index=1, begin=0, length=16 * KIB)]
    owner, conn, link = unchoked_link(asked)
    assert conn.next_event() is NEED_DATA
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link._uploader)
            while not owner.reads:
                await trio.sleep(0)
            assert owner.reads == [(1, 0, 16 * KIB)]  # piece 0 was never read: cached
            # The peer cancels piece 1's block while it is being read.
            conn.receive_data(encode(Cancel(index=1, begin=0, length=16 * KIB)))
            assert isinstance(conn.next_event(), Cancel)
            owner.disk.set()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    sent = b"".join(bytes(c) for c in link._outbox)
    assert owner.uploaded == 16 * KIB
    assert sent[:13] == b"\x00\x00\x40\x09\x07" + bytes(8)  # PIECE 0, offset 0
    assert sent[13:] == owner.cache[0][: 16 * KIB]


async def test_cached_blocks_go_out_in_one_batch_without_waiting() -> None:
    asked = [Request(index=0, begin=b * 16 * KIB, length=16 * KIB) for b in range(2)]
    owner, conn, link = unchoked_link(asked)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link._uploader)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert not owner.reads
    assert owner.uploaded == 32 * KIB
    assert len(link._outbox) == 4  # two headers, two views of the cached piece
    assert not conn.peer_request_pending(0, 0, 16 * KIB)
