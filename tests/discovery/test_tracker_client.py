"""The HTTP tracker client over real HTTP on 127.0.0.1.

A scripted tracker (a trio TCP server speaking just enough HTTP/1.1) records every request,
parsed with the server side's own ``parse_announce_query``, and answers what each test
scripts: bencoded replies, failures, garbage, oversized bodies, HTTP 500, silence. Timing
runs on pytest-trio's ``autojump_clock``: the scripted server lives in the same trio run and
loopback sockets deliver at once, so hours of announces pass in milliseconds. One test uses
the real tracker server (aiohttp in a thread) on the real clock.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from torrentkit import bencoding
from torrentkit.discovery.base import (
    Discovery,
    Listing,
    NetworkError,
    SearchLoop,
    TorrentDiscovery,
    TransferTotals,
)
from torrentkit.discovery.tracker.client import (
    TrackerClientConfig,
    TrackerDiscovery,
    TrackerEndpoint,
    TrackerTiers,
    TrackerUnreachable,
    new_http_client,
    open_tracker_endpoint,
    scrape,
)
from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
    TrackerResponseError,
    compact_peer,
    parse_announce_query,
    parse_scrape_query,
)
from torrentkit.discovery.tracker.server import TrackerThread
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.ids import InfoHash, PeerAddr

INFO_HASH = InfoHash(bytes(range(20)))
PEER_ID = b"-TK0100-" + b"\x00\xff%&+= ?#/\x80\x01"
PORT = 6881
LOG = "torrentkit.discovery.tracker.client"
#: An "endless" body stops here, so a client that ignores the cap fails instead of hanging.
STREAM_LIMIT = 64 << 20

# --------------------------------------------------------------------------------------------
# A scripted HTTP tracker


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What the scripted tracker does with one request."""

    body: bytes = b""
    status: int = 200
    #: normal | hang (never answer) | stream (endless body, no length) | garbage (not HTTP)
    #: | close (close without a word) | declared (headers claim ``size`` bytes, then stream)
    mode: str = "normal"
    size: int = 0


@dataclass(slots=True, kw_only=True)
class Seen:
    at: float
    path: str
    query: str

    @property
    def announce(self) -> AnnounceRequest:
        return parse_announce_query(self.query)

    @property
    def params(self) -> list[str]:
        return [part.partition("=")[0] for part in self.query.split("&")]


def announce_body(
    *,
    interval: int = 1800,
    min_interval: int | None = None,
    peers: bytes | list[dict[bytes, Any]] = b"",
    peers6: bytes | None = None,
    **extra: Any,
) -> bytes:
    d: dict[bytes, Any] = {b"interval": interval, b"peers": peers, b"complete": 1}
    d[b"incomplete"] = 2
    if min_interval is not None:
        d[b"min interval"] = min_interval
    if peers6 is not None:
        d[b"peers6"] = peers6
    for k, v in extra.items():
        d[k.replace("_", " ").encode()] = v
    return bencoding.encode(d)


def ok(**kw: Any) -> Reply:
    return Reply(body=announce_body(**kw))


@dataclass(slots=True)
class ScriptedTracker:
    script: Callable[[Seen], Reply]
    seen: list[Seen] = field(default_factory=list)
    sent_bytes: list[int] = field(default_factory=list)
    port: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    def announces(self) -> list[AnnounceRequest]:
        return [s.announce for s in self.seen]

    async def wait_for(self, n: int) -> list[Seen]:
        while len(self.seen) < n:
            await self._changed.wait()
        return self.seen

    async def start(self, nursery: trio.Nursery) -> ScriptedTracker:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = await stream.receive_some(65536)
            if not data:
                return
            head += data
        target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("ascii")
        path, _, query = target.partition("?")
        seen = Seen(at=trio.current_time(), path=path, query=query)
        self.seen.append(seen)
        self._changed.set()
        self._changed = trio.Event()
        reply = self.script(seen)
        if reply.mode == "hang":
            await trio.sleep_forever()
        if reply.mode == "close":
            return
        if reply.mode == "garbage":
            await stream.send_all(b"\x00\x01 this is not HTTP at all\r\n\r\n")
            return
        reason = {200: "OK", 500: "Internal Server Error"}.get(reply.status, "Other")
        headers = f"HTTP/1.1 {reply.status} {reason}\r\nConnection: close\r\n"
        if reply.mode in ("stream", "declared"):
            if reply.mode == "declared":
                headers += f"Content-Length: {reply.size}\r\n"
            await stream.send_all(headers.encode() + b"\r\n")
            chunk = b"x" * 65536
            sent = 0
            try:
                limit = reply.size if reply.mode == "declared" else STREAM_LIMIT
                while sent < limit:
                    await stream.send_all(chunk)
                    sent += len(chunk)
            finally:
                self.sent_bytes.append(sent)
            return
        headers += f"Content-Length: {len(reply.body)}\r\n\r\n"
        await stream.send_all(headers.encode() + reply.body)


