"""The UDP tracker client's trio driver over real UDP sockets on 127.0.0.1.

A scripted tracker (a trio UDP socket in the same run) records every datagram and answers
what each test scripts, hostile answers included: another transaction id, truncated
packets, a huge peer list, the error action, silence. Timing runs on pytest-trio's
``autojump_clock`` (loopback delivers at once), so the 15 s / 30 s retransmissions pass in
milliseconds. The last tests use the real tracker (aiohttp + UDP in a thread) on the real
clock: HTTP and UDP announces meet in one swarm.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
import trio
import trio.testing

from torrentkit.discovery.base import TransferTotals
from torrentkit.discovery.tracker import client as client_module
from torrentkit.discovery.tracker.client import (
    TrackerClientConfig,
    TrackerDiscovery,
    TrackerUnreachable,
    announce,
    new_http_client,
    scrape,
)
from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceReply,
    AnnounceRequest,
    TrackerFailure,
    compact_peer,
)
from torrentkit.discovery.tracker.server import TrackerThread
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState
from torrentkit.discovery.tracker.store import MemoryStore, StoreUnavailable
from torrentkit.discovery.tracker.udp import PROTOCOL_ID, parse_options
from torrentkit.discovery.tracker.udp_client import UdpTrackerClient
from torrentkit.ids import InfoHash, PeerAddr

IH = InfoHash(bytes(range(20)))
PEER_ID = b"-TK0100-udpudpudpudp"


@dataclass
class Seen:
    action: int
    tid: int
    data: bytes


#: script(datagram seen, how many seen so far) -> datagrams to send back
Script = Callable[[Seen, int], list[bytes]]


@dataclass
class ScriptedUdpTracker:
    script: Script
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"udp://127.0.0.1:{self.port}/announce?passkey=abc"

    async def start(self, nursery: trio.Nursery) -> ScriptedUdpTracker:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        nursery.start_soon(self._serve, sock)
        return self

    async def _serve(self, sock: trio.socket.SocketType) -> None:
        with sock:
            while True:
                data, addr = await sock.recvfrom(65536)
                action, tid = struct.unpack_from(">II", data, 8)
                seen = Seen(action, tid, data)
                self.seen.append(seen)
                for reply in self.script(seen, len(self.seen)):
                    await sock.sendto(reply, addr)


def connect_reply(seen: Seen, cid: int = 0xC0FFEE) -> bytes:
    assert seen.data[:8] == PROTOCOL_ID.to_bytes(8, "big")
    return struct.pack(">IIQ", 0, seen.tid, cid)


def announce_reply(seen: Seen, peers: bytes, *, tid: int | None = None) -> bytes:
    return struct.pack(">IIIII", 1, seen.tid if tid is None else tid, 1800, 3, 4) + peers


def honest(peers: bytes) -> Script:
    def script(seen: Seen, n: int) -> list[bytes]:
        if seen.action == 0:
            return [connect_reply(seen)]
        return [announce_reply(seen, peers)]

    return script


def request(event: AnnounceEvent = AnnounceEvent.STARTED) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=IH,
        peer_id=PEER_ID,
        port=6881,
        left=5,
        event=event,
        numwant=33,
        key=b"cafe0001",
    )


async def test_announce_sends_bep41_url_data_key_and_numwant_and_reuses_the_connection_id(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peers = compact_peer("10.1.2.3", 51413)
    async with trio.open_nursery() as nursery:
        tracker = await ScriptedUdpTracker(honest(peers)).start(nursery)
        client = UdpTrackerClient()
        reply = await client.announce(tracker.url, request())
        assert reply.peers == (PeerAddr("10.1.2.3", 51413),)
        assert (reply.complete, reply.incomplete, reply.interval) == (4, 3, 1800)
        await trio.sleep(59)
        await client.announce(tracker.url, request(AnnounceEvent.NONE))
        assert [s.action for s in tracker.seen] == [0, 1, 1]  # one connect for both
        ann = tracker.seen[1].data
        assert ann[:8] == (0xC0FFEE).to_bytes(8, "big")
        assert ann[88:92] == bytes.fromhex("cafe0001")
        assert struct.unpack(">i", ann[92:96]) == (33,)
        assert parse_options(ann[98:]) == b"/announce?passkey=abc"
        await trio.sleep(2)  # the id is 61 s old now: connect again
        await client.announce(tracker.url, request(AnnounceEvent.NONE))
        assert [s.action for s in tracker.seen] == [0, 1, 1, 0, 1]
        nursery.cancel_scope.cancel()


async def test_replies_with_another_transaction_id_or_truncated_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peers = compact_peer("10.0.0.7", 7000)

    def script(seen: Seen, n: int) -> list[bytes]:
        if seen.action == 0:
            return [struct.pack(">IIQ", 0, seen.tid ^ 1, 1), b"\0\0\0", connect_reply(seen)[:12]]
        # A stale answer with another transaction id, then the real one.
        return [announce_reply(seen, b"", tid=seen.tid + 1), announce_reply(seen, peers)]

    async with trio.open_nursery() as nursery:
        tracker = await ScriptedUdpTracker(script).start(nursery)
        start = trio.current_time()
        with pytest.raises(TrackerUnreachable, match=r"no reply after 2 tries \(45 s\)"):
            async with new_http_client() as http:
                await announce(http, tracker.url, request(), config=TrackerClientConfig())
        # Nothing usable came: the connect went out at 0 and 15 s, the exchange gave up at 45.
        assert trio.current_time() - start == pytest.approx(45, abs=0.5)
        assert [s.action for s in tracker.seen] == [0, 0]
        tracker.script = lambda seen, n: (
            [connect_reply(seen)] if seen.action == 0 else script(seen, n)
        )
        reply = await UdpTrackerClient().announce(tracker.url, request())
        assert reply.peers == (PeerAddr("10.0.0.7", 7000),)
        nursery.cancel_scope.cancel()


async def test_a_huge_peer_list_is_read_whole_and_the_error_action_is_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 10,000 peers: a 60,020-byte datagram, close to the largest UDP payload.
    peers = b"".join(compact_peer(f"10.{i >> 8}.{i & 255}.1", 1000 + i) for i in range(10_000))
    async with trio.open_nursery() as nursery:
        tracker = await ScriptedUdpTracker(honest(peers)).start(nursery)
        reply = await UdpTrackerClient().announce(tracker.url, request())
        assert len(reply.peers) == 10_000 and reply.peers[-1] == PeerAddr("10.39.15.1", 10_999)

        def refuse(seen: Seen, n: int) -> list[bytes]:
            if seen.action == 0:
                return [connect_reply(seen)]
            return [struct.pack(">II", 3, seen.tid) + b"unregistered torrent"]

        tracker.script = refuse
        with pytest.raises(TrackerFailure, match="unregistered torrent"):
            await UdpTrackerClient().announce(tracker.url, request())
        nursery.cancel_scope.cancel()


async def test_a_dead_udp_tracker_holds_its_tier_45_s_then_the_next_url_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peers = compact_peer("10.9.9.9", 9999)
    errors: list[tuple[str, str]] = []
    found: list[PeerAddr] = []
    async with trio.open_nursery() as nursery:
        dead = await ScriptedUdpTracker(lambda seen, n: []).start(nursery)

        def refuse(seen: Seen, n: int) -> list[bytes]:
            if seen.action == 0:
                return [connect_reply(seen)]
            return [struct.pack(">II", 3, seen.tid) + b"go away"]

        erring = await ScriptedUdpTracker(refuse).start(nursery)
        good = await ScriptedUdpTracker(honest(peers)).start(nursery)
        rng = random.Random(0)
        tier = [dead.url, erring.url, good.url]
        discovery = TrackerDiscovery(
            info_hash=IH,
            peer_id=PEER_ID,
            port=6881,
            tiers=[tier],
            totals=lambda: TransferTotals(uploaded=0, downloaded=0, left=1),
            sink=lambda addrs, source: found.extend(addrs),
            rng=rng,
            on_error=lambda url, message: errors.append((url, message)),
        )
        # Put the dead one first and the erring one second (the tier was shuffled).
        order = discovery.tiers._tiers[0]
        order.sort(key=lambda t: tier.index(t.url))
        start = trio.current_time()
        nursery.start_soon(discovery.run)
        while not found:
            await trio.sleep(1)
        assert trio.current_time() - start == pytest.approx(45, abs=2)
        assert found == [PeerAddr("10.9.9.9", 9999)]
        assert [url for url, _ in errors] == [dead.url, erring.url]
        assert "no reply" in errors[0][1] and "go away" in errors[1][1]
        status = {s.url: s for s in discovery.status()}
        assert status[good.url].current and status[dead.url].failures == 1
        assert status[erring.url].last_error == "tracker failure: go away"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("given", [False, True])
async def test_udp_trackers_alone_never_make_the_http_client(
    given: bool, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client is made (or a given maker called) only when an http(s) tracker is asked:
    with UDP trackers alone (started, then stopped) it never is, so httpx is not loaded."""
    made: list[str] = []

    def http(config: object = None) -> httpx.AsyncClient:
        made.append("made")
        raise AssertionError("an HTTP client was asked for")

    monkeypatch.setattr(client_module, "new_http_client", http)

    found: list[PeerAddr] = []
    async with trio.open_nursery() as nursery:
        tracker = await ScriptedUdpTracker(honest(compact_peer("10.4.4.4", 4444))).start(nursery)
        discovery = TrackerDiscovery(
            info_hash=IH,
            peer_id=PEER_ID,
            port=6881,
            tiers=[[tracker.url]],
            totals=lambda: TransferTotals(uploaded=0, downloaded=0, left=1),
            sink=lambda addrs, source: found.extend(addrs),
            http=http if given else None,
        )
        async with trio.open_nursery() as inner:
            inner.start_soon(discovery.run)
            while not found:
                await trio.sleep(1)
            inner.cancel_scope.cancel()  # run() ends by sending stopped
        assert [seen.data[80:84] for seen in tracker.seen if seen.action == 1] == [
            struct.pack(">I", 2),  # started
            struct.pack(">I", 3),  # stopped
        ]
        assert found == [PeerAddr("10.4.4.4", 4444)] and made == []
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------
# The real tracker, HTTP and UDP on one swarm state (real clock)


