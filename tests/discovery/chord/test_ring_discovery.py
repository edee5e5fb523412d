"""The Chord ring as a ``Discovery`` (join, publish, search) and its torrents' presences as
the one ``SearchLoop``, on the in-memory network under the virtual clock: members find each
other and never themselves, announces repeat every 10 minutes, a magnet waiting for its
metadata only searches, and a ring nobody answers for is a NetworkError."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
import trio
import trio.testing

from torrentkit.discovery.base import Discovery, DiscoveryNetwork, NetworkError
from torrentkit.discovery.chord.discovery import ANNOUNCE_INTERVAL, ChordRing
from torrentkit.discovery.chord.driver import open_chord_node
from torrentkit.discovery.chord.node import ChordConfig
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.testing.network import SimNetwork

FAST = ChordConfig(stabilize_interval=0.5, rpc_timeout=0.3, r=3)
IH = InfoHash(b"\x42" * 20)


class Sink:
    def __init__(self) -> None:
        self.got: list[PeerAddr] = []

    def __call__(self, peers: Sequence[PeerAddr], source: str) -> None:
        assert source == "chord"
        self.got.extend(peers)


def _types(ring: ChordRing) -> None:
    _: Discovery = ring
    __: DiscoveryNetwork = ring


async def _member(
    net: SimNetwork,
    host: str,
    bootstrap: Sequence[PeerAddr],
    *,
    task_status: trio.TaskStatus[ChordRing],
) -> None:
    async with open_chord_node(
        net.view(host), host, 6881, config=FAST, rng=random.Random(host)
    ) as driver:
        ring = ChordRing(driver, bootstrap=bootstrap)
        await ring.join()
        task_status.started(ring)
        await trio.sleep_forever()


async def test_members_find_each_other_never_themselves_and_reannounce_every_10_min(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(3), latency=0.01)
    with trio.fail_after(3000):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            first: ChordRing = await nursery.start(_member, net, "10.4.0.1", ())
            _types(first)
            dead = PeerAddr("10.4.9.9", 6881)  # the first bootstrap node never answers
            rings = [first]
            for i in range(2, 6):
                boot = (dead, first.driver.address)
                rings.append(await nursery.start(_member, net, f"10.4.0.{i}", boot))
            await trio.sleep(20)  # a few stabilize rounds

            seeder, leecher, magnet = rings[1], rings[3], rings[4]
            sinks = [Sink(), Sink(), Sink()]
            loops = [
                seeder.torrent_source(IH, port=7001, sink=sinks[0], publish=True),
                leecher.torrent_source(IH, port=7002, sink=sinks[1], publish=True),
                magnet.torrent_source(IH, port=7003, sink=sinks[2], publish=False),
            ]
            start = trio.current_time()
            for loop in loops:
                await nursery.start(loop.run)
            await trio.sleep(ANNOUNCE_INTERVAL * 2 + 60)

            a = PeerAddr(seeder.driver.address.host, 7001)
            b = PeerAddr(leecher.driver.address.host, 7002)
            c = PeerAddr(magnet.driver.address.host, 7003)
            assert set(sinks[0].got) == {b}
            assert set(sinks[1].got) == {a}
            assert set(sinks[2].got) == {a, b}
            assert c not in sinks[0].got + sinks[1].got  # a magnet announces nothing
            assert magnet.announces == 0
            # Announced at once, then every 10 minutes (the ring keeps a value 30 minutes).
            assert loops[0].publishes == loops[1].publishes == 3
            assert seeder.announces == 3
            # Searches go on after peers were found (1, 2, 4, 8 s, then every 30 s).
            elapsed = trio.current_time() - start
            assert seeder.searches >= elapsed // 30
            nursery.cancel_scope.cancel()


async def test_join_fails_with_network_error_when_no_bootstrap_node_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(random.Random(1))
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            async with open_chord_node(net.view("10.5.0.1"), "10.5.0.1", 6881, config=FAST) as d:
                ring = ChordRing(d, bootstrap=(PeerAddr("10.5.0.2", 6881),))
                with pytest.raises(NetworkError, match=r"10\.5\.0\.2:6881"):
                    await ring.join()
            nursery.cancel_scope.cancel()


async def test_a_shorter_announce_interval_announces_that_often(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``ChordSettings.announce_interval`` (the demo's 5 s): the ring re-announces each
    torrent that often instead of every 10 minutes."""
    net = SimNetwork(random.Random(4), latency=0.01)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            async with open_chord_node(
                net.view("10.5.0.1"), "10.5.0.1", 6881, config=FAST, rng=random.Random(1)
            ) as driver:
                ring = ChordRing(driver, announce_interval=5.0)
                await ring.join()
                loop = ring.torrent_source(IH, port=7001, sink=Sink(), publish=True)
                await nursery.start(loop.run)
                await trio.sleep(22)
                assert loop.publishes == ring.announces == 5  # at 0, 5, 10, 15 and 20 s
                nursery.cancel_scope.cancel()


def test_chord_settings_check_the_announce_interval() -> None:
    from torrentkit.settings import ChordSettings, SettingsError

    assert ChordSettings().announce_interval == ANNOUNCE_INTERVAL
    assert ChordSettings(announce_interval=5).announce_interval == 5
    for bad in (0, 0.5, 1501):
        with pytest.raises(SettingsError, match="announce_interval"):
            ChordSettings(announce_interval=bad)