# --------------------------------------------------------------------------------------------
# A client under test


@dataclass(slots=True)
class Harness:
    client: TrackerDiscovery
    scope: trio.CancelScope
    peers: list[tuple[tuple[PeerAddr, ...], str]]
    totals: list[TransferTotals]
    done: trio.Event

    def all_peers(self) -> set[PeerAddr]:
        return {p for batch, _ in self.peers for p in batch}


async def start_client(
    nursery: trio.Nursery,
    tiers: Sequence[Sequence[str]],
    *,
    config: TrackerClientConfig | None = None,
    rng: random.Random | None = None,
    left: int = 1000,
) -> Harness:
    """Run a TrackerDiscovery in its own cancel scope inside ``nursery``."""
    peers: list[tuple[tuple[PeerAddr, ...], str]] = []
    totals = [TransferTotals(uploaded=0, downloaded=0, left=left)]
    client = TrackerDiscovery(
        info_hash=INFO_HASH,
        peer_id=PEER_ID,
        port=PORT,
        tiers=tiers,
        totals=lambda: totals[-1],
        sink=lambda found, source: peers.append((tuple(found), source)),
        config=config,
        rng=rng if rng is not None else random.Random(1),
    )
    discovery: TorrentDiscovery = client  # it implements the shared interface (checked by mypy)
    scope = trio.CancelScope()
    done = trio.Event()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await discovery.run(task_status=task_status)
        done.set()

    await nursery.start(run)
    return Harness(client=client, scope=scope, peers=peers, totals=totals, done=done)


async def settle() -> None:
    """Let the client act on what the tracker sent (every task blocked, no I/O pending)."""
    await trio.testing.wait_all_tasks_blocked()


def v4(*addrs: tuple[str, int]) -> bytes:
    return b"".join(compact_peer(ip, port) for ip, port in addrs)


# --------------------------------------------------------------------------------------------
# Announce parameters, events and intervals


async def test_started_then_announces_at_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peers = v4(("10.0.0.1", 6881), ("10.0.0.2", 51413))
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(lambda s: ok(interval=1800, peers=peers)).start(nursery)
            h = await start_client(nursery, [[tracker.url]])
            t0 = trio.current_time()
            await tracker.wait_for(1)
            h.totals.append(TransferTotals(uploaded=7, downloaded=900, left=100))
            seen = await tracker.wait_for(3)
            await settle()
            first, second, third = (s.announce for s in seen[:3])
            assert seen[0].path == "/announce"
            assert seen[0].at == pytest.approx(t0, abs=0.01)
            assert seen[1].at - seen[0].at == pytest.approx(1800, abs=0.01)
            assert seen[2].at - seen[1].at == pytest.approx(1800, abs=0.01)
            # every BEP 3 parameter, plus compact, no_peer_id, numwant and key
            assert set(seen[0].params) >= {
                "info_hash", "peer_id", "port", "uploaded", "downloaded", "left",
                "event", "compact", "no_peer_id", "numwant", "key",
            }  # fmt: skip
            assert first.info_hash == INFO_HASH
            assert first.peer_id == PEER_ID
            assert first.port == PORT
            assert (first.uploaded, first.downloaded, first.left) == (0, 0, 1000)
            assert first.event is AnnounceEvent.STARTED
            assert first.compact and first.no_peer_id
            assert first.numwant == 50
            assert first.key is not None and first.key == second.key == third.key
            assert second.event is AnnounceEvent.NONE and "event" not in seen[1].params
            assert (second.uploaded, second.downloaded, second.left) == (7, 900, 100)
            assert third.event is AnnounceEvent.NONE
            assert h.peers[0] == (
                (PeerAddr("10.0.0.1", 6881), PeerAddr("10.0.0.2", 51413)),
                "tracker",
            )
            (status,) = h.client.status()
            assert status.current and status.url == tracker.url
            assert status.last_announce == pytest.approx(seen[2].at)
            assert status.next_announce == pytest.approx(seen[2].at + 1800)
            assert status.peers_received == 6 and status.last_peers == 2
            assert (status.seeders, status.leechers, status.last_error) == (1, 2, None)
            nursery.cancel_scope.cancel()


