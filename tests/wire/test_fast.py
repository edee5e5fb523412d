"""BEP 6, the fast extension, on the sans-IO connection: messages, choke semantics, limits."""

from __future__ import annotations

import pytest

from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.wire import Bitfield, Choke, Interested, Piece, Request, Unchoke
from torrentkit.wire.codec import encode
from torrentkit.wire.connection import MAX_ALLOWED_FAST_IN
from torrentkit.wire.events import (
    AllowedFast,
    HaveAll,
    HaveNone,
    InvalidRequest,
    RejectRequest,
    RequestProblem,
    SuggestPiece,
)
from torrentkit.wire.fast import allowed_fast_set
from torrentkit.wire.testing import ConnectionPair, drain

from .helpers import GEOMETRY, feed_three_ways, open_connection

BLOCK = 16384
BEP3 = bytes([0, 0, 0, 0, 0, 0x10, 0, 0])


def test_bep6_test_vector() -> None:
    """The BEP's own example: 80.4.4.200, info-hash 0xaa * 20, 1313 pieces."""
    ih = b"\xaa" * 20
    assert allowed_fast_set("80.4.4.200", ih, 1313, 7) == [1059, 431, 808, 1217, 287, 376, 1188]
    assert allowed_fast_set("80.4.4.200", ih, 1313, 9) == [
        1059, 431, 808, 1217, 287, 376, 1188, 353, 508,
    ]  # fmt: skip
    # Only the /24 counts; k+1 extends the k-set.
    assert allowed_fast_set("80.4.4.1", ih, 1313, 9) == allowed_fast_set("80.4.4.200", ih, 1313, 9)
    assert allowed_fast_set("80.4.4.200", ih, 1313, 10)[:9] == allowed_fast_set(
        "80.4.4.200", ih, 1313, 9
    )


def test_allowed_fast_set_small_torrents_and_ipv6() -> None:
    ih = b"\x01" * 20
    assert allowed_fast_set("10.0.0.1", ih, 4, 10) == [0, 1, 2, 3]  # k >= pieces: every piece
    assert allowed_fast_set("10.0.0.1", ih, 0, 10) == []
    six = allowed_fast_set("2001:db8:1:2::5", ih, 1000, 10)
    assert len(six) == len(set(six)) == 10 and all(0 <= i < 1000 for i in six)
    assert six == allowed_fast_set("2001:db8:1:ffff::9", ih, 1000, 10)  # same /48
    assert allowed_fast_set("::ffff:80.4.4.200", b"\xaa" * 20, 1313, 7)[0] == 1059


def fast_pair() -> ConnectionPair:
    return ConnectionPair(geometry=GEOMETRY)


def test_fast_negotiated_only_when_both_set_the_bit() -> None:
    assert fast_pair().a.fast
    assert not ConnectionPair(geometry=GEOMETRY, reserved_b=BEP3).a.fast
    pair = ConnectionPair(geometry=GEOMETRY, reserved_b=BEP3)
    with pytest.raises(LocalProtocolError, match="fast extension"):
        pair.a.send(HaveAll())


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        (SuggestPiece(index=3), b"\x00\x00\x00\x05\x0d\x00\x00\x00\x03"),
        (HaveAll(), b"\x00\x00\x00\x01\x0e"),
        (HaveNone(), b"\x00\x00\x00\x01\x0f"),
        (
            RejectRequest(index=1, begin=BLOCK, length=BLOCK),
            b"\x00\x00\x00\x0d\x10\x00\x00\x00\x01\x00\x00\x40\x00\x00\x00\x40\x00",
        ),
        (AllowedFast(index=9), b"\x00\x00\x00\x05\x11\x00\x00\x00\x09"),
    ],
)
def test_fast_message_bytes(event: object, wire: bytes) -> None:
    assert encode(event) == wire  # type: ignore[arg-type]


