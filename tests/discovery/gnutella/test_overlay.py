"""The sans-IO overlay node: flooding, TTL and hops, duplicates, reverse paths, limits, KaZaA."""

from __future__ import annotations

import dataclasses
import random

import pytest

from tests.discovery.gnutella.mesh import BT_PORT, OVERLAY_PORT, Mesh
from torrentkit.discovery.gnutella import messages as m
from torrentkit.discovery.gnutella.messages import FileEntry, Query, QueryHit, Role
from torrentkit.discovery.gnutella.overlay import (
    Close,
    Dial,
    OverlayConfig,
    OverlayNode,
    Send,
    matches,
)
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import InfoHash, PeerAddr

IH = InfoHash(b"\x11" * 20)
ISO = FileEntry(name="Ubuntu-24.04-Desktop.ISO", size=5_000, info_hash=IH)
MID = b"M" * 16


def line(n: int, **config: object) -> Mesh:
    """Nodes n0 - n1 - ... - n(n-1) in a line."""
    mesh = Mesh()
    for i in range(n):
        mesh.add(f"n{i}", **config)  # type: ignore[arg-type]
    for i in range(n - 1):
        mesh.connect(f"n{i}", f"n{i + 1}")
    mesh.log.clear()
    return mesh


def query_bytes(ttl: int, hops: int, text: str = "ubuntu", msg_id: bytes = MID) -> bytes:
    return m.encode(Query(msg_id=msg_id, ttl=ttl, hops=hops, text=text))


def test_keyword_match_needs_every_word_case_insensitively() -> None:
    assert matches(["ubuntu", "iso"], ISO.name.casefold())
    assert matches(["ubuntu", "iso"], ISO.name)
    assert not matches(["ubuntu", "debian"], ISO.name)
    assert not matches([], ISO.name)  # an empty query matches nothing


def test_ttl_decrements_per_hop_and_the_flood_stops_at_zero() -> None:
    mesh = line(5)
    mesh.search("n0", "anything", ttl=3)
    queries = mesh.sent(Query)
    assert [(a, b, q.ttl, q.hops) for a, b, q in queries if isinstance(q, Query)] == [
        ("n0", "n1", 3, 0),
        ("n1", "n2", 2, 1),
        ("n2", "n3", 1, 2),
    ]
    assert mesh.nodes["n4"].counters.received["query"] == 0


@pytest.mark.parametrize(("ttl", "found"), [(2, False), (3, True), (7, True)])
def test_a_file_three_hops_away_needs_ttl_3(ttl: int, found: bool) -> None:
    mesh = line(5)
    mesh.nodes["n3"].publish(mesh.now, [ISO])
    search = mesh.search("n0", "ubuntu ISO", ttl=ttl)
    hits = mesh.nodes["n0"].results(search)
    if not found:
        assert hits == []
        return
    assert [(h.name, h.holder, h.hops) for h in hits] == [
        (ISO.name, PeerAddr(mesh.hosts["n3"], BT_PORT), 3)
    ]
    # The hit went back exactly along the query's path, with ttl = hops of the query + 1.
    back = [(a, b, h.ttl, h.hops) for a, b, h in mesh.sent(QueryHit) if isinstance(h, QueryHit)]
    assert back == [("n3", "n2", 3, 0), ("n2", "n1", 2, 1), ("n1", "n0", 1, 2)]


def test_ttl_plus_hops_over_7_and_ttl_0_are_dropped_unanswered_and_unforwarded() -> None:
    mesh = line(3)
    mesh.nodes["n1"].publish(mesh.now, [ISO])
    for ttl, hops, reason in [(5, 3, "ttl_cap"), (8, 0, "ttl_cap"), (0, 2, "ttl")]:
        out = mesh.inject("n0", "n1", query_bytes(ttl, hops, msg_id=bytes([ttl, hops]) * 8))
        assert out == []
        assert mesh.nodes["n1"].counters.dropped[reason] >= 1
    # The same query within the cap is answered and forwarded.
    out = mesh.inject("n0", "n1", query_bytes(4, 3))
    assert {type(a.message) for a in out if isinstance(a, Send)} == {QueryHit, Query}