async def test_completed_announces_at_once_then_interval_resumes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(lambda s: ok(interval=1800, min_interval=900)).start(
                nursery
            )
            h = await start_client(nursery, [[tracker.url]])
            await tracker.wait_for(1)
            await trio.sleep(100)
            h.totals.append(TransferTotals(uploaded=0, downloaded=1000, left=0))
            t_done = trio.current_time()
            h.client.completed()
            seen = await tracker.wait_for(3)
            events = [s.announce.event for s in seen]
            assert events == [AnnounceEvent.STARTED, AnnounceEvent.COMPLETED, AnnounceEvent.NONE]
            assert seen[1].at == pytest.approx(t_done, abs=0.01)  # min interval does not hold it
            assert seen[1].announce.left == 0
            assert seen[2].at - seen[1].at == pytest.approx(1800, abs=0.01)
            nursery.cancel_scope.cancel()


async def test_announce_soon_waits_for_min_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(lambda s: ok(interval=1800, min_interval=600)).start(
                nursery
            )
            h = await start_client(nursery, [[tracker.url]])
            await tracker.wait_for(1)
            await trio.sleep(10)
            h.client.announce_soon()
            seen = await tracker.wait_for(2)
            assert seen[1].at - seen[0].at == pytest.approx(600, abs=0.01)
            assert seen[1].announce.event is AnnounceEvent.NONE
            nursery.cancel_scope.cancel()


async def test_interval_below_the_floor_is_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(lambda s: ok(interval=0)).start(nursery)
            await start_client(nursery, [[tracker.url]])
            seen = await tracker.wait_for(3)
            assert seen[1].at - seen[0].at == pytest.approx(60, abs=0.01)
            assert seen[2].at - seen[1].at == pytest.approx(60, abs=0.01)
            nursery.cancel_scope.cancel()


