"""docs/limits.md limits and item 5's bad inputs: each refused early, counted, or bounded."""

from __future__ import annotations

import sys

import pytest

from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.wire import (
    NEED_DATA,
    Bitfield,
    Choke,
    Have,
    InvalidRequest,
    PeerConnection,
    PieceGeometry,
    Request,
    RequestProblem,
    Unchoke,
    UnknownMessage,
)
from torrentkit.wire.codec import encode
from torrentkit.wire.testing import drain

from .helpers import GEOMETRY, open_connection


def request_bytes(index: int, begin: int, length: int) -> bytes:
    return (
        b"\x00\x00\x00\x0d\x06"
        + index.to_bytes(4, "big")
        + begin.to_bytes(4, "big")
        + length.to_bytes(4, "big")
    )


def fails_on(conn: PeerConnection, data: bytes, match: str) -> None:
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match):
        drain(conn)
    with pytest.raises(RemoteProtocolError):  # sticky
        conn.next_event()


# ---------------------------------------------------------------------------- sizes


def test_length_ffffffff_refused_from_its_four_bytes() -> None:
    fails_on(open_connection(), b"\xff\xff\xff\xff", "exceeds")


def test_length_just_over_limit_refused_unbuffered() -> None:
    conn = open_connection()
    limit = conn.max_message_length
    fails_on(conn, (limit + 1).to_bytes(4, "big") + b"\x63", "exceeds")
    ok = open_connection()
    ok.receive_data(limit.to_bytes(4, "big") + b"\x63")
    assert ok.next_event() is NEED_DATA  # a 1 MiB unknown message is allowed, and waited for


def test_configured_max_message_length() -> None:
    conn = open_connection(max_message_length=1000)
    fails_on(conn, (1001).to_bytes(4, "big"), "exceeds the 1000")


def test_piece_over_16k_refused_from_its_header() -> None:
    conn = open_connection()
    fails_on(conn, (9 + 16384 + 1).to_bytes(4, "big") + b"\x07", "PIECE with a")


def test_empty_piece_refused() -> None:
    fails_on(open_connection(), (9).to_bytes(4, "big") + b"\x07" + bytes(8), "PIECE with a")


@pytest.mark.parametrize(
    ("msg_id", "size"),
    [(0, 1), (1, 4), (2, 2), (3, 1), (4, 3), (4, 6), (6, 11), (6, 14), (8, 12 + 4), (9, 1)],
)
def test_fixed_size_messages_wrong_length(msg_id: int, size: int) -> None:
    conn = open_connection()
    fails_on(conn, (size + 1).to_bytes(4, "big") + bytes([msg_id]), "payload")


@pytest.mark.parametrize("size", [1, 3, 100])
def test_bitfield_wrong_length(size: int) -> None:
    """docs/limits.md 5: too short / too long -- refused before the payload arrives."""
    conn = open_connection()
    fails_on(conn, (size + 1).to_bytes(4, "big") + b"\x05", "bitfield of")


def test_bitfield_spare_bits_set() -> None:
    conn = open_connection()
    fails_on(conn, b"\x00\x00\x00\x03\x05\xff\xe0", "spare bits")


def test_a_late_bitfield_replaces_the_have_set() -> None:
    # aria2 sends a whole BITFIELD mid-connection in place of 20 or more HAVEs.
    conn = open_connection()
    conn.receive_data(
        encode(Have(index=1))
        + encode(Bitfield(bitfield=b"\xff\xc0"))
        + encode(Bitfield(bitfield=b"\x00\x40"))
    )
    assert drain(conn) == [
        Have(index=1),
        Bitfield(bitfield=b"\xff\xc0"),
        Bitfield(bitfield=b"\x00\x40"),
    ]
    assert conn.peer_have_count == 1 and conn.peer_has(9) and not conn.peer_has(1)
    # Its size and spare bits are still checked, early or late.
    late = open_connection()
    late.receive_data(encode(Have(index=1)))
    assert drain(late) == [Have(index=1)]
    fails_on(late, encode(Bitfield(bitfield=b"\xff\xff")), "spare bits")
    fails_on(
        open_connection(),
        encode(Have(index=1)) + encode(Bitfield(bitfield=b"\xff")),
        "bitfield of 1 bytes",
    )