def test_duplicates_are_dropped_not_answered_not_forwarded() -> None:
    # A triangle n0-n1-n2 with a tail n2-n3: n1 and n2 both forward n0's query to each other.
    mesh = Mesh()
    for name in ("n0", "n1", "n2", "n3"):
        mesh.add(name)
    for a, b in (("n0", "n1"), ("n0", "n2"), ("n1", "n2"), ("n2", "n3")):
        mesh.connect(a, b)
    mesh.nodes["n2"].publish(mesh.now, [ISO])
    mesh.log.clear()
    search = mesh.search("n0", "ubuntu")
    # n2 heard the query twice (from n0 and from n1), answered once, forwarded once to n3.
    assert mesh.nodes["n2"].counters.received["query"] == 2
    assert mesh.nodes["n2"].counters.dropped["duplicate"] == 1
    assert len(mesh.sent(QueryHit)) == 1
    assert len(mesh.sent(Query, to="n3")) == 1
    assert len(mesh.nodes["n0"].results(search)) == 1
    # n1 too heard it twice (from n0 and n2); nobody sends it back to n0, where it came from.
    assert mesh.nodes["n1"].counters.dropped["duplicate"] == 1
    assert mesh.nodes["n0"].counters.received["query"] == 0
    # A replay of the same id, later, is dropped too.
    replay = query_bytes(7, 0, msg_id=search)
    assert mesh.inject("n0", "n1", replay) == []


def test_hits_take_the_reverse_path_only() -> None:
    # n0 - n1 - n2 - n3, and a branch n1 - x: the hit from n3 never reaches x.
    mesh = line(4)
    mesh.add("x")
    mesh.connect("n1", "x")
    mesh.nodes["n3"].publish(mesh.now, [ISO])
    mesh.log.clear()
    mesh.search("n0", "ubuntu")
    assert [(a, b) for a, b, _ in mesh.sent(QueryHit)] == [("n3", "n2"), ("n2", "n1"), ("n1", "n0")]
    assert mesh.nodes["x"].counters.received["hit"] == 0
    assert mesh.nodes["x"].counters.received["query"] == 1


def test_a_hit_nobody_asked_for_is_dropped() -> None:
    mesh = line(3)
    hit = QueryHit(msg_id=b"?" * 16, ttl=2, hops=0, host="192.0.2.1", port=1, files=(ISO,))
    assert mesh.inject("n2", "n1", m.encode(hit)) == []
    assert mesh.nodes["n1"].counters.dropped["no_route"] == 1


def test_an_unspecified_holder_is_filled_in_by_the_first_hop() -> None:
    mesh = line(3)
    holder = mesh.nodes["n2"]
    holder.holder = PeerAddr("0.0.0.0", BT_PORT)
    holder.publish(mesh.now, [ISO])
    search = mesh.search("n0", "ubuntu")
    (hit,) = mesh.nodes["n0"].results(search)
    assert hit.holder == PeerAddr(mesh.hosts["n2"], BT_PORT)
    wire = [h for _, _, h in mesh.sent(QueryHit) if isinstance(h, QueryHit)]
    assert [h.host for h in wire] == ["", mesh.hosts["n2"]]


def test_a_hit_that_filling_in_the_address_would_push_over_4_kb_is_dropped() -> None:
    mesh = line(3)
    search = mesh.search("n0", "song")
    files = [FileEntry(name=f"song {i:02d} " + "x" * 30, size=i, info_hash=IH) for i in range(99)]
    hit = QueryHit(msg_id=search, ttl=2, hops=0, host="", port=1, files=(files[0],))
    while len(m.encode(hit)) + m.entry_size(files[len(hit.files)]) <= m.MAX_MESSAGE:
        hit = dataclasses.replace(hit, files=tuple(files[: len(hit.files) + 1]))
    assert len(m.encode(hit)) > m.MAX_MESSAGE - len(mesh.hosts["n2"])  # fits only without it
    assert mesh.inject("n2", "n1", m.encode(hit)) == []
    assert mesh.nodes["n1"].counters.dropped["oversize"] == 1
    small = dataclasses.replace(hit, files=hit.files[:3])
    (send,) = mesh.inject("n2", "n1", m.encode(small))
    assert isinstance(send, Send)
    assert isinstance(send.message, QueryHit)
    assert send.message.host == mesh.hosts["n2"]


