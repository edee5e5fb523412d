"""The 68-byte handshake: exact bytes, both roles, and every way a peer's handshake is refused."""

from __future__ import annotations

from typing import Any

import pytest

from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.wire import (
    DEFAULT_RESERVED,
    NEED_DATA,
    ExtendedHandshake,
    Handshake,
    HandshakeRejected,
    Interested,
    PeerConnection,
    RejectReason,
)
from torrentkit.wire.testing import ID_A, ID_B, INFO_HASH, ConnectionPair, drain

from .helpers import handshake_bytes

OTHER_HASH = bytes(range(100, 120))


def dialer(**kw: Any) -> PeerConnection:
    return PeerConnection(initiator=True, info_hash=INFO_HASH, our_peer_id=ID_A, **kw)


def test_handshake_exact_bytes() -> None:
    conn = dialer()
    wire = conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_A))
    assert wire == (
        b"\x13BitTorrent protocol" + b"\x00\x00\x00\x00\x00\x10\x00\x04" + INFO_HASH + ID_A
    )
    assert len(wire) == 68
    # The extension protocol bit: reserved[5] & 0x10; the fast extension: reserved[7] & 0x04.
    assert DEFAULT_RESERVED[5] & 0x10
    assert DEFAULT_RESERVED[7] & 0x04


@pytest.mark.parametrize("way", ["whole", "bytewise", "trailing"])
def test_peer_handshake_three_ways(way: str) -> None:
    conn = dialer()
    conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_A))
    data = handshake_bytes(reserved=b"\xff" * 8)  # every reserved bit, known or not
    expected = Handshake(info_hash=INFO_HASH, peer_id=ID_B, reserved=b"\xff" * 8)
    if way == "whole":
        conn.receive_data(data)
        assert drain(conn) == [expected]
    elif way == "bytewise":  # docs/limits.md 5: handshake dribbled one byte at a time
        for i in range(len(data) - 1):
            conn.receive_data(data[i : i + 1])
            assert conn.next_event() is NEED_DATA
        conn.receive_data(data[-1:])
        assert drain(conn) == [expected]
    else:
        conn.receive_data(data + b"\x00\x00\x00\x01\x02" + b"\x00\x00")
        assert drain(conn) == [expected, Interested()]
        assert conn.peer_interested
    assert conn.peer_handshake == expected
    # Unknown reserved bits are ignored; the extension bit is honoured.
    assert conn.extension_protocol


def test_extension_protocol_needs_both_bits() -> None:
    pair = ConnectionPair(reserved_b=bytes(8))
    assert not pair.a.extension_protocol and not pair.b.extension_protocol
    with pytest.raises(LocalProtocolError, match="not negotiated"):
        pair.a.send(ExtendedHandshake())
    # A message 20 from a peer that did not advertise BEP 10 is skipped, not interpreted.
    pair.a.receive_data(b"\x00\x00\x00\x03\x14\x00e")
    (event,) = drain(pair.a)
    assert type(event).__name__ == "UnknownMessage"


def test_incoming_checks_info_hash_before_we_answer() -> None:
    served = {INFO_HASH}
    conn = PeerConnection(initiator=False, info_hash=served.__contains__, our_peer_id=ID_B)
    with pytest.raises(LocalProtocolError, match="only after"):
        conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_B))
    conn.receive_data(handshake_bytes(peer_id=ID_A))
    assert drain(conn) == [Handshake(info_hash=INFO_HASH, peer_id=ID_A, reserved=bytes(8))]
    assert conn.info_hash == INFO_HASH
    with pytest.raises(LocalProtocolError, match="info-hash"):
        conn.send(Handshake(info_hash=OTHER_HASH, peer_id=ID_B))
    with pytest.raises(LocalProtocolError, match="peer id"):
        conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_A))
    assert len(conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_B))) == 68
    with pytest.raises(LocalProtocolError, match="already"):
        conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_B))


