"""Property tests. Each states its invariant (docs/design.md, Testing)."""

from __future__ import annotations

import itertools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from torrentkit.errors import RemoteProtocolError
from torrentkit.wire import (
    NEED_DATA,
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
    PieceGeometry,
    Port,
    Request,
    Unchoke,
    UnknownMessage,
)
from torrentkit.wire.codec import KNOWN_IDS, encode
from torrentkit.wire.testing import ConnectionPair, drain

from .helpers import GEOMETRY, handshake_bytes, open_connection

# ------------------------------------------------------------------ hostile bytes

# Frames with plausible length prefixes and ids, so the fuzzer reaches past the header checks,
# and well-formed messages with hostile values, so it reaches the state rules too.
small = st.one_of(st.integers(0, 12), st.sampled_from([16383, 16384, 16385, 2**31, 2**32 - 1]))
frames = st.builds(
    lambda msg_id, payload, fudge: (
        struct.pack(">IB", max(0, len(payload) + 1 + fudge), msg_id) + payload
    ),
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 20, 21, 255]),
    st.binary(max_size=40),
    st.sampled_from([0, 0, 0, 0, -1, 1, -5]),
)
shaped = st.one_of(
    st.sampled_from([0, 1, 2, 3]).map(lambda i: struct.pack(">IB", 1, i)),
    st.just(b"\x00\x00\x00\x00"),
    small.map(lambda i: struct.pack(">IBI", 5, 4, i)),
    st.binary(min_size=1, max_size=3).map(lambda b: struct.pack(">IB", 1 + len(b), 5) + b),
    st.tuples(st.sampled_from([6, 8]), small, small, small).map(
        lambda t: struct.pack(">IBIII", 13, *t)
    ),
    st.tuples(small, small, st.binary(min_size=1, max_size=20)).map(
        lambda t: struct.pack(">IBII", 9 + len(t[2]), 7, t[0], t[1]) + t[2]
    ),
    st.integers(0, 65535).map(lambda p: struct.pack(">IBH", 3, 9, p)),
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(
            [b"de", b"d1:md11:ut_metadatai1eee", b"d4:reqqi5ee", b"d1:v3:abce", b"d1:mi1ee", b"x"]
        ),
    ).map(lambda t: struct.pack(">IBB", 2 + len(t[1]), 20, t[0]) + t[1]),
)
streams = st.lists(st.one_of(shaped, shaped, frames, st.binary(max_size=30)), max_size=12).map(
    b"".join
)


def run(conn: PeerConnection, data: bytes, cuts: list[int]) -> tuple[list[Event], bool]:
    """Feed ``data`` cut at ``cuts``; return the events and whether it ended in an error.

    Invariant: next_event gives events or NEED_DATA, or raises RemoteProtocolError (after
    which it keeps raising). Any other exception fails the test."""
    events: list[Event] = []
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    try:
        for lo, hi in itertools.pairwise(bounds):
            conn.receive_data(data[lo:hi])
            while (event := conn.next_event()) is not NEED_DATA:
                assert not isinstance(event, type(NEED_DATA))
                events.append(event)
    except RemoteProtocolError:
        try:
            conn.next_event()
        except RemoteProtocolError:
            return events, True
        raise AssertionError("a failed connection parsed again") from None
    return events, False


def fresh(geometry: PieceGeometry | None, unchoked: bool) -> PeerConnection:
    """Our side after the handshakes. With a geometry and ``unchoked``, both sides unchoke and
    we have requested small blocks at offsets 0-3 of pieces 0-3, so PIECEs can match."""
    conn = open_connection(geometry=geometry)
    if unchoked:
        conn.send(Unchoke())
    if unchoked and geometry is not None:
        conn.receive_data(encode(Bitfield(bitfield=b"\xff\xc0")) + encode(Unchoke()))
        assert len(drain(conn)) == 2
        for index, begin, length in itertools.product(range(4), range(4), range(1, 21)):
            conn.send(Request(index=index, begin=begin, length=length))
    return conn


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=streams,
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    geometry=st.sampled_from([GEOMETRY, None]),
    unchoked=st.booleans(),
)
def test_any_bytes_after_handshake_give_events_or_remote_error(
    data: bytes, cuts: list[int], geometry: PieceGeometry | None, unchoked: bool
) -> None:
    """Invariant: arbitrary bytes after a valid handshake give events or RemoteProtocolError,
    nothing else -- and the same ones however the bytes are cut."""
    whole = run(fresh(geometry, unchoked), data, [])
    cut = run(fresh(geometry, unchoked), data, cuts)
    assert whole == cut


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=100),
        st.builds(lambda b, tail: handshake_bytes()[: len(b)] + tail, st.binary(), st.binary()),
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=4),
    initiator=st.booleans(),
)
def test_any_bytes_from_the_start(data: bytes, cuts: list[int], initiator: bool) -> None:
    """Invariant: the same, from the first byte (the handshake parser included)."""
    from torrentkit.wire.testing import ID_A, INFO_HASH

    def make() -> PeerConnection:
        return PeerConnection(initiator=initiator, info_hash=INFO_HASH, our_peer_id=ID_A)

    assert run(make(), data, []) == run(make(), data, cuts)