def _stats(http_url: str) -> dict[str, object]:
    with urllib.request.urlopen(http_url.replace("/announce", "/stats"), timeout=5) as resp:
        data: dict[str, object] = json.load(resp)
        return data


async def test_udp_and_http_announces_meet_in_one_swarm_and_stats_count_them_apart() -> None:
    state = TrackerState(TrackerConfig(interval=60, min_interval=0))
    with TrackerThread(state, udp=True) as tracker:
        assert tracker.udp_url is not None
        config = TrackerClientConfig()
        async with new_http_client(config) as http:
            first = AnnounceRequest(info_hash=IH, peer_id=b"-TK0100-aaaaaaaaaaaa", port=7001)
            await announce(http, tracker.announce_url, first, config=config)
            second = AnnounceRequest(
                info_hash=IH, peer_id=b"-TK0100-bbbbbbbbbbbb", port=7002, left=9
            )
            with trio.fail_after(20):
                reply = await announce(http, tracker.udp_url, second, config=config)
                assert reply.peers == (PeerAddr("127.0.0.1", 7001),)
                assert (reply.complete, reply.incomplete) == (1, 1)
                counts = await scrape(http, tracker.udp_url, [IH], config=config)
        assert counts[IH].complete == 1 and counts[IH].incomplete == 1
        served = _stats(tracker.announce_url)["served"]
        assert served == {
            "http": {"announces": 1, "scrapes": 0, "errors": 0, "connects": 0, "dropped": 0},
            "udp": {"announces": 1, "scrapes": 1, "errors": 0, "connects": 2, "dropped": 0},
        }


