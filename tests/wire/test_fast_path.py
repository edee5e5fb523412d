"""The data fast lane (``next_blocks``) and batched requests (``send_requests``): the same
events, state and errors as the slow path, whatever way the bytes arrive (issue 15)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.wire import (
    NEED_DATA,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Have,
    KeepAlive,
    PeerConnection,
    Piece,
    Request,
    Unchoke,
)
from torrentkit.wire.codec import encode
from torrentkit.wire.testing import drain

from .helpers import TRAILER, open_connection

BLOCK = 16384
#: (index, begin, length) of the blocks our side asks for in these tests.
ASKED = [(1, 0, BLOCK), (1, BLOCK, BLOCK), (2, 0, BLOCK), (9, 0, BLOCK), (9, BLOCK, 20_000 - BLOCK)]


def asking() -> PeerConnection:
    """Our side, unchoked by a seed, with every block of ASKED requested."""
    conn = open_connection()
    conn.receive_data(encode(Bitfield(bitfield=b"\xff\xc0")) + encode(Unchoke()))
    drain(conn)
    for i, b, n in ASKED:
        conn.send(Request(index=i, begin=b, length=n))
    return conn


def piece(index: int, begin: int, length: int, fill: int = 0x61) -> bytes:
    return encode(Piece(index=index, begin=begin, data=bytes([fill + index]) * length))


def drain_fast(conn: PeerConnection) -> list[Event]:
    """What a driver using the fast lane sees: blocks in batches, the rest one by one
    (blocks turned into Piece events to compare with the slow path)."""
    out: list[Event] = []
    while True:
        for index, begin, view in conn.next_blocks():
            out.append(Piece(index=index, begin=begin, data=bytes(view)))
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        assert not isinstance(event, type(NEED_DATA))
        out.append(event)


def stream() -> bytes:
    """Blocks interleaved with other messages, a keep-alive and a late block after a choke."""
    return b"".join(
        [
            piece(*ASKED[0]),
            piece(*ASKED[1]),
            encode(Have(index=3)),
            encode(KeepAlive()),
            piece(*ASKED[2]),
            piece(*ASKED[4]),
            encode(Choke()),
            piece(*ASKED[3]),  # late: its request was withdrawn by the choke
        ]
    )


def slow(data: bytes) -> list[Event]:
    conn = asking()
    conn.receive_data(data)
    return drain(conn)


def test_fast_lane_equals_slow_path_three_ways() -> None:
    data = stream()
    expected = slow(data)
    assert [type(e) for e in expected].count(Piece) == 5

    whole = asking()
    whole.receive_data(data)
    assert drain_fast(whole) == expected

    dribbled = asking()
    got: list[Event] = []
    for i in range(len(data)):
        dribbled.receive_data(data[i : i + 1])
        got += drain_fast(dribbled)
    assert got == expected

    trailing = asking()
    trailing.receive_data(data + TRAILER[:3])
    assert drain_fast(trailing) == expected
    assert trailing.next_blocks() == []
    trailing.receive_data(TRAILER[3:])
    assert drain_fast(trailing) == [Have(index=7)]

    # The same state afterwards: nothing outstanding, nothing left to arrive late.
    assert whole.outstanding_requests == dribbled.outstanding_requests == 0
    assert not whole.is_outstanding(9, 0, BLOCK)


def test_many_blocks_in_one_call_without_copies() -> None:
    conn = asking()
    conn.receive_data(b"".join(piece(*k) for k in ASKED))
    blocks = conn.next_blocks()
    assert [(i, b, len(v)) for i, b, v in blocks] == ASKED
    assert all(type(v) is memoryview for _, _, v in blocks)
    assert bytes(blocks[3][2]) == b"j" * BLOCK
    assert conn.next_blocks() == []
    assert conn.next_event() is NEED_DATA


def test_views_held_across_receive_data_stay_intact() -> None:
    """A driver that keeps a block's view past the next receive: no BufferError, and
    neither the view nor the parsing is disturbed (the connection moves to a new buffer)."""
    conn = asking()
    conn.receive_data(piece(*ASKED[0]) + piece(*ASKED[1])[:100])
    (kept,) = conn.next_blocks()
    conn.receive_data(piece(*ASKED[1])[100:] + encode(Have(index=4)))
    assert bytes(kept[2]) == b"b" * BLOCK
    assert drain_fast(conn) == [Piece(index=1, begin=BLOCK, data=b"b" * BLOCK), Have(index=4)]


def test_unsolicited_block_stops_the_lane_and_next_event_raises() -> None:
    conn = asking()
    conn.receive_data(piece(*ASKED[0]) + piece(3, 0, BLOCK) + piece(*ASKED[1]))
    assert [(i, b) for i, b, _ in conn.next_blocks()] == [(1, 0)]
    assert conn.next_blocks() == []
    with pytest.raises(RemoteProtocolError, match="never requested"):
        conn.next_event()
    with pytest.raises(RemoteProtocolError, match="already failed"):
        conn.next_blocks()


def test_oversized_block_refused_at_its_id_byte() -> None:
    """docs/limits.md: a PIECE over 16 KiB is refused once 5 bytes are in, fast lane or not."""
    conn = asking()
    conn.receive_data(piece(*ASKED[0]) + struct.pack(">IB", 9 + BLOCK + 1, 7))
    assert len(conn.next_blocks()) == 1
    with pytest.raises(RemoteProtocolError, match="byte block"):
        conn.next_event()


def test_small_message_limit_still_applies() -> None:
    conn = asking()
    conn.max_message_length = 1000
    conn.receive_data(piece(*ASKED[0]))
    assert conn.next_blocks() == []
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        conn.next_event()


def test_nothing_before_the_handshake() -> None:
    conn = PeerConnection(initiator=True, info_hash=b"i" * 20, our_peer_id=b"a" * 20)
    conn.receive_data(piece(1, 0, 3))
    assert conn.next_blocks() == []


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, len(stream())), max_size=12))
def test_any_split_gives_the_slow_path_events(cuts: list[int]) -> None:
    """Invariant: however the stream is cut into receives, the fast lane yields exactly the
    events the slow path does."""
    data = stream()
    conn = asking()
    got: list[Event] = []
    last = 0
    for cut in [*sorted(cuts), len(data)]:
        conn.receive_data(data[last:cut])
        got += drain_fast(conn)
        last = cut
    assert got == slow(data)


def outcome(conn: PeerConnection, data: bytes, fast: bool) -> tuple[list[Event], str | None]:
    conn.receive_data(data)
    try:
        return (drain_fast(conn) if fast else drain(conn)), None
    except RemoteProtocolError as exc:
        return [], str(exc)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(
        st.one_of(
            st.sampled_from([piece(*k) for k in ASKED]),
            st.builds(
                lambda i, b, n: struct.pack(">IBII", 9 + n, 7, i, b) + bytes(n),
                st.integers(0, 12),
                st.sampled_from([0, BLOCK, 1]),
                st.sampled_from([0, 1, 3, BLOCK, BLOCK + 1]),
            ),
            st.binary(max_size=20),
        ),
        max_size=6,
    )
)
def test_hostile_bytes_same_outcome_either_way(frames: list[bytes]) -> None:
    """Invariant: any bytes either parse or raise RemoteProtocolError, and the fast lane
    gives the same events (and the same error, when there is one) as the slow path."""
    data = b"".join(frames)
    fast_events, fast_err = outcome(asking(), data, fast=True)
    slow_events, slow_err = outcome(asking(), data, fast=False)
    assert fast_err == slow_err
    if fast_err is None:
        assert fast_events == slow_events


# ------------------------------------------------------------------ send_requests


def unchoked_by_seed() -> PeerConnection:
    conn = open_connection()
    conn.receive_data(encode(Bitfield(bitfield=b"\xff\xc0")) + encode(Unchoke()))
    drain(conn)
    return conn


def test_send_requests_same_bytes_and_state_as_one_by_one() -> None:
    one, batch = unchoked_by_seed(), unchoked_by_seed()
    wire = b"".join(one.send(Request(index=i, begin=b, length=n)) for i, b, n in ASKED)
    assert batch.send_requests(ASKED) == wire
    assert batch.outstanding_requests == len(ASKED)
    assert all(batch.is_outstanding(*k) for k in ASKED)
    assert batch.send_requests([]) == b""
    # a Cancel works on a batched request as on any other
    assert batch.send(Cancel(index=1, begin=0, length=BLOCK)) == encode(
        Cancel(index=1, begin=0, length=BLOCK)
    )


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([(1, 0, BLOCK), (10, 0, BLOCK)], "outside the torrent"),
        ([(1, 0, BLOCK), (9, BLOCK, BLOCK)], "outside the torrent"),
        ([(1, 0, 0)], "bad REQUEST"),
        ([(1, 0, BLOCK + 1)], "bad REQUEST"),
        ([(1, -1, 5)], "bad REQUEST"),
        ([(1, 0, BLOCK), (1, 0, BLOCK)], "twice"),
    ],
)
def test_send_requests_refuses_the_whole_batch(
    blocks: list[tuple[int, int, int]], message: str
) -> None:
    conn = unchoked_by_seed()
    with pytest.raises(LocalProtocolError, match=message):
        conn.send_requests(blocks)
    assert conn.outstanding_requests == 0


def test_send_requests_state_rules() -> None:
    conn = open_connection()
    conn.receive_data(encode(Have(index=1)) + encode(Unchoke()))
    drain(conn)
    with pytest.raises(LocalProtocolError, match="lacks"):
        conn.send_requests([(2, 0, BLOCK)])
    conn.send_requests([(1, 0, BLOCK)])
    with pytest.raises(LocalProtocolError, match="already outstanding"):
        conn.send_requests([(1, 0, BLOCK)])
    conn.receive_data(encode(Choke()))
    drain(conn)
    with pytest.raises(LocalProtocolError, match="chokes us"):
        conn.send_requests([(1, BLOCK, BLOCK)])


# ------------------------------------------------------------------ send_pieces


def serving() -> PeerConnection:
    """Our side, unchoking a peer that asked for three blocks."""
    conn = open_connection()
    conn.send(Unchoke())
    conn.receive_data(
        b"".join(encode(Request(index=i, begin=b, length=n)) for i, b, n in ASKED[:3])
    )
    drain(conn)
    return conn


def test_send_pieces_same_bytes_and_state_as_one_by_one() -> None:
    one, batch = serving(), serving()
    blocks = [(i, b, bytes([i]) * n) for i, b, n in ASKED[:3]]
    wire = b"".join(one.send(Piece(index=i, begin=b, data=d)) for i, b, d in blocks)
    views = [(i, b, memoryview(d)) for i, b, d in blocks]
    buffers = batch.send_pieces(views)
    assert b"".join(buffers) == wire
    assert buffers[1] is views[0][2]  # the data is not copied
    assert batch.pending_peer_requests == one.pending_peer_requests == 0
    assert batch.send_pieces([]) == []


@pytest.mark.parametrize(
    "blocks",
    [
        [(1, 0, b"x" * BLOCK), (3, 0, b"x" * BLOCK)],  # never requested
        [(1, 0, b"x" * BLOCK), (1, BLOCK, b"x" * 5)],  # wrong length
        [(1, 0, b"x" * BLOCK), (1, 0, b"x" * BLOCK)],  # twice
    ],
)
def test_send_pieces_refuses_the_whole_batch(blocks: list[tuple[int, int, bytes]]) -> None:
    conn = serving()
    with pytest.raises(LocalProtocolError):
        conn.send_pieces(blocks)
    assert conn.pending_peer_requests == 3


# ------------------------------------------------------------------ receive_buffer


def test_reading_straight_into_the_buffer_equals_receive_data() -> None:
    """A driver using receive_buffer/received in reads of any size sees what receive_data
    gives; the buffer is given back once the burst is over."""
    data = stream()
    for size in (1, 7, 13, 4096, len(data), 300_000):
        conn = asking()
        got: list[Event] = []
        pos = 0
        while pos < len(data):
            with conn.receive_buffer(size) as room:
                n = min(size, len(data) - pos)
                room[:n] = data[pos : pos + n]
            conn.received(n)
            pos += n
            got += drain_fast(conn)
        assert got == slow(data), size
    big = conn._buf
    assert len(big) >= 300_000
    conn.receive_data(encode(Have(index=6)))
    assert conn.next_event() == Have(index=6)
    assert len(conn._buf) < 1024


def test_receive_buffer_limits() -> None:
    conn = asking()
    with pytest.raises(LocalProtocolError):
        conn.receive_buffer(0)
    with pytest.raises(LocalProtocolError, match="unparsed"):
        conn.receive_buffer(conn.max_buffer + 1)
    with conn.receive_buffer(10):
        pass
    with pytest.raises(LocalProtocolError):
        conn.received(len(conn._buf) + 1)
