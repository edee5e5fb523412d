"""Per-connection state: the choke/interest flags, the bitfield window, both request tables,
and the LocalProtocolErrors that catch our own misuse."""

from __future__ import annotations

import pytest

from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.wire import (
    Bitfield,
    Cancel,
    Choke,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    Interested,
    InvalidRequest,
    KeepAlive,
    NotInterested,
    Piece,
    PieceGeometry,
    Port,
    Request,
    RequestProblem,
    Unchoke,
    UnknownMessage,
)
from torrentkit.wire.testing import ConnectionPair, drain

from .helpers import GEOMETRY

BLOCK = 16384
FULL = Bitfield(bitfield=b"\xff\xc0")


def flags(conn: object) -> tuple[bool, bool, bool, bool]:
    return (
        conn.am_choking,  # type: ignore[attr-defined]
        conn.am_interested,  # type: ignore[attr-defined]
        conn.peer_choking,  # type: ignore[attr-defined]
        conn.peer_interested,  # type: ignore[attr-defined]
    )


#: Reserved bytes without the fast extension: BEP 3 choke semantics (test_fast.py has BEP 6's).
BEP3 = bytes([0, 0, 0, 0, 0, 0x10, 0, 0])


def seeding_pair() -> ConnectionPair:
    """b has every piece and unchokes a; a is interested (BEP 3 only)."""
    pair = ConnectionPair(geometry=GEOMETRY, reserved_a=BEP3, reserved_b=BEP3)
    pair.send("b", FULL, Unchoke())
    pair.send("a", Interested())
    return pair


def test_initial_flags_and_mirroring() -> None:
    pair = ConnectionPair(geometry=GEOMETRY)
    assert flags(pair.a) == flags(pair.b) == (True, False, True, False)
    steps = [
        ("a", Interested()),
        ("b", Unchoke()),
        ("a", Unchoke()),
        ("b", Interested()),
        ("a", NotInterested()),
        ("b", Choke()),
    ]
    for side, event in steps:
        assert pair.send(side, event) == [event]
        a, b = flags(pair.a), flags(pair.b)
        assert (a[0], a[1]) == (b[2], b[3]) and (b[0], b[1]) == (a[2], a[3])
    assert flags(pair.a) == (False, False, True, True)


def test_request_piece_cycle() -> None:
    pair = seeding_pair()
    req = Request(index=3, begin=BLOCK, length=BLOCK)
    assert pair.send("a", req) == [req]
    assert pair.a.is_outstanding(3, BLOCK, BLOCK) and pair.a.outstanding_requests == 1
    assert pair.b.peer_request_pending(3, BLOCK, BLOCK)
    assert pair.b.peer_requests() == [req]
    piece = Piece(index=3, begin=BLOCK, data=b"x" * BLOCK)
    assert pair.send("b", piece) == [piece]
    assert pair.a.outstanding_requests == 0 and pair.b.pending_peer_requests == 0
    with pytest.raises(LocalProtocolError, match="not requested"):
        pair.b.send(piece)  # answered already


def test_our_request_rules() -> None:
    pair = ConnectionPair(geometry=GEOMETRY)
    with pytest.raises(LocalProtocolError, match="chokes us"):
        pair.a.send(Request(index=0, begin=0, length=BLOCK))
    pair.send("b", Bitfield(bitfield=b"\x80\x00"), Unchoke())
    with pytest.raises(LocalProtocolError, match="lacks"):
        pair.a.send(Request(index=1, begin=0, length=BLOCK))
    with pytest.raises(LocalProtocolError, match="outside"):
        pair.a.send(Request(index=0, begin=32768 - 1, length=2))
    with pytest.raises(LocalProtocolError, match="outside"):
        pair.a.send(Request(index=10, begin=0, length=BLOCK))
    pair.send("a", Request(index=0, begin=0, length=BLOCK))
    with pytest.raises(LocalProtocolError, match="already outstanding"):
        pair.a.send(Request(index=0, begin=0, length=BLOCK))
    nometa = ConnectionPair()
    with pytest.raises(LocalProtocolError, match="geometry"):
        nometa.a.send(Request(index=0, begin=0, length=BLOCK))


def test_peer_choke_drops_our_requests() -> None:
    pair = seeding_pair()
    pair.send(
        "a", Request(index=0, begin=0, length=BLOCK), Request(index=0, begin=BLOCK, length=BLOCK)
    )
    pair.send("a", Cancel(index=0, begin=BLOCK, length=BLOCK))
    assert pair.send("b", Choke()) == [Choke()]
    assert pair.a.outstanding_requests == 0 and pair.b.pending_peer_requests == 0
    # A block that was already on its way when the peer choked us (libtorrent sends CHOKE,
    # then a queued PIECE) arrives late: accepted once, as for a cancelled request.
    late = b"\x00\x00\x40\x09\x07" + bytes(8) + bytes(BLOCK)
    pair.a.receive_data(late)
    assert drain(pair.a) == [Piece(index=0, begin=0, data=bytes(BLOCK))]
    # The same block again, or one never asked for, is still unsolicited.
    pair.a.receive_data(late)
    with pytest.raises(RemoteProtocolError, match="never requested"):
        drain(pair.a)


