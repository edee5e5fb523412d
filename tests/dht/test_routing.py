"""The routing table: invariants under arbitrary inserts (hypothesis), and the BEP 5 rules."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit.dht.nodeid import distance
from torrentkit.dht.routing import RoutingTable, common_prefix
from torrentkit.ids import PeerAddr

OWN = bytes(20)


def addr(i: int) -> PeerAddr:
    return PeerAddr(f"1.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 6881)


def check_invariants(table: RoutingTable) -> None:
    own = int.from_bytes(table.own_id, "big")
    last = len(table.buckets) - 1
    seen_addrs: set[PeerAddr] = set()
    seen_ips: set[str] = set()
    for i, bucket in enumerate(table.buckets):
        assert len(bucket.nodes) <= table.k
        assert len(bucket.replacements) <= table.k
        for e in bucket.nodes + bucket.replacements:
            cp = common_prefix(own, e.int_id)
            assert cp == i if i < last else cp >= last  # each entry in its own bucket
            assert e.id != table.own_id
            assert e.addr not in seen_addrs  # one address, one entry
            seen_addrs.add(e.addr)
            assert e.addr.host not in seen_ips  # one public IP, one entry
            seen_ips.add(e.addr.host)
    # Only the last bucket ever splits: every bucket before it is full or was full once.
    assert len(table.buckets) <= 160


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(min_size=20, max_size=20), st.integers(0, 300), st.booleans()),
        max_size=300,
    )
)
def test_invariants_hold(ops: list[tuple[bytes, int, bool]]) -> None:
    table = RoutingTable(OWN, 0.0)
    for t, (node_id, a, fail) in enumerate(ops):
        if fail:
            table.failed(addr(a), float(t))
        else:
            table.heard(node_id, addr(a), float(t), answered=True)
        check_invariants(table)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=20, max_size=20), min_size=1, max_size=200))
def test_closest_is_sorted_by_xor(ids: list[bytes]) -> None:
    table = RoutingTable(OWN, 0.0)
    for i, node_id in enumerate(ids):
        table.heard(node_id, addr(i), 0.0, answered=True)
    target = ids[0]
    got = table.closest(target, 8)
    dists = [distance(e.id, target) for e in got]
    assert dists == sorted(dists)
    others = [distance(e.id, target) for e in table if e not in got]
    assert not others or not got or max(dists) <= min(others) or len(got) < 8


def test_buckets_split_along_own_id() -> None:
    rng = random.Random(1)
    table = RoutingTable(rng.randbytes(20), 0.0)
    for i in range(2000):
        table.heard(rng.randbytes(20), addr(i), 0.0, answered=True)
    # Far buckets hold k; about log2(2000 / 8) buckets exist, the near ones denser.
    assert 6 <= len(table.buckets) <= 12
    assert all(len(b.nodes) == 8 for b in table.buckets[:-2])
    check_invariants(table)


def test_only_answering_nodes_enter() -> None:
    table = RoutingTable(OWN, 0.0)
    table.heard(b"\x80" * 20, addr(1), 0.0, answered=False)
    assert len(table) == 0
    table.heard(b"\x80" * 20, addr(1), 0.0, answered=True)
    assert len(table) == 1


def test_fifteen_minute_rule() -> None:
    table = RoutingTable(OWN, 0.0)
    table.heard(b"\x80" * 20, addr(1), 0.0, answered=True)
    (e,) = list(table)
    assert table.is_good(e, 60.0)
    assert not table.is_good(e, 15 * 60.0)  # questionable after 15 minutes of silence
    assert not table.is_bad(e)
    # A query from it within 15 minutes keeps it good (it has answered before).
    table.heard(e.id, e.addr, 14 * 60.0, answered=False)
    assert table.is_good(e, 20 * 60.0)
    table.failed(e.addr, 21 * 60.0)
    assert not table.is_bad(e)
    table.failed(e.addr, 22 * 60.0)
    assert table.is_bad(e)  # two failures in a row
    assert table.closest(e.id, 8) == []


def test_full_bucket_uses_replacement_cache() -> None:
    table = RoutingTable(OWN, 0.0)
    # Force one split so the far bucket (ids starting with 1) can no longer split.
    for i in range(9):
        table.heard(bytes([0x80 | i]) + bytes(19), addr(i), 0.0, answered=True)
    assert len(table.buckets) == 2
    far = table.buckets[0]
    assert len(far.nodes) == 8 and len(far.replacements) == 1
    # The newcomer waits; a questionable resident is named for a ping.
    ping = table.heard(b"\xf0" + bytes(19), addr(50), 16 * 60.0, answered=True)
    assert ping is not None and ping in far.nodes
    assert table.get(addr(50)) is None
    # The resident fails twice: the freshest replacement takes its place.
    table.failed(ping.addr, 17 * 60.0)
    table.failed(ping.addr, 17 * 60.0)
    assert table.get(ping.addr) is None
    assert table.get(addr(50)) is not None
    check_invariants(table)


def test_one_entry_per_public_ip_and_per_address() -> None:
    table = RoutingTable(OWN, 0.0)
    rng = random.Random(2)
    for port in range(1000, 1100):
        table.heard(rng.randbytes(20), PeerAddr("5.6.7.8", port), 0.0, answered=True)
    assert len(table) == 1  # one public IP cannot fill buckets
    for i in range(100):
        table.heard(rng.randbytes(20), PeerAddr("9.9.9.9", 1), float(i), answered=True)
    assert sum(1 for e in table if e.addr.host == "9.9.9.9") == 1
    # Loopback: many honest nodes share the IP; one entry per (ip, port).
    for port in range(2000, 2010):
        table.heard(rng.randbytes(20), PeerAddr("127.0.0.1", port), 0.0, answered=True)
    assert sum(1 for e in table if e.addr.host == "127.0.0.1") == 10


def test_refresh_targets_fall_in_their_bucket() -> None:
    rng = random.Random(3)
    table = RoutingTable(rng.randbytes(20), 0.0, refresh_after=900.0)
    for i in range(500):
        table.heard(rng.randbytes(20), addr(i), 0.0, answered=True)
    assert table.stale_buckets(100.0) == []
    assert table.stale_buckets(900.0) == list(range(len(table.buckets)))
    for index in range(len(table.buckets)):
        for _ in range(20):
            assert table.bucket_index(table.random_id_in(index, rng)) == index


def test_a_replacement_moves_in_when_room_comes_free() -> None:
    table = RoutingTable(OWN, 0.0)
    for i in range(9):
        table.heard(bytes([0x80 | i]) + bytes(19), addr(i), 0.0, answered=True)
    far = table.buckets[0]
    (waiting,) = far.replacements
    assert table.get(waiting.addr) is None
    table.remove(far.nodes[0].addr)
    table.heard(waiting.id, waiting.addr, 5.0, answered=True)
    assert table.get(waiting.addr) is waiting and far.replacements == []
    check_invariants(table)