async def test_tracker_id_is_sent_back(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(lambda s: ok(tracker_id=b"id &=1")).start(nursery)
            await start_client(nursery, [[tracker.url]])
            seen = await tracker.wait_for(2)
            assert "trackerid" not in seen[0].params
            assert "trackerid=id%20%26%3D1" in seen[1].query.split("&")
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------
# Stopping


async def test_cancellation_sends_stopped(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(10_000):
        async with trio.open_nursery() as outer:
            tracker = await ScriptedTracker(lambda s: ok()).start(outer)
            async with trio.open_nursery() as inner:
                h = await start_client(inner, [[tracker.url]])
                await tracker.wait_for(1)
                await trio.sleep(5)
                h.totals.append(TransferTotals(uploaded=5, downloaded=6, left=994))
                h.scope.cancel()
            assert h.done.is_set()
            seen = tracker.seen
            assert [s.announce.event for s in seen] == [
                AnnounceEvent.STARTED,
                AnnounceEvent.STOPPED,
            ]
            stopped = seen[1].announce
            assert stopped.numwant == 0
            assert (stopped.uploaded, stopped.downloaded, stopped.left) == (5, 6, 994)
            outer.cancel_scope.cancel()


async def test_stopped_is_bounded_when_the_tracker_hangs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(s: Seen) -> Reply:
        return Reply(mode="hang") if "event=stopped" in s.query else ok()

    with trio.fail_after(10_000):
        async with trio.open_nursery() as outer:
            tracker = await ScriptedTracker(script).start(outer)
            async with trio.open_nursery() as inner:
                h = await start_client(inner, [[tracker.url]])
                await tracker.wait_for(1)
                h.scope.cancel()
                t_cancel = trio.current_time()
            assert trio.current_time() - t_cancel == pytest.approx(5.0, abs=0.01)
            assert tracker.seen[-1].announce.event is AnnounceEvent.STOPPED
            outer.cancel_scope.cancel()


async def test_stopped_goes_to_a_tracker_whose_started_was_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(s: Seen) -> Reply:
        return ok() if "event=stopped" in s.query else Reply(mode="hang")

    with trio.fail_after(10_000):
        async with trio.open_nursery() as outer:
            tracker = await ScriptedTracker(script).start(outer)
            async with trio.open_nursery() as inner:
                h = await start_client(inner, [[tracker.url]])
                await tracker.wait_for(1)
                await trio.sleep(1)  # started is still waiting for its reply
                h.scope.cancel()
            events = [s.announce.event for s in tracker.seen]
            assert events == [AnnounceEvent.STARTED, AnnounceEvent.STOPPED]
            outer.cancel_scope.cancel()


async def test_no_stopped_to_trackers_that_never_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10_000):
        async with trio.open_nursery() as outer:
            tracker = await ScriptedTracker(lambda s: Reply(status=500)).start(outer)
            async with trio.open_nursery() as inner:
                h = await start_client(inner, [[tracker.url]])
                await tracker.wait_for(2)
                h.scope.cancel()
            assert all(s.announce.event is AnnounceEvent.STARTED for s in tracker.seen)
            outer.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------
# Tiers, failover, backoff


def seed_for_order(tiers: list[list[str]], want: list[list[str]]) -> int:
    """A seed whose shuffle gives ``want`` (deterministic, so tests can script the order)."""
    for seed in range(1000):
        if TrackerTiers(tiers, rng=random.Random(seed)).urls == want:
            return seed
    raise AssertionError("no seed gives that order")


async def test_tier_failover_and_promotion(autojump_clock: trio.testing.MockClock) -> None:
    broken = {"good": False}
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            bad = await ScriptedTracker(lambda s: Reply(status=500)).start(nursery)
            good = await ScriptedTracker(
                lambda s: Reply(status=500) if broken["good"] else ok(interval=1800)
            ).start(nursery)
            backup = await ScriptedTracker(lambda s: ok(interval=1800)).start(nursery)
            tiers = [[good.url, bad.url], [backup.url]]
            seed = seed_for_order(tiers, [[bad.url, good.url], [backup.url]])
            h = await start_client(nursery, tiers, rng=random.Random(seed))
            # round 1: bad first (shuffled there), then good, which answers and is promoted
            await good.wait_for(1)
            await settle()
            assert len(bad.seen) == 1 and bad.seen[0].at <= good.seen[0].at
            assert h.client.tiers.urls == [[good.url, bad.url], [backup.url]]
            assert backup.seen == []
            # round 2, one interval later: good is asked first; bad is not asked at all
            await good.wait_for(2)
            assert good.seen[1].at - good.seen[0].at == pytest.approx(1800, abs=0.01)
            assert good.seen[1].announce.event is AnnounceEvent.NONE
            await trio.sleep(1)
            assert len(bad.seen) == 1
            # round 3: the whole first tier fails, so the second tier gets ``started``
            broken["good"] = True
            await backup.wait_for(1)
            await settle()
            assert len(good.seen) == 3 and len(bad.seen) == 2
            assert bad.seen[1].at >= good.seen[2].at
            assert backup.seen[0].announce.event is AnnounceEvent.STARTED
            status = {s.url: s for s in h.client.status()}
            assert status[backup.url].current
            assert status[good.url].failures == 1 and status[good.url].last_error == "HTTP 500"
            assert status[bad.url].failures == 2
            assert status[bad.url].next_announce is not None
            # round 4: tier 1 is tried again first once its backoff has passed
            broken["good"] = False
            await good.wait_for(4)
            assert good.seen[3].announce.event is AnnounceEvent.NONE  # it saw started before
            assert good.seen[3].at - backup.seen[0].at == pytest.approx(1800, abs=0.01)
            assert len(backup.seen) == 1
            nursery.cancel_scope.cancel()


async def test_backoff_grows_and_resets(autojump_clock: trio.testing.MockClock) -> None:
    healthy = {"now": False}
    with trio.fail_after(100_000):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(
                lambda s: ok(interval=1800) if healthy["now"] else Reply(status=500)
            ).start(nursery)
            h = await start_client(nursery, [[tracker.url]])
            seen = await tracker.wait_for(10)
            await settle()
            gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
            for n, gap in enumerate(gaps[:9]):
                nominal = min(15.0 * 2**n, 1800.0)
                assert 0.75 * nominal - 0.01 <= gap <= nominal + 0.01, (n, gaps)
            assert gaps[:7] == sorted(gaps[:7])  # grows until it reaches the cap
            assert all(s.announce.event is AnnounceEvent.STARTED for s in seen)
            (status,) = h.client.status()
            assert status.failures == 10 and status.current is False
            healthy["now"] = True
            seen = await tracker.wait_for(12)
            await settle()
            assert seen[11].at - seen[10].at == pytest.approx(1800, abs=0.01)
            (status,) = h.client.status()
            assert status.failures == 0 and status.last_error is None
            nursery.cancel_scope.cancel()


def test_backoff_is_capped_and_jittered() -> None:
    config = TrackerClientConfig()
    rng = random.Random(7)
    delays = [config.backoff(n, rng) for n in range(1, 200)]
    assert all(0.75 * min(15 * 2 ** (n - 1), 1800) <= d for n, d in enumerate(delays[:60], 1))
    assert max(delays) <= 1800
    assert len({round(d, 6) for d in delays[20:]}) > 100  # jitter spreads clients at the cap


def test_tiers_are_shuffled_within_tiers_only() -> None:
    tiers = [["http://a/announce", "http://b/announce", "http://c/announce"], ["http://d/x"]]
    orders = {tuple(TrackerTiers(tiers, rng=random.Random(s)).urls[0]) for s in range(50)}
    assert len(orders) == 6
    for s in range(50):
        urls = TrackerTiers(tiers, rng=random.Random(s)).urls
        assert sorted(urls[0]) == tiers[0] and urls[1] == tiers[1]


def test_unknown_schemes_are_skipped_not_errors_and_udp_mixes_with_http(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=LOG):
        tiers = TrackerTiers(
            [["udp://tracker.example:6969/announce"], ["wss://x/y", "http://ok/announce"]]
        )
    assert tiers.plan(0.0) == ["udp://tracker.example:6969/announce", "http://ok/announce"]
    status = {s.url: s for s in tiers.status()}
    assert status["udp://tracker.example:6969/announce"].supported
    assert not status["wss://x/y"].supported
    assert "wss" in caplog.text and "udp" not in caplog.text
    # A udp URL without a port cannot be asked: skipped, with the reason.
    portless = TrackerTiers([["udp://only/announce"]])
    assert portless.next_announce == math.inf
    assert "needs a port" in (portless.status()[0].last_error or "")


def test_duplicate_urls_are_asked_once() -> None:
    url = "http://t/announce"
    assert TrackerTiers([[url, url], [url]]).urls == [[url]]


def test_schedule_events_pure() -> None:
    """The schedule alone: started, then completed once, then regular announces."""
    tiers = TrackerTiers([["http://t/announce"]], rng=random.Random(0))
    url = "http://t/announce"
    reply = AnnounceResponse(interval=1800, min_interval=300, complete=0, incomplete=0, peers=())
    assert tiers.plan(0.0) == [url] and tiers.event_for(url) is AnnounceEvent.STARTED
    tiers.completed(0.0)  # completes before the tracker ever answered
    tiers.succeeded(url, AnnounceEvent.STARTED, reply, now=0.0)
    assert tiers.next_announce == 0.0  # completed follows started at once
    assert tiers.event_for(url) is AnnounceEvent.COMPLETED
    tiers.succeeded(url, AnnounceEvent.COMPLETED, reply, now=1.0)
    assert tiers.event_for(url) is AnnounceEvent.NONE
    assert tiers.next_announce == 1801.0
    tiers.announce_soon(10.0)
    assert tiers.next_announce == 301.0
    assert tiers.stop_targets() == [url]


# --------------------------------------------------------------------------------------------
# Peer lists


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            announce_body(peers=v4(("192.0.2.1", 1), ("192.0.2.2", 65535))),
            {PeerAddr("192.0.2.1", 1), PeerAddr("192.0.2.2", 65535)},
            id="compact-v4",
        ),
        pytest.param(
            announce_body(
                peers=v4(("192.0.2.9", 9)),
                peers6=compact_peer("2001:db8::1", 6881) + compact_peer("::1", 7),
            ),
            {PeerAddr("192.0.2.9", 9), PeerAddr("2001:db8::1", 6881), PeerAddr("::1", 7)},
            id="peers6",
        ),
        pytest.param(
            announce_body(
                peers=[
                    {b"ip": b"192.0.2.5", b"port": 5, b"peer id": b"x" * 20},
                    {b"ip": b"2001:db8::5", b"port": 55},
                ]
            ),
            {PeerAddr("192.0.2.5", 5), PeerAddr("2001:db8::5", 55)},
            id="dict-list",
        ),
    ],
)
async def test_peers_reach_the_sink(
    autojump_clock: trio.testing.MockClock, body: bytes, expected: set[PeerAddr]
) -> None:
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(lambda s: Reply(body=body)).start(nursery)
            h = await start_client(nursery, [[tracker.url]])
            await tracker.wait_for(1)
            await settle()
            assert h.all_peers() == expected
            assert {source for _, source in h.peers} == {"tracker"}
            for addr in h.all_peers():
                ipaddress.ip_address(addr.host)  # literal addresses, ready to dial
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------
# Bad replies (docs/limits.md item 10): logged, backed off, other trackers still used