def test_pongs_teach_addresses_and_refill_dials_them() -> None:
    mesh = line(4, target_degree=2, ping_ttl=3)
    n0 = mesh.nodes["n0"]
    mesh.run("n0", n0.ping(mesh.now))
    assert set(n0.known_addresses()) == {mesh.addr("n1"), mesh.addr("n2"), mesh.addr("n3")}
    actions = n0.refill(mesh.now)
    assert len(actions) == 1
    assert isinstance(actions[0], Dial)
    assert actions[0].addr in {mesh.addr("n2"), mesh.addr("n3")}
    # Nothing more while that dial is pending; a failed dial backs off.
    assert n0.refill(mesh.now) == []
    n0.dial_failed(mesh.now, actions[0].addr)
    again = n0.refill(mesh.now)
    assert [a.addr for a in again if isinstance(a, Dial)] != [actions[0].addr]


def test_dial_back_off_forgetting_and_self() -> None:
    mesh = Mesh()
    node = mesh.add("a", target_degree=1, retry_base=10.0, max_failures=2)
    target = PeerAddr("192.0.2.9", 1)
    node.add_known([target])
    for attempt in range(3):
        (dial,) = node.refill(mesh.now)
        assert dial == Dial(addr=target)
        node.dial_failed(mesh.now, target)
        assert node.refill(mesh.now + 1) == []
        mesh.now += 10.0 * 2**attempt
    assert node.refill(mesh.now + 1000) == []  # forgotten after max_failures
    me = PeerAddr("192.0.2.10", 1)
    node.add_known([me])
    node.refill(mesh.now)
    node.dial_failed(mesh.now, me, permanent=True)  # it was ourselves
    node.add_known([me])
    assert node.refill(mesh.now + 1e6) == []


def test_messages_before_hello_malformed_or_incompatible_close_the_link() -> None:
    mesh = Mesh()
    a = mesh.add("a")
    link, _ = a.link_opened(0, remote=PeerAddr("192.0.2.1", 1), peer_id=b"x" * 20, outgoing=False)
    assert a.receive(0, link, query_bytes(3, 0)) == [Close(link=link, reason="query before hello")]
    link, _ = a.link_opened(0, remote=PeerAddr("192.0.2.1", 2), peer_id=b"y" * 20, outgoing=False)
    (close,) = a.receive(0, link, b"d1:y5:hello")
    assert isinstance(close, Close)
    assert a.counters.dropped["malformed"] == 1
    assert a.receive(0, link, m.encode(m.Hello(role=Role.PEER, port=1))) == []  # gone
    for role in (Role.SUPERNODE, Role.LEAF):
        link, _ = a.link_opened(
            0, remote=PeerAddr("192.0.2.2", 1), peer_id=b"z" * 20, outgoing=False
        )
        (close,) = a.receive(0, link, m.encode(m.Hello(role=role, port=1)))
        assert isinstance(close, Close)
        assert "cannot link" in close.reason
    assert a.neighbours() == []


def test_two_links_between_two_nodes_collapse_to_the_same_one() -> None:
    mesh = Mesh()
    mesh.add("a")
    mesh.add("b")
    mesh.connect("a", "b")
    mesh.connect("b", "a")
    (na,) = mesh.nodes["a"].neighbours()
    (nb,) = mesh.nodes["b"].neighbours()
    assert mesh.ends[("a", na.link)] == ("b", nb.link)


def test_rate_limit_drops_then_bans_a_flooding_neighbour() -> None:
    mesh = line(2, rate=10.0, burst=20.0, ban_after=50, ban_seconds=300.0)
    n1 = mesh.nodes["n1"]
    mesh.now += 10.0  # a full bucket again after the hellos, pings and pongs of joining
    pings = [m.encode(m.Ping(msg_id=i.to_bytes(16, "big"), ttl=1, hops=0)) for i in range(200)]
    answered = sum(bool(mesh.inject("n0", "n1", p)) for p in pings[:40])
    assert answered == 20  # the burst
    assert n1.counters.dropped["rate_limited"] == 20
    mesh.now += 1.0  # ten more tokens
    answered = sum(bool(mesh.inject("n0", "n1", p)) for p in pings[40:60])
    assert answered == 10
    closes: list[object] = []
    for p in pings[60:]:
        closes += [a for a in mesh.inject("n0", "n1", p) if isinstance(a, Close)]
        if closes:
            break
    assert closes, "a neighbour that keeps flooding is disconnected"
    assert n1.neighbours() == []
    n0_id = mesh.nodes["n0"].peer_id
    assert n1.is_banned(mesh.now, peer_id=n0_id)
    link, out = n1.link_opened(mesh.now, remote=mesh.addr("n0"), peer_id=n0_id, outgoing=False)
    assert out == [Close(link=link, reason="banned")]
    assert not n1.is_banned(mesh.now + 301, peer_id=n0_id)