# ------------------------------------------------------------------ round trips

names = st.text(min_size=1, max_size=20).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)

plain_events = st.one_of(
    st.builds(KeepAlive),
    st.builds(Choke),
    st.builds(Unchoke),
    st.builds(Interested),
    st.builds(NotInterested),
    st.builds(Have, index=st.integers(min_value=0, max_value=GEOMETRY.num_pieces - 1)),
    st.builds(Port, port=st.integers(min_value=0, max_value=65535)),
    st.builds(
        UnknownMessage,
        message_id=st.integers(min_value=0, max_value=255).filter(lambda i: i not in KNOWN_IDS),
        payload=st.binary(max_size=64),
    ),
    st.builds(
        ExtendedHandshake,
        m=st.dictionaries(names, st.integers(min_value=0, max_value=255), max_size=5),
        v=st.none() | names,
        reqq=st.none() | st.integers(min_value=1, max_value=2**31),
        yourip=st.none() | st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
        p=st.none() | st.integers(min_value=1, max_value=65535),
        metadata_size=st.none() | st.integers(min_value=0, max_value=2**40),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    first=st.none() | st.binary(min_size=2, max_size=2).map(lambda b: b[:1] + bytes([b[1] & 0xC0])),
    events=st.lists(plain_events, max_size=10),
    ext=st.binary(max_size=100),
)
def test_round_trip_of_arbitrary_valid_events(
    first: bytes | None, events: list[Event], ext: bytes
) -> None:
    """Invariant: whatever valid events one side sends, the other receives exactly those."""
    pair = ConnectionPair(geometry=GEOMETRY)
    sent: list[Event] = []
    if first is not None:
        sent.append(Bitfield(bitfield=first))
    sent += events
    # Extension messages go out under the peer's id for ut_metadata.
    pair.b.receive_data(pair.a.send(ExtendedHandshake(m={"ut_metadata": 9})))
    assert pair.b.next_event() == ExtendedHandshake(m={"ut_metadata": 9})
    sent.append(Extended(ext_id=9, payload=ext))
    received = pair.send("b", *sent)
    assert received == sent


class RequestTraffic(RuleBasedStateMachine):
    """Requests, pieces, cancels and chokes in any order both peers may legally send them.

    Invariants: every event arrives as sent; the flags on each side mirror the other's; what a
    has outstanding is exactly what b has queued."""

    blocks = Bundle("blocks")

    @initialize()
    def setup(self) -> None:
        self.geometry = PieceGeometry(piece_length=4 * 16384, total_length=4 * 4 * 16384 - 100)
        # BEP 3 semantics (a choke voids requests); tests/wire/test_fast.py has BEP 6's.
        bep3 = bytes([0, 0, 0, 0, 0, 0x10, 0, 0])
        self.pair = ConnectionPair(geometry=self.geometry, reserved_a=bep3, reserved_b=bep3)
        full = Bitfield.from_indices(4, range(4))
        assert self.pair.send("b", full) == [full]

    def deliver(self, side: str, event: Event) -> None:
        assert self.pair.send(side, event) == [event]

    @rule(
        side=st.sampled_from(["a", "b"]),
        event=st.sampled_from([Choke(), Unchoke(), Interested(), NotInterested()]),
    )
    def flag(self, side: str, event: Event) -> None:
        self.deliver(side, event)

    @precondition(lambda self: not self.pair.a.peer_choking)
    @rule(target=blocks, index=st.integers(0, 3), block=st.integers(0, 3))
    def request(self, index: int, block: int) -> tuple[int, int, int]:
        size = self.geometry.piece_size(index)
        begin = block * 16384
        length = min(16384, size - begin)
        if length <= 0 or self.pair.a.is_outstanding(index, begin, length):
            return (index, begin, length)
        self.deliver("a", Request(index=index, begin=begin, length=length))
        return (index, begin, length)

    @rule(key=consumes(blocks))
    def answer(self, key: tuple[int, int, int]) -> None:
        index, begin, length = key
        if self.pair.b.peer_request_pending(index, begin, length):
            self.deliver("b", Piece(index=index, begin=begin, data=bytes([index]) * length))

    @rule(key=consumes(blocks))
    def cancel(self, key: tuple[int, int, int]) -> None:
        index, begin, length = key
        if length <= 0:
            return
        if self.pair.a.is_outstanding(index, begin, length):
            self.deliver("a", Cancel(index=index, begin=begin, length=length))
        else:
            assert self.pair.a.send(Cancel(index=index, begin=begin, length=length)) == b""

    @invariant()
    def mirrored(self) -> None:
        a, b = self.pair.a, self.pair.b
        assert (a.am_choking, a.am_interested) == (b.peer_choking, b.peer_interested)
        assert (b.am_choking, b.am_interested) == (a.peer_choking, a.peer_interested)
        queued = b.peer_requests()
        assert a.outstanding_requests == len(queued)
        assert all(a.is_outstanding(r.index, r.begin, r.length) for r in queued)


TestRequestTraffic = RequestTraffic.TestCase
TestRequestTraffic.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
