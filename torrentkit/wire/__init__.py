"""The BitTorrent peer wire protocol, sans-IO (BEP 3 messages, BEP 10 extension handshake).

- events.py: one frozen dataclass per message (shared by both directions).
- codec.py: framing constants, size rules as data, the stateless event -> bytes encoder.
- connection.py: :class:`PeerConnection`, the per-connection state machine and its rules.
- extensions.py: BEP 10 reserved bit, extended handshake, extension id maps.
- peer_id.py: our peer id; client names read from peer ids.
- testing.py: :class:`ConnectionPair`, two endpoints joined in memory, for tests.
"""

from torrentkit.wire.connection import (
    NEED_DATA,
    HandshakeRejected,
    NeedData,
    PeerConnection,
    PieceGeometry,
    RejectReason,
)
from torrentkit.wire.events import (
    BLOCK_SIZE,
    DEFAULT_RESERVED,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    Interested,
    InvalidRequest,
    KeepAlive,
    NotInterested,
    Piece,
    Port,
    Request,
    RequestProblem,
    Unchoke,
    UnknownMessage,
)

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_RESERVED",
    "NEED_DATA",
    "Bitfield",
    "Cancel",
    "Choke",
    "Event",
    "Extended",
    "ExtendedHandshake",
    "Handshake",
    "HandshakeRejected",
    "Have",
    "Interested",
    "InvalidRequest",
    "KeepAlive",
    "NeedData",
    "NotInterested",
    "PeerConnection",
    "Piece",
    "PieceGeometry",
    "Port",
    "RejectReason",
    "Request",
    "RequestProblem",
    "Unchoke",
    "UnknownMessage",
]
