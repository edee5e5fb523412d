"""The sans-IO Chord node: ring rules, storage, and docs/limits.md item 12 (bad input, floods,
forged pointers), on an instant in-memory wire with the clock moved by hand."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit.bencoding import encode
from torrentkit.discovery.chord import messages as msg
from torrentkit.discovery.chord.messages import Item, Query, Reply
from torrentkit.discovery.chord.node import AnnounceDone, GetPeersDone, LookupDone
from torrentkit.discovery.chord.ring import NodeRef, position_key
from torrentkit.ids import PeerAddr

from .helpers import CONFIG, M, Wire, addr


def key_at(pos: int) -> bytes:
    return position_key(pos)


def test_ring_forms_and_successor_lists_are_right() -> None:
    wire = Wire()
    ids = [10, 200, 100, 50, 150, 250]
    nodes = {n.id: n for n in wire.ring(*ids)}
    ordered = sorted(ids)
    for i, node_id in enumerate(ordered):
        node = nodes[node_id]
        want = [ordered[(i + k) % len(ordered)] for k in range(1, CONFIG.r + 1)]
        assert [s.id for s in node.successors] == want
        assert node.predecessor is not None
        assert node.predecessor.id == ordered[i - 1]
        for j, start, finger in node.finger_table():
            # finger[j] = successor(id + 2**j)
            expected = next((x for x in ordered if x >= start), ordered[0])
            assert finger is not None and finger.id == expected, (node_id, j, start)


def test_lookup_owner_and_path_follow_the_paper() -> None:
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 50, 100, 150, 200, 250)}
    op = nodes[10].lookup(key_at(170), wire.now)
    wire.flush()
    done = [e for e in wire.events if isinstance(e, LookupDone) and e.op == op]
    assert done and done[0].ok and done[0].owner == addr(200)
    # 10's closest preceding finger for 170 is 150 (10 + 128 -> 150), whose successor is 200.
    assert done[0].path == (addr(10), addr(150))


def test_announce_then_get_peers_with_replicas() -> None:
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 50, 100, 150, 200, 250)}
    key = key_at(120)
    op = nodes[250].announce(key, 6881, wire.now)
    wire.advance(1.0)
    ann = next(e for e in wire.events if isinstance(e, AnnounceDone) and e.op == op)
    assert ann.ok and ann.owner == addr(150)
    peer = PeerAddr(addr(250).host, 6881)
    # Primary at successor(120) = 150, replicas at its r - 1 = 2 successors.
    holders = sorted(n.id for n in nodes.values() if key in n.store)
    assert holders == [150, 200, 250]
    op = nodes[50].get_peers(key, wire.now)
    wire.flush()
    got = next(e for e in wire.events if isinstance(e, GetPeersDone) and e.op == op)
    assert got.ok and got.peers == (peer,) and got.path[-1] == addr(150)


def test_keys_move_to_a_joining_node_and_back_on_graceful_leave() -> None:
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 100, 200)}
    key = key_at(60)
    nodes[10].announce(key, 6881, wire.now)
    wire.advance(1.0)
    assert key in nodes[100].store
    newcomer = wire.node(70)
    newcomer.join(addr(10), wire.now)
    wire.advance(20.0)
    assert key in newcomer.store, "the key's new successor got it"
    newcomer.leave(wire.now)
    wire.advance(1.0)
    del wire.nodes[newcomer.address]
    wire.advance(20.0)
    op = nodes[200].get_peers(key, wire.now)
    wire.flush()
    got = next(e for e in wire.events if isinstance(e, GetPeersDone) and e.op == op)
    assert got.ok and got.owner == addr(100) and got.peers
    assert nodes[100].predecessor is not None and nodes[100].predecessor.id == 10


def test_a_put_that_reached_a_newcomer_before_its_predecessor_reaches_the_owner() -> None:
    """A node that has joined (successors known) but has no predecessor yet can be sent a
    put by a view that did not know its predecessor: when it adopts one, what is not in
    (predecessor, self] goes to the predecessor, which owns it (else nobody's lookup would
    ever find the value: they all end at the owner)."""
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 100, 200)}
    newcomer = wire.node(70)
    newcomer.join(addr(10), wire.now)
    wire.flush()
    assert newcomer.predecessor is None and newcomer.successors
    key = key_at(5)  # (200, 10]: node 10's
    peer = PeerAddr(addr(200).host, 6881)
    newcomer._store_and_replicate(key, peer, wire.now, addr(200))  # as a put does
    assert key not in nodes[10].store
    wire.advance(20.0)
    assert newcomer.predecessor is not None and newcomer.predecessor.id == 10
    op = nodes[100].get_peers(key, wire.now)
    wire.flush()
    got = next(e for e in wire.events if isinstance(e, GetPeersDone) and e.op == op)
    assert got.ok and got.owner == addr(10) and got.peers == (peer,)


def test_lookups_route_around_a_dead_node() -> None:
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 50, 100, 150, 200, 250)}
    del wire.nodes[addr(150)]  # crashes; nobody is told
    op = nodes[10].lookup(key_at(170), wire.now)
    wire.advance(5.0)
    done = next(e for e in wire.events if isinstance(e, LookupDone) and e.op == op)
    assert done.ok and done.owner == addr(200)
    assert done.timeouts == 1 and addr(150) not in done.path
    assert all(f is None or f.id != 150 for f in nodes[10].fingers)


# --------------------------------------------------------------------------- hardening


def test_malformed_datagrams_are_dropped_silently() -> None:
    wire = Wire()
    (a,) = wire.ring(10)
    src = addr(99)
    bad = [
        b"",
        b"garbage",
        b"l" * 100_000,
        b"d" * 100_000,
        b"d1:ti1e1:y1:qe",
        encode({b"t": b"x" * 21, b"y": b"q", b"q": b"ping", b"a": {}}),
        encode({b"t": b"aa", b"y": b"q", b"q": b"find", b"a": {b"k": b"short"}}),
        encode(
            {
                b"t": b"aa",
                b"y": b"q",
                b"q": b"put",
                b"a": {b"k": b"k" * 20, b"port": 1, b"tk": b"t" * 21},
            }
        ),
        encode({b"t": b"aa", b"y": b"q", b"q": b"stab", b"a": {b"s": [b"12345"]}}),
        encode({b"t": b"aa", b"y": b"r", b"r": {b"p": b"\x00" * 6}}),
        b"x" * 2000,
    ]
    for data in bad:
        wire.inject(data, src, a.address)
    assert a.stats.malformed == len(bad)
    assert not wire.undelivered[src]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_never_raise(data: bytes) -> None:
    wire = Wire()
    node = wire.node(10)
    node.create(0.0)
    node.receive_datagram(data, addr(20), 0.0)
    node.handle_timers(100.0)


_ADDRS = st.sampled_from([msg.compact(addr(i)) for i in (5, 20, 200)] + [b"\x01" * 6])
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        b"k": st.binary(min_size=20, max_size=20),
        b"port": st.integers(-5, 70_000),
        b"tk": st.binary(max_size=24),
        b"p": _ADDRS,
        b"s": st.lists(_ADDRS, max_size=4),
        b"i": st.lists(st.lists(st.binary(max_size=20), max_size=3), max_size=3),
        b"f": st.integers(0, 2),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"q", b"r", b"e"]),
    st.sampled_from([*sorted(msg.METHODS), b"nope"]),
    _FIELDS,
)
def test_structured_junk_never_raises(
    kind: bytes, method: bytes, body: dict[bytes, object]
) -> None:
    wire = Wire()
    nodes = wire.ring(10, 100, settle=5.0)
    message = {b"t": b"tt", b"y": kind, b"q": method, b"a": body, b"r": body, b"e": [201, b"x"]}
    for n in nodes:
        n.receive_datagram(encode(message), addr(20), wire.now)
    wire.advance(5.0)


def test_a_flood_from_one_source_is_rate_limited() -> None:
    wire = Wire()
    (a,) = wire.ring(10)
    src = addr(99)
    for i in range(1000):
        wire.inject(
            msg.encode_query(Query(tid=i.to_bytes(4, "big"), method=msg.PING)), src, a.address
        )
    assert len(wire.undelivered[src]) == CONFIG.rate_limit
    assert a.stats.rate_limited == 1000 - CONFIG.rate_limit
    wire.advance(CONFIG.rate_window)
    wire.inject(msg.encode_query(Query(tid=b"late", method=msg.PING)), src, a.address)
    assert len(wire.undelivered[src]) == CONFIG.rate_limit + 1  # a new window


def _rep_flood(wire: Wire, target: PeerAddr, count: int, src: PeerAddr) -> None:
    peer = ((PeerAddr("192.0.2.1", 6881), 600),)
    for start in range(0, count, 20):
        items = tuple(Item(key=(start + j).to_bytes(20, "big"), peers=peer) for j in range(20))
        wire.inject(
            msg.encode_query(
                Query(tid=b"r" + start.to_bytes(4, "big"), method=msg.REP, items=items)
            ),
            src,
            target,
        )


def test_keys_per_source_are_capped() -> None:
    config = dataclasses.replace(CONFIG, max_keys_per_source=100, rate_limit=10_000)
    wire = Wire()
    (a,) = wire.ring(10, config=config)
    _rep_flood(wire, a.address, 10_000, addr(99))
    assert len(a.store) == 100
    _rep_flood(wire, a.address, 200, addr(98))  # another source still has room
    assert len(a.store) == 200


def test_ten_thousand_keys_from_one_source_stay_bounded_with_defaults() -> None:
    wire = Wire()
    (a,) = wire.ring(10)
    _rep_flood(wire, a.address, 10_000, addr(99))
    # 50 datagrams pass the rate limit, 20 keys each.
    assert len(a.store) == CONFIG.rate_limit * 20


def test_put_needs_the_token_from_a_get() -> None:
    wire = Wire()
    (a,) = wire.ring(10)
    src = addr(99)
    key = key_at(3)
    wire.inject(
        msg.encode_query(Query(tid=b"p1", method=msg.PUT, key=key, port=6881, token=b"forged")),
        src,
        a.address,
    )
    answer = msg.parse(wire.undelivered[src][-1][0])
    assert isinstance(answer, msg.ErrorReply) and answer.code == msg.PROTOCOL_ERROR
    assert key not in a.store
    wire.inject(msg.encode_query(Query(tid=b"g1", method=msg.GET, key=key)), src, a.address)
    reply = msg.parse(wire.undelivered[src][-1][0])
    assert isinstance(reply, Reply) and reply.token
    # A token is bound to the address that got it.
    wire.inject(
        msg.encode_query(Query(tid=b"p2", method=msg.PUT, key=key, port=6881, token=reply.token)),
        addr(98),
        a.address,
    )
    assert key not in a.store
    wire.inject(
        msg.encode_query(Query(tid=b"p3", method=msg.PUT, key=key, port=6881, token=reply.token)),
        src,
        a.address,
    )
    assert a.store.peers(key, wire.now, 10) == [PeerAddr(src.host, 6881)]


def test_a_spoofed_notify_never_becomes_predecessor() -> None:
    """A stab "from" an address in (predecessor, self) that runs no node: we ping it first,
    it cannot answer, so it is never adopted."""
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 100, 200)}
    victim = addr(80)
    wire.inject(msg.encode_query(Query(tid=b"s1", method=msg.STAB)), victim, addr(100))
    wire.advance(10.0)
    assert nodes[100].predecessor is not None and nodes[100].predecessor.id == 10
    sent = [msg.parse(d) for d, _ in wire.undelivered[victim]]
    # The stab got its answer and the victim one ping (and its resends), no more.
    pings = sum(isinstance(m, Query) and m.method == msg.PING for m in sent)
    assert pings == CONFIG.rpc_retries + 1


def test_spoofed_stabs_from_many_addresses_trigger_few_pings() -> None:
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 100)}
    for i in range(11, 100):  # every address between 10 and 100, none running a node
        wire.inject(msg.encode_query(Query(tid=b"s", method=msg.STAB)), addr(i), addr(100))
    pinged = [
        a
        for a, sent in wire.undelivered.items()
        if any(isinstance(m := msg.parse(d), Query) and m.method == msg.PING for d, _ in sent)
    ]
    assert len(pinged) == 16
    wire.advance(10.0)
    assert nodes[100].predecessor is not None and nodes[100].predecessor.id == 10


def test_a_forged_successor_is_not_adopted() -> None:
    """Our successor (played by the test) names a victim between us and it as its predecessor:
    we ask the victim first, and keep our successor when it does not answer."""
    wire = Wire()
    (a,) = wire.ring(10)
    liar, victim = addr(100), addr(50)
    a.successors = [NodeRef(id=100, addr=liar)]
    a._dirty()
    for _ in range(60):  # six seconds, answering every stab at once
        wire.advance(0.1)
        for data, _src in wire.undelivered.pop(liar, []):
            q = msg.parse(data)
            assert isinstance(q, Query)
            if q.method == msg.FIND:  # honest there: it owns everything from 10 on
                reply = Reply(tid=q.tid, successors=(liar,))
            else:  # stab, ping: "my predecessor is the victim"
                reply = Reply(tid=q.tid, predecessor=victim, successors=(a.address,))
            wire.inject(msg.encode_reply(reply), liar, a.address)
    assert a.successor.addr == liar
    assert all(s.addr != victim for s in a.successors)
    assert wire.undelivered[victim], "the claim was checked by asking the victim"


def test_answers_from_the_wrong_address_or_unknown_tids_are_ignored() -> None:
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 100)}
    a = nodes[10]
    a.successors = []  # make it lonely, then feed it a fake stab answer
    wire.inject(
        msg.encode_reply(Reply(tid=b"\x00\x00\x00\x01", successors=(addr(70),))),
        addr(100),
        a.address,
    )
    assert a.stats.unmatched == 1 and a.successors == []


def test_a_lying_find_answer_is_not_believed() -> None:
    """A node answers ``find`` with an "owner" that does not follow the key: the lookup goes on
    with the other candidates and ends at the real owner."""
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 100, 150, 200)}
    a = nodes[10]
    liar = addr(120)
    # The liar sits in a's finger table, as the closest node before key 130.
    a.fingers[6] = NodeRef(id=120, addr=liar)  # 10 + 64 = 74 -> (wrongly) 120
    a._dirty()
    op = a.lookup(key_at(130), wire.now)
    wire.flush()
    ((data, _),) = wire.undelivered.pop(liar)
    q = msg.parse(data)
    assert isinstance(q, Query) and q.method == msg.FIND
    wire.inject(msg.encode_reply(Reply(tid=q.tid, successors=(addr(125),))), liar, a.address)
    wire.advance(2.0)
    done = next(e for e in wire.events if isinstance(e, LookupDone) and e.op == op)
    assert done.ok and done.owner == addr(150)


def test_a_leave_from_a_non_neighbour_is_ignored() -> None:
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 100, 200)}
    wire.inject(
        msg.encode_query(
            Query(tid=b"l1", method=msg.LEAVE, predecessor=addr(90), successors=(addr(90),))
        ),
        addr(200),
        addr(100),
    )
    wire.advance(5.0)
    assert nodes[100].predecessor is not None and nodes[100].predecessor.id == 10
    assert nodes[100].successor.id == 200


def test_store_expires_values_after_their_ttl() -> None:
    config = dataclasses.replace(CONFIG, peer_ttl=100.0, expire_interval=10.0)
    wire = Wire()
    (a,) = wire.ring(10, config=config)
    a.announce(key_at(3), 6881, wire.now)
    wire.flush()
    assert len(a.store) == 1
    wire.advance(120.0)
    assert len(a.store) == 0


def test_m_is_respected() -> None:
    wire = Wire()
    (a,) = wire.ring(10)
    assert len(a.fingers) == M and a.finger_start(M - 1) == (10 + 128) % 256


def test_a_put_that_reaches_the_former_owner_is_passed_to_the_new_one() -> None:
    """CI once saw it: a seeder joined the ring just ahead of the key's owner, then its own
    announce, routed by a node that had not yet heard of it, landed at the former owner. The
    newcomer, now the owner, answered every search without its own entry."""
    wire = Wire()
    nodes = {n.id: n for n in wire.ring(10, 100, 200)}
    newcomer = wire.node(70)
    newcomer.join(addr(10), wire.now)
    wire.advance(20.0)
    assert nodes[100].predecessor is not None and nodes[100].predecessor.id == 70
    key = key_at(60)  # owned by 70 now
    src = addr(99)  # a put by a peer with a stale view, straight to 100
    wire.inject(msg.encode_query(Query(tid=b"g1", method=msg.GET, key=key)), src, addr(100))
    reply = msg.parse(wire.undelivered[src][-1][0])
    assert isinstance(reply, Reply) and reply.token
    wire.inject(
        msg.encode_query(Query(tid=b"p1", method=msg.PUT, key=key, port=6881, token=reply.token)),
        src,
        addr(100),
    )
    wire.advance(1.0)
    assert newcomer.store.peers(key, wire.now, 10) == [PeerAddr(src.host, 6881)]
    op = nodes[200].get_peers(key, wire.now)
    wire.flush()
    got = next(e for e in wire.events if isinstance(e, GetPeersDone) and e.op == op)
    assert got.owner == addr(70) and got.peers == (PeerAddr(src.host, 6881),)
