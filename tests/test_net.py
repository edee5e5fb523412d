"""net.listen_tcp_and_udp: a TCP listener and a UDP endpoint on one port number (a download
that is also a Chord ring member). CI once lost a seeder because the port the OS picked for
its TCP listener was already some ring node's UDP port."""

from __future__ import annotations

import errno
import random
import socket

import pytest
import trio

from torrentkit.net import TrioNetwork, listen_tcp_and_udp
from torrentkit.testing.network import SimNetwork


async def test_port_zero_gives_one_number_for_both_and_both_work() -> None:
    net = TrioNetwork()
    tcp, udp = await listen_tcp_and_udp(net, "127.0.0.1", 0)
    try:
        assert tcp.address == udp.address and tcp.address.port != 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tcp.accept)
            stream = await net.connect_tcp(tcp.address)
            await stream.aclose()
        other = await net.bind_udp("127.0.0.1", 0)
        try:
            await other.send(b"ping", udp.address)
            with trio.fail_after(5):
                data, src = await udp.receive()
            assert (data, src) == (b"ping", other.address)
        finally:
            other.close()
    finally:
        udp.close()
        await tcp.aclose()


async def test_a_given_port_held_for_tcp_is_an_error_and_leaves_nothing_bound() -> None:
    net = TrioNetwork()
    holder = await net.listen_tcp("127.0.0.1", 0)
    port = holder.address.port
    try:
        with pytest.raises(OSError) as info:
            await listen_tcp_and_udp(net, "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        # The UDP socket it bound on the way was given back.
        udp = await net.bind_udp("127.0.0.1", port)
        udp.close()
    finally:
        await holder.aclose()


async def test_a_given_port_held_for_udp_is_an_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        with pytest.raises(OSError) as info:
            await listen_tcp_and_udp(TrioNetwork(), "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE


async def test_port_zero_skips_numbers_already_taken_for_tcp() -> None:
    sim = SimNetwork(random.Random(1))
    host = sim.view("10.0.0.1")
    # The sim hands out 40001, 40002, ... in order: hold TCP on the first two.
    first = await host.listen_tcp("10.0.0.1", 40001)
    second = await host.listen_tcp("10.0.0.1", 40002)
    tcp, udp = await listen_tcp_and_udp(host, "10.0.0.1", 0)
    assert tcp.address.port == udp.address.port == 40003
    for taken in (40001, 40002):  # the UDP ports tried and given back are free again
        again = await host.bind_udp("10.0.0.1", taken)
        again.close()
    await first.aclose()
    await second.aclose()


async def test_port_zero_gives_up_after_the_attempts() -> None:
    sim = SimNetwork(random.Random(1))
    host = sim.view("10.0.0.1")
    held = [await host.listen_tcp("10.0.0.1", 40001 + i) for i in range(4)]
    with pytest.raises(OSError) as info:
        await listen_tcp_and_udp(host, "10.0.0.1", 0, attempts=4)
    assert info.value.errno == errno.EADDRINUSE
    for h in held:
        await h.aclose()
