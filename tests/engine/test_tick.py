"""The session's one tick (engine/tick.py): only torrents with links are visited, every
second for their links and at their rechoke times; keep-alives, silence and rechokes still
come on time. On the virtual clock."""

from __future__ import annotations

import itertools
import math
import random

import trio
import trio.testing

from torrentkit.engine.session import Session, SessionOptions
from torrentkit.engine.storage import MemoryStorage
from torrentkit.engine.tick import TickWheel
from torrentkit.engine.torrent import Torrent, TorrentOptions
from torrentkit.events import Event, PeerDisconnected
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent

KIB = 1024


class Fake:
    """A Ticking that records when it was visited."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.ticks: list[float] = []
        self.rechokes: list[float] = []
        self._next = 0.0

    def tick(self, now: float) -> None:
        self.ticks.append(now)

    def next_rechoke(self, now: float) -> float:
        if self._next <= now:
            self._next += (math.floor((now - self._next) / self.interval) + 1) * self.interval
        return self._next

    def rechoke_tick(self, now: float) -> float:
        self.rechokes.append(now)
        return self.next_rechoke(now)


async def test_the_wheel_visits_only_active_ones(autojump_clock: trio.testing.MockClock) -> None:
    wheel = TickWheel()
    idle, busy, fast = Fake(10.0), Fake(10.0), Fake(0.25)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wheel.run)
        await trio.sleep(100)  # nothing active: the wheel sleeps, nobody is visited
        start = trio.current_time()
        wheel.activate(busy)
        await trio.sleep(35.5)
        wheel.activate(fast)
        await trio.sleep(1.0)
        wheel.deactivate(fast)
        wheel.deactivate(busy)
        await trio.sleep(50)
        nursery.cancel_scope.cancel()
    assert idle.ticks == [] and idle.rechokes == []
    assert wheel.active == 0
    # busy: every second while active, rechokes on its 10 s grid
    assert [round(t - start, 6) for t in busy.ticks] == [float(s) for s in range(1, 37)]
    assert start == 100.0  # the virtual clock starts at 0; Fake's rechoke grid is 0, 10, ...
    assert [round(t, 6) for t in busy.rechokes] == [110.0, 120.0, 130.0]
    # fast: a rechoke interval under a second is kept too (active 135.5-136.5)
    # (136.5 too when the wheel runs before the deactivation at that same instant)
    assert fast.rechokes[:3] == [135.75, 136.0, 136.25] and len(fast.rechokes) <= 4


async def test_reactivation_keeps_one_schedule(autojump_clock: trio.testing.MockClock) -> None:
    wheel = TickWheel()
    f = Fake(10.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wheel.run)
        for _ in range(50):  # links come and go quickly: no duplicate rechokes
            wheel.activate(f)
            await trio.sleep(0.01)
            wheel.deactivate(f)
        wheel.activate(f)
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert [round(t) for t in f.rechokes] == [10, 20, 30]
    assert len(set(f.rechokes)) == len(f.rechokes)


async def start_session(
    nursery: trio.Nursery, net: SimNetwork, host: str, events: list[Event] | None = None
) -> Session:
    session = Session(
        net.view(host),
        SessionOptions(bind=host, port=6881),
        rng=random.Random(host),
        on_event=events.append if events is not None else None,
    )
    await nursery.start(session.run)
    return session


def count_visits(torrent: Torrent) -> tuple[list[float], list[float]]:
    """Record when the wheel calls the torrent's tick and rechoke (instance attributes)."""
    ticks: list[float] = []
    rechokes: list[float] = []
    tick, rechoke_tick = torrent.tick, torrent.rechoke_tick

    def counted_tick(now: float) -> None:
        ticks.append(now)
        tick(now)

    def counted_rechoke(now: float) -> float:
        rechokes.append(now)
        return rechoke_tick(now)

    torrent.tick = counted_tick  # type: ignore[method-assign]
    torrent.rechoke_tick = counted_rechoke  # type: ignore[method-assign]
    return ticks, rechokes