def test_incoming_unknown_info_hash_refused_at_byte_48() -> None:
    """docs/limits.md 5: wrong info-hash -- refused once the hash is in, before the peer id."""
    conn = PeerConnection(initiator=False, info_hash=INFO_HASH, our_peer_id=ID_B)
    data = handshake_bytes(info_hash=OTHER_HASH, peer_id=ID_A)
    conn.receive_data(data[:47])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(data[47:48])
    with pytest.raises(HandshakeRejected) as info:
        conn.next_event()
    assert info.value.reason is RejectReason.UNKNOWN_INFO_HASH
    assert isinstance(info.value, RemoteProtocolError)
    # Sticky: the connection is finished.
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_dialer_refuses_other_info_hash() -> None:
    conn = dialer()
    conn.send(Handshake(info_hash=INFO_HASH, peer_id=ID_A))
    conn.receive_data(handshake_bytes(info_hash=OTHER_HASH))
    with pytest.raises(HandshakeRejected) as info:
        conn.next_event()
    assert info.value.reason is RejectReason.UNKNOWN_INFO_HASH


@pytest.mark.parametrize("initiator", [True, False])
def test_own_peer_id_is_refused(initiator: bool) -> None:
    """docs/limits.md 5: we connected to ourselves."""
    conn = PeerConnection(initiator=initiator, info_hash=INFO_HASH, our_peer_id=ID_A)
    conn.receive_data(handshake_bytes(peer_id=ID_A))
    with pytest.raises(HandshakeRejected) as info:
        conn.next_event()
    assert info.value.reason is RejectReason.SELF_CONNECTION


def test_expected_peer_id() -> None:
    conn = dialer(expected_peer_id=b"-XX0000-000000000000")
    conn.receive_data(handshake_bytes(peer_id=ID_B))
    with pytest.raises(HandshakeRejected) as info:
        conn.next_event()
    assert info.value.reason is RejectReason.PEER_ID_MISMATCH


@pytest.mark.parametrize(
    "junk",
    [b"\x12", b"\x13BitTorrent protocoX", b"GET / HTTP/1.1\r\n", b"\x13bittorrent"],
)
def test_not_bittorrent_refused_at_first_wrong_byte(junk: bytes) -> None:
    conn = dialer()
    conn.receive_data(junk)
    with pytest.raises(HandshakeRejected) as info:
        conn.next_event()
    assert info.value.reason is RejectReason.NOT_BITTORRENT


def test_messages_before_our_handshake_are_local_errors() -> None:
    conn = dialer()
    with pytest.raises(LocalProtocolError, match="before our handshake"):
        conn.send(Interested())


def test_constructor_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        PeerConnection(initiator=True, info_hash=lambda ih: True, our_peer_id=ID_A)
    with pytest.raises(LocalProtocolError):
        PeerConnection(initiator=True, info_hash=b"short", our_peer_id=ID_A)
    with pytest.raises(LocalProtocolError):
        PeerConnection(initiator=True, info_hash=INFO_HASH, our_peer_id=b"short")


def test_peer_may_send_messages_before_we_answer() -> None:
    """An initiator often sends its bitfield right behind its handshake, before ours."""
    conn = PeerConnection(initiator=False, info_hash=INFO_HASH, our_peer_id=ID_B)
    conn.receive_data(handshake_bytes(peer_id=ID_A) + b"\x00\x00\x00\x01\x02")
    events = drain(conn)
    assert [type(e) for e in events] == [Handshake, Interested]


def test_extended_handshake_before_we_answer() -> None:
    """An initiator may pipeline its extended handshake behind its handshake."""
    conn = PeerConnection(initiator=False, info_hash=INFO_HASH, our_peer_id=ID_B)
    reserved = bytes([0, 0, 0, 0, 0, 0x10, 0, 0])
    conn.receive_data(
        handshake_bytes(peer_id=ID_A, reserved=reserved) + b"\x00\x00\x00\x04\x14\x00de"
    )
    assert drain(conn) == [
        Handshake(info_hash=INFO_HASH, peer_id=ID_A, reserved=reserved),
        ExtendedHandshake(),
    ]