def test_tables_stay_bounded() -> None:
    mesh = line(3, seen_capacity=10, max_searches=4, max_results_per_search=5)
    n1 = mesh.nodes["n1"]
    for i in range(50):
        mesh.inject("n0", "n1", query_bytes(2, 0, msg_id=i.to_bytes(16, "big")))
    assert len(n1._routes) <= 10
    for i in range(10):
        mesh.search("n0", f"q{i}")
    assert len(mesh.nodes["n0"]._searches) == 4
    # Results per search are capped.
    mesh.nodes["n2"].publish(
        mesh.now, [FileEntry(name=f"song {i}", size=i, info_hash=IH) for i in range(40)]
    )
    search = mesh.search("n0", "song")
    assert len(mesh.nodes["n0"].results(search)) == 5


def test_forged_pongs_fill_a_bounded_table_and_dials_stay_bounded() -> None:
    # A neighbour pointing us at 5,000 made-up addresses (victims, or nobody).
    mesh = line(2, known_capacity=100, max_dialing=4, target_degree=8, rate=1e6, burst=1e6)
    n1 = mesh.nodes["n1"]
    for i in range(5000):
        pong = m.Pong(
            msg_id=i.to_bytes(16, "big"), ttl=1, hops=0, host=f"198.51.{i // 250}.{i % 250}", port=1
        )
        mesh.inject("n0", "n1", m.encode(pong))
    assert len(n1.known_addresses()) == 100
    assert len([a for a in n1.refill(mesh.now) if isinstance(a, Dial)]) == 4
    assert n1.refill(mesh.now) == []  # no more until those dials end
    # A routed pong (hops > 0) that answers no ping of ours teaches nothing.
    pong = m.Pong(msg_id=b"r" * 16, ttl=1, hops=3, host="203.0.113.1", port=1)
    mesh.inject("n0", "n1", m.encode(pong))
    assert PeerAddr("203.0.113.1", 1) not in n1.known_addresses()


def test_answers_per_query_and_routed_hits_are_capped() -> None:
    mesh = line(3, max_hits_per_query=7, max_routed_hits=2)
    mesh.nodes["n2"].publish(
        mesh.now, [FileEntry(name=f"song {i}", size=i, info_hash=IH) for i in range(40)]
    )
    search = mesh.search("n0", "song")
    assert len(mesh.nodes["n0"].results(search)) == 7
    # A hit flood for one query id stops at max_routed_hits in the middle.
    hit = QueryHit(msg_id=search, ttl=2, hops=0, host="192.0.2.1", port=1, files=(ISO,))
    forwarded = sum(bool(mesh.inject("n2", "n1", m.encode(hit))) for _ in range(10))
    assert forwarded == 1  # one of the two was spent on the real hit
    assert mesh.nodes["n1"].counters.dropped["answer_cap"] == 9


def test_publish_needs_a_holder_and_search_checks_ttl() -> None:
    node = OverlayNode(OverlayConfig(), peer_id=b"p" * 20, rng=random.Random(1))
    with pytest.raises(LocalProtocolError):
        node.publish(0, [ISO])
    for ttl in (0, 8):
        with pytest.raises(LocalProtocolError):
            node.start_search(0, "x", ttl=ttl)


# --------------------------------------------------------------------------- KaZaA


def kazaa() -> Mesh:
    """Supernodes s0 - s1 - s2 (a line); leaves a, b on s0, c on s2."""
    mesh = Mesh()
    for s in ("s0", "s1", "s2"):
        mesh.add(s, Role.SUPERNODE)
    for leaf in ("a", "b", "c"):
        mesh.add(leaf, Role.LEAF, leaf_supernodes=1)
    mesh.connect("s0", "s1")
    mesh.connect("s1", "s2")
    mesh.connect("a", "s0")
    mesh.connect("b", "s0")
    mesh.connect("c", "s2")
    mesh.log.clear()
    return mesh


