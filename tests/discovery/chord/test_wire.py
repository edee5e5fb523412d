"""Chord's pieces: ring arithmetic, the datagram format (three ways: whole, truncated, with
trailing bytes), and the store's caps, TTLs, rate limiter and tokens."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.discovery.chord import messages as msg
from torrentkit.discovery.chord.messages import ErrorReply, Item, Query, Reply
from torrentkit.discovery.chord.ring import (
    in_half_open,
    in_open,
    key_position,
    position_key,
    sha1_node_id,
)
from torrentkit.discovery.chord.store import PeerStore, RateLimiter, Tokens
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import PeerAddr

A = PeerAddr("10.0.0.1", 6881)
B = PeerAddr("2001:db8::1", 51413)


@pytest.mark.parametrize(
    ("x", "a", "b", "half", "open_"),
    [
        (7, 6, 0, True, True),  # (6, 0] on a ring of 8 holds 7 and 0
        (0, 6, 0, True, False),
        (7, 6, 1, True, True),
        (3, 2, 2, True, True),  # a == b: the whole ring (but a itself is not in (a, a))
        (2, 2, 2, True, False),
        (5, 1, 4, False, False),
        (2, 1, 4, True, True),
    ],
)
def test_intervals(x: int, a: int, b: int, half: bool, open_: bool) -> None:
    assert in_half_open(x, a, b, 8) is half
    assert in_open(x, a, b, 8) is open_


def test_ids_and_positions() -> None:
    assert 0 <= sha1_node_id(A, 160) < 2**160
    assert sha1_node_id(A, 3) == sha1_node_id(A, 160) % 8
    assert key_position(position_key(12345), 160) == 12345
    assert key_position(b"\xff" * 20, 3) == 7


MESSAGES = [
    Query(tid=b"t1", method=msg.PING),
    Query(tid=b"t2", method=msg.FIND, key=b"k" * 20),
    Query(tid=b"t3", method=msg.STAB, want_fingers=True),
    Query(tid=b"t4", method=msg.PUT, key=b"k" * 20, port=6881, token=b"x" * 8),
    Query(tid=b"t5", method=msg.LEAVE, predecessor=A, successors=(A, B)),
    Query(tid=b"t6", method=msg.REP, items=(Item(key=b"k" * 20, peers=((A, 60), (B, 0))),)),
    Reply(tid=b"t7", predecessor=B, successors=(A, B), fingers=(A,)),
    Reply(tid=b"t8", closer=(A,), successors=()),
    Reply(tid=b"t9", peers=(A, B), token=b"tok"),
    ErrorReply(tid=b"ta", code=203, message="bad token"),
]


@pytest.mark.parametrize("message", MESSAGES)
def test_round_trip_whole_truncated_and_with_trailing_bytes(message: msg.Message) -> None:
    if isinstance(message, Query):
        data = msg.encode_query(message)
    elif isinstance(message, Reply):
        data = msg.encode_reply(message)
    else:
        data = msg.encode_error(message)
    assert msg.parse(data) == message
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            msg.parse(data[:cut])
    with pytest.raises(RemoteProtocolError):
        msg.parse(data + b"x")


@given(st.binary(max_size=200))
def test_parse_gives_a_message_or_a_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        msg.parse(data)


def test_compact_addresses() -> None:
    assert msg.uncompact(msg.compact(A)) == A
    assert msg.uncompact(msg.compact(B)) == B
    for bad in (b"12345", b"\x00" * 6, b"x" * 19):
        with pytest.raises(RemoteProtocolError):
            msg.uncompact(bad)


def test_store_caps_and_ttl() -> None:
    store = PeerStore(max_keys=5, max_keys_per_source=3, max_peers_per_key=2)
    keys = [bytes([i]) * 20 for i in range(10)]
    assert [store.add(k, A, 100.0, A) for k in keys[:4]] == [True, True, True, False]
    assert [store.add(k, A, 100.0, B) for k in keys[4:8]] == [True, True, False, False]
    assert len(store) == 5 and store.refused == 3
    assert store.add(keys[0], B, 50.0, B) and not store.add(
        keys[0], PeerAddr("10.0.0.9", 1), 50.0, B
    )
    assert store.peers(keys[0], 60.0, 10) == [A]
    assert store.peers_with_ttl(keys[0], 40.0) == ((A, 60), (B, 10))
    assert store.expire(101.0) == 5 and len(store) == 0
    assert store.add(keys[9], A, 200.0, A)  # the per-source count went back down


def test_rate_limiter_windows_and_bounded_table() -> None:
    limiter = RateLimiter(limit=3, window=10.0, max_sources=4)
    assert [limiter.allow(A, 0.0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow(A, 0.5, factor=2)  # a neighbour's larger allowance
    assert limiter.allow(A, 10.0)
    for port in range(1, 1000):
        limiter.allow(PeerAddr("10.9.9.9", port), 11.0)
    assert len(limiter) <= 4


def test_tokens_rotate_and_bind_address_and_key() -> None:
    tokens = Tokens(b"secret-1")
    t = tokens.issue(A, b"k" * 20)
    assert tokens.check(t, A, b"k" * 20)
    assert not tokens.check(t, B, b"k" * 20) and not tokens.check(t, A, b"j" * 20)
    tokens.rotate(b"secret-2")
    assert tokens.check(t, A, b"k" * 20)  # the previous secret still counts
    tokens.rotate(b"secret-3")
    assert not tokens.check(t, A, b"k" * 20)
