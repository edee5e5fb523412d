"""One peer wire connection as a sans-IO state machine (h11-style).

    conn = PeerConnection(initiator=True, info_hash=ih, our_peer_id=me, geometry=g)
    sock.send_all(conn.send(Handshake(info_hash=ih, peer_id=me)))
    conn.receive_data(await sock.receive_some())
    while (event := conn.next_event()) is not NEED_DATA: ...

No sockets, no clock, no disk. ``receive_data`` only buffers; ``next_event`` parses one
message; ``send`` checks a message against the state and returns its bytes. End of stream is
the driver's business: a peer wire stream has no clean close, so "closed mid-message" and
"closed between messages" both just mean the peer is gone.

State (all of it lives on PeerConnection; the rules below are the only transitions)
=================================================================================

Handshake stage, one per direction:

    ours:   HANDSHAKE --send(Handshake)--> OPEN
    theirs: HANDSHAKE --68 valid bytes--> OPEN --RemoteProtocolError--> ERROR (sticky)

- The initiator may send its handshake at once. The receiving side learns the info-hash
  from the peer's handshake, checks it with ``info_hash`` (a callable: "do we serve this?"),
  and may only send its own handshake after that, with the same info-hash.
- A peer handshake is rejected with :class:`HandshakeRejected` (a RemoteProtocolError) as soon
  as the bytes received show it: a wrong protocol string at its first wrong byte, an info-hash
  we do not serve at byte 48, our own peer id (we dialled ourselves) or an unexpected one at
  byte 68. ``exc.reason`` tells the driver which (e.g. never redial an address that was us).
- Unknown reserved bits are ignored. Extension messages (id 20) are interpreted when both
  handshakes carry the BEP 10 bit (on receipt: when the peer's does and ours does or is not
  sent yet); otherwise they are UnknownMessage like any unknown id. We send them only when
  both handshakes carry the bit.

Bitfield window, ours only: we send a BITFIELD only before any other BEP 3 message
(``_CLOSES_WINDOW_EVENTS``; keep-alives, PORT and extension messages leave the window
open), else LocalProtocolError. A peer's BITFIELD is accepted at any time and replaces what
we knew of its pieces: aria2 sends a full bitfield mid-connection in place of 20 or more
HAVEs. Its length and spare bits are always checked.

Choke / interest flags (BEP 3; every connection starts choked and not interested), changed
only by :data:`FLAG_CHANGES` when the message is sent (ours) or received (theirs):

    am_choking = True, am_interested = False, peer_choking = True, peer_interested = False

Requests, both directions, keyed by (index, begin, length):

- ``_requested``: what we asked the peer for. send(Request) adds (only while the peer unchokes
  us, for a piece it has, inside the piece); a received PIECE must match it or a request we
  cancelled (``_cancelled``, bounded), else RemoteProtocolError (BEP 3: unsolicited piece ->
  close). A received CHOKE moves every outstanding request to ``_cancelled`` (without the
  fast extension the peer drops them, and the engine re-issues them elsewhere; but a block
  already in the peer's send queue may still arrive -- libtorrent sends CHOKE, then the
  queued PIECE -- and is accepted as late, not treated as unsolicited). ``_cancelled``
  counts per block: a block requested, withdrawn and requested again may arrive once per
  request from a slow peer's send queue.
- ``_peer_requests``: what the peer asked us for and we have not answered. A received REQUEST
  is added and returned as :class:`Request`, or refused and returned as :class:`InvalidRequest`
  (bad length, out of range, no metadata yet, choked, duplicate, queue full) and counted:
  ``choked_requests`` (since our last CHOKE) and ``invalid_requests``; past
  ``max_choked_requests`` / ``max_invalid_requests`` it is a RemoteProtocolError. Sending a
  PIECE removes the request (a PIECE nobody asked for is a LocalProtocolError: check
  :meth:`peer_request_pending` after a disk read), a received CANCEL removes it, sending a CHOKE
  empties the queue. The engine may drop one without answering: :meth:`drop_peer_request`.

Fast extension (BEP 6), when both handshakes carry its bit (reserved[7] & 0x04; on receipt:
when the peer's does and ours does or is not sent yet). Its messages (13-17) from a peer
that did not negotiate it are a RemoteProtocolError (the BEP: close the connection).

- HAVE ALL / HAVE NONE stand for a bitfield, both ways (ours only in the bitfield window).
- A received CHOKE leaves our requests outstanding: the peer answers each with its block or a
  REJECT REQUEST. A REJECT for a block we did not request (or cancel) is a RemoteProtocolError.
- Sending CHOKE rejects the peer's queued requests at once (the CHOKE's bytes are followed by
  a REJECT for each), except those for pieces in the allowed-fast set we sent it; a REQUEST
  received while we choke is queued when its piece is in that set, else refused (CHOKED) and
  the engine rejects it. ``send(RejectRequest)`` drops the request from the queue if queued.
- ALLOWED FAST received: the piece joins ``allowed_fast_in`` (at most
  :data:`MAX_ALLOWED_FAST_IN`; more are ignored), and while the peer chokes us we may still
  request blocks of those pieces. ALLOWED FAST and SUGGEST PIECE for a piece out of range are
  ignored and counted with the invalid requests (docs/limits.md).

Piece geometry (``PieceGeometry``: piece length and total length) may be unknown at first
(magnet links); :meth:`set_geometry` supplies it later. Until then a peer's BITFIELD and HAVEs
are kept unchecked (HAVE indexes below 2**21) and checked when the geometry arrives.

Limits (docs/limits.md): a length prefix over ``max_message_length`` (1 MiB) is refused as soon
as its 4 bytes arrive, and a PIECE over 16 KiB, a wrongly sized fixed-length message or a
bitfield of the wrong size as soon as the 5th byte (the id) arrives -- never after buffering
the payload. ``receive_data`` refuses to hold more than ``max_buffer`` unparsed bytes
(LocalProtocolError: the driver must drain ``next_event`` before reading more).

Performance: the receive buffer is one bytearray with a read offset, compacted when new data
arrives (deleting a bytearray's head is O(1) in CPython); a PIECE's block is handed out as
``bytes``, one copy out of the buffer. The data path has a fast lane beside ``next_event``:
:meth:`PeerConnection.next_blocks` takes every complete PIECE at the head of the buffer in
one call, as ``(index, begin, memoryview)`` tuples (no event object, no copy), applying the
same checks and state changes and leaving anything else -- every error included -- to
``next_event``. The views point into the receive buffer; should one still be held when new
data arrives, ``receive_data`` moves on to a new buffer rather than fail. ``send(Piece)``
returns header + data as one ``bytes`` (one 16 KiB copy, about a microsecond): trio has no
vectored send, and one send_all of the joined bytes beats two syscalls.
:func:`codec.piece_header` is there for a vectored sender.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, NoReturn

from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.wire import codec, extensions
from torrentkit.wire.codec import (
    ALLOWED_FAST,
    BITFIELD,
    CANCEL,
    CHOKE,
    EXTENDED,
    FAST_IDS,
    FIXED_PAYLOAD,
    HANDSHAKE_LENGTH,
    HANDSHAKE_PREFIX,
    HAVE,
    HAVE_ALL,
    HAVE_NONE,
    INTERESTED,
    MAX_MESSAGE_LENGTH,
    MAX_PIECE_PAYLOAD,
    NOT_INTERESTED,
    PIECE,
    PIECE_HEADER,
    PORT,
    REJECT_REQUEST,
    REQUEST,
    SUGGEST_PIECE,
    UNCHOKE,
)
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
    RequestProblem,
    SuggestPiece,
    Unchoke,
    UnknownMessage,
)


class NeedData(enum.Enum):
    """``next_event`` needs more bytes before it can return an event."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA

#: docs/limits.md: at most 2**21 pieces per torrent; bounds an unchecked have-set too.
MAX_PIECES: Final = 2**21

#: At most this many pieces of a peer's allowed-fast set are kept (docs/limits.md).
MAX_ALLOWED_FAST_IN: Final = 64

#: Messages that close our bitfield window (see the module docstring).
_CLOSES_WINDOW_EVENTS: Final = frozenset(
    {
        Choke,
        Unchoke,
        Interested,
        NotInterested,
        Have,
        Bitfield,
        Request,
        Piece,
        Cancel,
        HaveAll,
        HaveNone,
    }
)

#: Event type -> (flag, value). Sent: the flag on our side; received: the peer's.
FLAG_CHANGES: Final[dict[type, tuple[Literal["choking", "interested"], bool]]] = {
    Choke: ("choking", True),
    Unchoke: ("choking", False),
    Interested: ("interested", True),
    NotInterested: ("interested", False),
}


class RejectReason(enum.Enum):
    """Why a peer's handshake was refused."""

    NOT_BITTORRENT = "not_bittorrent"  # wrong protocol string
    UNKNOWN_INFO_HASH = "unknown_info_hash"  # not the torrent we dialled / not one we serve
    SELF_CONNECTION = "self_connection"  # the peer id is our own
    PEER_ID_MISMATCH = "peer_id_mismatch"  # not the peer id we expected


