"""The one search-with-backoff adapter (discovery/base.py SearchLoop), under a virtual clock:
the schedule (1, 2, 4, 8 s, then every 30 s), ``completed()`` waking it, publishing and
re-publishing, errors retried, and -- the point of issue 10 -- it never stops by itself, so a
holder that appears long after the metadata arrived still reaches the sink."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from torrentkit.discovery.base import (
    REPUBLISH_INTERVAL,
    Discovery,
    Listing,
    NetworkError,
    SearchLoop,
    TorrentDiscovery,
)
from torrentkit.ids import InfoHash, PeerAddr

IH = InfoHash(b"\x11" * 20)
A, B, ME = PeerAddr("127.0.0.1", 7001), PeerAddr("127.0.0.1", 7002), PeerAddr("127.0.0.1", 6881)


class FakeNetwork:
    name = "fake"

    def __init__(self) -> None:
        self.holders: list[PeerAddr] = []
        self.search_times: list[float] = []
        self.publish_times: list[float] = []
        self.withdrawn: list[InfoHash] = []
        self.fail_searches = 0

    async def join(self) -> None:
        await trio.lowlevel.checkpoint()

    async def publish(self, listing: Listing, port: int) -> None:
        await trio.lowlevel.checkpoint()
        self.publish_times.append(trio.current_time())

    def withdraw(self, info_hash: InfoHash) -> None:
        self.withdrawn.append(info_hash)

    async def search(self, listing: Listing) -> Sequence[PeerAddr]:
        await trio.lowlevel.checkpoint()
        self.search_times.append(trio.current_time())
        if self.fail_searches:
            self.fail_searches -= 1
            raise NetworkError("index unreachable")
        return list(self.holders)


def _types(net: FakeNetwork, loop: SearchLoop) -> None:
    _: Discovery = net
    __: TorrentDiscovery = loop


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[float, list[PeerAddr], str]] = []

    def __call__(self, peers: Sequence[PeerAddr], source: str) -> None:
        self.got.append((trio.current_time(), list(peers), source))


async def test_searches_back_off_1_2_4_8_then_every_30_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net, sink = FakeNetwork(), Sink()
    loop = SearchLoop(net, Listing(info_hash=IH), port=6881, sink=sink, publish=False)
    _types(net, loop)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(loop.run)
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert [round(t - start) for t in net.search_times] == [0, 1, 3, 7, 15, 45, 75]
    assert sink.got == [] and net.publish_times == [] and net.withdrawn == []


async def test_keeps_searching_after_completion_and_a_late_holder_reaches_the_sink(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net, sink = FakeNetwork(), Sink()
    net.holders = [A, ME]
    loop = SearchLoop(
        net, Listing(info_hash=IH, name="x"), port=6881, sink=sink, publish=False, exclude=[ME]
    )
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(loop.run)
        await trio.sleep(20)
        assert [(p, s) for _, p, s in sink.got] == [([A], "fake")]  # ourselves never
        # The metadata arrived and the download completed long ago: a new holder still
        # shows up, and completed() makes the loop look at once.
        loop.completed()
        await trio.sleep(0.001)
        assert round(net.search_times[-1] - start, 2) == 20.0
        await trio.sleep(600)
        net.holders.append(B)
        await trio.sleep(31)
        nursery.cancel_scope.cancel()
    assert [p for _, p, _ in sink.got] == [[A], [B]]
    assert sink.got[1][0] - start > 620
    assert loop.searches > 20  # every 30 s all along


async def test_publishes_republishes_and_withdraws(autojump_clock: trio.testing.MockClock) -> None:
    net, sink = FakeNetwork(), Sink()
    loop = SearchLoop(
        net, Listing(info_hash=IH, name="x", size=1), port=6881, sink=sink, publish=True
    )
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(loop.run)
        await trio.sleep(2 * REPUBLISH_INTERVAL + 1)
        nursery.cancel_scope.cancel()
    assert [round(t - start) for t in net.publish_times] == [
        0,
        round(REPUBLISH_INTERVAL),
        round(2 * REPUBLISH_INTERVAL),
    ]
    assert net.withdrawn == [IH]


async def test_search_errors_are_retried_on_the_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net, sink = FakeNetwork(), Sink()
    net.fail_searches = 2
    net.holders = [A]
    loop = SearchLoop(net, Listing(info_hash=IH), port=6881, sink=sink, publish=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.run)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert loop.errors == 2 and loop.last_error == "index unreachable"
    assert [p for _, p, _ in sink.got] == [[A]]


def test_a_schedule_needs_positive_delays() -> None:
    with pytest.raises(ValueError, match="schedule"):
        SearchLoop(FakeNetwork(), Listing(info_hash=IH), port=1, sink=Sink(), publish=False,
                   schedule=(1.0, 0.0))  # fmt: skip