def test_have_all_and_have_none_three_ways() -> None:
    def make() -> object:
        conn = open_connection()
        return conn

    from torrentkit.wire import Handshake, PeerConnection
    from torrentkit.wire.testing import ID_A, ID_B, INFO_HASH

    def fast_conn() -> PeerConnection:
        conn = PeerConnection(
            initiator=True, info_hash=INFO_HASH, our_peer_id=ID_A, geometry=GEOMETRY
        )
        conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_A))
        conn.receive_data(
            b"\x13BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 4]) + INFO_HASH + ID_B
        )
        drain(conn)
        return conn

    for way in feed_three_ways(fast_conn, encode(HaveAll())):
        assert way == [HaveAll()]
    conn = fast_conn()
    conn.receive_data(encode(HaveAll()))
    drain(conn)
    assert conn.peer_is_seed and conn.peer_have_count == GEOMETRY.num_pieces
    assert conn.peer_bitfield() == Bitfield.from_indices(10, range(10)).bitfield
    conn.receive_data(encode(HaveNone()))
    assert drain(conn) == [HaveNone()]
    assert conn.peer_have_count == 0 and not conn.peer_has(0)


def test_fast_messages_without_the_extension_close_the_connection() -> None:
    conn = open_connection()  # the peer's handshake has no fast bit
    conn.receive_data(encode(HaveAll()))
    with pytest.raises(RemoteProtocolError, match="without the fast extension"):
        drain(conn)


def test_have_all_before_geometry_applies_later() -> None:
    pair = ConnectionPair(geometry=None)
    pair.send("b", HaveAll())
    assert pair.a.peer_have_count == 0
    pair.a.set_geometry(GEOMETRY)
    assert pair.a.peer_is_seed


def test_our_have_all_only_as_first_message() -> None:
    pair = fast_pair()
    assert pair.send("b", HaveAll()) == [HaveAll()]
    with pytest.raises(LocalProtocolError, match="first message"):
        pair.b.send(HaveNone())


def unchoked_fast_pair() -> ConnectionPair:
    pair = fast_pair()
    pair.send("b", HaveAll(), Unchoke())
    pair.send("a", Interested())
    return pair


def test_choke_keeps_our_requests_and_rejects_the_peers() -> None:
    pair = unchoked_fast_pair()
    reqs = [Request(index=0, begin=0, length=BLOCK), Request(index=0, begin=BLOCK, length=BLOCK)]
    pair.send("a", *reqs)
    # b allows piece 0 fast: choking rejects nothing of piece 0.
    pair.send("b", AllowedFast(index=0))
    pair.send("a", Request(index=1, begin=0, length=BLOCK))
    got = pair.send("b", Choke())
    # The CHOKE is followed by a REJECT for the request that is not allowed fast.
    assert got == [Choke(), RejectRequest(index=1, begin=0, length=BLOCK)]
    assert pair.a.outstanding_requests == 2  # still outstanding: b will answer them
    assert pair.b.pending_peer_requests == 2
    # The allowed-fast blocks are still served while choked, and accepted.
    assert pair.send("b", Piece(index=0, begin=0, data=bytes(BLOCK))) == [
        Piece(index=0, begin=0, data=bytes(BLOCK))
    ]
    # b may still reject a queued one explicitly.
    assert pair.send("b", RejectRequest(index=0, begin=BLOCK, length=BLOCK)) == [
        RejectRequest(index=0, begin=BLOCK, length=BLOCK)
    ]
    assert pair.a.outstanding_requests == 0 and pair.b.pending_peer_requests == 0