BAD_REPLIES = [
    pytest.param(Reply(body=b"<html>not bencode</html>"), "not bencoded", id="not-bencoded"),
    pytest.param(
        Reply(body=bencoding.encode({b"failure reason": b"torrent not registered"})),
        "torrent not registered",
        id="failure-reason",
    ),
    pytest.param(
        Reply(body=announce_body(peers=b"\x01" * 7)), "not a multiple of 6", id="peers-len-7"
    ),
    pytest.param(
        Reply(body=announce_body(peers=b"", peers6=b"\x01" * 20)),
        "not a multiple of 18",
        id="peers6-len-20",
    ),
    pytest.param(Reply(body=bencoding.encode({b"peers": b""})), "no interval", id="no-interval"),
    pytest.param(Reply(body=b"le"), "not a bencoded dictionary", id="list"),
    pytest.param(Reply(status=500, body=b"oops"), "HTTP 500", id="http-500"),
    pytest.param(
        Reply(status=400, body=bencoding.encode({b"failure reason": b"bad key"})),
        "bad key",
        id="http-400-with-failure",
    ),
    pytest.param(
        Reply(mode="declared", size=2 << 20),
        "reply of 2097152 bytes exceeds",
        id="2MiB-declared",
    ),
    pytest.param(Reply(mode="stream"), "reply exceeds 1048576 bytes", id="endless-body"),
    pytest.param(Reply(mode="garbage"), "RemoteProtocolError", id="not-http"),
    pytest.param(Reply(mode="close"), "RemoteProtocolError", id="closed"),
    pytest.param(Reply(mode="hang"), "timed out (ReadTimeout)", id="read-timeout"),
]


