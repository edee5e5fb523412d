"""BEP 44 through the node: get/put queries with tokens, the BEP's error codes on the wire,
the amplification rule for items, and get/put lookups across a simulated DHT."""

from __future__ import annotations

import random
from typing import Any

from torrentkit import bencoding
from torrentkit.dht import items, krpc
from torrentkit.dht.items import Item
from torrentkit.dht.krpc import Error, Response
from torrentkit.dht.node import DhtNode, ItemFound, PutDone
from torrentkit.ids import PeerAddr
from torrentkit.testing.dht_sim import DhtSim

ME = PeerAddr("1.1.1.1", 6881)
ASKER = PeerAddr("2.2.2.2", 7000)
SEED = bytes(range(32))


def make() -> DhtNode:
    return DhtNode(rng=random.Random(1), now=0.0, external_ip=ME.host)


def query(
    node: DhtNode, method: bytes, args: dict[bytes, Any], *, src: PeerAddr = ASKER, now: float = 1.0
) -> Any:
    data = krpc.encode_query(b"aa", method, {b"id": b"s" * 20, **args})
    node.receive_datagram(data, src, now)
    replies = [krpc.decode(d) for d, dst in node.datagrams_to_send() if dst == src]
    return next((r for r in replies if isinstance(r, Response | Error)), None)


def put(
    node: DhtNode,
    item: Item,
    *,
    token: bytes | None = None,
    cas: int | None = None,
    src: PeerAddr = ASKER,
    override: dict[bytes, Any] | None = None,
) -> Any:
    if token is None:
        token = query(node, b"get", {b"target": item.target}, src=src).values[b"token"]
    args = items.put_arguments(item, token, cas)
    args.update(override or {})
    return query(node, b"put", args, src=src)


def test_put_and_get_immutable() -> None:
    node = make()
    item = items.make_immutable(b"Hello World!")
    assert isinstance(put(node, item), Response)
    r = query(node, b"get", {b"target": item.target}, src=ASKER)
    assert isinstance(r, Response)
    assert bencoding.encode(r.values[b"v"]) == item.value
    assert r.values[b"token"] and b"nodes" in r.values


def test_put_needs_a_token_for_that_target_and_ip() -> None:
    node = make()
    item = items.make_immutable(b"x")
    other = items.make_immutable(b"y")
    token_other = query(node, b"get", {b"target": other.target}).values[b"token"]
    r = put(node, item, token=token_other)
    assert isinstance(r, Error) and r.code == krpc.PROTOCOL_ERROR
    token = query(node, b"get", {b"target": item.target}).values[b"token"]
    r = put(node, item, token=token, src=PeerAddr("2.2.2.3", 7000))
    assert isinstance(r, Error) and r.code == krpc.PROTOCOL_ERROR
    assert len(node.items) == 0


def test_mutable_rules_on_the_wire() -> None:
    node = make()
    v1 = items.sign_mutable(SEED, b"one", 1, b"salt")
    v2 = items.sign_mutable(SEED, b"two", 2, b"salt")
    assert isinstance(put(node, v2), Response)
    r = put(node, v1)
    assert isinstance(r, Error) and r.code == items.SEQ_TOO_OLD  # 302
    v3 = items.sign_mutable(SEED, b"three", 3, b"salt")
    r = put(node, v3, cas=1)
    assert isinstance(r, Error) and r.code == items.CAS_MISMATCH  # 301
    assert isinstance(put(node, v3, cas=2), Response)
    bad = Item(value=v3.value, public_key=v3.public_key, salt=b"salt", seq=4, sig=v3.sig)
    r = put(node, bad)
    assert isinstance(r, Error) and r.code == items.INVALID_SIGNATURE  # 206
    r = put(node, v3, override={b"salt": b"s" * 65})
    assert isinstance(r, Error) and r.code == items.SALT_TOO_BIG  # 207
    big = items.Item(value=b"1001:" + b"x" * 1001)
    r = put(node, big)
    assert isinstance(r, Error) and r.code == items.MESSAGE_TOO_BIG  # 205
    # The newest stays; a get with seq=3 learns there is nothing newer.
    r = query(node, b"get", {b"target": v3.target, b"seq": 3}, src=PeerAddr("2.2.2.9", 1))
    assert isinstance(r, Response) and r.values[b"seq"] == 3 and b"v" not in r.values


