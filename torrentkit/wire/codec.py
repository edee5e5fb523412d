"""Peer wire framing: message ids, sizes, and the stateless event -> bytes encoder.

Every message after the handshake is ``<length: u32 big-endian><id: u8><payload>``; a length
of 0 is a keep-alive. Decoding lives in connection.py because what a message may contain
depends on the connection's state (the piece count, what we requested); the size rules that
do not depend on state are here, as data, so the parser can check a message's length prefix
as soon as its first five bytes arrive -- before buffering its payload.
"""

from __future__ import annotations

import struct
from typing import Final

from torrentkit.errors import LocalProtocolError
from torrentkit.wire import extensions
from torrentkit.wire.events import (
    BLOCK_SIZE,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    InvalidRequest,
    KeepAlive,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    UnknownMessage,
)

PROTOCOL: Final = b"BitTorrent protocol"
#: ``\x13BitTorrent protocol``: the first 20 bytes of every handshake.
HANDSHAKE_PREFIX: Final = bytes([len(PROTOCOL)]) + PROTOCOL
HANDSHAKE_LENGTH: Final = 68

CHOKE: Final = 0
UNCHOKE: Final = 1
INTERESTED: Final = 2
NOT_INTERESTED: Final = 3
HAVE: Final = 4
BITFIELD: Final = 5
REQUEST: Final = 6
PIECE: Final = 7
CANCEL: Final = 8
PORT: Final = 9
# BEP 6, the fast extension: interpreted only when both handshakes carry its bit.
SUGGEST_PIECE: Final = 13
HAVE_ALL: Final = 14
HAVE_NONE: Final = 15
REJECT_REQUEST: Final = 16
ALLOWED_FAST: Final = 17
FAST_IDS: Final = frozenset({SUGGEST_PIECE, HAVE_ALL, HAVE_NONE, REJECT_REQUEST, ALLOWED_FAST})
EXTENDED: Final = 20

#: The ids this module gives meaning to; any other id is an UnknownMessage (skipped).
KNOWN_IDS: Final = frozenset(
    {
        CHOKE,
        UNCHOKE,
        INTERESTED,
        NOT_INTERESTED,
        HAVE,
        BITFIELD,
        REQUEST,
        PIECE,
        CANCEL,
        PORT,
        EXTENDED,
    }
    | FAST_IDS
)

#: Messages whose payload has exactly this many bytes; any other length is a protocol error.
FIXED_PAYLOAD: Final[dict[int, int]] = {
    CHOKE: 0,
    UNCHOKE: 0,
    INTERESTED: 0,
    NOT_INTERESTED: 0,
    HAVE: 4,
    REQUEST: 12,
    CANCEL: 12,
    PORT: 2,
    SUGGEST_PIECE: 4,
    HAVE_ALL: 0,
    HAVE_NONE: 0,
    REJECT_REQUEST: 12,
    ALLOWED_FAST: 4,
}
#: A PIECE payload is index + begin + 1..16 KiB of data.
PIECE_HEADER: Final = 8
MAX_PIECE_PAYLOAD: Final = PIECE_HEADER + BLOCK_SIZE
#: Default cap on a length prefix (libtorrent's figure); larger ones are refused unbuffered.
MAX_MESSAGE_LENGTH: Final = 1024 * 1024

LENGTH: Final = struct.Struct(">I")
HEADER: Final = struct.Struct(">IB")
PIECE_HDR: Final = struct.Struct(">IBII")  # length, id, index, begin
REQUEST_MSG: Final = struct.Struct(">IBIII")  # 13, id, index, begin, length
HAVE_MSG: Final = struct.Struct(">IBI")
PORT_MSG: Final = struct.Struct(">IBH")
U32: Final = struct.Struct(">I")
THREE_U32: Final = struct.Struct(">III")
U16: Final = struct.Struct(">H")

KEEPALIVE_BYTES: Final = b"\x00\x00\x00\x00"
_NO_PAYLOAD: Final[dict[type, bytes]] = {
    Choke: HEADER.pack(1, CHOKE),
    Unchoke: HEADER.pack(1, UNCHOKE),
    Interested: HEADER.pack(1, INTERESTED),
    NotInterested: HEADER.pack(1, NOT_INTERESTED),
    KeepAlive: KEEPALIVE_BYTES,
    HaveAll: HEADER.pack(1, HAVE_ALL),
    HaveNone: HEADER.pack(1, HAVE_NONE),
}
#: One-index messages: class -> id (HAVE's layout).
_INDEX_ONLY: Final[dict[type, int]] = {SuggestPiece: SUGGEST_PIECE, AllowedFast: ALLOWED_FAST}


def encode_handshake(event: Handshake) -> bytes:
    return HANDSHAKE_PREFIX + event.reserved + event.info_hash + event.peer_id


def piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes in front of a block of ``length`` bytes (for vectored sends)."""
    return PIECE_HDR.pack(PIECE_HEADER + 1 + length, PIECE, index, begin)


def encode(event: Event) -> bytes:
    """The bytes of one message. Does not check connection state (PeerConnection.send does)."""
    cls = type(event)
    simple = _NO_PAYLOAD.get(cls)
    if simple is not None:
        return simple
    if cls is Piece:
        assert isinstance(event, Piece)
        data = event.data
        return PIECE_HDR.pack(PIECE_HEADER + 1 + len(data), PIECE, event.index, event.begin) + data
    if cls is Request or cls is Cancel:
        assert isinstance(event, Request | Cancel)
        msg_id = REQUEST if cls is Request else CANCEL
        return REQUEST_MSG.pack(13, msg_id, event.index, event.begin, event.length)
    if cls is Have:
        assert isinstance(event, Have)
        return HAVE_MSG.pack(5, HAVE, event.index)
    if cls is Bitfield:
        assert isinstance(event, Bitfield)
        return HEADER.pack(1 + len(event.bitfield), BITFIELD) + event.bitfield
    index_id = _INDEX_ONLY.get(cls)
    if index_id is not None:
        assert isinstance(event, SuggestPiece | AllowedFast)
        return HAVE_MSG.pack(5, index_id, event.index)
    if cls is RejectRequest:
        assert isinstance(event, RejectRequest)
        return REQUEST_MSG.pack(13, REJECT_REQUEST, event.index, event.begin, event.length)
    if cls is Port:
        assert isinstance(event, Port)
        return PORT_MSG.pack(3, PORT, event.port)
    if cls is Handshake:
        assert isinstance(event, Handshake)
        return encode_handshake(event)
    if cls is ExtendedHandshake:
        assert isinstance(event, ExtendedHandshake)
        body = extensions.encode_extended_handshake(event)
        return _frame(EXTENDED, bytes([extensions.HANDSHAKE_ID]) + body)
    if cls is Extended:
        assert isinstance(event, Extended)
        return _frame(EXTENDED, bytes([event.ext_id]) + event.payload)
    if cls is UnknownMessage:
        assert isinstance(event, UnknownMessage)
        if event.message_id in KNOWN_IDS:
            raise LocalProtocolError(
                f"message id {event.message_id} has its own event class; use that"
            )
        return _frame(event.message_id, event.payload)
    if cls is InvalidRequest:
        raise LocalProtocolError("InvalidRequest is a receive-only report, not a message")
    raise LocalProtocolError(f"not a peer wire event: {event!r}")


def _frame(msg_id: int, payload: bytes) -> bytes:
    if 1 + len(payload) > MAX_MESSAGE_LENGTH:
        raise LocalProtocolError(f"message of {1 + len(payload)} bytes exceeds the 1 MiB limit")
    return HEADER.pack(1 + len(payload), msg_id) + payload
