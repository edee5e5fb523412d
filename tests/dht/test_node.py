"""DhtNode, one node at a time: queries answered per BEP 5/42/43/51, and each safety rule of
docs/limits.md item 14 with a test."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit import bencoding
from torrentkit.dht import krpc
from torrentkit.dht.krpc import Error, Query, Response
from torrentkit.dht.node import (
    AnnounceDone,
    DhtConfig,
    DhtNode,
    ExternalAddress,
    GetPeersDone,
    LookupDone,
    PeerAnnounced,
    PeersFound,
    PingDone,
    SampleDone,
)
from torrentkit.dht.nodeid import id_for_ip, id_matches_ip
from torrentkit.ids import PeerAddr

ME = PeerAddr("1.1.1.1", 6881)
ASKER = PeerAddr("2.2.2.2", 7000)
IH = b"i" * 20


def make(config: DhtConfig | None = None, *, seed: int = 1) -> DhtNode:
    return DhtNode(rng=random.Random(seed), now=0.0, config=config, external_ip=ME.host)


def ask(
    node: DhtNode,
    method: bytes,
    args: dict[bytes, Any],
    src: PeerAddr = ASKER,
    now: float = 1.0,
    sender: bytes = b"s" * 20,
    tid: bytes = b"aa",
) -> Any:
    node.receive_datagram(krpc.encode_query(tid, method, {b"id": sender, **args}), src, now)
    out = node.datagrams_to_send()
    replies = [krpc.decode(d) for d, dst in out if dst == src and d.find(b"1:y1:q") < 0]
    return replies[0] if replies else None


def answer(
    node: DhtNode,
    data: bytes,
    dst: PeerAddr,
    values: dict[bytes, Any],
    now: float,
    src: PeerAddr | None = None,
) -> None:
    """Answer the query ``data`` that the node sent to ``dst``."""
    q = krpc.decode(data)
    assert isinstance(q, Query)
    node.receive_datagram(krpc.encode_response(q.tid, values, ip=ME), src or dst, now)


def test_node_id_follows_bep42() -> None:
    node = make()
    assert id_matches_ip(node.id, ME.host)
    # A saved id that does not match the known external IP is replaced.
    other = DhtNode(rng=random.Random(2), now=0.0, node_id=b"\x00" * 20, external_ip=ME.host)
    assert other.id != b"\x00" * 20 and id_matches_ip(other.id, ME.host)


def test_ping_reply_carries_id_and_ip() -> None:
    node = make()
    r = ask(node, b"ping", {})
    assert isinstance(r, Response)
    assert r.values == {b"id": node.id}
    assert r.ip == ASKER  # BEP 42


def test_unknown_method_and_bad_arguments() -> None:
    node = make()
    r = ask(node, b"frobnicate", {})
    assert isinstance(r, Error) and r.code == krpc.METHOD_UNKNOWN
    r = ask(node, b"find_node", {b"target": b"short"}, src=PeerAddr("2.2.2.3", 1))
    assert isinstance(r, Error) and r.code == krpc.PROTOCOL_ERROR
    # An unknown method that names a target is answered like find_node (forward compatible).
    r = ask(node, b"vote", {b"target": IH}, src=PeerAddr("2.2.2.4", 1))
    assert isinstance(r, Response) and b"nodes" in r.values


def test_get_peers_then_announce_with_token() -> None:
    node = make()
    r = ask(node, b"get_peers", {b"info_hash": IH})
    assert isinstance(r, Response)
    token = r.values[b"token"]
    assert b"values" not in r.values
    r = ask(node, b"announce_peer", {b"info_hash": IH, b"port": 51413, b"token": token})
    assert isinstance(r, Response)
    assert node.events() == [PeerAnnounced(info_hash=IH, peer=PeerAddr(ASKER.host, 51413))]
    r = ask(node, b"get_peers", {b"info_hash": IH}, src=PeerAddr("3.3.3.3", 1))
    assert isinstance(r, Response)
    assert krpc.unpack_peers(r.values[b"values"]) == [PeerAddr(ASKER.host, 51413)]


def test_implied_port_stores_the_udp_source_port() -> None:
    node = make()
    token = ask(node, b"get_peers", {b"info_hash": IH}).values[b"token"]
    args = {b"info_hash": IH, b"port": 1, b"token": token, b"implied_port": 1}
    assert isinstance(ask(node, b"announce_peer", args), Response)
    assert node.events() == [PeerAnnounced(info_hash=IH, peer=ASKER)]


def test_token_useless_for_another_info_hash_or_ip() -> None:
    node = make()
    token = ask(node, b"get_peers", {b"info_hash": IH}).values[b"token"]
    other = b"o" * 20
    r = ask(node, b"announce_peer", {b"info_hash": other, b"port": 1, b"token": token})
    assert isinstance(r, Error) and r.code == krpc.PROTOCOL_ERROR
    r = ask(
        node,
        b"announce_peer",
        {b"info_hash": IH, b"port": 1, b"token": token},
        src=PeerAddr("2.2.2.99", ASKER.port),
    )
    assert isinstance(r, Error) and r.code == krpc.PROTOCOL_ERROR
    assert node.store.peer_count() == 0
    # Another port of the same IP is fine (BEP 5 binds the IP; NATs move ports).
    r = ask(
        node,
        b"announce_peer",
        {b"info_hash": IH, b"port": 1, b"token": token},
        src=PeerAddr(ASKER.host, 9999),
    )
    assert isinstance(r, Response)


def test_token_lives_five_to_ten_minutes() -> None:
    node = make()
    token = ask(node, b"get_peers", {b"info_hash": IH}).values[b"token"]
    node.handle_timers(301.0)  # one rotation: the previous secret still works
    r = ask(node, b"announce_peer", {b"info_hash": IH, b"port": 5, b"token": token}, now=301.0)
    assert isinstance(r, Response)
    node.handle_timers(601.0)  # two rotations: gone
    r = ask(node, b"announce_peer", {b"info_hash": IH, b"port": 6, b"token": token}, now=601.0)
    assert isinstance(r, Error)


def test_one_address_cannot_fill_the_peer_store() -> None:
    node = make(DhtConfig(rate_limit=100_000))
    stored = 0
    for i in range(1000):
        ih = i.to_bytes(20, "big")
        src = PeerAddr(ASKER.host, 1000 + i)
        token = ask(node, b"get_peers", {b"info_hash": ih}, src=src).values[b"token"]
        for port in range(5):
            ask(
                node,
                b"announce_peer",
                {
                    b"info_hash": IH,
                    b"port": 2000 + i * 5 + port,
                    b"token": ask(node, b"get_peers", {b"info_hash": IH}, src=src).values[b"token"],
                },
                src=src,
            )
        ask(node, b"announce_peer", {b"info_hash": ih, b"port": 7, b"token": token}, src=src)
        stored = len(node.store)
    cfg = node.config
    assert stored <= cfg.max_hashes_per_ip + 1
    assert sum(1 for _ in node.store.peers(IH, 2.0, 10_000, random.Random(0))) == (
        cfg.max_peers_per_ip
    )
    assert node.store.refused > 0


def test_messages_with_our_own_id_are_dropped() -> None:
    node = make()
    assert ask(node, b"ping", {}, sender=node.id) is None
    assert node.stats.dropped_own_id == 1
    # A reply carrying our id does not enter the table nor complete the ping.
    op = node.ping(ASKER, 0.0)
    ((data, dst),) = node.datagrams_to_send()
    answer(node, data, dst, {b"id": node.id}, 0.1)
    assert len(node.table) == 0 and node.events() == []
    node.handle_timers(10.0)
    assert node.events() == [PingDone(op=op, addr=ASKER, ok=False, node_id=None)]


def test_replies_from_the_wrong_port_are_ignored() -> None:
    node = make()
    op = node.ping(ASKER, 0.0)
    ((data, dst),) = node.datagrams_to_send()
    answer(node, data, dst, {b"id": b"x" * 20}, 0.1, src=PeerAddr(ASKER.host, ASKER.port + 1))
    assert node.events() == [] and len(node.table) == 0
    assert node.stats.dropped_unmatched == 1
    answer(node, data, dst, {b"id": b"x" * 20}, 0.2)
    assert node.events() == [PingDone(op=op, addr=ASKER, ok=True, node_id=b"x" * 20)]
    assert len(node.table) == 1


def test_no_amplification_to_unverified_addresses() -> None:
    node = make(DhtConfig(rate_limit=100_000))
    # Fill the store with 50 peers and the table with nodes, so a full reply is big.
    for i in range(50):
        src = PeerAddr(f"9.0.{i}.1", 6881)
        token = ask(node, b"get_peers", {b"info_hash": IH}, src=src).values[b"token"]
        ask(node, b"announce_peer", {b"info_hash": IH, b"port": 1, b"token": token}, src=src)
    rng = random.Random(5)
    for i in range(40):
        node.ping(PeerAddr(f"8.0.{i}.1", 6881), 1.0)
    for data, dst in node.datagrams_to_send():
        answer(node, data, dst, {b"id": rng.randbytes(20)}, 1.5)
    victim = PeerAddr("7.7.7.7", 80)
    trimmed_before = node.stats.trimmed_replies
    query = krpc.encode_query(b"aa", b"get_peers", {b"id": b"s" * 20, b"info_hash": IH})
    node.receive_datagram(query, victim, 2.0)
    replies = [d for d, dst in node.datagrams_to_send() if dst == victim]
    assert len(replies) == 1 and len(replies[0]) <= 4 * len(query)
    assert node.stats.trimmed_replies == trimmed_before + 1
    trimmed = krpc.decode(replies[0])
    assert isinstance(trimmed, Response) and trimmed.values[b"token"]
    # A node that answered our query (verified) gets the full reply.
    friend = PeerAddr("8.0.0.1", 6881)
    node.receive_datagram(query, friend, 2.0)
    (full,) = [d for d, dst in node.datagrams_to_send() if dst == friend]
    assert len(full) > 4 * len(query)
    r = krpc.decode(full)
    assert isinstance(r, Response) and len(r.values[b"values"]) == 50


def test_per_ip_rate_limit() -> None:
    node = make(DhtConfig(rate_limit=50, rate_window=10.0))
    answered = 0
    for i in range(200):  # from many ports of one public IP, in one second
        src = PeerAddr(ASKER.host, 1000 + i)
        if ask(node, b"ping", {}, src=src, now=1.0, tid=b"t%d" % i) is not None:
            answered += 1
    assert answered == 50
    assert node.stats.dropped_rate == 150
    # Other sources are unaffected; the limit refills with time (5/s).
    assert ask(node, b"ping", {}, src=PeerAddr("4.4.4.4", 1), now=2.0) is not None
    assert ask(node, b"ping", {}, src=ASKER, now=4.0) is not None


def test_malformed_input_makes_no_reply_storm() -> None:
    node = make()
    junk = [
        b"",
        b"\x01\x02",
        b"d1:t2:aa1:y1:re",
        b"d1:t2:aa1:y1:ee",
        b"l" * 2000,
        b"d1:t2:aa1:y1:r1:rd2:id3:abcee",
        b"\x41\x00\x00\x00" * 5,
    ]
    for data in junk:
        node.receive_datagram(data, ASKER, 1.0)
    assert node.datagrams_to_send() == []  # nothing answers a response, an error or noise
    # A query with a readable transaction id gets one small error; 1,000 of them from one IP
    # get at most the rate limit's worth.
    bad = b"d1:t2:aa1:y1:qe"
    for i in range(1000):
        node.receive_datagram(bad, PeerAddr(ASKER.host, i + 1), 1.0)
    out = node.datagrams_to_send()
    # (the unmatched response and error above counted against the same IP)
    assert node.config.rate_limit - len(junk) <= len(out) <= node.config.rate_limit
    assert all(len(d) <= 4 * len(bad) for d, _ in out)


def test_read_only_mode() -> None:
    node = make(DhtConfig(read_only=True))
    assert ask(node, b"ping", {}) is None  # BEP 43: no replies
    node.ping(ASKER, 0.0)
    ((data, _),) = node.datagrams_to_send()
    assert b"2:roi1e" in data
    # A read-only sender is served but never added to our table.
    other = make(seed=3)
    q = krpc.encode_query(b"bb", b"ping", {b"id": b"r" * 20}, read_only=True)
    other.receive_datagram(q, ASKER, 1.0)
    out = other.datagrams_to_send()
    assert len(out) == 1 and isinstance(krpc.decode(out[0][0]), Response)
    plain = krpc.encode_query(b"cc", b"ping", {b"id": b"p" * 20})
    other.receive_datagram(plain, PeerAddr("6.6.6.6", 1), 1.0)
    sent = [krpc.decode(d) for d, _ in other.datagrams_to_send()]
    # An ordinary querier gets its reply and a ping to verify it for the table.
    assert any(isinstance(m, Query) and m.method == b"ping" for m in sent)


def test_enforced_node_ids_keep_bad_ids_out() -> None:
    node = make(DhtConfig(enforce_node_id=True))
    rng = random.Random(4)
    good_ip, bad_ip = PeerAddr("5.5.5.5", 1), PeerAddr("5.5.5.6", 1)
    node.ping(good_ip, 0.0)
    node.ping(bad_ip, 0.0)
    for data, dst in node.datagrams_to_send():
        node_id = id_for_ip(dst.host, rng) if dst == good_ip else b"\x00" * 20
        answer(node, data, dst, {b"id": node_id}, 0.5)
    assert [e.addr for e in node.table] == [good_ip]
    # Their requests are still served (BEP 42).
    assert isinstance(ask(node, b"ping", {}, src=bad_ip, sender=b"\x00" * 20), Response)


def test_sample_infohashes() -> None:
    node = make()
    for i in range(30):
        src = PeerAddr(f"9.1.{i}.1", 1)
        ih = bytes([i]) * 20
        token = ask(node, b"get_peers", {b"info_hash": ih}, src=src).values[b"token"]
        ask(node, b"announce_peer", {b"info_hash": ih, b"port": 1, b"token": token}, src=src)
    r = ask(node, b"sample_infohashes", {b"target": IH}, src=PeerAddr("9.9.9.9", 1))
    assert isinstance(r, Response)
    assert r.values[b"num"] == 30
    assert len(r.values[b"samples"]) % 20 == 0 and 0 < len(r.values[b"samples"]) <= 400
    assert b"nodes" in r.values and isinstance(r.values[b"interval"], int)
    # And the asking side.
    other = make(seed=9)
    op = other.sample_infohashes(PeerAddr("1.1.1.1", 6881), IH, 0.0)
    ((data, dst),) = other.datagrams_to_send()
    node.receive_datagram(data, PeerAddr("1.1.1.2", 6881), 1.0)
    (reply,) = [d for d, _ in node.datagrams_to_send() if b"1:y1:r" in d]
    other.receive_datagram(reply, dst, 1.1)
    (ev,) = other.events()
    assert isinstance(ev, SampleDone) and ev.ok and ev.op == op and ev.num == 30


def test_lookup_routes_around_dead_nodes() -> None:
    """A lookup whose first candidates never answer still completes via the others."""
    node = make()
    rng = random.Random(8)
    alive = [PeerAddr(f"3.0.0.{i}", 1) for i in range(1, 11)]
    dead = [PeerAddr(f"4.0.0.{i}", 1) for i in range(1, 11)]
    ids = {a: rng.randbytes(20) for a in alive + dead}
    target = rng.randbytes(20)
    # Dead nodes are the closest to the target.
    for a in dead:
        ids[a] = target[:10] + rng.randbytes(10)
    # Seed the table: every node answers a ping once.
    for a in alive + dead:
        node.ping(a, 0.0)
    for data, dst in node.datagrams_to_send():
        answer(node, data, dst, {b"id": ids[dst]}, 0.1)
    node.events()
    op = node.find_node(target, 1.0)
    now = 1.0
    while now < 30.0:
        for data, dst in node.datagrams_to_send():
            if dst in alive:
                answer(node, data, dst, {b"id": ids[dst], b"nodes": b""}, now + 0.05)
        now += 0.25
        node.handle_timers(now)
    done = [e for e in node.events() if isinstance(e, LookupDone)]
    assert len(done) == 1 and done[0].op == op and done[0].ok
    assert {n.addr for n in done[0].nodes} <= set(alive)
    assert done[0].timeouts >= 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_datagrams_reply_or_nothing(data: bytes) -> None:
    """Invariant: any datagram gives at most one reply (a response or an error) to its
    sender, never an exception."""
    node = make()
    node.receive_datagram(data, ASKER, 1.0)
    out = node.datagrams_to_send()
    assert len(out) <= 1
    for reply, dst in out:
        assert dst == ASKER
        assert isinstance(krpc.decode(reply), Response | Error)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [b"ping", b"find_node", b"get_peers", b"announce_peer", b"sample_infohashes", b"zzz"]
    ),
    st.dictionaries(
        st.sampled_from([b"id", b"target", b"info_hash", b"port", b"token", b"implied_port"]),
        st.one_of(
            st.binary(max_size=25),
            st.integers(-(2**63), 2**63 - 1),
            st.lists(st.binary(max_size=4), max_size=3),
        ),
    ),
)
def test_arbitrary_queries_reply_or_nothing(method: bytes, args: dict[bytes, Any]) -> None:
    node = make()
    data = bencoding.encode({b"t": b"aa", b"y": b"q", b"q": method, b"a": args})
    node.receive_datagram(data, ASKER, 1.0)
    out = node.datagrams_to_send()
    replies = [krpc.decode(d) for d, dst in out if dst == ASKER]
    assert len(replies) <= 2  # the reply, and maybe a ping to verify the asker
    assert sum(isinstance(m, Response | Error) for m in replies) <= 1


def test_get_peers_and_announce_against_scripted_nodes() -> None:
    node = make()
    rng = random.Random(11)
    others = [PeerAddr(f"3.1.0.{i}", 1) for i in range(1, 13)]
    ids = {a: rng.randbytes(20) for a in others}
    for a in others:
        node.ping(a, 0.0)
    for data, dst in node.datagrams_to_send():
        answer(node, data, dst, {b"id": ids[dst]}, 0.1)
    node.events()
    op = node.announce_peer(IH, 6881, 1.0)
    now, announced = 1.0, []
    for _ in range(40):
        for data, dst in node.datagrams_to_send():
            q = krpc.decode(data)
            assert isinstance(q, Query)
            if q.method == b"get_peers":
                values = {
                    b"id": ids[dst],
                    b"token": b"tok" + dst.host.encode(),
                    b"values": [krpc.pack_addr(PeerAddr("8.8.8.8", 1234))],
                }
                answer(node, data, dst, values, now + 0.05)
            elif q.method == b"announce_peer":
                assert q.args[b"token"] == b"tok" + dst.host.encode()
                assert q.args[b"port"] == 6881
                announced.append(dst)
                answer(node, data, dst, {b"id": ids[dst]}, now + 0.05)
        now += 0.25
        node.handle_timers(now)
    events = node.events()
    found = [e for e in events if isinstance(e, PeersFound)]
    assert found and found[0].peers == (PeerAddr("8.8.8.8", 1234),) and len(found) == 1
    (gp,) = [e for e in events if isinstance(e, GetPeersDone)]
    assert gp.ok and gp.peers == (PeerAddr("8.8.8.8", 1234),)
    (ad,) = [e for e in events if isinstance(e, AnnounceDone)]
    assert ad.op == op and ad.ok and ad.stored == 8 == len(announced)


def test_external_ip_voting_gives_a_bep42_id() -> None:
    node = DhtNode(rng=random.Random(3), now=0.0)  # external IP unknown: a random id
    old_id = node.id
    seen_as = PeerAddr("9.8.7.6", 6881)
    rng = random.Random(4)
    voters = [PeerAddr(f"7.0.0.{i}", 1) for i in range(1, 6)]
    for a in voters:
        node.ping(a, 0.0)
    for i, (data, dst) in enumerate(node.datagrams_to_send()):
        q = krpc.decode(data)
        reply = krpc.encode_response(q.tid, {b"id": rng.randbytes(20)}, ip=seen_as)
        node.receive_datagram(reply, dst, 0.1)
        events = [e for e in node.events() if isinstance(e, ExternalAddress)]
        if i < 4:
            assert events == []  # one node's word is not enough
    assert events == [ExternalAddress(ip="9.8.7.6", node_id=node.id)]
    assert node.id != old_id and id_matches_ip(node.id, "9.8.7.6")
    assert len(node.table) == 5  # the known nodes were kept under the new id
    # Private and loopback voters do not count.
    other = DhtNode(rng=random.Random(5), now=0.0)
    for i in range(10):
        other.ping(PeerAddr(f"192.168.0.{i + 1}", 1), 0.0)
    for data, dst in other.datagrams_to_send():
        q = krpc.decode(data)
        reply = krpc.encode_response(q.tid, {b"id": rng.randbytes(20)}, ip=seen_as)
        other.receive_datagram(reply, dst, 0.1)
    assert not [e for e in other.events() if isinstance(e, ExternalAddress)]


def test_maintenance_refreshes_buckets_and_pings_questionable_nodes() -> None:
    node = make()
    rng = random.Random(6)
    peers = [PeerAddr(f"6.0.0.{i}", 1) for i in range(1, 21)]
    ids = {a: rng.randbytes(20) for a in peers}
    for a in peers:
        node.ping(a, 0.0)
    for data, dst in node.datagrams_to_send():
        answer(node, data, dst, {b"id": ids[dst]}, 0.1)
    node.events()
    entries = list(node.table)
    assert len(entries) >= 10  # (a full far bucket keeps the rest as replacements)
    # Nothing to do for a while: only token rotation and idle maintenance ticks.
    node.handle_timers(600.0)
    assert node.datagrams_to_send() == []
    # After 15 minutes of silence the nodes are questionable: pinged (8 per tick, oldest
    # first), and stale buckets get a find_node for a random id in their range.
    now = 0.0
    while now <= 15 * 60.0:
        now = node.next_deadline()
        node.handle_timers(now)
    sent = [krpc.decode(d) for d, _ in node.datagrams_to_send()]
    methods = [q.method for q in sent if isinstance(q, Query)]
    assert methods.count(b"ping") == 8
    assert b"find_node" in methods
    # Nobody answers: two maintenance ticks later, 8 of them failed two pings in a row and
    # are bad, left out of what we tell others.
    end = now + 2 * node.config.maintenance_interval + node.config.rpc_timeout
    while now < end:
        now = node.next_deadline()
        node.handle_timers(now)
        node.datagrams_to_send()
    bad = [e for e in node.table if node.table.is_bad(e)]
    assert len(bad) >= 8
    assert not set(e.addr for e in bad) & {e.addr for e in node.table.closest(IH, 100)}


def test_announced_peers_expire() -> None:
    node = make()
    token = ask(node, b"get_peers", {b"info_hash": IH}).values[b"token"]
    ask(node, b"announce_peer", {b"info_hash": IH, b"port": 9, b"token": token})
    assert node.store.peer_count() == 1
    node.handle_timers(29 * 60.0)
    assert node.store.peer_count() == 1
    node.handle_timers(31 * 60.0 + 61.0)
    assert node.store.peer_count() == 0 and len(node.store) == 0
    r = ask(node, b"get_peers", {b"info_hash": IH}, src=PeerAddr("3.3.3.3", 1), now=2000.0)
    assert isinstance(r, Response) and b"values" not in r.values


def test_oversized_transaction_ids_and_tokens() -> None:
    node = make()
    long_tid = b"t" * 21
    data = krpc.encode_query(long_tid, b"ping", {b"id": b"s" * 20})
    node.receive_datagram(data, ASKER, 1.0)
    assert node.datagrams_to_send() == []  # no transaction id we accept: no reply at all
    r = ask(node, b"announce_peer", {b"info_hash": IH, b"port": 1, b"token": b"k" * 21})
    assert isinstance(r, Error) and r.code == krpc.PROTOCOL_ERROR
    assert node.store.peer_count() == 0


def test_a_thin_table_bootstraps_again_through_the_routers() -> None:
    node = make()
    router = PeerAddr("4.4.4.4", 6881)
    node.bootstrap([router], 0.0)
    ((data, dst),) = node.datagrams_to_send()
    assert dst == router and krpc.decode(data).method == b"find_node"
    node.handle_timers(10.0)  # the router never answers: the lookup ends empty
    (done,) = node.events()
    assert isinstance(done, LookupDone) and not done.ok
    # At the next maintenance tick the empty table looks its own id up through the router.
    node.handle_timers(node.config.maintenance_interval)
    sent = [(krpc.decode(d), dst) for d, dst in node.datagrams_to_send()]
    assert [(q.method, dst) for q, dst in sent] == [(b"find_node", router)]
    assert sent[0][0].args[b"target"] == node.id


def test_announce_with_implied_port() -> None:
    node = make()
    peer = PeerAddr("3.2.0.1", 1)
    node.ping(peer, 0.0)
    ((data, _),) = node.datagrams_to_send()
    answer(node, data, peer, {b"id": b"p" * 20}, 0.1)
    node.events()
    node.announce_peer(IH, 0, 1.0, implied_port=True)
    ((data, _),) = node.datagrams_to_send()
    answer(node, data, peer, {b"id": b"p" * 20, b"token": b"tk"}, 1.1)
    ((data, _),) = node.datagrams_to_send()
    q = krpc.decode(data)
    assert isinstance(q, Query) and q.method == b"announce_peer"
    assert q.args[b"implied_port"] == 1 and q.args[b"token"] == b"tk"