def test_have_out_of_range() -> None:
    fails_on(open_connection(), encode(Have(index=GEOMETRY.num_pieces)), "out of range")


def test_unknown_messages_are_skipped_not_fatal() -> None:
    conn = open_connection()
    conn.receive_data(b"\x00\x00\x00\x02\x63\x01" + b"\x00\x00\x00\x01\x15" + encode(Have(index=2)))
    assert drain(conn) == [
        UnknownMessage(message_id=0x63, payload=b"\x01"),
        UnknownMessage(message_id=21, payload=b""),
        Have(index=2),
    ]


def test_receive_buffer_is_bounded() -> None:
    conn = open_connection(max_buffer=100_000)
    conn.receive_data(bytes(4) * 20_000)  # 80,000 bytes of keep-alives, unparsed
    with pytest.raises(LocalProtocolError, match="next_event"):
        conn.receive_data(bytes(40_000))
    assert len(drain(conn)) == 20_000
    conn.receive_data(bytes(40_000))  # drained: room again


def test_buffer_memory_released_when_drained() -> None:
    conn = open_connection()
    conn.receive_data(bytes(4) * 50_000)
    drain(conn)
    assert sys.getsizeof(conn._buf) > 200_000
    conn.receive_data(b"")  # compacts: an idle peer holds no buffer memory
    assert sys.getsizeof(conn._buf) < 100


# ---------------------------------------------------------------------------- pieces


def test_piece_never_requested() -> None:
    """docs/limits.md 5 / BEP 3: an unsolicited PIECE closes the connection."""
    conn = open_connection()
    conn.receive_data(encode(Bitfield(bitfield=b"\xff\xc0")) + encode(Unchoke()))
    drain(conn)
    conn.send(Request(index=0, begin=0, length=16384))
    wrong_length = b"\x00\x00\x00\x0c\x07" + bytes(8) + b"abc"
    fails_on(conn, wrong_length, "never requested")


# ---------------------------------------------------------------------------- requests


def invalid(conn: PeerConnection, data: bytes) -> InvalidRequest:
    conn.receive_data(data)
    (event,) = drain(conn)
    assert isinstance(event, InvalidRequest), event
    return event


@pytest.mark.parametrize(
    ("index", "begin", "length", "problem"),
    [
        (0, 0, 16385, RequestProblem.BAD_LENGTH),
        (0, 0, 0, RequestProblem.BAD_LENGTH),
        (0, 0, 0xFFFFFFFF, RequestProblem.BAD_LENGTH),
        (10, 0, 16384, RequestProblem.OUT_OF_RANGE),  # piece index out of range
        (0xFFFFFFFF, 0, 16384, RequestProblem.OUT_OF_RANGE),
        (0, 32768 - 16383, 16384, RequestProblem.OUT_OF_RANGE),  # past the piece end
        (9, 16384, 16384, RequestProblem.OUT_OF_RANGE),  # past the short last piece's end
        (0, 0xFFFFFFFF, 16384, RequestProblem.OUT_OF_RANGE),
    ],
)
def test_request_out_of_range(index: int, begin: int, length: int, problem: RequestProblem) -> None:
    conn = open_connection()
    conn.send(Unchoke())
    event = invalid(conn, request_bytes(index, begin, length))
    assert event == InvalidRequest(index=index, begin=begin, length=length, problem=problem)
    assert conn.invalid_requests == 1
    assert conn.pending_peer_requests == 0


def test_last_piece_exact_end_is_valid() -> None:
    conn = open_connection()
    conn.send(Unchoke())
    conn.receive_data(request_bytes(9, 20_000 - 3616, 3616))
    assert drain(conn) == [Request(index=9, begin=20_000 - 3616, length=3616)]


def test_request_while_choked_counted_then_fatal() -> None:
    """docs/limits.md 5: REQUEST while choked -- ignored and counted; too many -> disconnect."""
    conn = open_connection(max_choked_requests=5)
    for i in range(5):
        event = invalid(conn, request_bytes(0, 0, 16384))
        assert event.problem is RequestProblem.CHOKED
        assert conn.choked_requests == i + 1
    assert conn.invalid_requests == 0
    fails_on(conn, request_bytes(0, 0, 16384), "while choked")


