"""The trio driver: the same node over the in-memory network (virtual clock) and over real
UDP sockets on 127.0.0.1."""

from __future__ import annotations

import hashlib
import random

import pytest
import trio
import trio.testing

from torrentkit.discovery.chord import ChordConfig, ChordDriver, ChordJoinError, open_chord_node
from torrentkit.discovery.chord.ring import key_position
from torrentkit.ids import PeerAddr
from torrentkit.net import TrioNetwork
from torrentkit.testing.network import SimNetwork

LOSS = 0.03
FAST = ChordConfig(stabilize_interval=0.5, rpc_timeout=0.3, r=4)


def key(n: int) -> bytes:
    return hashlib.sha1(str(n).encode()).digest()


async def _sim_ring(
    nursery: trio.Nursery, net: SimNetwork, count: int, rng: random.Random, config: ChordConfig
) -> dict[PeerAddr, tuple[ChordDriver, trio.CancelScope]]:
    ring: dict[PeerAddr, tuple[ChordDriver, trio.CancelScope]] = {}

    async def node(
        host: str, *, task_status: trio.TaskStatus[tuple[ChordDriver, trio.CancelScope]]
    ) -> None:
        with trio.CancelScope() as scope:
            async with open_chord_node(net.view(host), host, 6881, config=config, rng=rng) as d:
                task_status.started((d, scope))
                await trio.sleep_forever()

    for i in range(count):
        d, scope = await nursery.start(node, f"10.2.0.{i + 1}")
        if ring:
            await d.join(next(iter(ring)))
        else:
            d.create()
        ring[d.address] = (d, scope)
    await trio.sleep(30)
    return ring


def _owner(ring: dict[PeerAddr, tuple[ChordDriver, trio.CancelScope]], k: bytes) -> PeerAddr:
    nodes = sorted((d.node.id, a) for a, (d, _) in ring.items())
    pos = key_position(k, 160)
    return next((a for i, a in nodes if i >= pos), nodes[0][1])


async def test_sim_ring_with_loss_crashes_and_a_graceful_leave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(5)
    net = SimNetwork(rng, latency=0.02, jitter=0.01, loss=LOSS)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            ring = await _sim_ring(nursery, net, 24, rng, FAST)
            drivers = [d for d, _ in ring.values()]
            for n in range(40):
                done = await drivers[n % len(drivers)].announce(key(n), 10_000 + n)
                assert done.ok and done.owner == _owner(ring, key(n))
            await trio.sleep(5)
            # A graceful leave, and three crashes.
            leaver = drivers[3]
            await leaver.leave()
            ring.pop(leaver.address)[1].cancel()
            for victim in (drivers[7].address, drivers[11].address, drivers[15].address):
                ring.pop(victim)[1].cancel()
            live = [d for d, _ in ring.values()]
            # Straight away, before stabilization: lookups route around the dead nodes.
            found = 0
            for n in range(40):
                got = await live[n % len(live)].get_peers(key(n))
                found += got.ok and len(got.peers) == 1
            assert found >= 38
            await trio.sleep(20)
            for n in range(40):
                got = await live[(n * 7) % len(live)].get_peers(key(n))
                assert got.ok and got.owner == _owner(ring, key(n)), n
                assert got.peers[0].port == 10_000 + n
            nursery.cancel_scope.cancel()


async def test_join_through_a_dead_bootstrap_fails_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(1))
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            async with open_chord_node(net.view("10.3.0.1"), "10.3.0.1", 6881, config=FAST) as d:
                with pytest.raises(ChordJoinError):
                    await d.join(PeerAddr("10.3.0.2", 6881))
                assert d.node.state == "idle"
            nursery.cancel_scope.cancel()


async def test_real_udp_on_loopback() -> None:
    net = TrioNetwork()
    config = ChordConfig(stabilize_interval=0.1, rpc_timeout=0.2, r=3)
    with trio.fail_after(30):
        async with (
            open_chord_node(net, "127.0.0.1", 0, config=config) as a,
            open_chord_node(net, "127.0.0.1", 0, config=config) as b,
            open_chord_node(net, "127.0.0.1", 0, config=config) as c,
        ):
            assert a.address.port != 0
            a.create()
            await b.join(a.address)
            await c.join(b.address)
            while not all(len(d.node.successors) == 2 for d in (a, b, c)):
                await trio.sleep(0.05)
            done = await c.announce(key(1), 6881)
            assert done.ok
            got = await a.get_peers(key(1))
            assert got.ok and got.peers == (PeerAddr("127.0.0.1", 6881),)
            await b.leave()
            got = await c.get_peers(key(1))
            assert got.ok and got.peers == (PeerAddr("127.0.0.1", 6881),)


async def test_wildcard_bind_needs_an_advertised_address() -> None:
    with trio.fail_after(10), pytest.raises(Exception, match="advertise"):
        async with open_chord_node(TrioNetwork(), "0.0.0.0", 0):
            pass
