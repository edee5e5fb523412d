"""The tracker's swarm rules (time is passed in), run against every store: the in-memory
one and Redis (a real redis-server, see conftest.py)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from tests.discovery.conftest import MakeStore, SyncStore
from torrentkit.discovery.tracker import protocol
from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceReply,
    AnnounceRequest,
    ScrapeStats,
    TrackerRequestError,
)
from torrentkit.discovery.tracker.state import TrackerConfig, parse_whitelist
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import InfoHash

IH = InfoHash(b"\x11" * 20)
IH2 = InfoHash(b"\x22" * 20)
LOOP = "127.0.0.1"


def pid(n: int) -> bytes:
    return f"-TK0001-{n:012d}".encode()


def req(n: int, **kw: object) -> AnnounceRequest:
    fields: dict[str, object] = {"info_hash": IH, "peer_id": pid(n), "port": 6000 + n, "left": 1}
    fields.update(kw)
    return AnnounceRequest(**fields)  # type: ignore[arg-type]


def addrs(reply: AnnounceReply) -> set[tuple[str, int]]:
    return {(p.ip, p.port) for p in reply.peers}


NewState = Callable[..., SyncStore]


@pytest.fixture
def new_state(make_store: MakeStore) -> NewState:
    def new(**config: object) -> SyncStore:
        return make_store(TrackerConfig(**config))  # type: ignore[arg-type]

    return new


def test_peers_on_one_loopback_ip_all_see_each_other_but_never_themselves(
    new_state: NewState,
) -> None:
    state = new_state()
    for n in range(5):
        state.announce(req(n, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=0)
    for n in range(5):
        reply = state.announce(req(n, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=1)
        assert addrs(reply) == {(LOOP, 6000 + m) for m in range(5) if m != n}
        assert all(p.peer_id != pid(n) for p in reply.peers)
        plain = dataclasses.replace(reply, peers=list(reply.peers))
        for compact in (True, False):
            body = protocol.encode_announce_response(reply, compact=compact)
            assert body == protocol.encode_announce_response(plain, compact=compact)


def test_same_address_new_peer_id_replaces_the_stale_entry(new_state: NewState) -> None:
    state = new_state()
    state.announce(req(1), remote_ip=LOOP, now=0)
    state.announce(req(2), remote_ip=LOOP, now=0)
    # Peer 1 restarts with a new peer id on the same port: never handed its old self.
    reply = state.announce(req(3, port=6001), remote_ip=LOOP, now=1)
    assert addrs(reply) == {(LOOP, 6002)}
    assert state.scrape([IH])[IH].incomplete == 2


def test_same_peer_id_new_port_moves_the_entry(new_state: NewState) -> None:
    state = new_state()
    state.announce(req(1), remote_ip=LOOP, now=0)
    state.announce(req(2), remote_ip=LOOP, now=0)
    state.announce(req(1, port=7777), remote_ip=LOOP, now=1)
    reply = state.announce(req(2, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=2)
    assert addrs(reply) == {(LOOP, 7777)}


def test_counts_completed_and_stopped(new_state: NewState) -> None:
    state = new_state()
    state.announce(req(1, left=0, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=0)
    state.announce(req(2, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=0)
    reply = state.announce(req(3, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=0)
    assert (reply.complete, reply.incomplete) == (1, 2)
    reply = state.announce(req(2, left=0, event=AnnounceEvent.COMPLETED), remote_ip=LOOP, now=1)
    assert (reply.complete, reply.incomplete) == (2, 1)
    # A repeated completed event is not a second download.
    state.announce(req(2, left=0, event=AnnounceEvent.COMPLETED), remote_ip=LOOP, now=2)
    assert state.scrape([IH])[IH] == ScrapeStats(complete=2, downloaded=1, incomplete=1)
    reply = state.announce(req(3, event=AnnounceEvent.STOPPED), remote_ip=LOOP, now=3)
    assert (reply.complete, reply.incomplete, list(reply.peers)) == (2, 0, [])
    reply = state.announce(req(9, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=4)
    assert addrs(reply) == {(LOOP, 6001), (LOOP, 6002)}
    # Stopping a torrent nobody announced creates nothing.
    state.announce(req(1, info_hash=IH2, event=AnnounceEvent.STOPPED), remote_ip=LOOP, now=5)
    assert len(state) == 1


def test_numwant_default_cap_and_zero(new_state: NewState) -> None:
    state = new_state()
    for n in range(300):
        state.announce(req(n), remote_ip=LOOP, now=0)
    me = 1000
    assert len(state.announce(req(me), remote_ip=LOOP, now=1).peers) == 50
    started = AnnounceEvent.STARTED
    wanted = state.announce(req(me, numwant=10**9, event=started), remote_ip=LOOP, now=2)
    assert len(wanted.peers) == 200
    assert len({(p.ip, p.port) for p in wanted.peers}) == 200
    assert (LOOP, 6000 + me) not in addrs(wanted)
    zero = state.announce(req(me, numwant=0, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=3)
    assert list(zero.peers) == []


def test_random_pick_never_includes_self(new_state: NewState) -> None:
    state = new_state()
    for n in range(60):
        state.announce(req(n), remote_ip=LOOP, now=0)
    for n in range(60):
        reply = state.announce(req(n, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=1)
        assert len(reply.peers) == 50
        assert pid(n) not in {p.peer_id for p in reply.peers}
        assert len({p.peer_id for p in reply.peers}) == 50


def test_interval_jitter_and_min_interval(new_state: NewState) -> None:
    state = new_state(interval=1800)
    intervals = {state.announce(req(n), remote_ip=LOOP, now=0).interval for n in range(200)}
    assert min(intervals) >= 1800
    assert max(intervals) <= 1980
    assert len(intervals) > 20  # jittered
    assert state.announce(req(1), remote_ip=LOOP, now=0).min_interval == 900


def test_min_interval_enforced_for_regular_announces_only(new_state: NewState) -> None:
    state = new_state(interval=100)
    state.announce(req(1), remote_ip=LOOP, now=0)
    state.announce(req(2), remote_ip=LOOP, now=0)
    early = state.announce(req(2), remote_ip=LOOP, now=10)
    assert list(early.peers) == []
    assert (early.complete, early.incomplete) == (0, 2)
    event = state.announce(req(2, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=20)
    assert addrs(event) == {(LOOP, 6001)}
    on_time = state.announce(req(2), remote_ip=LOOP, now=20 + 50)
    assert addrs(on_time) == {(LOOP, 6001)}


def test_peers_expire_after_missing_two_intervals(new_state: NewState) -> None:
    state = new_state(interval=100)  # longest interval handed out: 110; timeout 220
    state.announce(req(1), remote_ip=LOOP, now=0)
    state.announce(req(2), remote_ip=LOOP, now=0)
    for t in (100, 200):
        state.announce(req(2), remote_ip=LOOP, now=t)  # 2 keeps announcing, 1 went silent
    assert state.purge(now=219) == 0
    assert state.purge(now=221) == 1
    reply = state.announce(req(2, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=222)
    assert list(reply.peers) == []
    assert (reply.complete, reply.incomplete) == (0, 1)
    # An empty swarm is kept (with its completed count) for swarm_timeout, then dropped.
    state.announce(req(2, event=AnnounceEvent.STOPPED), remote_ip=LOOP, now=223)
    state.purge(now=223 + 24 * 3600 - 1)
    assert len(state) == 1
    state.purge(now=223 + 24 * 3600 + 1)
    assert len(state) == 0


def test_ip_param_ignored_unless_trusted(new_state: NewState) -> None:
    spoof = {"ip": "10.9.9.9"}
    state = new_state()
    state.announce(req(1, **spoof), remote_ip=LOOP, now=0)
    reply = state.announce(req(2), remote_ip=LOOP, now=0)
    assert addrs(reply) == {(LOOP, 6001)}

    trusting = new_state(trust_ip_param=True)
    trusting.announce(req(1, **spoof), remote_ip=LOOP, now=0)
    assert addrs(trusting.announce(req(2), remote_ip=LOOP, now=0)) == {("10.9.9.9", 6001)}
    with pytest.raises(TrackerRequestError, match="ip is not an IP address"):
        trusting.announce(req(3, ip="example.com"), remote_ip=LOOP, now=0)


def test_ipv6_and_ipv4_mapped_addresses(new_state: NewState) -> None:
    state = new_state()
    state.announce(req(1), remote_ip="::ffff:127.0.0.1", now=0)
    state.announce(req(2), remote_ip="::1", now=0)
    reply = state.announce(req(3), remote_ip=LOOP, now=0)
    assert addrs(reply) == {(LOOP, 6001), ("::1", 6002)}
    body = protocol.encode_announce_response(reply)
    parsed = protocol.parse_announce_response(body)
    assert {str(p) for p in parsed.peers} == {"127.0.0.1:6001", "[::1]:6002"}
    # A store's packed peers (Redis) encode as the same peers one by one would.
    plain = dataclasses.replace(reply, peers=list(reply.peers))
    assert body == protocol.encode_announce_response(plain)


def test_peer_id_cannot_be_taken_over_from_another_ip_without_its_key(new_state: NewState) -> None:
    state = new_state()
    state.announce(req(1, key=b"secret"), remote_ip="10.0.0.1", now=0)
    with pytest.raises(TrackerRequestError, match="in use from another address"):
        state.announce(req(1, event=AnnounceEvent.STOPPED), remote_ip="10.0.0.66", now=1)
    with pytest.raises(TrackerRequestError, match="in use from another address"):
        state.announce(req(1, key=b"guess"), remote_ip="10.0.0.66", now=1)
    assert state.scrape([IH])[IH].incomplete == 1
    # The owner, moving to a new address, proves itself with its key.
    state.announce(req(1, key=b"secret"), remote_ip="10.0.0.2", now=2)
    reply = state.announce(req(2), remote_ip="10.0.0.3", now=3)
    assert addrs(reply) == {("10.0.0.2", 6001)}


def test_whitelist(make_store: MakeStore) -> None:
    state = make_store(whitelist=[IH])
    state.announce(req(1), remote_ip=LOOP, now=0)
    with pytest.raises(TrackerRequestError, match="not registered"):
        state.announce(req(1, info_hash=IH2), remote_ip=LOOP, now=0)
    assert state.scrape([IH, IH2]) == {IH: ScrapeStats(complete=0, downloaded=0, incomplete=1)}
    state.set_whitelist([IH2])
    assert len(state) == 0  # swarms no longer listed are dropped
    state.announce(req(1, info_hash=IH2), remote_ip=LOOP, now=1)
    state.set_whitelist(None)
    state.announce(req(1, info_hash=IH), remote_ip=LOOP, now=2)
    assert len(state) == 2


def test_caps_refuse_new_entries_only(new_state: NewState) -> None:
    state = new_state(max_swarms=1, max_peers_per_swarm=2)
    state.announce(req(1), remote_ip=LOOP, now=0)
    state.announce(req(2), remote_ip=LOOP, now=0)
    with pytest.raises(TrackerRequestError, match="too many peers"):
        state.announce(req(3), remote_ip=LOOP, now=0)
    with pytest.raises(TrackerRequestError, match="too many torrents"):
        state.announce(req(3, info_hash=IH2), remote_ip=LOOP, now=0)
    assert addrs(state.announce(req(1, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=1)) == {
        (LOOP, 6002)
    }


def test_stats_totals(new_state: NewState) -> None:
    state = new_state()
    state.announce(req(1, left=0), remote_ip=LOOP, now=0)
    state.announce(req(2, event=AnnounceEvent.COMPLETED, left=0), remote_ip=LOOP, now=0)
    state.announce(req(3, info_hash=IH2), remote_ip=LOOP, now=0)
    stats = state.stats()
    assert (stats.torrents, stats.peers, stats.seeders, stats.leechers, stats.completed) == (
        2,
        3,
        2,
        1,
        1,
    )
    assert [s.info_hash for s in stats.swarms] == [IH, IH2]  # largest first
    assert {p.peer_id for p in stats.swarms[0].peers} == {pid(1), pid(2)}
    assert len(state.stats(max_swarms=1, max_peers=1).swarms[0].peers) == 1


def test_seeded_swarm_keeps_its_invariants(new_state: NewState) -> None:
    """Random announces from 40 peers over 10 torrents, with expiry: counts always match
    the entries."""
    rng = random.Random(3)
    state = new_state(interval=60)  # peers expire after 132 s of silence
    live: dict[tuple[InfoHash, int], tuple[bool, float]] = {}  # (torrent, peer) -> seeder, seen
    hashes = [InfoHash(bytes([i]) * 20) for i in range(10)]
    now = 0.0
    for _ in range(2000):
        now += rng.random() * 1.5
        state.purge(now)  # Redis also expires on each announce: purge first, both agree
        live = {k: v for k, v in live.items() if v[1] >= now - 132}
        h, n = rng.choice(hashes), rng.randrange(40)
        event = rng.choice(list(AnnounceEvent))
        left = rng.choice([0, 5])
        reply = state.announce(req(n, info_hash=h, event=event, left=left), remote_ip=LOOP, now=now)
        if event is AnnounceEvent.STOPPED:
            live.pop((h, n), None)
        else:
            live[(h, n)] = (left == 0, now)
        assert pid(n) not in {p.peer_id for p in reply.peers}
        peers = [s for (hh, _), (s, _) in live.items() if hh == h]
        assert (reply.complete, reply.incomplete) == (sum(peers), len(peers) - sum(peers))


def test_config_limits() -> None:
    with pytest.raises(LocalProtocolError):
        TrackerConfig(interval=0)
    with pytest.raises(LocalProtocolError):
        TrackerConfig(interval=10, min_interval=11)
    assert TrackerConfig(interval=10, min_interval=0).announce_min_interval == 0


def test_parse_whitelist() -> None:
    text = f"# torrents\n{IH.hex()}\n\n  {IH2.hex().upper()}  \n"
    assert parse_whitelist(text) == {IH, IH2}
    with pytest.raises(ValueError, match="line 2: expected 40 hex digits"):
        parse_whitelist(f"{IH.hex()}\n{IH.hex()[:-1]}\n")
    with pytest.raises(ValueError, match="line 1"):
        parse_whitelist("zz" * 20)
    with pytest.raises(ValueError, match="line 1"):
        parse_whitelist("11 " * 13 + "1")


def test_a_leecher_reaching_left_zero_counts_as_completed_even_without_the_event(
    new_state: NewState,
) -> None:
    state = new_state()
    state.announce(req(1, left=0, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=0)
    state.announce(req(2, left=9, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=0)
    state.announce(req(3, left=9, event=AnnounceEvent.STARTED), remote_ip=LOOP, now=0)
    # 2 goes straight to `stopped` with left=0 (as aria2c --seed-time=0 does).
    state.announce(req(2, left=0, event=AnnounceEvent.STOPPED), remote_ip=LOOP, now=1)
    # 3 just reports left=0 on a regular announce, then says `completed` too: counted once.
    state.announce(req(3, left=0), remote_ip=LOOP, now=1000)
    state.announce(req(3, left=0, event=AnnounceEvent.COMPLETED), remote_ip=LOOP, now=1001)
    # 1 seeded from the start: it downloaded nothing here.
    state.announce(req(1, left=0, event=AnnounceEvent.STOPPED), remote_ip=LOOP, now=1002)
    assert state.scrape([IH])[IH] == ScrapeStats(complete=1, downloaded=2, incomplete=0)