@pytest.mark.parametrize(("reply", "message"), BAD_REPLIES)
async def test_bad_reply_is_logged_and_the_next_tier_still_used(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    reply: Reply,
    message: str,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOG)
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            bad = await ScriptedTracker(lambda s: reply).start(nursery)
            good = await ScriptedTracker(lambda s: ok(peers=v4(("192.0.2.7", 7)))).start(nursery)
            h = await start_client(nursery, [[bad.url], [good.url]])
            await good.wait_for(2)
            await settle()
            assert h.all_peers() == {PeerAddr("192.0.2.7", 7)}
            # the bad tracker (first tier) is asked first in each round, backoff permitting
            assert len(bad.seen) == 2 and bad.seen[1].at >= good.seen[0].at + 1800 - 0.01
            status = {s.url: s for s in h.client.status()}
            assert message in (status[bad.url].last_error or "")
            assert status[bad.url].failures == 2 and status[good.url].current
            assert any(
                r.levelno == logging.WARNING and bad.url in r.getMessage() and message in
                r.getMessage() for r in caplog.records
            )  # fmt: skip
            assert not h.done.is_set()
            nursery.cancel_scope.cancel()
    if reply.mode == "stream":
        # the client stopped reading soon after the 1 MiB cap (what loopback buffers held)
        assert bad.sent_bytes and max(bad.sent_bytes) < STREAM_LIMIT // 2


