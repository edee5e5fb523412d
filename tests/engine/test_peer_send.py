"""PeerLink's gather write: the outbox goes out with sendmsg, in order, whole, however the
kernel splits it (partial sends resume mid-buffer)."""

from __future__ import annotations

import trio
import trio.socket

from torrentkit.engine.peer import IOV_MAX, PeerLink


async def test_send_vectored_sends_every_byte_in_order() -> None:
    a, b = trio.socket.socketpair()
    payload = bytes(range(256)) * 64  # 16 KiB
    # more buffers than one sendmsg takes, and more bytes than the socket buffers hold
    chunks: list[bytes | memoryview] = []
    for i in range(IOV_MAX + 300):
        chunks.append(b"h%05d" % i)
        chunks.append(memoryview(payload)[i % 256 :])
    expected = b"".join(chunks)
    got = bytearray()
    with a, b, trio.fail_after(10):

        async def reader() -> None:
            while len(got) < len(expected):
                data = await b.recv(1 << 20)
                assert data
                got.extend(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await PeerLink._send_vectored(a, chunks)
    assert got == expected
