"""BEP 9 metadata exchange (``ut_metadata``), sans-IO.

The info dictionary travels in 16 KiB pieces inside BEP 10 extension messages. Each message
is a bencoded dictionary -- ``msg_type`` 0 request, 1 data, 2 reject; ``piece``; and for
data ``total_size`` -- and a data message carries the piece's bytes right after it.

:class:`MetadataAssembler` collects pieces from any number of peers, remembers who sent
which, and checks the whole against the info-hash; a mismatch names the peers involved so
the caller can ban them (one peer: certainly the liar; several: the caller refetches from
one peer at a time). Limits: the metadata size is capped (:data:`MAX_METADATA_SIZE`), a data
piece must be exactly the size its index implies, and any malformed message is a
:class:`~torrentkit.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Final

from torrentkit import bencoding
from torrentkit.errors import BencodeError, LocalProtocolError, RemoteProtocolError

METADATA_PIECE: Final = 16 * 1024
#: The largest info dictionary we accept (libtorrent's default cap is a few MiB; torrents
#: with millions of pieces need more, and a peer could claim anything).
MAX_METADATA_SIZE: Final = 16 * 1024 * 1024

REQUEST: Final = 0
DATA: Final = 1
REJECT: Final = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequest:
    piece: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataData:
    piece: int
    total_size: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataReject:
    piece: int


MetadataMessage = MetadataRequest | MetadataData | MetadataReject


def num_pieces(size: int) -> int:
    return -(-size // METADATA_PIECE)


def piece_length(size: int, piece: int) -> int:
    if not 0 <= piece < num_pieces(size):
        raise LocalProtocolError(f"metadata piece {piece} out of range")
    return min(METADATA_PIECE, size - piece * METADATA_PIECE)


def encode(msg: MetadataMessage) -> bytes:
    """The payload of one ``ut_metadata`` extension message."""
    if isinstance(msg, MetadataRequest):
        return bencoding.encode({"msg_type": REQUEST, "piece": msg.piece})
    if isinstance(msg, MetadataReject):
        return bencoding.encode({"msg_type": REJECT, "piece": msg.piece})
    head = bencoding.encode({"msg_type": DATA, "piece": msg.piece, "total_size": msg.total_size})
    return head + msg.data


def parse(payload: bytes) -> MetadataMessage:
    """Parse one ``ut_metadata`` payload; RemoteProtocolError for anything malformed."""
    try:
        d, end = bencoding.decode_prefix(payload, bencoding.MESSAGE_LIMITS)
    except BencodeError as exc:
        raise RemoteProtocolError(f"ut_metadata: not bencoded ({exc})") from None
    if not isinstance(d, dict):
        raise RemoteProtocolError("ut_metadata: not a dictionary")
    msg_type, piece = d.get(b"msg_type"), d.get(b"piece")
    if type(msg_type) is not int or type(piece) is not int or piece < 0:
        raise RemoteProtocolError("ut_metadata: bad msg_type or piece")
    if piece >= num_pieces(MAX_METADATA_SIZE):
        raise RemoteProtocolError(f"ut_metadata: piece {piece} beyond any allowed size")
    rest = payload[end:]
    if msg_type == REQUEST:
        return MetadataRequest(piece=piece)
    if msg_type == REJECT:
        return MetadataReject(piece=piece)
    if msg_type != DATA:
        raise RemoteProtocolError(f"ut_metadata: unknown msg_type {msg_type}")
    total = d.get(b"total_size")
    if type(total) is not int or not 0 < total <= MAX_METADATA_SIZE:
        raise RemoteProtocolError(f"ut_metadata: bad total_size {total!r}")
    if piece >= num_pieces(total) or len(rest) != piece_length(total, piece):
        raise RemoteProtocolError("ut_metadata: data piece of the wrong size")
    return MetadataData(piece=piece, total_size=total, data=bytes(rest))


def serve(info_raw: bytes, request: MetadataRequest) -> MetadataData | MetadataReject:
    """Answer a peer's request from the info dictionary we have."""
    if request.piece >= num_pieces(len(info_raw)):
        return MetadataReject(piece=request.piece)
    start = request.piece * METADATA_PIECE
    return MetadataData(
        piece=request.piece,
        total_size=len(info_raw),
        data=info_raw[start : start + METADATA_PIECE],
    )


class MetadataAssembler:
    """Collects an info dictionary of ``size`` bytes and checks it against ``info_hash``."""

    def __init__(self, info_hash: bytes, size: int) -> None:
        if not 0 < size <= MAX_METADATA_SIZE:
            raise RemoteProtocolError(f"metadata size {size} outside 1..{MAX_METADATA_SIZE}")
        self.info_hash = info_hash
        self.size = size
        self._pieces: list[bytes | None] = [None] * num_pieces(size)
        self._senders: dict[int, Hashable] = {}
        self._asked: dict[int, Hashable] = {}

    def missing(self) -> list[int]:
        return [i for i, p in enumerate(self._pieces) if p is None]

    def next_request(self, peer: Hashable) -> int | None:
        """A piece nobody has been asked for, to ask ``peer``; None if none is left
        (then a piece already asked of someone else, so a slow peer cannot stall us)."""
        missing = self.missing()
        for i in missing:
            if i not in self._asked:
                self._asked[i] = peer
                return i
        for i in missing:
            if self._asked.get(i) != peer:
                self._asked[i] = peer
                return i
        return None

    def rejected(self, piece: int) -> None:
        self._asked.pop(piece, None)

    def add(self, peer: Hashable, msg: MetadataData) -> None:
        if msg.total_size != self.size:
            raise RemoteProtocolError(
                f"ut_metadata: total_size {msg.total_size}, expected {self.size}"
            )
        if self._pieces[msg.piece] is None:
            self._pieces[msg.piece] = msg.data
            self._senders[msg.piece] = peer

    @property
    def complete(self) -> bool:
        return all(p is not None for p in self._pieces)

    def result(self) -> tuple[bytes | None, set[Hashable]]:
        """When complete: (the info dictionary, set()) if it hashes to the info-hash, else
        (None, the peers that sent pieces of it) and everything is reset for a new try."""
        raw = b"".join(p for p in self._pieces if p is not None)
        if hashlib.sha1(raw).digest() == self.info_hash:
            return raw, set()
        senders = set(self._senders.values())
        self._pieces = [None] * len(self._pieces)
        self._senders.clear()
        self._asked.clear()
        return None, senders