def test_items_are_not_amplified_to_unverified_askers() -> None:
    node = make()
    item = items.make_immutable(b"z" * 900)
    assert isinstance(put(node, item), Response)
    stranger = PeerAddr("3.3.3.3", 1)
    small = krpc.encode_query(b"aa", b"get", {b"id": b"s" * 20, b"target": item.target})
    node.receive_datagram(small, stranger, 2.0)
    out = node.datagrams_to_send()
    (reply,) = [d for d, dst in out if dst == stranger and b"1:y1:r" in d]
    assert len(reply) <= 4 * len(small)
    assert b"1:v" not in reply and node.stats.items_withheld == 1
    # It was pinged; once it answers it is verified and gets the whole item.
    (ping,) = [d for d, dst in out if dst == stranger and b"4:ping" in d]
    q = krpc.decode(ping)
    node.receive_datagram(krpc.encode_response(q.tid, {b"id": b"s" * 20}), stranger, 2.1)
    node.receive_datagram(small, stranger, 2.2)
    (reply,) = [d for d, dst in node.datagrams_to_send() if dst == stranger]
    r = krpc.decode(reply)
    assert isinstance(r, Response) and bencoding.encode(r.values[b"v"]) == item.value
    # Our own get queries are padded, so even unverified they get the item at once.
    asker = DhtNode(rng=random.Random(5), now=0.0, external_ip="4.4.4.4")
    asker.bootstrap([ME], 3.0)  # ME becomes its router: with an empty table, lookups ask it
    asker.datagrams_to_send()
    asker.get(item.target, 3.0)
    ((padded, _),) = asker.datagrams_to_send()
    node.receive_datagram(padded, PeerAddr("4.4.4.4", 1), 3.0)
    (reply,) = [d for d, _ in node.datagrams_to_send() if b"1:y1:r" in d]
    assert b"1:v" in reply and len(reply) <= 4 * len(padded)


def test_get_and_put_across_a_dht() -> None:
    sim = DhtSim(seed=9)
    addrs = sim.grow(80, settle=20.0)
    immutable = items.make_immutable({b"hello": b"world"})
    sim.call(addrs[1], lambda node, now: node.put(immutable, now))
    v1 = items.sign_mutable(SEED, b"first", 1, b"s")
    sim.call(addrs[2], lambda node, now: node.put(v1, now))
    sim.run_for(20.0)
    (pd,) = [e for e in sim.take_events(addrs[1]) if isinstance(e, PutDone)]
    assert pd.ok and pd.stored == 8 and pd.errors == ()
    v2 = items.sign_mutable(SEED, b"second", 2, b"s")
    sim.call(addrs[3], lambda node, now: node.put(v2, now))
    sim.run_for(20.0)
    old = items.sign_mutable(SEED, b"zeroth", 0, b"s")
    sim.call(addrs[4], lambda node, now: node.put(old, now))
    sim.run_for(20.0)
    (pd,) = [e for e in sim.take_events(addrs[4]) if isinstance(e, PutDone)]
    # The nodes that hold seq 2 refuse it with 302 (one that had no copy may take it: the
    # closest set seen by two lookups can differ by a node); a get still finds seq 2.
    assert set(pd.errors) == {items.SEQ_TOO_OLD} and len(pd.errors) >= 6
    sim.call(addrs[60], lambda node, now: node.get(immutable.target, now))
    sim.call(addrs[61], lambda node, now: node.get(v2.target, now, salt=b"s"))
    sim.run_for(20.0)
    (found,) = [e for e in sim.take_events(addrs[60]) if isinstance(e, ItemFound)]
    assert found.ok and found.item == immutable
    assert found.item.decoded() == {b"hello": b"world"}
    (found,) = [e for e in sim.take_events(addrs[61]) if isinstance(e, ItemFound)]
    assert found.ok and found.item == v2
    # Wrong salt: the target does not match, nothing found.
    sim.call(addrs[62], lambda node, now: node.get(v2.target, now, salt=b"other"))
    sim.run_for(20.0)
    (found,) = [e for e in sim.take_events(addrs[62]) if isinstance(e, ItemFound)]
    assert not found.ok and found.item is None
