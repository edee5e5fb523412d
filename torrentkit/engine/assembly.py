"""Pieces being received: their bytes, and one record of who sent each block (pure).

The picker decides which blocks are accepted; every accepted block goes here, written straight
into its piece's buffer, and its sender is recorded against the block's offset. That record is
the only one: when the piece is complete the engine takes it (:meth:`Assemblies.take`),
has its hash checked (with the disk write, in a thread), and reports the outcome with
:meth:`Assembly.passed` or :meth:`Assembly.failed`, which hand the same record to
:class:`~torrentkit.engine.trust.Trust` and return the senders it newly banned.

The record's rule: **the bytes of each block in the buffer are exactly what its recorded sender
sent.** A block that arrives again (the picker should not accept one, but if it does) replaces
both the bytes and the sender. A sender that disconnects keeps its blocks, so trust can still
judge them when the piece is checked.

Senders are any hashable key; the engine uses the connection's key (address and listen
port), the same key trust and bans use.

Each piece is hashed as it arrives: its SHA-1 object has taken ``data[:hashed]``, and every
call that adds blocks moves it on over the blocks that now follow ``hashed`` without a gap
(one ``update`` per piece per receive, right after the copy, while those bytes are still in
the CPU's cache). Blocks out of order wait for the gap; a block written again below
``hashed`` starts the hash over. The piece writer finishes it from :attr:`Assembly.prefix`
and compares (the storage still refuses a piece whose bytes do not match). Hashed in the
writer thread instead, each piece was read back from memory on the other core: SHA-1 cost
0.84-0.95 CPU-s per GiB there against 0.55 s from the cache (issue 15, README).

Piece buffers are reused: once the engine is done with a taken piece (written and judged) it
hands it back with :meth:`Assemblies.recycle`, and the next piece is received into that
buffer. A fresh 1 MiB buffer per piece costs a zeroed allocation and a page fault per
4 KiB on its first write, a tenth of the download path's CPU before this pool (issue 15). A
recycled buffer holds the old piece's bytes until each block is overwritten; a piece counts
as complete only once every block has been written, so none of them is ever read.

The pool keeps up to :data:`SPARE_BYTES` of buffers (at least :data:`MIN_SPARE` of them):
pieces waiting for the disk come back in bursts when a stalled writeback clears, and a pool
of 8 dropped most of such a burst only to allocate as many again moments later (135 fresh
buffers in a 1 GiB download). It never holds more buffers than were in use at once, and
:meth:`Assemblies.drop_spares` gives them all back (the engine calls it once the download is
done).
"""

from __future__ import annotations

import hashlib
import itertools
import mmap
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from torrentkit.engine.trust import Trust
from torrentkit.errors import LocalProtocolError
from torrentkit.metainfo import BLOCK_SIZE

if TYPE_CHECKING:
    from torrentkit.engine.storage import HashPrefix, Sha1

S = TypeVar("S", bound=Hashable)

#: Spare piece buffers kept for reuse, in bytes, and at least this many buffers.
SPARE_BYTES = 32 * 1024 * 1024
MIN_SPARE = 4


#: Buffers of at least this many bytes are whole pages of their own (see piece_buffer).
PAGE_ALIGNED_FROM = 64 * 1024

_EMPTY = memoryview(b"")


def piece_buffer(size: int) -> memoryview:
    """A zeroed, writable buffer of ``size`` bytes for a piece. From
    :data:`PAGE_ALIGNED_FROM` up it starts on a page boundary (an anonymous mapping of its
    own, returned to the system when the last view goes): the storage can then write it
    with ``O_DIRECT``, around the page cache."""
    if size < PAGE_ALIGNED_FROM:
        return memoryview(bytearray(size))
    return memoryview(mmap.mmap(-1, size))