def test_choked_requests_count_restarts_at_each_choke() -> None:
    """Requests in flight when we choke are normal; only a peer that keeps asking is cut off."""
    conn = open_connection(max_choked_requests=3)
    for _ in range(3):
        conn.send(Unchoke())
        conn.send(Choke())
        for _ in range(3):
            assert invalid(conn, request_bytes(0, 0, 16384)).problem is RequestProblem.CHOKED
    assert conn.choked_requests == 3


def test_request_without_metadata() -> None:
    conn = open_connection(geometry=None)
    conn.send(Unchoke())
    assert invalid(conn, request_bytes(0, 0, 16384)).problem is RequestProblem.NO_METADATA


def test_duplicate_request() -> None:
    conn = open_connection()
    conn.send(Unchoke())
    conn.receive_data(request_bytes(0, 0, 16384))
    assert drain(conn) == [Request(index=0, begin=0, length=16384)]
    assert invalid(conn, request_bytes(0, 0, 16384)).problem is RequestProblem.DUPLICATE
    assert conn.pending_peer_requests == 1


def test_5000_requests_without_reading() -> None:
    """docs/limits.md 5: 5,000 requests we never answer: the queue stops at its cap, the excess is
    refused and counted, and past the invalid-request limit the peer is cut off."""
    geometry = PieceGeometry(piece_length=16384 * 1000, total_length=16384 * 5000)
    conn = open_connection(geometry=geometry)
    conn.send(Unchoke())
    data = b"".join(request_bytes(i // 1000, (i % 1000) * 16384, 16384) for i in range(5000))
    conn.receive_data(data)
    queued = refused = 0
    with pytest.raises(RemoteProtocolError, match="invalid requests"):
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, Request):
                queued += 1
            else:
                assert isinstance(event, InvalidRequest)
                assert event.problem is RequestProblem.QUEUE_FULL
                refused += 1
    assert queued == conn.max_pending_requests == 2000
    assert refused == conn.max_invalid_requests == 100
    assert conn.pending_peer_requests == 2000


def test_invalid_cancel_is_ignored_and_counted() -> None:
    conn = open_connection()
    conn.receive_data(
        b"\x00\x00\x00\x0d\x08" + bytes(8) + (0).to_bytes(4, "big") + encode(Have(index=1))
    )
    assert drain(conn) == [Have(index=1)]
    assert conn.invalid_requests == 1


# ---------------------------------------------------------------------------- magnet case


def test_geometry_set_later_checks_what_was_announced() -> None:
    conn = open_connection(geometry=None)
    conn.receive_data(encode(Bitfield(bitfield=b"\xff\xc0")) + encode(Have(index=3)))
    assert len(drain(conn)) == 2
    assert conn.peer_have_count == 10 and conn.peer_has(9) and not conn.peer_has(10)
    conn.set_geometry(GEOMETRY)
    assert conn.peer_is_seed


@pytest.mark.parametrize(
    ("announced", "match"),
    [
        (encode(Bitfield(bitfield=b"\xff")), "bitfield of 1 bytes"),
        (encode(Bitfield(bitfield=b"\xff\xe0")), "beyond"),
        (encode(Have(index=10)), "beyond"),
        (encode(Have(index=1000)), "beyond"),
    ],
)
def test_geometry_set_later_catches_lies(announced: bytes, match: str) -> None:
    conn = open_connection(geometry=None)
    conn.receive_data(announced)
    drain(conn)
    with pytest.raises(RemoteProtocolError, match=match):
        conn.set_geometry(GEOMETRY)


def test_have_beyond_piece_limit_before_metadata() -> None:
    fails_on(open_connection(geometry=None), encode(Have(index=2**21)), "out of range")


def test_huge_bitfield_before_metadata() -> None:
    conn = open_connection(geometry=None)
    fails_on(conn, (2**18 + 2).to_bytes(4, "big") + b"\x05" + bytes(2**18 + 1), "exceeds")