class HandshakeRejected(RemoteProtocolError):
    """The peer's handshake was refused; ``reason`` says why."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class PieceGeometry:
    """How a torrent cuts into pieces: enough to check indexes, offsets and bitfields."""

    piece_length: int
    total_length: int
    num_pieces: int = field(init=False)

    def __post_init__(self) -> None:
        if type(self.piece_length) is not int or self.piece_length <= 0:
            raise LocalProtocolError(f"piece_length must be positive: {self.piece_length!r}")
        if type(self.total_length) is not int or self.total_length <= 0:
            raise LocalProtocolError(f"total_length must be positive: {self.total_length!r}")
        n = -(-self.total_length // self.piece_length)
        if n > MAX_PIECES:
            raise LocalProtocolError(f"{n} pieces exceed the {MAX_PIECES} piece limit")
        object.__setattr__(self, "num_pieces", n)

    def piece_size(self, index: int) -> int:
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    @property
    def bitfield_length(self) -> int:
        return (self.num_pieces + 7) // 8


BlockKey = tuple[int, int, int]  # (index, begin, length)

_KEEPALIVE: Final = KeepAlive()
_EVENT_FOR_ID: Final[dict[int, Event]] = {
    CHOKE: Choke(),
    UNCHOKE: Unchoke(),
    INTERESTED: Interested(),
    NOT_INTERESTED: NotInterested(),
}
_MAX_CANCELLED: Final = 4096
_FAST_EVENTS: Final = frozenset({SuggestPiece, HaveAll, HaveNone, RejectRequest, AllowedFast})
#: A receive buffer above this size is given back once the connection is quiet again.
_BIG_BUFFER: Final = 64 * 1024


class PeerConnection:
    """The state of one peer wire connection; see the module docstring for the rules.

    ``info_hash``: the torrent's info-hash when we dial (``initiator=True``); when the peer
    dialled us, either the one info-hash we accept or a callable answering "do we serve this
    info-hash?". ``geometry``: None until the metadata is known (see :meth:`set_geometry`).
    ``expected_peer_id``: reject the peer unless its handshake carries this id.
    Advertise a ``reqq`` of at most ``max_pending_requests`` in the extended handshake.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        info_hash: bytes | Callable[[bytes], bool],
        our_peer_id: bytes,
        geometry: PieceGeometry | None = None,
        expected_peer_id: bytes | None = None,
        max_message_length: int = MAX_MESSAGE_LENGTH,
        max_buffer: int = 2 * MAX_MESSAGE_LENGTH,
        max_pending_requests: int = 2000,
        max_choked_requests: int | None = None,
        max_invalid_requests: int = 100,
    ) -> None:
        if len(our_peer_id) != 20:
            raise LocalProtocolError("our_peer_id must be 20 bytes")
        self.initiator = initiator
        self.our_peer_id = bytes(our_peer_id)
        self.info_hash: bytes | None
        if callable(info_hash):
            if initiator:
                raise LocalProtocolError("the initiating side must name its info-hash")
            self.info_hash = None
            self._accept: Callable[[bytes], bool] = info_hash
        else:
            if len(info_hash) != 20:
                raise LocalProtocolError("info_hash must be 20 bytes")
            fixed = bytes(info_hash)
            self.info_hash = fixed if initiator else None
            self._accept = fixed.__eq__
        self.expected_peer_id = expected_peer_id
        self.geometry: PieceGeometry | None = None
        self.max_message_length = max_message_length
        self.max_buffer = max_buffer
        self.max_pending_requests = max_pending_requests
        self.max_choked_requests = (
            max_pending_requests if max_choked_requests is None else max_choked_requests
        )
        self.max_invalid_requests = max_invalid_requests

        # Handshakes.
        self.our_handshake: Handshake | None = None
        self.peer_handshake: Handshake | None = None
        self._info_hash_checked = False
        # Choke / interest.
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        # Bitfield windows.
        self._our_bitfield_window = True
        # The peer's have-set: a BEP 3 bitfield, grown as needed until the geometry is known.
        self._peer_have = bytearray()
        self.peer_have_count = 0
        self._peer_sent_bitfield = False
        self._peer_have_all = False  # HAVE ALL before the geometry was known
        # Requests.
        self._requested: dict[BlockKey, None] = {}
        # How many copies of each withdrawn request may still arrive (a block requested,
        # cancelled and requested again can come twice from a slow peer's send queue).
        self._cancelled: dict[BlockKey, int] = {}
        self._peer_requests: dict[BlockKey, None] = {}
        self.choked_requests = 0
        self.invalid_requests = 0
        # Fast extension: pieces we said we serve while choking, and the peer said it does.
        self._allowed_fast_out: set[int] = set()
        self._allowed_fast_in: dict[int, None] = {}
        # Extension protocol.
        self.extensions = extensions.ExtensionIds()
        self.peer_extended_handshake: ExtendedHandshake | None = None
        # Receive buffer.
        self._buf = bytearray()  # data lives in [_pos, _end); the rest is free room
        self._end = 0
        self._pos = 0
        self._error: RemoteProtocolError | None = None
        if geometry is not None:
            self.set_geometry(geometry)

    # ------------------------------------------------------------------ derived state

    @property
    def extension_protocol(self) -> bool:
        """Both handshakes carry the BEP 10 bit (False until both are known)."""
        return (
            self.our_handshake is not None
            and self.peer_handshake is not None
            and self.our_handshake.extension_protocol
            and self.peer_handshake.extension_protocol
        )

    @property
    def fast(self) -> bool:
        """Both handshakes carry the BEP 6 fast extension bit (False until both are known)."""
        return (
            self.our_handshake is not None
            and self.peer_handshake is not None
            and self.our_handshake.fast_extension
            and self.peer_handshake.fast_extension
        )

    @property
    def allowed_fast_in(self) -> frozenset[int]:
        """Pieces the peer lets us request while it chokes us (its ALLOWED FAST messages)."""
        return frozenset(self._allowed_fast_in)

    @property
    def allowed_fast_out(self) -> frozenset[int]:
        """Pieces we told the peer it may request while we choke it."""
        return frozenset(self._allowed_fast_out)

    @property
    def peer_reqq(self) -> int | None:
        """How many outstanding requests the peer accepts, if it said (BEP 10 ``reqq``)."""
        hs = self.peer_extended_handshake
        return hs.reqq if hs is not None else None

    @property
    def outstanding_requests(self) -> int:
        """Requests we sent that the peer has not answered (cancelled ones excluded)."""
        return len(self._requested)

    def is_outstanding(self, index: int, begin: int, length: int) -> bool:
        return (index, begin, length) in self._requested

    @property
    def pending_peer_requests(self) -> int:
        return len(self._peer_requests)

    def peer_request_pending(self, index: int, begin: int, length: int) -> bool:
        """Whether the peer still wants this block (not cancelled, not dropped by a choke)."""
        return (index, begin, length) in self._peer_requests

    def peer_requests(self) -> list[Request]:
        """The peer's queued requests, oldest first."""
        return [Request(index=i, begin=b, length=n) for i, b, n in self._peer_requests]

    def drop_peer_request(self, index: int, begin: int, length: int) -> None:
        """Forget a queued peer request without answering it (e.g. we lack the piece)."""
        self._peer_requests.pop((index, begin, length), None)

    def peer_has(self, index: int) -> bool:
        byte = index >> 3
        return byte < len(self._peer_have) and bool(self._peer_have[byte] & (0x80 >> (index & 7)))

    def peer_bitfield(self) -> bytes:
        """The peer's have-set as a BEP 3 bitfield (a copy)."""
        return bytes(self._peer_have)

    @property
    def peer_is_seed(self) -> bool:
        g = self.geometry
        return g is not None and self.peer_have_count == g.num_pieces

    def extension_name(self, ext_id: int) -> str | None:
        """The extension a received :class:`Extended` message's id stands for."""
        return self.extensions.our_name(ext_id)

    def peer_extension_id(self, name: str) -> int | None:
        """The id to send extension ``name`` to this peer with (None: unsupported)."""
        return self.extensions.their_id(name)

    # ------------------------------------------------------------------ geometry

    def set_geometry(self, geometry: PieceGeometry) -> None:
        """Supply the piece geometry (at once, or once a magnet's metadata arrives).

        Checks what the peer already announced against it: raises RemoteProtocolError if its
        bitfield had the wrong size or spare bits set, or a HAVE was out of range.
        """
        if self.geometry is not None:
            if geometry != self.geometry:
                raise LocalProtocolError("the piece geometry is already set")
            return
        n = geometry.bitfield_length
        have = self._peer_have
        if self._peer_sent_bitfield and len(have) != n:
            self._fail(f"bitfield of {len(have)} bytes for {geometry.num_pieces} pieces")
        if len(have) > n or (have and len(have) == n and have[-1] & _spare_mask(geometry)):
            self._fail("the peer announced pieces beyond the torrent's end")
        have.extend(bytes(n - len(have)))
        self.geometry = geometry
        if self._peer_have_all:
            self._set_peer_have_all(geometry)
        for index in [i for i in self._allowed_fast_in if i >= geometry.num_pieces]:
            del self._allowed_fast_in[index]

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the peer. ``b""`` (end of stream) is the driver's to handle."""
        n = len(data)
        if len(self._buf) > _BIG_BUFFER and self._end - self._pos + n <= _BIG_BUFFER // 4:
            # The burst is over (the big buffer came from receive_buffer): give it back, so
            # an idle connection holds only what it has not parsed yet.
            self._buf = bytearray(memoryview(self._buf)[self._pos : self._end])
            self._end -= self._pos
            self._pos = 0
        self._make_room(n)
        end = self._end
        self._buf[end : end + n] = data
        self._end = end + n

    def receive_buffer(self, size: int) -> memoryview:
        """Room for ``size`` bytes at the end of the receive buffer, for a driver that reads
        straight into it (``sock.recv_into``) instead of handing over a new ``bytes``: one copy
        fewer per byte. Release the view, then report how many bytes arrived with
        :meth:`received`. The same limit as :meth:`receive_data` applies."""
        if size <= 0:
            raise LocalProtocolError(f"receive_buffer size must be positive, got {size}")
        self._make_room(size)
        return memoryview(self._buf)[self._end : self._end + size]

    def received(self, nbytes: int) -> None:
        """``nbytes`` were written into the view from :meth:`receive_buffer`."""
        if not 0 <= nbytes <= len(self._buf) - self._end:
            raise LocalProtocolError(f"received({nbytes}) is more than the room given")
        self._end += nbytes

    def _make_room(self, n: int) -> None:
        """Make ``n`` bytes free at the end of the buffer: the unparsed bytes move to its
        start (or to a bigger buffer). LocalProtocolError past ``max_buffer`` unparsed."""
        buf, pos, end = self._buf, self._pos, self._end
        if end + n <= len(buf):
            return
        unparsed = end - pos
        if unparsed + n > self.max_buffer:
            raise LocalProtocolError(
                f"more than {self.max_buffer} unparsed bytes: call next_event() before reading"
            )
        need = unparsed + n
        try:
            # Fails while a block view from next_blocks() is still held (its bytes must not
            # move under it); then that buffer is left to its holder.
            buf.append(0)
            del buf[-1]
            lent = False
        except BufferError:
            lent = True
        if lent or need > len(buf):
            fresh = bytearray(max(need, min(2 * len(buf), self.max_buffer)))
            fresh[:unparsed] = memoryview(buf)[pos:end]
            self._buf = fresh
        elif unparsed:
            # (bytearray slice assignment is a memcpy: never from an overlapping range)
            tail = memoryview(buf)[pos:end]
            buf[:unparsed] = tail if unparsed <= pos else bytes(tail)
        self._pos = 0
        self._end = unparsed

    def next_blocks(self) -> list[tuple[int, int, memoryview]]:
        """The fast path for data: every complete PIECE message at the head of the buffer,
        as ``(index, begin, block)`` per message, in order, without an event object each.

        Exactly what :meth:`next_event` would return as :class:`Piece` events, with the same
        checks and the same state changes; it stops (and leaves the rest to
        :meth:`next_event`) at the first message that is not a complete, well-formed PIECE
        we asked for -- so every error is still raised by :meth:`next_event`, at the same
        point of the stream. An empty list: call :meth:`next_event`.

        Each block is a view into the receive buffer, valid until the next
        :meth:`receive_data`: copy what you keep (into the piece's buffer) before then.
        """
        if self._error is not None:
            raise RemoteProtocolError(f"the connection already failed: {self._error}")
        out: list[tuple[int, int, memoryview]] = []
        if self.peer_handshake is None:
            return out
        buf = self._buf
        pos = self._pos
        stop = self._end
        if stop - pos < 13:
            return out
        requested, cancelled = self._requested, self._cancelled
        unpack = codec.PIECE_HDR.unpack_from
        limit = min(self.max_message_length, MAX_PIECE_PAYLOAD + 1)
        view = memoryview(buf)
        while stop - pos >= 13:
            length, msg_id, index, begin = unpack(buf, pos)
            if msg_id != PIECE or not PIECE_HEADER + 1 < length <= limit:
                break
            end = pos + 4 + length
            if end > stop:
                break
            key = (index, begin, length - 9)
            if key in requested:
                del requested[key]
            elif key in cancelled:
                late = cancelled[key]
                if late > 1:
                    cancelled[key] = late - 1
                else:
                    del cancelled[key]
            else:
                break  # unsolicited: next_event raises
            out.append((index, begin, view[pos + 13 : end]))
            pos = end
        self._pos = pos
        return out

    def next_event(self) -> Event | NeedData:
        """The next event the peer sent, or NEED_DATA. RemoteProtocolError if it broke a rule;
        after that, every call raises again (the connection is finished)."""
        if self._error is not None:
            raise RemoteProtocolError(f"the connection already failed: {self._error}")
        try:
            while True:
                event = self._next()
                if event is not None:
                    return event
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _fail(self, message: str) -> NoReturn:
        raise RemoteProtocolError(message)

    def _next(self) -> Event | NeedData | None:
        """One step: an event, NEED_DATA, or None (a message consumed with nothing to report)."""
        if self.peer_handshake is None:
            return self._parse_handshake()
        buf = self._buf
        pos = self._pos
        avail = self._end - pos
        if avail < 4:
            return NEED_DATA
        length = codec.U32.unpack_from(buf, pos)[0]
        if length == 0:
            self._pos = pos + 4
            return _KEEPALIVE
        if length > self.max_message_length:
            self._fail(f"message length {length} exceeds the {self.max_message_length} limit")
        if avail < 5:
            return NEED_DATA
        msg_id = buf[pos + 4]
        size = length - 1  # payload size
        end = pos + 4 + length

        if msg_id == PIECE:  # the hot path, kept flat
            if not PIECE_HEADER < size <= MAX_PIECE_PAYLOAD:
                self._fail(f"PIECE with a {size - PIECE_HEADER} byte block (1..{BLOCK_SIZE})")
            if avail < 4 + length:
                return NEED_DATA
            _, _, index, begin = codec.PIECE_HDR.unpack_from(buf, pos)
            with memoryview(buf) as view:
                data = bytes(view[pos + 13 : end])
            self._pos = end
            key = (index, begin, size - PIECE_HEADER)
            if key in self._requested:
                del self._requested[key]
            elif key in self._cancelled:
                late = self._cancelled[key]
                if late > 1:
                    self._cancelled[key] = late - 1
                else:
                    del self._cancelled[key]
            else:
                self._fail(f"PIECE {index}:{begin}+{size - PIECE_HEADER} was never requested")
            return Piece(index=index, begin=begin, data=data)

        fixed = FIXED_PAYLOAD.get(msg_id)
        if fixed is not None and size != fixed:
            self._fail(f"message {msg_id} with a {size} byte payload (must be {fixed})")
        if msg_id == BITFIELD:
            if self.geometry is not None and size != self.geometry.bitfield_length:
                self._fail(
                    f"bitfield of {size} bytes for {self.geometry.num_pieces} pieces "
                    f"(must be {self.geometry.bitfield_length})"
                )
            if size == 0:
                self._fail("empty BITFIELD")
        if avail < 4 + length:
            return NEED_DATA
        with memoryview(buf) as view:
            payload = bytes(view[pos + 5 : end])
        self._pos = end
        return self._handle(msg_id, payload)

    def _handle(self, msg_id: int, payload: bytes) -> Event | None:
        simple = _EVENT_FOR_ID.get(msg_id)
        if simple is not None:
            flag, value = FLAG_CHANGES[type(simple)]
            if flag == "choking":
                self.peer_choking = value
                if value and not self.fast:  # BEP 6: a fast peer answers each request
                    cancelled = self._cancelled
                    for key in self._requested:
                        cancelled[key] = cancelled.get(key, 0) + 1
                    self._requested.clear()
                    while len(self._cancelled) > _MAX_CANCELLED:
                        del self._cancelled[next(iter(self._cancelled))]
            else:
                self.peer_interested = value
            return simple
        if msg_id == REQUEST:
            index, begin, length = codec.THREE_U32.unpack(payload)
            return self._incoming_request(index, begin, length)
        if msg_id == HAVE:
            index = codec.U32.unpack(payload)[0]
            self._peer_gained(index)
            return Have(index=index)
        if msg_id == BITFIELD:
            self._peer_bitfield(payload)
            return Bitfield(bitfield=payload)
        if msg_id == CANCEL:
            index, begin, length = codec.THREE_U32.unpack(payload)
            if not 0 < length <= BLOCK_SIZE:
                self._count_invalid()  # matches no request we could have queued
                return None
            self._peer_requests.pop((index, begin, length), None)
            return Cancel(index=index, begin=begin, length=length)
        if msg_id == PORT:
            return Port(port=codec.U16.unpack(payload)[0])
        if msg_id == EXTENDED and self._receive_extensions():
            if not payload:
                self._fail("extension message without an extension id")
            ext_id = payload[0]
            if ext_id == extensions.HANDSHAKE_ID:
                hs = extensions.parse_extended_handshake(payload[1:])
                self.extensions.update_theirs(hs.m)
                self.peer_extended_handshake = hs
                return hs
            return Extended(ext_id=ext_id, payload=payload[1:])
        if msg_id in FAST_IDS:
            return self._handle_fast(msg_id, payload)
        return UnknownMessage(message_id=msg_id, payload=payload)

    def _handle_fast(self, msg_id: int, payload: bytes) -> Event | None:
        """A BEP 6 message (its payload size already checked)."""
        ours, theirs = self.our_handshake, self.peer_handshake
        if not (
            theirs is not None and theirs.fast_extension and (ours is None or ours.fast_extension)
        ):
            self._fail(f"fast extension message {msg_id} without the fast extension")
        if msg_id == REJECT_REQUEST:
            index, begin, length = codec.THREE_U32.unpack(payload)
            key = (index, begin, length)
            if key in self._requested:
                del self._requested[key]
            elif key in self._cancelled:
                late = self._cancelled[key]
                if late > 1:
                    self._cancelled[key] = late - 1
                else:
                    del self._cancelled[key]
            else:
                self._fail(f"REJECT REQUEST {index}:{begin}+{length} was never requested")
            return RejectRequest(index=index, begin=begin, length=length)
        if msg_id == HAVE_ALL:
            self._peer_sent_bitfield = False  # (no size to check against the geometry)
            if self.geometry is None:
                self._peer_have_all = True
            else:
                self._set_peer_have_all(self.geometry)
            return HaveAll()
        if msg_id == HAVE_NONE:
            self._peer_sent_bitfield = False  # (no size to check against the geometry)
            self._peer_have_all = False
            self._peer_have[:] = bytes(len(self._peer_have))
            self.peer_have_count = 0
            return HaveNone()
        index = codec.U32.unpack(payload)[0]
        g = self.geometry
        if index >= (g.num_pieces if g is not None else MAX_PIECES):
            self._count_invalid()  # ignored: no piece to serve or fetch
            return None
        if msg_id == SUGGEST_PIECE:
            return SuggestPiece(index=index)
        assert msg_id == ALLOWED_FAST
        allowed = self._allowed_fast_in
        if index in allowed or len(allowed) >= MAX_ALLOWED_FAST_IN:
            return None
        allowed[index] = None
        return AllowedFast(index=index)

    def _set_peer_have_all(self, g: PieceGeometry) -> None:
        have = self._peer_have
        have[:] = b"\xff" * g.bitfield_length
        if g.num_pieces & 7:
            have[-1] = 0xFF ^ _spare_mask(g)
        self.peer_have_count = g.num_pieces

    def _receive_extensions(self) -> bool:
        """Interpret message 20? The peer advertised BEP 10 and we do, or have not answered
        yet (an initiator may send its extended handshake before our handshake reaches it)."""
        ours, theirs = self.our_handshake, self.peer_handshake
        return (
            theirs is not None
            and theirs.extension_protocol
            and (ours is None or ours.extension_protocol)
        )

    def _parse_handshake(self) -> Handshake | NeedData:
        buf = self._buf
        pos = self._pos
        avail = self._end - pos
        # Check the protocol string byte by byte, so a stranger is refused at once.
        head = bytes(buf[pos : pos + min(avail, len(HANDSHAKE_PREFIX))])
        if not HANDSHAKE_PREFIX.startswith(head):
            raise HandshakeRejected(
                RejectReason.NOT_BITTORRENT, "not a BitTorrent handshake (wrong protocol string)"
            )
        if avail >= 48 and not self._info_hash_checked:
            info_hash = bytes(buf[pos + 28 : pos + 48])
            if not self._accept(info_hash):
                raise HandshakeRejected(
                    RejectReason.UNKNOWN_INFO_HASH,
                    f"the peer's info-hash {info_hash.hex()} is not "
                    + ("the one we asked for" if self.initiator else "one we serve"),
                )
            self._info_hash_checked = True
        if avail < HANDSHAKE_LENGTH:
            return NEED_DATA
        reserved = bytes(buf[pos + 20 : pos + 28])
        info_hash = bytes(buf[pos + 28 : pos + 48])
        peer_id = bytes(buf[pos + 48 : pos + 68])
        if peer_id == self.our_peer_id:
            raise HandshakeRejected(
                RejectReason.SELF_CONNECTION, "the peer's id is our own: we connected to ourselves"
            )
        if self.expected_peer_id is not None and peer_id != self.expected_peer_id:
            raise HandshakeRejected(
                RejectReason.PEER_ID_MISMATCH,
                f"peer id {peer_id!r} is not the expected {self.expected_peer_id!r}",
            )
        self._pos = pos + HANDSHAKE_LENGTH
        self.info_hash = info_hash
        hs = Handshake(info_hash=info_hash, peer_id=peer_id, reserved=reserved)
        self.peer_handshake = hs
        return hs

    def _incoming_request(self, index: int, begin: int, length: int) -> Event:
        problem: RequestProblem | None = None
        g = self.geometry
        if not 0 < length <= BLOCK_SIZE:
            problem = RequestProblem.BAD_LENGTH
        elif g is None:
            problem = RequestProblem.NO_METADATA
        elif index >= g.num_pieces or begin + length > g.piece_size(index):
            problem = RequestProblem.OUT_OF_RANGE
        elif self.am_choking and index not in self._allowed_fast_out:
            self.choked_requests += 1
            if self.choked_requests > self.max_choked_requests:
                self._fail(f"more than {self.max_choked_requests} requests while choked")
            return InvalidRequest(
                index=index, begin=begin, length=length, problem=RequestProblem.CHOKED
            )
        elif (index, begin, length) in self._peer_requests:
            problem = RequestProblem.DUPLICATE
        elif len(self._peer_requests) >= self.max_pending_requests:
            problem = RequestProblem.QUEUE_FULL
        if problem is not None:
            self._count_invalid()
            return InvalidRequest(index=index, begin=begin, length=length, problem=problem)
        self._peer_requests[(index, begin, length)] = None
        return Request(index=index, begin=begin, length=length)

    def _count_invalid(self) -> None:
        self.invalid_requests += 1
        if self.invalid_requests > self.max_invalid_requests:
            self._fail(f"more than {self.max_invalid_requests} invalid requests")

    def _peer_gained(self, index: int) -> None:
        g = self.geometry
        limit = g.num_pieces if g is not None else MAX_PIECES
        if index >= limit:
            self._fail(f"HAVE {index} out of range (0..{limit - 1})")
        have = self._peer_have
        byte = index >> 3
        if byte >= len(have):
            have.extend(bytes(byte + 1 - len(have)))
        mask = 0x80 >> (index & 7)
        if not have[byte] & mask:
            have[byte] |= mask
            self.peer_have_count += 1

    def _peer_bitfield(self, payload: bytes) -> None:
        g = self.geometry
        if g is not None:
            if payload[-1] & _spare_mask(g):
                self._fail("bitfield has spare bits set")
        elif len(payload) > MAX_PIECES // 8:
            self._fail(f"bitfield of {len(payload)} bytes exceeds {MAX_PIECES} pieces")
        self._peer_have[:] = payload
        self._peer_sent_bitfield = True
        self.peer_have_count = int.from_bytes(payload, "big").bit_count()

    # ------------------------------------------------------------------ sending

    def send(self, event: Event) -> bytes:
        """Check ``event`` against the state, apply it, and return the bytes to write.

        LocalProtocolError if the event may not be sent now. A Cancel for a request that is
        no longer outstanding (its piece already arrived) returns ``b""``.
        """
        cls = type(event)
        if cls is Handshake:
            assert isinstance(event, Handshake)
            return self._send_handshake(event)
        if self.our_handshake is None:
            raise LocalProtocolError(f"{cls.__name__} before our handshake")
        if cls is Piece:  # the hot path
            assert isinstance(event, Piece)
            key = (event.index, event.begin, len(event.data))
            if key not in self._peer_requests:
                raise LocalProtocolError(
                    f"PIECE {key} that the peer has not requested (or cancelled, or we choked)"
                )
            del self._peer_requests[key]
            self._our_bitfield_window = False
            return codec.encode(event)
        if cls is Request:
            assert isinstance(event, Request)
            self._check_request(event)
            self._requested[(event.index, event.begin, event.length)] = None
        elif cls is Cancel:
            assert isinstance(event, Cancel)
            key = (event.index, event.begin, event.length)
            if key not in self._requested:
                return b""
            del self._requested[key]
            self._cancelled[key] = self._cancelled.get(key, 0) + 1
            if len(self._cancelled) > _MAX_CANCELLED:
                del self._cancelled[next(iter(self._cancelled))]
        elif cls in FLAG_CHANGES:
            flag, value = FLAG_CHANGES[cls]
            if flag == "choking":
                self.am_choking = value
                if value:
                    self.choked_requests = 0
                    if self.fast:
                        self._our_bitfield_window = False
                        return codec.encode(event) + self._reject_on_choke()
                    self._peer_requests.clear()
            else:
                self.am_interested = value
        elif cls is Bitfield:
            assert isinstance(event, Bitfield)
            self._check_our_bitfield(event)
        elif cls is Have:
            assert isinstance(event, Have)
            if self.geometry is None or event.index >= self.geometry.num_pieces:
                raise LocalProtocolError(f"HAVE {event.index} out of range")
        elif cls in _FAST_EVENTS:
            self._check_fast(event)
        elif cls is ExtendedHandshake:
            assert isinstance(event, ExtendedHandshake)
            self._check_extensions("an extended handshake")
            data = codec.encode(event)
            self.extensions.update_ours(event.m)
            return data
        elif cls is Extended:
            assert isinstance(event, Extended)
            self._check_extensions("an extension message")
            if event.ext_id not in self.extensions.their_ids():
                raise LocalProtocolError(f"extension id {event.ext_id} is not one the peer offered")
        if cls in _CLOSES_WINDOW_EVENTS:
            self._our_bitfield_window = False
        return codec.encode(event)

    def send_requests(self, blocks: Sequence[tuple[int, int, int]]) -> bytes:
        """``send(Request(...))`` for many blocks at once, each ``(index, begin, length)``:
        the same checks (all of them before any state changes: on a LocalProtocolError
        nothing was recorded) and the same bytes, joined, without an event per block."""
        if self.our_handshake is None:
            raise LocalProtocolError("Request before our handshake")
        if not blocks:
            return b""
        g = self.geometry
        if g is None:
            raise LocalProtocolError("REQUEST before the piece geometry is known")
        if self.peer_choking and not all(b[0] in self._allowed_fast_in for b in blocks):
            raise LocalProtocolError("REQUEST while the peer chokes us (not allowed fast)")
        requested, have = self._requested, self._peer_have
        num, plen, last = g.num_pieces, g.piece_length, g.num_pieces - 1
        last_size = g.total_length - last * plen
        for block in blocks:
            index, begin, length = block
            if (
                type(index) is not int
                or type(begin) is not int
                or type(length) is not int
                or not 0 < length <= BLOCK_SIZE
                or begin < 0
            ):
                raise LocalProtocolError(f"bad REQUEST {block!r}")
            if not 0 <= index < num or begin + length > (plen if index != last else last_size):
                raise LocalProtocolError(f"REQUEST {block} is outside the torrent")
            if not have[index >> 3] & (0x80 >> (index & 7)):
                raise LocalProtocolError(f"REQUEST for piece {index}, which the peer lacks")
            if block in requested:
                raise LocalProtocolError(f"REQUEST {block} is already outstanding")
        keys = [(i, b, n) for i, b, n in blocks]
        if len(set(keys)) != len(keys):
            raise LocalProtocolError("the same REQUEST twice in one batch")
        self._our_bitfield_window = False
        pack = codec.REQUEST_MSG.pack
        out = []
        for key in keys:
            requested[key] = None
            out.append(pack(13, REQUEST, *key))
        return b"".join(out)

    def send_pieces(
        self, blocks: Sequence[tuple[int, int, bytes | memoryview]]
    ) -> list[bytes | memoryview]:
        """``send(Piece(...))`` for many blocks at once, each ``(index, begin, data)``: the
        same checks (each must answer a request the peer still has pending; all checked
        before any state changes) without an event per block. Returns the buffers to write,
        in order: each block's 13-byte header, then its data as given (not copied)."""
        if self.our_handshake is None:
            raise LocalProtocolError("Piece before our handshake")
        pending = self._peer_requests
        keys = [(index, begin, len(data)) for index, begin, data in blocks]
        for key in keys:
            if key not in pending:
                raise LocalProtocolError(
                    f"PIECE {key} that the peer has not requested (or cancelled, or we choked)"
                )
        if len(set(keys)) != len(keys):
            raise LocalProtocolError("the same PIECE twice in one batch")
        if not keys:
            return []
        self._our_bitfield_window = False
        pack = codec.PIECE_HDR.pack
        out: list[bytes | memoryview] = []
        for key, (index, begin, data) in zip(keys, blocks, strict=True):
            del pending[key]
            out.append(pack(key[2] + 9, PIECE, index, begin))
            out.append(data)
        return out

    def _send_handshake(self, event: Handshake) -> bytes:
        if self.our_handshake is not None:
            raise LocalProtocolError("our handshake was already sent")
        if not self.initiator and self.peer_handshake is None:
            raise LocalProtocolError("answer an incoming connection only after its handshake")
        if event.info_hash != self.info_hash:
            raise LocalProtocolError("the handshake's info-hash is not this connection's")
        if event.peer_id != self.our_peer_id:
            raise LocalProtocolError("the handshake's peer id is not our_peer_id")
        self.our_handshake = event
        return codec.encode_handshake(event)

    def _check_request(self, event: Request) -> None:
        g = self.geometry
        if g is None:
            raise LocalProtocolError("REQUEST before the piece geometry is known")
        if event.index >= g.num_pieces or event.begin + event.length > g.piece_size(event.index):
            raise LocalProtocolError(f"REQUEST {event} is outside the torrent")
        if self.peer_choking and event.index not in self._allowed_fast_in:
            raise LocalProtocolError("REQUEST while the peer chokes us (not allowed fast)")
        if not self.peer_has(event.index):
            raise LocalProtocolError(f"REQUEST for piece {event.index}, which the peer lacks")
        if (event.index, event.begin, event.length) in self._requested:
            raise LocalProtocolError(f"REQUEST {event} is already outstanding")

    def _check_our_bitfield(self, event: Bitfield) -> None:
        if not self._our_bitfield_window:
            raise LocalProtocolError("BITFIELD may only be the first message")
        g = self.geometry
        if g is None:
            raise LocalProtocolError("BITFIELD before the piece geometry is known")
        if len(event.bitfield) != g.bitfield_length or event.bitfield[-1] & _spare_mask(g):
            raise LocalProtocolError(f"BITFIELD does not fit {g.num_pieces} pieces")

    def _reject_on_choke(self) -> bytes:
        """BEP 6: a CHOKE to a fast peer rejects its queued requests, except those for
        allowed-fast pieces (still served); returns the REJECT messages."""
        keep, out = self._allowed_fast_out, []
        pack = codec.REQUEST_MSG.pack
        for key in [k for k in self._peer_requests if k[0] not in keep]:
            del self._peer_requests[key]
            out.append(pack(13, REJECT_REQUEST, *key))
        return b"".join(out)

    def _check_fast(self, event: Event) -> None:
        """Checks and state for sending a BEP 6 message."""
        if not self.fast:
            raise LocalProtocolError(
                f"{type(event).__name__}, but the fast extension was not negotiated"
            )
        g = self.geometry
        if isinstance(event, HaveAll | HaveNone):
            if not self._our_bitfield_window:
                raise LocalProtocolError(f"{type(event).__name__} may only be the first message")
        elif isinstance(event, RejectRequest):
            self._peer_requests.pop((event.index, event.begin, event.length), None)
        elif isinstance(event, AllowedFast | SuggestPiece):
            if g is None or event.index >= g.num_pieces:
                raise LocalProtocolError(f"{type(event).__name__} {event.index} out of range")
            if isinstance(event, AllowedFast):
                self._allowed_fast_out.add(event.index)

    def _check_extensions(self, what: str) -> None:
        if self.peer_handshake is None:
            raise LocalProtocolError(f"{what} before the peer's handshake arrived")
        if not self.extension_protocol:
            raise LocalProtocolError(f"{what}, but the extension protocol was not negotiated")


def _spare_mask(g: PieceGeometry) -> int:
    """The bits of a bitfield's last byte that lie past the last piece."""
    used = g.num_pieces & 7
    return 0 if used == 0 else 0xFF >> used