async def test_connection_refused_is_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    dead_port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{dead_port}/announce"
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            h = await start_client(nursery, [[url]])
            await trio.sleep(100)
            (status,) = h.client.status()
            assert status.failures >= 2 and "ConnectError" in (status.last_error or "")
            assert not h.done.is_set()
            nursery.cancel_scope.cancel()


async def test_invalid_url_is_a_failure_not_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            h = await start_client(nursery, [["http://bad host:x/announce"]])
            await trio.sleep(20)
            (status,) = h.client.status()
            assert status.failures >= 1 and status.last_error
            assert not h.done.is_set()
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------
# Scrape (BEP 48)


async def test_scrape(autojump_clock: trio.testing.MockClock) -> None:
    other = InfoHash(b"\xff" * 20)
    body = bencoding.encode(
        {b"files": {bytes(INFO_HASH): {b"complete": 3, b"downloaded": 9, b"incomplete": 4}}}
    )
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(lambda s: Reply(body=body)).start(nursery)
            async with new_http_client() as http:
                stats = await scrape(http, tracker.url, [INFO_HASH, other])
                assert stats == {INFO_HASH: ScrapeStats(complete=3, downloaded=9, incomplete=4)}
                assert tracker.seen[0].path == "/scrape"
                assert parse_scrape_query(tracker.seen[0].query) == [INFO_HASH, other]
                with pytest.raises(TrackerUnreachable, match="no scrape URL"):
                    await scrape(http, f"http://127.0.0.1:{tracker.port}/a", [INFO_HASH])
                with pytest.raises(TrackerUnreachable, match="needs a port"):
                    await scrape(http, "udp://127.0.0.1/announce", [INFO_HASH])
            nursery.cancel_scope.cancel()