class SlowStore(MemoryStore):
    """A store that waits before it answers (as Redis does), and is down for one torrent."""

    def __init__(self, state: TrackerState, down_for: InfoHash) -> None:
        super().__init__(state)
        self.down_for = down_for

    async def announce(self, req: AnnounceRequest, *, remote_ip: str, now: float) -> AnnounceReply:
        await asyncio.sleep(0.01)
        if req.info_hash == self.down_for:
            raise StoreUnavailable("swarm store unavailable (test)")
        return await super().announce(req, remote_ip=remote_ip, now=now)


async def test_a_store_that_waits_answers_later_and_a_store_failure_is_an_error_packet() -> None:
    down = InfoHash(b"\xdd" * 20)
    state = TrackerState(TrackerConfig(interval=60, min_interval=0))
    with TrackerThread(SlowStore(state, down), udp=True) as tracker:
        assert tracker.udp_url is not None
        client = UdpTrackerClient()
        with trio.fail_after(20):
            for n in range(3):
                req = AnnounceRequest(info_hash=IH, peer_id=b"-TK0100-%012d" % n, port=7000 + n)
                reply = await client.announce(tracker.udp_url, req)
                assert len(reply.peers) == n
            bad = AnnounceRequest(info_hash=down, peer_id=PEER_ID, port=7100)
            with pytest.raises(TrackerFailure, match="swarm store unavailable"):
                await client.announce(tracker.udp_url, bad)
        served = _stats(tracker.announce_url)["served"]
        assert isinstance(served, dict) and served["udp"]["errors"] == 1


