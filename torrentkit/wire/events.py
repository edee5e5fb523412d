"""Peer wire events: one frozen, slotted, keyword-only dataclass per message.

The same classes travel both ways: :meth:`PeerConnection.next_event` returns them for what the
peer sent, and :meth:`PeerConnection.send` turns them into bytes. Each event checks its own
fields when built and raises :class:`LocalProtocolError` for a value no message can carry (our
code built a bad event). The parser never builds an event from remote bytes it has not checked
first, so remote data only ever surfaces as :class:`RemoteProtocolError`.

Two events are receive-only reports, never sent: :class:`InvalidRequest` (a REQUEST the core
refused, see connection.py) and, on the receive side, :class:`UnknownMessage` (a message id we
do not interpret, skipped). ``send(UnknownMessage(...))`` is allowed for ids that no other event
covers, as an escape hatch for extensions not written yet.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torrentkit.errors import LocalProtocolError

# BLOCK_SIZE (16 KiB): every client uses 16 KiB blocks and drops peers asking for more (BEP 3).
from torrentkit.metainfo import BLOCK_SIZE as BLOCK_SIZE

_U32 = 2**32

#: reserved[5] & 0x10: the BEP 10 extension protocol.
EXTENSION_BYTE = 5
EXTENSION_MASK = 0x10
#: reserved[7] & 0x04: the BEP 6 fast extension.
FAST_BYTE = 7
FAST_MASK = 0x04
#: What we send: the extension protocol bit and the fast extension bit (no DHT bit).
DEFAULT_RESERVED = bytes([0, 0, 0, 0, 0, EXTENSION_MASK, 0, FAST_MASK])
#: The extension protocol bit only: for connections that fetch metadata and nothing else
#: (the fast extension would oblige us to send a have-set and answer requests).
EXTENSION_ONLY_RESERVED = bytes([0, 0, 0, 0, 0, EXTENSION_MASK, 0, 0])


def _u32(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value < _U32:
        raise LocalProtocolError(f"{name} must be an integer in 0..2**32-1, got {value!r}")


def _block_length(name: str, value: int) -> None:
    if type(value) is not int or not 0 < value <= BLOCK_SIZE:
        raise LocalProtocolError(f"{name} must be 1..{BLOCK_SIZE}, got {value!r}")


def _bytes(name: str, value: object, length: int | None = None) -> None:
    if not isinstance(value, bytes):
        raise LocalProtocolError(f"{name} must be bytes, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise LocalProtocolError(f"{name} must be {length} bytes, got {len(value)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshake:
    """The 68-byte BitTorrent handshake. Unknown reserved bits are carried, never acted on."""

    info_hash: bytes
    peer_id: bytes
    reserved: bytes = DEFAULT_RESERVED

    def __post_init__(self) -> None:
        _bytes("info_hash", self.info_hash, 20)
        _bytes("peer_id", self.peer_id, 20)
        _bytes("reserved", self.reserved, 8)

    @property
    def extension_protocol(self) -> bool:
        """Whether this side supports the BEP 10 extension protocol."""
        return bool(self.reserved[EXTENSION_BYTE] & EXTENSION_MASK)

    @property
    def fast_extension(self) -> bool:
        """Whether this side supports the BEP 6 fast extension."""
        return bool(self.reserved[FAST_BYTE] & FAST_MASK)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    """A zero-length message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Choke:
    """Message 0: no data will be sent until an unchoke."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unchoke:
    """Message 1."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interested:
    """Message 2."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NotInterested:
    """Message 3."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Have:
    """Message 4: the sender completed and verified piece ``index``."""

    index: int

    def __post_init__(self) -> None:
        _u32("index", self.index)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bitfield:
    """Message 5: the pieces the sender has, high bit of the first byte = piece 0."""

    bitfield: bytes

    def __post_init__(self) -> None:
        _bytes("bitfield", self.bitfield)
        if not self.bitfield:
            raise LocalProtocolError("bitfield must not be empty")

    def has(self, index: int) -> bool:
        byte = index >> 3
        return byte < len(self.bitfield) and bool(self.bitfield[byte] & (0x80 >> (index & 7)))

    @classmethod
    def from_indices(cls, num_pieces: int, indices: Iterable[int]) -> Bitfield:
        """The bitfield of ``num_pieces`` pieces with ``indices`` set."""
        if num_pieces <= 0:
            raise LocalProtocolError("a bitfield needs at least one piece")
        bits = bytearray((num_pieces + 7) // 8)
        for i in indices:
            if not 0 <= i < num_pieces:
                raise LocalProtocolError(f"piece {i} out of range 0..{num_pieces - 1}")
            bits[i >> 3] |= 0x80 >> (i & 7)
        return cls(bitfield=bytes(bits))


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """Message 6: ask for ``length`` bytes of piece ``index`` from offset ``begin``."""

    index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _u32("index", self.index)
        _u32("begin", self.begin)
        _block_length("length", self.length)


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """Message 7: a block of data. ``data`` is ``bytes`` (one copy out of the receive buffer)."""

    index: int
    begin: int
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _u32("index", self.index)
        _u32("begin", self.begin)
        _bytes("data", self.data)
        _block_length("len(data)", len(self.data))

    @property
    def length(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """Message 8: withdraw an earlier request."""

    index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _u32("index", self.index)
        _u32("begin", self.begin)
        _block_length("length", self.length)


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    """Message 9 (BEP 5): the sender's DHT port."""

    port: int

    def __post_init__(self) -> None:
        if type(self.port) is not int or not 0 <= self.port <= 0xFFFF:
            raise LocalProtocolError(f"port must be 0..65535, got {self.port!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SuggestPiece:
    """Message 13 (BEP 6): "you might like to download piece ``index``" (advisory)."""

    index: int

    def __post_init__(self) -> None:
        _u32("index", self.index)


@dataclass(frozen=True, slots=True, kw_only=True)
class HaveAll:
    """Message 14 (BEP 6): the sender has every piece (in place of a bitfield)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HaveNone:
    """Message 15 (BEP 6): the sender has no piece (in place of a bitfield)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectRequest:
    """Message 16 (BEP 6): the request for this block will not be served."""

    index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _u32("index", self.index)
        _u32("begin", self.begin)
        _u32("length", self.length)


@dataclass(frozen=True, slots=True, kw_only=True)
class AllowedFast:
    """Message 17 (BEP 6): the sender serves piece ``index`` even while choking us."""

    index: int

    def __post_init__(self) -> None:
        _u32("index", self.index)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedHandshake:
    """Message 20, extension id 0 (BEP 10): the extension handshake, parsed.

    ``m`` maps extension names to the ids *the sender* wants to receive them under (0 means
    "disabled"). ``v`` is the client name, ``reqq`` how many outstanding requests the sender
    accepts, ``yourip`` the address (4 or 16 bytes) it sees the receiver at, ``p`` its listen
    port, ``metadata_size`` the info dictionary's size (BEP 9). ``raw`` is the whole decoded
    dictionary (bytes keys); it is not compared, and on sending its keys are included unless a
    field above sets the same key.
    """

    m: Mapping[str, int] = field(default_factory=dict)
    v: str | None = None
    reqq: int | None = None
    yourip: bytes | None = None
    p: int | None = None
    metadata_size: int | None = None
    raw: Mapping[bytes, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, ext_id in self.m.items():
            if not isinstance(name, str) or not name:
                raise LocalProtocolError(f"extension name must be a non-empty str: {name!r}")
            if type(ext_id) is not int or not 0 <= ext_id <= 255:
                raise LocalProtocolError(f"extension id for {name!r} must be 0..255")
        if self.v is not None and not isinstance(self.v, str):
            raise LocalProtocolError("v must be a str")
        if self.reqq is not None and (type(self.reqq) is not int or self.reqq < 1):
            raise LocalProtocolError(f"reqq must be a positive integer, got {self.reqq!r}")
        if self.yourip is not None:
            _bytes("yourip", self.yourip)
            if len(self.yourip) not in (4, 16):
                raise LocalProtocolError("yourip must be 4 or 16 bytes")
        if self.p is not None and (type(self.p) is not int or not 0 < self.p <= 0xFFFF):
            raise LocalProtocolError(f"p must be 1..65535, got {self.p!r}")
        if self.metadata_size is not None and (
            type(self.metadata_size) is not int or self.metadata_size < 0
        ):
            raise LocalProtocolError("metadata_size must be a non-negative integer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Extended:
    """Message 20 with a non-zero extension id: an extension message we pass on uninterpreted.

    Received: ``ext_id`` is the id *we* assigned (look its name up with
    :meth:`PeerConnection.extension_name`). Sent: it is the id the *peer* assigned
    (:meth:`PeerConnection.peer_extension_id`).
    """

    ext_id: int
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if type(self.ext_id) is not int or not 1 <= self.ext_id <= 255:
            raise LocalProtocolError(f"ext_id must be 1..255 (0 is the handshake): {self.ext_id!r}")
        _bytes("payload", self.payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownMessage:
    """A message id we do not interpret (fast extension, v2 hash messages, ...): skipped."""

    message_id: int
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if type(self.message_id) is not int or not 0 <= self.message_id <= 255:
            raise LocalProtocolError(f"message_id must be 0..255, got {self.message_id!r}")
        _bytes("payload", self.payload)


class RequestProblem(enum.Enum):
    """Why a peer's REQUEST was refused (see :class:`InvalidRequest`)."""

    #: length 0 or over 16 KiB.
    BAD_LENGTH = "bad_length"
    #: piece index out of range, or the block runs past the piece's end.
    OUT_OF_RANGE = "out_of_range"
    #: the piece count is not known yet (magnet link without metadata).
    NO_METADATA = "no_metadata"
    #: we are choking the peer (a few arrive legitimately right after a choke).
    CHOKED = "choked"
    #: the same block is already queued.
    DUPLICATE = "duplicate"
    #: the peer has more requests queued than we allow.
    QUEUE_FULL = "queue_full"


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidRequest:
    """Receive-only: a REQUEST the core refused; the counts live on the connection. Without
    the fast extension a refused request is simply ignored; with it (BEP 6) the engine
    answers with a :class:`RejectRequest` (``PeerConnection.send`` accepts one for a refused
    request as well as for a queued one)."""

    index: int
    begin: int
    length: int
    problem: RequestProblem


Event = (
    Handshake
    | KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | Bitfield
    | Request
    | Piece
    | Cancel
    | Port
    | SuggestPiece
    | HaveAll
    | HaveNone
    | RejectRequest
    | AllowedFast
    | ExtendedHandshake
    | Extended
    | UnknownMessage
    | InvalidRequest
)