async def test_idle_torrents_are_never_visited(autojump_clock: trio.testing.MockClock) -> None:
    """Three seeding torrents in one session; a leecher joins one of them. Only that one is
    visited, every second and every rechoke interval, and only while it has the link."""
    rng = random.Random(5)
    torrents = [make_torrent(rng, 64 * KIB + i, 16 * KIB, name=f"t{i}.bin") for i in range(3)]
    net = SimNetwork(rng)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.4.0.1")
            seeds = []
            for info, payload in torrents:
                t = await seeder.add_torrent(info, MemoryStorage(info, payload))
                seeds.append((t, count_visits(t)))
            await trio.sleep(60)
            assert all(not ticks and not rechokes for _, (ticks, rechokes) in seeds)
            assert seeder.ticker.active == 0
            leecher = await start_session(nursery, net, "127.4.0.2")
            info, _ = torrents[1]
            mine = await leecher.add_torrent(info, MemoryStorage(info))
            mine.add_peers([seeder.address], "test")
            await mine.complete.wait()
            # both done: they part; once the link is gone nobody is visited any more
            with trio.fail_after(5):
                while seeds[1][0].links:
                    await trio.sleep(0.1)
            after = [(len(ticks), len(rechokes)) for _, (ticks, rechokes) in seeds]
            assert seeder.ticker.active == 0
            await trio.sleep(60)
            nursery.cancel_scope.cancel()
    assert after == [(len(ticks), len(rechokes)) for _, (ticks, rechokes) in seeds]
    assert seeds[0][1] == ([], []) and seeds[2][1] == ([], [])


async def test_keepalives_silence_and_rechokes_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A raw peer handshakes and then says nothing: we send it a keep-alive after 90 s of
    our own silence, rechoke every interval meanwhile, and drop it after 120 s of its."""
    rng = random.Random(6)
    info, payload = make_torrent(rng, 64 * KIB, 16 * KIB)
    net = SimNetwork(rng)
    events: list[Event] = []
    received: list[tuple[float, bytes]] = []
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            seeder = await start_session(nursery, net, "127.4.0.1", events)
            t = await seeder.add_torrent(
                info, MemoryStorage(info, payload), TorrentOptions(rechoke_interval=7.0)
            )
            ticks, rechokes = count_visits(t)
            await trio.sleep(3.3)  # off the torrent's rechoke grid
            stream = await net.view("127.4.0.9").connect_tcp(seeder.address)
            connected = trio.current_time()
            peer_id = b"-XX0001-" + bytes(12)
            await stream.send_all(b"\x13BitTorrent protocol" + bytes(8) + info.info_hash + peer_id)
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    break
                received.append((trio.current_time() - connected, bytes(data)))
            closed = trio.current_time() - connected
            await trio.sleep(30)
            nursery.cancel_scope.cancel()
    # handshake + bitfield at once, then exactly one keep-alive, 90-91 s later
    assert received[0][0] < 1
    later = [(at, data) for at, data in received if at > 1]
    assert len(later) == 1 and later[0][1] == bytes(4)
    assert 90 <= later[0][0] <= 91.5
    # dropped for its silence 120-122 s after it last spoke
    assert 120 <= closed <= 122
    gone = [e for e in events if isinstance(e, PeerDisconnected)]
    assert len(gone) == 1 and "silent" in gone[0].reason
    # visited every second and rechoked on its 7 s grid only while the link was up
    assert ticks and rechokes
    started = t.started_at
    assert all(abs((r - started) / 7.0 - round((r - started) / 7.0)) < 1e-6 for r in rechokes)
    assert len(rechokes) == math.floor((connected + closed - started) / 7.0) - math.floor(
        (connected - started) / 7.0
    )
    assert 118 <= len(ticks) <= 122
    assert all(0.999 <= b - a <= 1.001 for a, b in itertools.pairwise(ticks))