async def test_http_and_udp_urls_mix_in_one_tier_and_across_tiers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from tests.discovery.test_tracker_client import Reply, ScriptedTracker

    http_peers = compact_peer("10.7.7.7", 7777)
    udp_peers = compact_peer("10.8.8.8", 8888)
    body = b"d8:intervali1800e5:peers6:" + http_peers + b"e"
    found: list[PeerAddr] = []
    async with trio.open_nursery() as nursery:
        dead = await ScriptedUdpTracker(lambda seen, n: []).start(nursery)
        http = await ScriptedTracker(lambda seen: Reply(body=body)).start(nursery)
        udp = await ScriptedUdpTracker(honest(udp_peers)).start(nursery)
        tiers = [[dead.url, http.url], [udp.url]]
        discovery = TrackerDiscovery(
            info_hash=IH,
            peer_id=PEER_ID,
            port=6881,
            tiers=tiers,
            totals=lambda: TransferTotals(uploaded=0, downloaded=0, left=1),
            sink=lambda addrs, source: found.extend(addrs),
        )
        discovery.tiers._tiers[0].sort(key=lambda t: tiers[0].index(t.url))
        start = trio.current_time()
        nursery.start_soon(discovery.run)
        while not found:
            await trio.sleep(1)
        # The dead UDP tracker held tier 1 for 45 s, then the HTTP one in it answered.
        assert trio.current_time() - start == pytest.approx(45, abs=2)
        assert found == [PeerAddr("10.7.7.7", 7777)] and udp.seen == []
        # Now HTTP fails: the next round falls through to the UDP tracker of tier 2.
        http.script = lambda seen: Reply(status=500)
        discovery.announce_soon()
        autojump_clock.jump(1800)
        while len(found) < 2:
            await trio.sleep(1)
        assert found[1] == PeerAddr("10.8.8.8", 8888)
        nursery.cancel_scope.cancel()


async def test_over_ipv6_the_tracker_hands_out_18_byte_peers() -> None:
    state = TrackerState(TrackerConfig(interval=60, min_interval=0))
    with TrackerThread(state, host="::1", udp=True) as tracker:
        assert tracker.udp_url is not None and tracker.udp_url.startswith("udp://[::1]:")
        client = UdpTrackerClient()
        with trio.fail_after(20):
            for n in range(3):
                req = AnnounceRequest(info_hash=IH, peer_id=b"-TK0100-%012d" % n, port=7000 + n)
                reply = await client.announce(tracker.udp_url, req)
                assert sorted(reply.peers) == [PeerAddr("::1", 7000 + i) for i in range(n)]
