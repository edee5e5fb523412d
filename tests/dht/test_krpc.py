"""KRPC bytes exactly as BEP 5 prints them, fed whole, and the parser's invariant."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.dht import krpc
from torrentkit.dht.krpc import Error, KrpcError, NodeInfo, Query, Response
from torrentkit.ids import PeerAddr

A = b"abcdefghij0123456789"
M = b"mnopqrstuvwxyz123456"

PING_Q = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
PING_R = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
ERROR = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee"
FIND_Q = (
    b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe"
)
FIND_R = b"d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:y1:re"
GET_Q = (
    b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers"
    b"1:t2:aa1:y1:qe"
)
GET_R_PEERS = (
    b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re"
)
GET_R_NODES = b"d1:rd2:id20:abcdefghij01234567895:nodes9:def456...5:token8:aoeusnthe1:t2:aa1:y1:re"
ANNOUNCE_Q = (
    b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e"
    b"5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe"
)


def test_ping_exact_bytes() -> None:
    assert krpc.encode_query(b"aa", b"ping", {b"id": A}) == PING_Q
    assert krpc.decode(PING_Q) == Query(tid=b"aa", method=b"ping", args={b"id": A})
    assert krpc.encode_response(b"aa", {b"id": M}) == PING_R
    assert krpc.decode(PING_R) == Response(tid=b"aa", values={b"id": M})


def test_error_exact_bytes() -> None:
    assert krpc.encode_error(b"aa", 201, "A Generic Error Ocurred") == ERROR
    assert krpc.decode(ERROR) == Error(tid=b"aa", code=201, message="A Generic Error Ocurred")


def test_find_node_exact_bytes() -> None:
    assert krpc.encode_query(b"aa", b"find_node", {b"id": A, b"target": M}) == FIND_Q
    values = {b"id": b"0123456789abcdefghij", b"nodes": b"def456..."}
    assert krpc.encode_response(b"aa", values) == FIND_R
    assert krpc.decode(FIND_R) == Response(tid=b"aa", values=values)


def test_get_peers_exact_bytes() -> None:
    assert krpc.encode_query(b"aa", b"get_peers", {b"id": A, b"info_hash": M}) == GET_Q
    with_peers = {b"id": A, b"token": b"aoeusnth", b"values": [b"axje.u", b"idhtnm"]}
    assert krpc.encode_response(b"aa", with_peers) == GET_R_PEERS
    decoded = krpc.decode(GET_R_PEERS)
    assert isinstance(decoded, Response)
    assert krpc.unpack_peers(decoded.values[b"values"]) == [
        PeerAddr("97.120.106.101", 11893),
        PeerAddr("105.100.104.116", 28269),
    ]
    with_nodes = {b"id": A, b"token": b"aoeusnth", b"nodes": b"def456..."}
    assert krpc.encode_response(b"aa", with_nodes) == GET_R_NODES


def test_announce_peer_exact_bytes() -> None:
    args = {b"id": A, b"info_hash": M, b"port": 6881, b"token": b"aoeusnth"}
    assert krpc.encode_query(b"aa", b"announce_peer", args) == ANNOUNCE_Q
    # The BEP's dictionary also shows implied_port; keys are sorted, so it goes first.
    implied = krpc.encode_query(b"aa", b"announce_peer", {**args, b"implied_port": 1})
    assert implied.startswith(b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash")


def test_extension_keys() -> None:
    ro = krpc.encode_query(b"aa", b"ping", {b"id": A}, read_only=True)
    assert b"2:roi1e" in ro  # BEP 43's exact form
    q = krpc.decode(ro)
    assert isinstance(q, Query) and q.read_only
    r = krpc.encode_response(b"aa", {b"id": M}, ip=PeerAddr("124.31.75.21", 6881))
    assert b"2:ip6:|\x1fK\x15\x1a\xe1" in r  # BEP 42: 4 bytes of IP, 2 of port, big endian
    decoded = krpc.decode(r)
    assert isinstance(decoded, Response) and decoded.ip == PeerAddr("124.31.75.21", 6881)


def test_compact_nodes_round_trip() -> None:
    nodes = [NodeInfo(id=bytes([i]) * 20, addr=PeerAddr(f"1.2.3.{i}", 1000 + i)) for i in (1, 2)]
    packed = krpc.pack_nodes(nodes)
    assert len(packed) == 52
    assert krpc.unpack_nodes(packed) == nodes
    with pytest.raises(KrpcError):
        krpc.unpack_nodes(packed[:-1])
    # Port 0 entries are skipped: nobody listens there.
    zero = NodeInfo(id=b"z" * 20, addr=PeerAddr("1.2.3.4", 0))
    assert krpc.unpack_nodes(zero.id + bytes([1, 2, 3, 4, 0, 0])) == []


@pytest.mark.parametrize(
    ("data", "tid"),
    [
        (b"", None),
        (b"le", None),
        (b"d1:y1:qe", None),  # no transaction id
        (b"d1:t21:" + b"x" * 21 + b"1:y1:qe", None),  # transaction id over 20 bytes
        (b"d1:t2:aa1:y1:qe", b"aa"),  # query without q/a: an error reply is due
        (b"d1:t2:aa1:y1:re", None),  # response without r: dropped silently
        (b"d1:t2:aa1:y1:ee", None),
        (b"d1:t2:aa1:y1:xe", None),
        (b"d1:t2:aa1:y1:q" + b"x" * 1500 + b"e", None),  # oversized
    ],
)
def test_malformed(data: bytes, tid: bytes | None) -> None:
    with pytest.raises(KrpcError) as info:
        krpc.decode(data)
    assert info.value.tid == tid


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_krpc_error(data: bytes) -> None:
    """Invariant: any datagram is a message or a KrpcError, never another exception."""
    with contextlib.suppress(KrpcError):
        krpc.decode(data)
