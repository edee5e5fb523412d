"""The trio driver: the node on the in-memory network and on real loopback sockets."""

from __future__ import annotations

import random
from contextlib import AsyncExitStack

import trio
import trio.testing

from torrentkit.dht import items
from torrentkit.dht.driver import DhtDriver, open_dht_driver, resolve
from torrentkit.dht.node import DhtNode
from torrentkit.ids import PeerAddr
from torrentkit.net import Network, TrioNetwork
from torrentkit.testing.network import SimNetwork


async def start_nodes(
    stack: AsyncExitStack, views: list[tuple[Network, str]], seed: int
) -> list[DhtDriver]:
    drivers = []
    for i, (net, host) in enumerate(views):
        node = DhtNode(rng=random.Random(seed * 1000 + i), now=trio.current_time())
        endpoint = await net.bind_udp(host, 0)
        drivers.append(await stack.enter_async_context(open_dht_driver(node, endpoint)))
    return drivers


async def test_nodes_find_each_other_and_peers_on_the_sim_network(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = SimNetwork(random.Random(1), latency=0.02)
    info_hash = bytes(range(20))
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await nursery.start(sim.run)
            hosts = [f"127.9.0.{i}" for i in range(1, 21)]
            drivers = await start_nodes(stack, [(sim.view(h), h) for h in hosts], seed=1)
            first = drivers[0].address
            for d in drivers[1:]:
                done = await d.bootstrap([first])
                assert done.ok
            for d in drivers:  # a second round: everyone knows more than the first node
                await d.find_node(d.node.node_id)
            announced = await drivers[3].announce(info_hash, 6881)
            assert announced.stored > 0
            found: list[PeerAddr] = []
            done = await drivers[17].get_peers(info_hash, on_peers=found.extend)
            assert PeerAddr(drivers[3].address.host, 6881) in done.peers
            assert found == list(done.peers)
            ping = await drivers[5].ping(drivers[9].address)
            assert ping.ok and ping.node_id == drivers[9].node.node_id
            # BEP 44 through the driver: an immutable and a mutable item, put and read back.
            plain = items.make_immutable(b"hello")
            assert (await drivers[2].put_item(plain)).stored > 0
            got = await drivers[11].get_item(plain.target)
            assert got.item == plain
            signed = items.sign_mutable(bytes(32), [1, b"two"], seq=4, salt=b"s")
            assert (await drivers[6].put_item(signed)).stored > 0
            got = await drivers[15].get_item(signed.target, salt=b"s")
            assert got.item == signed
            nursery.cancel_scope.cancel()


async def test_non_krpc_datagrams_are_dropped_before_decoding(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = SimNetwork(random.Random(2), latency=0.01)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await nursery.start(sim.run)
            (driver,) = await start_nodes(stack, [(sim.view("127.9.1.1"), "127.9.1.1")], 2)
            other = await sim.view("127.9.1.2").bind_udp("127.9.1.2", 0)
            utp_syn = bytes([0x41, 0x00]) + bytes(18)  # type ST_SYN, version 1
            for data in (utp_syn, b"", b"\x01junk"):
                await other.send(data, driver.address)
            ping = b"d1:ad2:id20:" + b"a" * 20 + b"e1:q4:ping1:t2:xx1:y1:qe"
            await other.send(ping, driver.address)
            while True:  # the node may ping us first, to verify the address
                reply, _ = await other.receive()
                if b"1:t2:xx" in reply:
                    break
            assert reply.endswith(b"1:y1:re")
            assert driver.non_krpc == 3
            assert driver.node.stats.received == 1
            nursery.cancel_scope.cancel()


async def test_add_node_from_a_port_message_pings_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = SimNetwork(random.Random(3), latency=0.01)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await nursery.start(sim.run)
            a, b = await start_nodes(
                stack, [(sim.view(h), h) for h in ("127.9.2.1", "127.9.2.2")], 3
            )
            a.add_node(b.address)
            while not len(a.node.table):
                await trio.sleep(0.01)
            assert [n.addr for n in a.node.known_nodes()] == [b.address]
            nursery.cancel_scope.cancel()


async def test_real_sockets_on_loopback() -> None:
    net = TrioNetwork()
    info_hash = b"\x42" * 20
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            drivers = await start_nodes(stack, [(net, "127.0.0.1")] * 4, seed=4)
            for d in drivers[1:]:
                assert (await d.bootstrap([drivers[0].address])).ok
            await drivers[1].announce(info_hash, 7000)
            done = await drivers[2].get_peers(info_hash)
            assert PeerAddr("127.0.0.1", 7000) in done.peers


async def test_resolve_keeps_ip_literals_without_a_lookup() -> None:
    addrs = [PeerAddr("127.0.0.1", 1), PeerAddr("127.0.0.2", 2), PeerAddr("localhost", 3)]
    assert await resolve(addrs) == [*addrs[:2], PeerAddr("127.0.0.1", 3)]