def test_requests_while_choked_only_for_allowed_fast_pieces() -> None:
    pair = fast_pair()
    pair.send("b", HaveAll())
    pair.send("b", AllowedFast(index=2))
    assert pair.a.allowed_fast_in == {2}
    with pytest.raises(LocalProtocolError, match="chokes us"):
        pair.a.send(Request(index=3, begin=0, length=BLOCK))
    with pytest.raises(LocalProtocolError, match="chokes us"):
        pair.a.send_requests([(2, 0, BLOCK), (3, 0, BLOCK)])
    # b queues the allowed-fast one while choking a; anything else is refused (CHOKED).
    assert pair.send("a", Request(index=2, begin=0, length=BLOCK)) == [
        Request(index=2, begin=0, length=BLOCK)
    ]
    pair.a._peer_have[0] |= 0x10  # a pretends b has piece 3 allowed; b refuses it
    pair.a._allowed_fast_in[3] = None
    got = pair.send("a", Request(index=3, begin=0, length=BLOCK))
    assert got == [InvalidRequest(index=3, begin=0, length=BLOCK, problem=RequestProblem.CHOKED)]
    assert pair.b.peer_request_pending(2, 0, BLOCK)


def test_reject_for_a_block_never_requested_drops_the_peer() -> None:
    pair = unchoked_fast_pair()
    pair.a.receive_data(encode(RejectRequest(index=0, begin=0, length=BLOCK)))
    with pytest.raises(RemoteProtocolError, match="never requested"):
        drain(pair.a)


def test_reject_of_a_cancelled_request_is_accepted() -> None:
    from torrentkit.wire import Cancel

    pair = unchoked_fast_pair()
    pair.send("a", Request(index=0, begin=0, length=BLOCK))
    pair.send("a", Cancel(index=0, begin=0, length=BLOCK))
    assert pair.send("b", RejectRequest(index=0, begin=0, length=BLOCK)) == [
        RejectRequest(index=0, begin=0, length=BLOCK)
    ]
    # ... once: a second reject for it is unsolicited.
    pair.a.receive_data(encode(RejectRequest(index=0, begin=0, length=BLOCK)))
    with pytest.raises(RemoteProtocolError):
        drain(pair.a)


def test_allowed_fast_and_suggest_out_of_range_are_ignored_and_counted() -> None:
    pair = fast_pair()
    n = GEOMETRY.num_pieces
    pair.a.receive_data(
        encode(AllowedFast(index=n))
        + encode(SuggestPiece(index=2**32 - 1))
        + encode(SuggestPiece(index=1))
    )
    got = drain(pair.a)
    assert got == [SuggestPiece(index=1)]
    assert pair.a.allowed_fast_in == frozenset()
    assert pair.a.invalid_requests == 2
    # Past the invalid-message limit the peer is dropped.
    flood = ConnectionPair(geometry=GEOMETRY, max_invalid_requests=5)
    wire = b"".join(encode(AllowedFast(index=n + i)) for i in range(6))
    flood.a.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match="invalid"):
        drain(flood.a)


def test_allowed_fast_set_from_a_peer_is_capped() -> None:
    from torrentkit.wire import PieceGeometry

    big = PieceGeometry(piece_length=BLOCK, total_length=1000 * BLOCK)
    pair = ConnectionPair(geometry=big)
    events = [AllowedFast(index=i) for i in range(MAX_ALLOWED_FAST_IN + 50)]
    got = pair.send("b", *events)
    assert len(got) == MAX_ALLOWED_FAST_IN
    assert len(pair.a.allowed_fast_in) == MAX_ALLOWED_FAST_IN


def test_allowed_fast_before_geometry_checked_when_it_arrives() -> None:
    pair = ConnectionPair(geometry=None)
    pair.b.set_geometry(GEOMETRY)  # b (the sender) knows the torrent
    pair.send("b", AllowedFast(index=3))
    pair.a._allowed_fast_in[500] = None  # as if sent before a knew the piece count
    pair.a.set_geometry(GEOMETRY)
    assert pair.a.allowed_fast_in == {3}


def test_suggest_floods_cost_nothing_but_are_delivered() -> None:
    pair = fast_pair()
    got = pair.send("b", *[SuggestPiece(index=i % 10) for i in range(1000)])
    assert len(got) == 1000  # the engine keeps only a few (see engine tests)