def test_our_choke_drops_peer_requests() -> None:
    pair = seeding_pair()
    pair.send("a", Request(index=0, begin=0, length=BLOCK))
    pair.send("b", Choke())
    with pytest.raises(LocalProtocolError, match="not requested"):
        pair.b.send(Piece(index=0, begin=0, data=bytes(BLOCK)))


def test_cancel() -> None:
    pair = seeding_pair()
    req = Request(index=2, begin=0, length=BLOCK)
    pair.send("a", req)
    assert pair.send("a", Cancel(index=2, begin=0, length=BLOCK)) == [
        Cancel(index=2, begin=0, length=BLOCK)
    ]
    assert not pair.b.peer_request_pending(2, 0, BLOCK)
    # A second cancel, or one for a block never requested, has nothing to say.
    assert pair.a.send(Cancel(index=2, begin=0, length=BLOCK)) == b""
    assert pair.a.send(Cancel(index=5, begin=0, length=BLOCK)) == b""


def test_piece_after_cancel_still_accepted() -> None:
    """The peer may have sent the block before our cancel reached it."""
    pair = seeding_pair()
    pair.send("a", Request(index=2, begin=0, length=BLOCK))
    in_flight = pair.b.send(Piece(index=2, begin=0, data=b"y" * BLOCK))
    pair.a.send(Cancel(index=2, begin=0, length=BLOCK))  # crosses the piece on the wire
    pair.a.receive_data(in_flight)
    assert pair.a.next_event() == Piece(index=2, begin=0, data=b"y" * BLOCK)


def test_a_block_withdrawn_twice_may_arrive_twice_but_not_three_times() -> None:
    """Seen in the 20-leecher sim: a block requested, cancelled, requested again and
    cancelled again; a slow peer had both answers in its send queue already. Each
    withdrawn request allows one late copy, no more."""
    pair = seeding_pair()
    req = Request(index=2, begin=0, length=BLOCK)
    cancel = Cancel(index=2, begin=0, length=BLOCK)
    pair.send("a", req)
    first = pair.b.send(Piece(index=2, begin=0, data=b"1" * BLOCK))
    pair.a.send(cancel)
    pair.a.send(req)  # the engine asks again at once (e.g. after a snub)
    pair.a.send(cancel)
    for data in (first, first):
        pair.a.receive_data(data)
        assert pair.a.next_event() == Piece(index=2, begin=0, data=b"1" * BLOCK)
    pair.a.receive_data(first)
    with pytest.raises(RemoteProtocolError, match="never requested"):
        drain(pair.a)


def test_drop_peer_request() -> None:
    pair = seeding_pair()
    pair.send("a", Request(index=1, begin=0, length=BLOCK))
    pair.b.drop_peer_request(1, 0, BLOCK)
    assert pair.b.pending_peer_requests == 0
    assert pair.send("a", Request(index=1, begin=BLOCK, length=BLOCK))


def test_peer_have_set() -> None:
    pair = ConnectionPair(geometry=GEOMETRY)
    pair.send("b", Bitfield(bitfield=b"\x81\x00"), Have(index=9), Have(index=0))
    assert [i for i in range(10) if pair.a.peer_has(i)] == [0, 7, 9]
    assert pair.a.peer_have_count == 3 and not pair.a.peer_is_seed
    assert pair.a.peer_bitfield() == b"\x81\x40"


def test_bitfield_window_on_receive() -> None:
    """Transmission sends its extended handshake before its bitfield; that is allowed, and so
    are keep-alives, PORT and unknown messages. Any BEP 3 state message closes the window."""
    pair = ConnectionPair(geometry=GEOMETRY)
    early = [
        ExtendedHandshake(v="Transmission 3.00"),
        KeepAlive(),
        Port(port=1),
        UnknownMessage(message_id=99, payload=b""),
    ]
    assert pair.send("b", *early, FULL) == [*early, FULL]


