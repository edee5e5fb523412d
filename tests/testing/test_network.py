"""The transport seam: real loopback sockets and the in-memory simulation behave alike."""

from __future__ import annotations

import random

import pytest
import trio

from torrentkit.ids import PeerAddr
from torrentkit.net import Network, TrioNetwork
from torrentkit.testing.network import SimNetwork


async def echo_roundtrip(server_net: Network, client_net: Network, host: str) -> bytes:
    listener = await server_net.listen_tcp(host, 0)
    payload = bytes(range(256)) * 1000
    got = bytearray()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            stream, _ = await listener.accept()
            async with stream:
                while data := await stream.receive_some(65536):
                    await stream.send_all(data)

        nursery.start_soon(serve)
        stream = await client_net.connect_tcp(listener.address)
        async with stream:
            await stream.send_all(payload)
            while len(got) < len(payload):
                got += await stream.receive_some(65536)
        await listener.aclose()
    assert bytes(got) == payload
    return bytes(got)


async def test_real_loopback_roundtrip() -> None:
    with trio.fail_after(10):
        net = TrioNetwork()
        await echo_roundtrip(net, net, "127.0.0.1")


async def test_real_udp_roundtrip() -> None:
    with trio.fail_after(10):
        net = TrioNetwork()
        a = await net.bind_udp("127.0.0.1", 0)
        b = await net.bind_udp("127.0.0.1", 0)
        assert a.address.port != 0
        await a.send(b"ping", b.address)
        data, src = await b.receive()
        assert data == b"ping" and src == a.address
        a.close()
        b.close()


async def test_sim_roundtrip(autojump_clock: trio.testing.MockClock) -> None:
    sim = SimNetwork(random.Random(1))
    with trio.fail_after(60):
        await echo_roundtrip(sim.view("127.0.1.1"), sim.view("127.0.1.2"), "127.0.1.1")


async def test_sim_upload_rate_shapes_transfer_time(autojump_clock: trio.testing.MockClock) -> None:
    sim = SimNetwork(random.Random(1), latency=0.01)
    sim.set_upload_rate("127.0.1.1", 100_000)  # 100 kB/s uplink
    server, client = sim.view("127.0.1.1"), sim.view("127.0.1.2")
    listener = await server.listen_tcp("127.0.1.1", 6881)
    assert listener.address == PeerAddr("127.0.1.1", 6881)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                stream, _ = await listener.accept()
                await stream.send_all(b"x" * 1_000_000)
                await stream.aclose()

            nursery.start_soon(serve)
            stream = await client.connect_tcp(listener.address)
            start = trio.current_time()
            total = 0
            while data := await stream.receive_some(65536):
                total += len(data)
            elapsed = trio.current_time() - start
    assert total == 1_000_000
    assert 9.5 < elapsed < 11.0  # 1 MB at 100 kB/s, plus latency


async def test_sim_window_bounds_unread_bytes(autojump_clock: trio.testing.MockClock) -> None:
    sim = SimNetwork(random.Random(1), window=64 * 1024)
    server, client = sim.view("127.0.1.1"), sim.view("127.0.1.2")
    listener = await server.listen_tcp("127.0.1.1", 0)
    with trio.fail_after(60):
        stream = await client.connect_tcp(listener.address)
        peer, _ = await listener.accept()
        with trio.move_on_after(5) as scope:
            await stream.send_all(b"y" * 1_000_000)  # nobody reads: must block
        assert scope.cancelled_caught
        await peer.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"more")


async def test_sim_refused_and_closed(autojump_clock: trio.testing.MockClock) -> None:
    sim = SimNetwork(random.Random(1))
    client = sim.view("127.0.1.2")
    with pytest.raises(OSError, match="refused"):
        await client.connect_tcp(PeerAddr("127.0.1.9", 1))


async def test_sim_datagrams_latency_and_loss(autojump_clock: trio.testing.MockClock) -> None:
    sim = SimNetwork(random.Random(7), latency=0.05, loss=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        a = await sim.view("127.0.1.1").bind_udp("127.0.1.1", 0)
        b = await sim.view("127.0.1.2").bind_udp("127.0.1.2", 0)
        start = trio.current_time()
        for i in range(200):
            await a.send(b"%d" % i, b.address)
        received = []
        with trio.move_on_after(1):
            while True:
                data, src = await b.receive()
                assert src == a.address
                received.append((trio.current_time() - start, data))
        nursery.cancel_scope.cancel()
    assert 60 < len(received) < 140  # about half lost
    assert all(t >= 0.05 for t, _ in received)
    assert sim.datagrams_sent == 200
    assert sim.datagrams_dropped == 200 - len(received)
