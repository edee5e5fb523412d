"""Helpers for the peer wire tests: connections in a known state, and feeding bytes three ways."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torrentkit.wire import NEED_DATA, Event, Handshake, Have, PeerConnection, PieceGeometry
from torrentkit.wire.codec import encode
from torrentkit.wire.testing import ID_A, ID_B, INFO_HASH, drain

#: 10 pieces of 32 KiB, the last one 20,000 bytes: two bytes of bitfield with 6 spare bits.
GEOMETRY = PieceGeometry(piece_length=32 * 1024, total_length=9 * 32 * 1024 + 20_000)


def handshake_bytes(
    info_hash: bytes = INFO_HASH, peer_id: bytes = ID_B, reserved: bytes = bytes(8)
) -> bytes:
    return b"\x13BitTorrent protocol" + reserved + info_hash + peer_id


def open_connection(geometry: PieceGeometry | None = GEOMETRY, **options: Any) -> PeerConnection:
    """Our side (a, the initiator) after both handshakes; the peer is ID_B."""
    conn = PeerConnection(
        initiator=True,
        info_hash=INFO_HASH,
        our_peer_id=ID_A,
        geometry=geometry,
        **options,
    )
    conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_A))
    conn.receive_data(handshake_bytes(reserved=bytes([0, 0, 0, 0, 0, 0x10, 0, 0])))
    assert isinstance(conn.next_event(), Handshake)
    return conn


#: A message that trails the one under test; only its first 3 bytes are fed at first.
TRAILER = encode(Have(index=7))


def feed_three_ways(
    make: Callable[[], PeerConnection], data: bytes
) -> tuple[list[Event], list[Event], list[Event]]:
    """Feed ``data`` whole, one byte at a time, and followed by part of another message.

    Returns the events of each way; for the third, checks that the partial trailer stays
    buffered (NEED_DATA) and completes into Have(7) once the rest arrives.
    """
    whole = make()
    whole.receive_data(data)
    got_whole = drain(whole)

    dribbled = make()
    got_dribbled: list[Event] = []
    for i in range(len(data)):
        dribbled.receive_data(data[i : i + 1])
        got_dribbled += drain(dribbled)

    trailing = make()
    trailing.receive_data(data + TRAILER[:3])
    got_trailing = drain(trailing)
    assert trailing.next_event() is NEED_DATA
    trailing.receive_data(TRAILER[3:])
    assert drain(trailing) == [Have(index=7)]
    return got_whole, got_dribbled, got_trailing
