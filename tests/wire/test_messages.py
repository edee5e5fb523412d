"""Every BEP 3 / BEP 10 message as exact bytes: what send() writes, and what the parser makes
of the same bytes fed whole, one byte at a time, and with trailing data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from torrentkit.wire import (
    Bitfield,
    Cancel,
    Choke,
    Event,
    Extended,
    ExtendedHandshake,
    Have,
    Interested,
    KeepAlive,
    NotInterested,
    PeerConnection,
    Piece,
    Port,
    Request,
    Unchoke,
    UnknownMessage,
)
from torrentkit.wire.codec import encode
from torrentkit.wire.testing import drain

from .helpers import feed_three_ways, open_connection


def nothing(conn: PeerConnection) -> None:
    pass


def we_unchoke(conn: PeerConnection) -> None:
    conn.send(Unchoke())


def we_requested(conn: PeerConnection) -> None:
    peer_has_piece_1_and_unchokes(conn)
    conn.send(Request(index=1, begin=0, length=3))


def we_requested_block_1(conn: PeerConnection) -> None:
    peer_has_piece_1_and_unchokes(conn)
    conn.send(Request(index=1, begin=16384, length=16384))


def we_offered_ut_metadata(conn: PeerConnection) -> None:
    conn.send(ExtendedHandshake(m={"ut_metadata": 3}))


def peer_requested(conn: PeerConnection) -> None:
    conn.send(Unchoke())
    conn.receive_data(encode(Request(index=1, begin=0, length=3)))
    assert conn.next_event() == Request(index=1, begin=0, length=3)


def peer_offered_ut_metadata(conn: PeerConnection) -> None:
    conn.receive_data(b"\x00\x00\x00\x1a\x14\x00d1:md11:ut_metadatai2eee")
    assert conn.next_event() == ExtendedHandshake(m={"ut_metadata": 2})


def peer_has_piece_1_and_unchokes(conn: PeerConnection) -> None:
    conn.receive_data(encode(Bitfield(bitfield=b"\x40\x00")) + encode(Unchoke()))
    assert drain(conn) == [Bitfield(bitfield=b"\x40\x00"), Unchoke()]


@dataclass
class Case:
    event: Event
    wire: bytes
    before_receive: Callable[[PeerConnection], None] = nothing
    before_send: Callable[[PeerConnection], None] = nothing


# BEP 10's own example dictionary, with "µT_PEX" in Latin-1 so its length prefix of 6 holds
# (a name that is not UTF-8 is ignored), and "µTorrent 1.2" in UTF-8 as the BEP writes it.
BEP10_EXAMPLE = b"d1:md11:LT_metadatai1e6:\xb5T_PEXi2ee1:pi6881e1:v13:\xc2\xb5Torrent 1.2e"

CASES = {
    "keep-alive": Case(KeepAlive(), b"\x00\x00\x00\x00"),
    "choke": Case(Choke(), b"\x00\x00\x00\x01\x00"),
    "unchoke": Case(Unchoke(), b"\x00\x00\x00\x01\x01"),
    "interested": Case(Interested(), b"\x00\x00\x00\x01\x02"),
    "not interested": Case(NotInterested(), b"\x00\x00\x00\x01\x03"),
    "have": Case(Have(index=5), b"\x00\x00\x00\x05\x04\x00\x00\x00\x05"),
    # 10 pieces: two bytes, the last 6 bits spare.
    "bitfield": Case(Bitfield(bitfield=b"\xff\xc0"), b"\x00\x00\x00\x03\x05\xff\xc0"),
    "request": Case(
        Request(index=1, begin=16384, length=16384),
        b"\x00\x00\x00\x0d\x06\x00\x00\x00\x01\x00\x00\x40\x00\x00\x00\x40\x00",
        before_receive=we_unchoke,
        before_send=peer_has_piece_1_and_unchokes,
    ),
    "piece": Case(
        Piece(index=1, begin=0, data=b"abc"),
        b"\x00\x00\x00\x0c\x07\x00\x00\x00\x01\x00\x00\x00\x00abc",
        before_receive=we_requested,
        before_send=peer_requested,
    ),
    "cancel": Case(
        Cancel(index=1, begin=16384, length=16384),
        b"\x00\x00\x00\x0d\x08\x00\x00\x00\x01\x00\x00\x40\x00\x00\x00\x40\x00",
        before_send=we_requested_block_1,
    ),
    "port": Case(Port(port=6881), b"\x00\x00\x00\x03\x09\x1a\xe1"),
    "extended handshake": Case(
        ExtendedHandshake(m={"ut_metadata": 3}, v="torrentkit 0.1.0", reqq=500),
        b"\x00\x00\x00\x3b\x14\x00d1:md11:ut_metadatai3ee4:reqqi500e1:v16:torrentkit 0.1.0e",
    ),
    "extension message": Case(
        Extended(ext_id=3, payload=b"d8:msg_typei0e5:piecei0ee"),
        b"\x00\x00\x00\x1b\x14\x03d8:msg_typei0e5:piecei0ee",
        before_receive=we_offered_ut_metadata,
    ),
    # Id 18 (BEP 52's hash request) is not one we interpret: skipped.
    "unknown id 18": Case(
        UnknownMessage(message_id=18, payload=bytes(12)), b"\x00\x00\x00\x0d\x12" + bytes(12)
    ),
    "unknown id 0xfe, empty": Case(
        UnknownMessage(message_id=0xFE, payload=b""), b"\x00\x00\x00\x01\xfe"
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_send_writes_exact_bytes(name: str) -> None:
    case = CASES[name]
    conn = open_connection()
    case.before_send(conn)
    if name == "extension message":
        peer_offered_ut_metadata(conn)
        event = Extended(ext_id=2, payload=b"d8:msg_typei0e5:piecei0ee")
        assert conn.send(event) == b"\x00\x00\x00\x1b\x14\x02d8:msg_typei0e5:piecei0ee"
        return
    assert conn.send(case.event) == case.wire


@pytest.mark.parametrize("name", list(CASES))
def test_receive_exact_bytes_three_ways(name: str) -> None:
    case = CASES[name]

    def make() -> PeerConnection:
        conn = open_connection()
        case.before_receive(conn)
        return conn

    whole, dribbled, trailing = feed_three_ways(make, case.wire)
    assert whole == [case.event]
    assert dribbled == [case.event]
    assert trailing == [case.event]


def test_bep10_example_handshake() -> None:
    wire = (len(BEP10_EXAMPLE) + 2).to_bytes(4, "big") + b"\x14\x00" + BEP10_EXAMPLE
    expected = ExtendedHandshake(m={"LT_metadata": 1}, p=6881, v="µTorrent 1.2")
    whole, dribbled, trailing = feed_three_ways(open_connection, wire)
    assert whole == dribbled == trailing == [expected]
    (event,) = whole
    assert isinstance(event, ExtendedHandshake)
    assert event.raw[b"m"] == {b"LT_metadata": 1, b"\xb5T_PEX": 2}


def test_every_message_in_one_stream() -> None:
    """All of them back to back, in an order a real peer could send them."""
    order = [
        "bitfield",
        "extended handshake",
        "port",
        "have",
        "keep-alive",
        "unknown id 18",
        "interested",
        "not interested",
        "unchoke",
        "choke",
        "cancel",
    ]
    wire = b"".join(CASES[n].wire for n in order)
    whole, dribbled, trailing = feed_three_ways(open_connection, wire)
    expected = [CASES[n].event for n in order]
    assert whole == dribbled == trailing == expected


def test_piece_block_is_bytes_one_copy() -> None:
    conn = open_connection()
    we_requested(conn)
    conn.receive_data(CASES["piece"].wire)
    event = conn.next_event()
    assert isinstance(event, Piece)
    assert type(event.data) is bytes and event.data == b"abc"