async def test_scrape_of_an_oversized_reply_fails(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            tracker = await ScriptedTracker(lambda s: Reply(mode="stream")).start(nursery)
            async with new_http_client() as http:
                with pytest.raises(TrackerResponseError, match="reply exceeds 1048576 bytes"):
                    await scrape(http, tracker.url, [INFO_HASH])
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------
# Against the real tracker server (aiohttp in a thread, real clock)


async def test_two_clients_meet_through_the_real_tracker() -> None:
    state = TrackerState(TrackerConfig(interval=1800))
    with TrackerThread(state) as server, trio.fail_after(10):
        got: list[tuple[PeerAddr, ...]] = []
        async with trio.open_nursery() as nursery:
            scopes = []
            for i, port in enumerate((7001, 7002)):
                client = TrackerDiscovery(
                    info_hash=INFO_HASH,
                    peer_id=PEER_ID[:-1] + bytes([i]),
                    port=port,
                    tiers=[[server.announce_url]],
                    totals=lambda: TransferTotals(uploaded=0, downloaded=0, left=10),
                    sink=lambda found, source: got.append(tuple(found)),
                )
                scope = trio.CancelScope()
                scopes.append(scope)

                async def run(
                    client: TrackerDiscovery = client, scope: trio.CancelScope = scope
                ) -> None:
                    with scope:
                        await client.run()

                nursery.start_soon(run)
                while client.status()[0].last_announce is None:
                    await trio.sleep(0.01)
            assert got == [(PeerAddr("127.0.0.1", 7001),)]
            assert server.call(lambda: state.stats().peers) == 2
            async with new_http_client() as http:
                stats = await scrape(http, server.announce_url, [INFO_HASH])
            assert stats[INFO_HASH].incomplete == 2
            for scope in scopes:
                scope.cancel()
        assert server.call(lambda: state.stats().peers) == 0  # both sent stopped


# --------------------------------------------------------------------------------------------
# One tracker as a Discovery (join, publish, search, withdraw), against the real tracker


def _is_discovery(endpoint: TrackerEndpoint) -> Discovery:
    return endpoint


async def test_endpoint_publish_then_search_from_another_peer_finds_the_first() -> None:
    state = TrackerState(TrackerConfig(interval=1800))  # min interval: 900 s
    listing = Listing(info_hash=INFO_HASH)
    with TrackerThread(state) as server, trio.fail_after(10):
        url = server.announce_url
        async with open_tracker_endpoint(url, peer_id=PEER_ID[:-1] + b"b", port=7002) as b:
            async with open_tracker_endpoint(url, peer_id=PEER_ID[:-1] + b"a", port=7001) as a:
                _is_discovery(a)
                await a.join()
                await a.publish(listing, 7001)  # started
                await a.publish(listing, 7001)  # a regular announce: still one peer
                assert server.call(lambda: state.stats().peers) == 1
                assert await b.search(listing) == (PeerAddr("127.0.0.1", 7001),)
                # A search is an announce too: b is listed, wanting it (left 1); a holds it.
                assert server.call(lambda: state.stats().peers) == 2
                async with new_http_client() as http:
                    stats = await scrape(http, url, [INFO_HASH])
                assert (stats[INFO_HASH].complete, stats[INFO_HASH].incomplete) == (1, 1)
                a.withdraw(INFO_HASH)  # stopped, sent in a's nursery: leaving waits for it
            assert server.call(lambda: state.stats().peers) == 1
            # Within the tracker's min interval b is not asked again: the last reply stands.
            assert await b.search(listing) == (PeerAddr("127.0.0.1", 7001),)
            await b.stop(INFO_HASH)
            assert server.call(lambda: state.stats().peers) == 0
            await b.stop(INFO_HASH)  # nothing known any more: nothing sent


async def test_endpoint_under_the_search_loop_finds_a_later_publisher() -> None:
    state = TrackerState(TrackerConfig(interval=60, min_interval=0))
    listing = Listing(info_hash=INFO_HASH)
    got: list[PeerAddr] = []
    with TrackerThread(state) as server, trio.fail_after(20):
        url = server.announce_url
        async with (
            open_tracker_endpoint(url, peer_id=PEER_ID[:-1] + b"a", port=7001) as a,
            open_tracker_endpoint(url, peer_id=PEER_ID[:-1] + b"b", port=7002) as b,
            trio.open_nursery() as nursery,
        ):
            loop = SearchLoop(
                b,
                listing,
                port=7002,
                sink=lambda peers, source: got.extend(peers),
                publish=False,
                schedule=(0.05,),
            )
            await nursery.start(loop.run)
            await trio.sleep(0.2)
            assert got == []
            await a.publish(listing, 7001)
            while not got:
                await trio.sleep(0.05)
            assert got == [PeerAddr("127.0.0.1", 7001)]
            nursery.cancel_scope.cancel()
        # Neither withdrew (a was never told to; b's loop did not publish), so both stay
        # listed: b's searches announced it.
        assert server.call(lambda: state.stats().peers) == 2


async def test_endpoint_join_refuses_what_it_cannot_announce_to() -> None:
    with trio.fail_after(10):
        async with open_tracker_endpoint(
            "wss://127.0.0.1:1/announce", peer_id=PEER_ID, port=PORT
        ) as t:
            with pytest.raises(NetworkError, match="unsupported"):
                await t.join()


async def test_endpoint_errors_are_network_errors() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    dead_port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{dead_port}/announce"
    with trio.fail_after(10):
        async with open_tracker_endpoint(url, peer_id=PEER_ID, port=PORT) as t:
            await t.join()  # a well-formed URL: nothing else to join
            with pytest.raises(NetworkError, match=f"tracker {url}"):
                await t.search(Listing(info_hash=INFO_HASH))
            with pytest.raises(NetworkError):
                await t.publish(Listing(info_hash=INFO_HASH), PORT)
            t.withdraw(INFO_HASH)  # never announced: nothing to stop