def test_a_supernode_answers_from_its_leaves_lists_and_leaves_see_no_queries() -> None:
    mesh = kazaa()
    mesh.run("c", mesh.nodes["c"].publish(mesh.now, [ISO]))
    assert mesh.nodes["s2"].index_size() == 1
    search = mesh.search("a", "ubuntu")
    (hit,) = mesh.nodes["a"].results(search)
    assert hit.holder == PeerAddr(mesh.hosts["c"], BT_PORT)  # the leaf's own address
    assert hit.hops == 3  # a -> s0 -> s1 -> s2 answered
    assert {b for _, b, _ in mesh.sent(Query)} == {"s0", "s1", "s2"}  # never a leaf
    assert mesh.nodes["b"].counters.received["query"] == 0
    assert mesh.nodes["c"].counters.received["query"] == 0
    assert mesh.nodes["c"].counters.received["hit"] == 0


def test_a_leaf_refuses_queries_and_leaves_cannot_link() -> None:
    mesh = kazaa()
    out = mesh.inject("s0", "a", query_bytes(3, 0))
    assert out == []
    assert mesh.nodes["a"].counters.dropped["unexpected"] == 1
    mesh.connect("a", "b")
    assert ("b", "a leaf cannot link to a leaf") in mesh.closed


def test_share_resets_and_caps_and_a_closed_leaf_is_forgotten() -> None:
    mesh = Mesh()
    s = mesh.add("s", Role.SUPERNODE, max_files_per_leaf=30, max_index_files=50)
    for leaf in ("a", "b"):
        mesh.add(leaf, Role.LEAF, leaf_supernodes=1)
        mesh.connect(leaf, "s")
    many = [FileEntry(name=f"song {i} " + "x" * 80, size=i, info_hash=IH) for i in range(100)]
    mesh.run("a", mesh.nodes["a"].publish(mesh.now, many))  # several share messages, capped at 30
    assert s.index_size() == 30
    mesh.run("a", mesh.nodes["a"].publish(mesh.now, many[:5]))  # reset, then 5
    assert s.index_size() == 5
    mesh.run("b", mesh.nodes["b"].publish(mesh.now, many))
    assert s.index_size() == 35
    assert s.counters.dropped["index_cap"] > 0
    mesh.run("a", mesh.nodes["a"].publish(mesh.now, many))
    assert s.index_size() == 50  # the total cap: a got 20 of its 30
    mesh.run("b", [Close(link=mesh.link("b", "s"), reason="bye")])
    assert s.index_size() == 20


def test_a_supernode_with_no_room_refuses_leaves() -> None:
    mesh = Mesh()
    mesh.add("s", Role.SUPERNODE, max_leaves=2)
    for leaf in ("a", "b", "c"):
        mesh.add(leaf, Role.LEAF)
        mesh.connect(leaf, "s")
    assert len(mesh.nodes["s"].neighbours()) == 2
    assert ("s", "no room for more leaves") in mesh.closed


def test_a_leaf_learns_supernodes_and_reattaches_after_losing_its_own() -> None:
    mesh = kazaa()
    a = mesh.nodes["a"]
    # On attaching, a pinged s0, which answered and asked s1 (ping ttl 2): a knows both.
    assert {mesh.addr("s0"), mesh.addr("s1")} <= set(a.known_addresses())
    assert mesh.addr("b") not in a.known_addresses()  # leaves do not answer pings
    mesh.run("a", [Close(link=mesh.link("a", "s0"), reason="s0 died")])
    assert a.neighbours() == []
    mesh.now += 1
    (dial,) = a.refill(mesh.now)
    assert isinstance(dial, Dial)
    assert dial.addr == mesh.addr("s1")  # s0 was just lost: another supernode first
    mesh.connect("a", "s1")
    assert [n.role for n in a.neighbours()] == [Role.SUPERNODE]


def test_a_leaf_dials_only_supernodes() -> None:
    mesh = Mesh()
    leaf = mesh.add("a", Role.LEAF, leaf_supernodes=3)
    leaf.add_known([PeerAddr("192.0.2.1", OVERLAY_PORT)], supernode=False)
    leaf.add_known([PeerAddr("192.0.2.2", OVERLAY_PORT)], supernode=True)
    leaf.add_known([PeerAddr("192.0.2.3", OVERLAY_PORT)])  # unknown role (bootstrap)
    dials = {a.addr.host for a in leaf.refill(0) if isinstance(a, Dial)}
    assert dials == {"192.0.2.2", "192.0.2.3"}