def test_bitfield_window_on_send() -> None:
    pair = ConnectionPair(geometry=GEOMETRY)
    pair.send("a", Have(index=1))
    with pytest.raises(LocalProtocolError, match="first message"):
        pair.a.send(FULL)
    with pytest.raises(LocalProtocolError, match="fit"):
        pair.b.send(Bitfield(bitfield=b"\xff\xe0"))
    with pytest.raises(LocalProtocolError, match="fit"):
        pair.b.send(Bitfield(bitfield=b"\xff"))
    with pytest.raises(LocalProtocolError, match="out of range"):
        pair.b.send(Have(index=10))
    nometa = ConnectionPair()
    with pytest.raises(LocalProtocolError, match="geometry"):
        nometa.a.send(FULL)


def test_extension_ids() -> None:
    pair = ConnectionPair(geometry=GEOMETRY)
    pair.send("a", ExtendedHandshake(m={"ut_metadata": 3, "ut_pex": 1}))
    pair.send("b", ExtendedHandshake(m={"ut_metadata": 7}, reqq=250, v="libtorrent 2.1.1"))
    assert pair.a.peer_extension_id("ut_metadata") == 7
    assert pair.a.peer_extension_id("ut_pex") is None
    assert pair.a.peer_reqq == 250
    assert pair.b.peer_extension_id("ut_pex") == 1
    # a receives ut_metadata under its own id 3; b sends with a's id.
    (event,) = pair.send("b", Extended(ext_id=3, payload=b"hello"))
    assert pair.a.extension_name(event.ext_id) == "ut_metadata"  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError, match="not one the peer offered"):
        pair.b.send(Extended(ext_id=2, payload=b""))
    # m is additive and 0 switches an extension off.
    pair.send("a", ExtendedHandshake(m={"ut_pex": 0}))
    assert pair.b.peer_extension_id("ut_pex") is None
    assert pair.b.peer_extension_id("ut_metadata") == 3
    assert pair.a.extension_name(1) is None
    # Once a switches ut_metadata off, b may no longer send it, and if it arrives anyway it is
    # passed on with no name.
    pair.send("a", ExtendedHandshake(m={"ut_metadata": 0}))
    with pytest.raises(LocalProtocolError, match="not one the peer offered"):
        pair.b.send(Extended(ext_id=3, payload=b""))
    pair.a.receive_data(b"\x00\x00\x00\x02\x14\x03")
    assert drain(pair.a) == [Extended(ext_id=3, payload=b"")]
    assert pair.a.extension_name(3) is None


def test_extended_before_peer_handshake() -> None:
    pair = ConnectionPair(handshake=False)
    pair.a.send(Handshake(info_hash=pair.info_hash, peer_id=pair.a.our_peer_id))
    with pytest.raises(LocalProtocolError, match="before the peer's handshake"):
        pair.a.send(ExtendedHandshake())


def test_receive_only_and_reserved_ids_cannot_be_sent() -> None:
    pair = ConnectionPair(geometry=GEOMETRY)
    with pytest.raises(LocalProtocolError, match="receive-only"):
        pair.a.send(InvalidRequest(index=0, begin=0, length=1, problem=RequestProblem.CHOKED))
    with pytest.raises(LocalProtocolError, match="own event class"):
        pair.a.send(UnknownMessage(message_id=5, payload=b""))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Request(index=0, begin=0, length=BLOCK + 1),
        lambda: Request(index=0, begin=0, length=0),
        lambda: Request(index=-1, begin=0, length=1),
        lambda: Request(index=2**32, begin=0, length=1),
        lambda: Cancel(index=0, begin=0, length=BLOCK + 1),
        lambda: Piece(index=0, begin=0, data=bytes(BLOCK + 1)),
        lambda: Piece(index=0, begin=0, data=b""),
        lambda: Piece(index=0, begin=0, data=bytearray(1)),  # type: ignore[arg-type]
        lambda: Have(index=True),
        lambda: Bitfield(bitfield=b""),
        lambda: Port(port=70000),
        lambda: Extended(ext_id=0, payload=b""),
        lambda: UnknownMessage(message_id=256, payload=b""),
        lambda: ExtendedHandshake(m={"x": 256}),
        lambda: ExtendedHandshake(reqq=0),
        lambda: ExtendedHandshake(yourip=b"\x01\x02\x03"),
        lambda: ExtendedHandshake(p=0),
        lambda: PieceGeometry(piece_length=0, total_length=1),
        lambda: PieceGeometry(piece_length=1, total_length=2**21 + 1),
        lambda: Bitfield.from_indices(8, [8]),
    ],
)
def test_events_validate_themselves(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LocalProtocolError):
        build()


def test_events_are_frozen_slotted_and_keyword_only() -> None:
    req = Request(index=1, begin=2, length=3)
    with pytest.raises(AttributeError):
        req.index = 5  # type: ignore[misc]
    assert not hasattr(req, "__dict__")
    with pytest.raises(TypeError):
        Request(1, 2, 3)  # type: ignore[misc]