@dataclass(slots=True)
class Assembly(Generic[S]):
    """One piece being received."""

    index: int
    data: memoryview
    #: block offset -> who sent that block (the one record)
    senders: dict[int, S] = field(default_factory=dict)
    #: SHA-1 of ``data[:hashed]``, taken as the blocks arrived (see the module): every
    #: block below ``hashed`` is in and unchanged since
    hasher: Sha1 = field(default_factory=hashlib.sha1)
    hashed: int = 0

    @property
    def prefix(self) -> HashPrefix | None:
        """The hashing done so far, for the piece writer to finish (None: nothing yet)."""
        return (self.hasher, self.hashed) if self.hashed else None

    def _hash_forward(self) -> None:
        """Hash the blocks that follow ``hashed`` without a gap, while they are likely
        still in the CPU's cache."""
        start = end = self.hashed
        senders, size = self.senders, len(self.data)
        while end < size and end in senders:
            end += BLOCK_SIZE
        end = min(end, size)
        if end > start:
            self.hasher.update(self.data[start:end])
            self.hashed = end

    def _rewrite(self) -> None:
        """A block below ``hashed`` is about to be written again: start the hash over."""
        self.hasher = hashlib.sha1()
        self.hashed = 0

    @property
    def num_blocks(self) -> int:
        return -(-len(self.data) // BLOCK_SIZE)

    @property
    def complete(self) -> bool:
        return len(self.senders) == self.num_blocks

    def contributors(self) -> set[S]:
        """Everyone who sent at least one block."""
        return set(self.senders.values())

    def passed(self, trust: Trust) -> set[S]:
        """The piece passed its hash check: tell trust; returns the senders newly banned
        (smart ban: their blocks of an earlier failed copy differed from these). They sent
        that earlier copy, so they need not be among this copy's senders."""
        return self._keys(trust.piece_passed(self.index, self.data, self.senders, BLOCK_SIZE))

    def failed(self, trust: Trust) -> set[S]:
        """The piece failed its hash check: tell trust (it remembers each block's hash and
        sender); returns the senders newly banned by trust points."""
        blocks = {
            begin: (sender, bytes(self.data[begin : begin + BLOCK_SIZE]))
            for begin, sender in self.senders.items()
        }
        return self._keys(trust.piece_failed(self.index, blocks))

    @staticmethod
    def _keys(keys: set[Hashable]) -> set[S]:
        # Trust hands back keys it was given; fed only through assemblies, those are S.
        return cast("set[S]", keys)


class Assemblies(Generic[S]):
    """Every piece being received, by index, for a torrent of the given geometry."""

    def __init__(
        self, *, piece_length: int, total_length: int, spare_buffers: int | None = None
    ) -> None:
        if piece_length <= 0 or total_length < 0:
            raise LocalProtocolError("piece_length must be positive, total_length >= 0")
        self.piece_length = piece_length
        self.total_length = total_length
        self.num_pieces = -(-total_length // piece_length)
        self._last = self.num_pieces - 1
        self._last_size = total_length - self._last * piece_length
        self._pieces: dict[int, Assembly[S]] = {}
        #: full-size piece buffers handed back by recycle(), at most spare_buffers
        self._spare: list[memoryview] = []
        self._max_spare = (
            spare_buffers
            if spare_buffers is not None
            else max(MIN_SPARE, SPARE_BYTES // piece_length)
        )

    def piece_size(self, index: int) -> int:
        if not 0 <= index < self.num_pieces:
            raise LocalProtocolError(f"no piece {index}")
        return min(self.piece_length, self.total_length - index * self.piece_length)

    def add_block(self, index: int, begin: int, data: bytes | memoryview, sender: S) -> bool:
        """Write an accepted block into its piece and record its sender. Returns True when
        every block of the piece is in. A block off the block grid is our bug (the picker
        accepts only blocks on it): LocalProtocolError."""
        assembly = self._pieces.get(index)
        size = self.piece_size(index) if assembly is None else len(assembly.data)
        n = len(data)
        if begin % BLOCK_SIZE or not 0 <= begin < size or n != min(BLOCK_SIZE, size - begin):
            raise LocalProtocolError(
                f"block ({index}, {begin}, {n}) is not on piece {index}'s block grid"
            )
        if assembly is None:
            spare = self._spare
            buf = spare.pop() if spare and size == self.piece_length else piece_buffer(size)
            assembly = self._pieces[index] = Assembly(index, buf)
        if begin < assembly.hashed:
            assembly._rewrite()
        assembly.data[begin : begin + n] = data
        senders = assembly.senders
        senders[begin] = sender
        if begin <= assembly.hashed:
            assembly._hash_forward()
        return len(senders) == -(-size // BLOCK_SIZE)

    def add_blocks(
        self,
        blocks: Sequence[tuple[int, int, bytes | memoryview]],
        accepted: bytes | bytearray,
        sender: S,
    ) -> None:
        """:meth:`add_block` for the blocks of one receive whose byte in ``accepted`` (the
        picker's mask, one byte per block) is set; whether a piece is complete is asked
        afterwards with :meth:`is_complete` (only for the pieces the picker completed).
        Each piece's hash moves on once per call, over all of its new blocks at once."""
        pieces, plen, spare = self._pieces, self.piece_length, self._spare
        touched: dict[int, Assembly[S]] = {}  # pieces whose hash can move on
        for index, begin, data in itertools.compress(blocks, accepted):
            assembly = pieces.get(index)
            if assembly is None:
                size = self.piece_size(index)
                buf = spare.pop() if spare and size == plen else piece_buffer(size)
                assembly = pieces[index] = Assembly(index, buf)
            buf = assembly.data
            size = len(buf)
            n = len(data)
            if begin % BLOCK_SIZE or not 0 <= begin < size or n != min(BLOCK_SIZE, size - begin):
                raise LocalProtocolError(
                    f"block ({index}, {begin}, {n}) is not on piece {index}'s block grid"
                )
            hashed = assembly.hashed
            if begin <= hashed:
                if begin < hashed:
                    assembly._rewrite()
                touched[index] = assembly
            buf[begin : begin + n] = data
            assembly.senders[begin] = sender
        for assembly in touched.values():
            assembly._hash_forward()

    def is_complete(self, index: int) -> bool:
        """Every block of piece ``index`` is in (it can be taken)."""
        assembly = self._pieces.get(index)
        return assembly is not None and assembly.complete

    def take(self, index: int) -> Assembly[S]:
        """Remove and return the complete piece ``index`` (to verify and write)."""
        assembly = self._pieces.get(index)
        if assembly is None or not assembly.complete:
            raise LocalProtocolError(f"piece {index} is not complete")
        del self._pieces[index]
        return assembly

    def discard(self, index: int) -> None:
        """Forget a partial piece (e.g. it is no longer wanted)."""
        assembly = self._pieces.pop(index, None)
        if assembly is not None:
            self.recycle(assembly)

    def recycle(self, assembly: Assembly[S]) -> None:
        """Take back the buffer of a piece the engine is done with (written, and judged by
        trust), to receive a later piece into. ``assembly.data`` must not be used after."""
        data = assembly.data
        if len(data) == self.piece_length and len(self._spare) < self._max_spare:
            self._spare.append(data)
        assembly.data = _EMPTY
        assembly.senders = {}

    def drop_spares(self) -> None:
        """Free the spare buffers (nothing more to receive for now); later pieces allocate
        again."""
        self._spare.clear()

    def __contains__(self, index: object) -> bool:
        return index in self._pieces

    def __len__(self) -> int:
        return len(self._pieces)

    @property
    def buffered_bytes(self) -> int:
        """Memory held by partial pieces."""
        return sum(len(a.data) for a in self._pieces.values())
