"""Piece picker: which blocks to request next, from which peer (pure; no clock, no I/O).

The picker owns the download-side bookkeeping of one torrent: piece and block sizes, which
pieces we have, how many connected peers have each piece (availability), the per-block state
of pieces in progress, and piece priorities (0 = skip, 1..7, default 4; derived from file
priorities). The engine feeds it events and asks it for requests:

- peers: :meth:`Picker.peer_bitfield` / :meth:`Picker.peer_have_all` / :meth:`Picker.peer_have`
  / :meth:`Picker.peer_gone` (its availability is removed and its requests released);
- requests: :meth:`Picker.pick` hands out up to ``n`` :class:`BlockRequest` for a peer;
  :meth:`Picker.block_received` records a block and says which other peers to CANCEL
  (:meth:`Picker.blocks_received`: the blocks of one receive at once, the engine's path);
  :meth:`Picker.request_released` / :meth:`Picker.peer_choked` give requests back
  (rejected, timed out, choked);
- pieces: :meth:`Picker.piece_passed` (hash ok) / :meth:`Picker.piece_failed` (all its blocks
  reset) / :meth:`Picker.set_have` (resume); both return the peers that sent its blocks, so
  the engine can apply trust points.

Order of picking, for one peer (anacrolix's "one comparison chain", libtorrent's rules):

1. higher piece priority first; within a priority level
2. pieces already in progress that the peer has (those this peer is already fetching first,
   then the oldest others): finish what is started;
3. fresh pieces: while we have fewer than ``random_first`` (4) pieces, random ones (a new peer
   needs something to trade quickly); after that rarest first (lowest availability), ties
   broken at random;
4. a block already requested from another peer is never handed out again, unless every
   block still missing is requested (endgame): then outstanding blocks are requested from
   several peers, at most ``endgame_requesters`` peers per block, fewest requesters first,
   and :meth:`Picker.block_received` returns the duplicates to cancel. A peer with no request
   at all may take one block past that cap (unless the cap is 1: no duplicates), so that a
   fast peer is never idle while the last blocks wait on slow ones.

Data structures (so that a pick does not scan the torrent):

- ``_avail[i]``: how many non-seed peers have piece i. Seeds (a full bitfield or HAVE ALL)
  are one counter, ``_seeds``: they shift every piece's availability alike, so they do not
  change the rarest-first order and cost O(1) to add and remove.
- Fresh pieces (wanted, not had, not started) live in one band per priority. A band holds
  them twice: in buckets by availability (``buckets[a]`` = the pieces with ``_avail == a``)
  and in one flat list (for random picks). Both are index-addressed sets (a list plus each
  piece's position; removal swaps with the last element), so a HAVE moves a piece between
  neighbouring buckets in O(1) and a bitfield costs O(pieces it sets).
- Rarest-first walks the buckets from the rarest, starting each bucket at a random offset
  (the random tie-break). A peer that has few of the pieces in the rare buckets would make
  that walk long; once it has looked at as many pieces as the peer has, the pick switches
  to walking the peer's own bitfield instead (C-speed ``bytearray.find``), so one pick costs
  about min(walk, pieces the peer has).
- Peers' bitfields are ``bytearray`` of 0/1 per piece (O(1) lookups); all seeds share one.
- Pieces in progress: per block, which peers it is requested from and who sent it; a
  separate ordered set holds those that still have unrequested blocks.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Hashable, Iterable, Sequence, Sized
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.metainfo import BLOCK_SIZE, FileEntry

DEFAULT_PRIORITY = 4
MAX_PRIORITY = 7

P = TypeVar("P", bound=Hashable)

# piece states
_FRESH = 0  # wanted, not had, not started: in the bands
_PARTIAL = 1  # in progress (some block requested or received)
_HAVE = 2  # verified
_SKIPPED = 3  # priority 0, not started, not had

_BITS = bytes.maketrans(b"01", b"\x00\x01")
_HAVE_TEXT = bytes.maketrans(bytes([_FRESH, _PARTIAL, _HAVE, _SKIPPED]), b"0010")


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockRequest:
    """One block to request: the wire REQUEST's (index, begin, length)."""

    piece: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        if self.piece < 0 or self.begin < 0 or self.length <= 0:
            raise LocalProtocolError(f"bad block request {self!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockReceived(Generic[P]):
    """What :meth:`Picker.block_received` decided about an incoming block.

    ``accepted``: the block is new data for a piece we want; write it. Otherwise drop it
    (duplicate, a piece we have, not a block we would ask for). ``cancel``: peers that were
    also asked for this block (endgame); send them CANCEL. ``piece_complete``: every block of
    the piece is now in; hash it and report :meth:`Picker.piece_passed` or
    :meth:`Picker.piece_failed`.
    """

    accepted: bool
    cancel: tuple[P, ...] = ()
    piece_complete: bool = False


@dataclass(slots=True)
class BlocksReceived(Generic[P]):
    """What :meth:`Picker.blocks_received` decided about the blocks of one receive.

    ``accepted``: one byte per block, 1 where :class:`BlockReceived` would say accepted
    (write it), 0 to drop. ``complete``: the pieces whose last block came in this batch, in
    order (hash them). ``cancels``: ``(peer, piece, begin, length)`` for every other peer
    that was also asked for an accepted block (endgame): send it CANCEL.
    """

    accepted: bytearray
    complete: list[int]
    cancels: list[tuple[P, int, int, int]]


#: The common answers of :meth:`Picker.block_received`, made once (they carry no peer).
_REFUSED: BlockReceived[Any] = BlockReceived(accepted=False)
_ACCEPTED: BlockReceived[Any] = BlockReceived(accepted=True)
_ACCEPTED_COMPLETE: BlockReceived[Any] = BlockReceived(accepted=True, piece_complete=True)


def piece_priorities(
    piece_length: int, num_pieces: int, files: Iterable[tuple[int, int, int]]
) -> list[int]:
    """Piece priorities from file spans ``(offset, length, priority)``.

    A piece's priority is the highest of the files that touch it, so a piece shared by a
    wanted and an unwanted file is wanted, and a piece only unwanted files touch gets 0.
    Empty files touch no piece.
    """
    out = [0] * num_pieces
    for offset, length, prio in files:
        _check_priority(prio)
        if length <= 0 or prio == 0:
            continue
        first = offset // piece_length
        last = min((offset + length - 1) // piece_length, num_pieces - 1)
        for i in range(first, last + 1):
            if out[i] < prio:
                out[i] = prio
    return out


def _check_priority(prio: int) -> None:
    if not 0 <= prio <= MAX_PRIORITY:
        raise LocalProtocolError(f"priority must be 0..{MAX_PRIORITY}, got {prio}")


class _Band:
    """The fresh pieces of one priority level (see the module docstring)."""

    __slots__ = ("buckets", "flat")

    def __init__(self) -> None:
        self.buckets: list[list[int]] = [[]]
        self.flat: list[int] = []


class _Partial(Generic[P]):
    """Block state of one piece in progress."""

    __slots__ = ("by_peer", "n_free", "n_received", "received", "requesters", "senders")

    def __init__(self, nblocks: int) -> None:
        self.received = bytearray(nblocks)
        self.requesters: list[list[P]] = [[] for _ in range(nblocks)]
        self.senders: list[P | None] = [None] * nblocks
        self.n_free = nblocks  # neither received nor requested
        self.n_received = 0
        self.by_peer: dict[P, int] = {}  # outstanding requests per peer


class _Peer:
    __slots__ = ("count", "have", "requests", "seed", "useful")

    def __init__(self, have: bytearray, count: int, seed: bool) -> None:
        self.have = have
        self.count = count  # pieces it has (num_pieces for a seed)
        self.seed = seed  # counted in Picker._seeds, not in _avail
        self.useful = 0  # pieces it has that we want and lack (non-seeds only)
        self.requests: set[tuple[int, int]] = set()  # (piece, block) outstanding


class Picker(Generic[P]):
    """Block picker for one torrent; ``P`` is whatever the engine uses to name a peer."""

    def __init__(
        self,
        *,
        piece_length: int,
        total_length: int,
        rng: random.Random,
        block_size: int = BLOCK_SIZE,
        random_first: int = 4,
        endgame_requesters: int = 3,
    ) -> None:
        if piece_length <= 0 or total_length < 0 or block_size <= 0:
            raise LocalProtocolError("piece_length and block_size must be > 0, total >= 0")
        if endgame_requesters < 1:
            raise LocalProtocolError("endgame_requesters must be >= 1")
        self.piece_length = piece_length
        self.total_length = total_length
        self.block_size = block_size
        self.random_first = random_first
        self.endgame_requesters = endgame_requesters
        self._rng = rng
        n = -(-total_length // piece_length)
        self.num_pieces = n
        self._blocks_per_piece = -(-piece_length // block_size)
        last_size = total_length - (n - 1) * piece_length if n else 0
        self._last_size = last_size
        self._last_blocks = -(-last_size // block_size)

        self._prio = bytearray([DEFAULT_PRIORITY]) * n
        self._state = bytearray(n)  # all _FRESH
        self._wanted = bytearray([1]) * n  # priority > 0 and not had
        self._wanted_missing = n
        self._num_have = 0
        self._avail = [0] * n
        self._bpos = [0] * n  # position in its availability bucket
        self._fpos = [0] * n  # position in its band's flat list
        self._bands = [_Band() for _ in range(MAX_PRIORITY + 1)]
        # a random initial order, so equal pieces do not come out in index order
        order = list(range(n))
        rng.shuffle(order)
        band = self._bands[DEFAULT_PRIORITY]
        band.flat = order
        band.buckets[0] = list(order)
        for pos, piece in enumerate(order):
            self._bpos[piece] = pos
            self._fpos[piece] = pos
        self._seeds = 0
        self._all = bytearray([1]) * n  # shared bitfield of every seed; never mutated
        self._peers: dict[P, _Peer] = {}
        self._partials: dict[int, _Partial[P]] = {}
        self._open: dict[int, None] = {}  # partial pieces with unrequested blocks (ordered)

    # ------------------------------------------------------------------ sizes
    def piece_size(self, piece: int) -> int:
        self._check_piece(piece)
        return self._last_size if piece == self.num_pieces - 1 else self.piece_length

    def num_blocks(self, piece: int) -> int:
        self._check_piece(piece)
        return self._last_blocks if piece == self.num_pieces - 1 else self._blocks_per_piece

    def block(self, piece: int, block: int) -> BlockRequest:
        """The request for block number ``block`` of ``piece`` (the last block may be short)."""
        size = self.piece_size(piece)
        begin = block * self.block_size
        if not 0 <= begin < size:
            raise LocalProtocolError(f"piece {piece} has no block {block}")
        return BlockRequest(piece=piece, begin=begin, length=min(self.block_size, size - begin))

    def _nblocks(self, piece: int) -> int:
        return self._last_blocks if piece == self.num_pieces - 1 else self._blocks_per_piece

    def _check_piece(self, piece: int) -> None:
        if not 0 <= piece < self.num_pieces:
            raise LocalProtocolError(f"piece index {piece} out of range 0..{self.num_pieces - 1}")

    # ---------------------------------------------------------------- queries
    @property
    def num_have(self) -> int:
        return self._num_have

    @property
    def num_peers(self) -> int:
        return len(self._peers)

    def have(self, piece: int) -> bool:
        self._check_piece(piece)
        return self._state[piece] == _HAVE

    def have_bitfield(self) -> bytes:
        """Our pieces as a BEP 3 bitfield (high bit of byte 0 = piece 0)."""
        n = self.num_pieces
        if not n:
            return b""
        text = self._state.translate(_HAVE_TEXT).decode() + "0" * (-n % 8)
        return int(text, 2).to_bytes((n + 7) // 8, "big")

    def availability(self, piece: int) -> int:
        """How many connected peers have ``piece``."""
        self._check_piece(piece)
        return self._avail[piece] + self._seeds

    def min_availability(self) -> int:
        """The fewest connected peers having any one piece; O(pieces)."""
        return (min(self._avail) if self._avail else 0) + self._seeds

    def priority(self, piece: int) -> int:
        self._check_piece(piece)
        return self._prio[piece]

    @property
    def wanted_missing(self) -> int:
        """How many wanted pieces we do not have yet."""
        return self._wanted_missing

    def is_finished(self) -> bool:
        """Every wanted piece is verified (a download with skipped files can finish)."""
        return self._wanted_missing == 0

    def peer_is_seed(self, peer: P) -> bool:
        """Does ``peer`` have every piece (a full bitfield, or HAVEs for all of them)?"""
        ps = self._peers.get(peer)
        return ps is not None and (ps.seed or ps.count == self.num_pieces)

    def is_interesting(self, peer: P) -> bool:
        """Does ``peer`` have a piece we want and lack? (drives am_interested)."""
        ps = self._peers.get(peer)
        if ps is None:
            return False
        return self._wanted_missing > 0 if ps.seed else ps.useful > 0

    def in_progress(self) -> list[int]:
        return list(self._partials)

    def piece_map(self, cells: int) -> list[tuple[float, float, float]]:
        """The torrent cut into ``cells`` runs of pieces (fewer when there are fewer
        pieces): per run, the fraction we have, the fraction in progress, and the mean
        availability among connected peers (seeds included). Cheap: C-speed counting."""
        n = self.num_pieces
        cells = max(1, min(cells, n))
        out: list[tuple[float, float, float]] = []
        state, avail, seeds = self._state, self._avail, self._seeds
        for c in range(cells):
            lo, hi = c * n // cells, (c + 1) * n // cells
            size = hi - lo
            run = state[lo:hi]
            out.append(
                (
                    run.count(_HAVE) / size,
                    run.count(_PARTIAL) / size,
                    sum(avail[lo:hi]) / size + seeds,
                )
            )
        return out

    def requests_of(self, peer: P) -> list[BlockRequest]:
        """The requests ``peer`` holds now, by piece and offset."""
        ps = self._peers.get(peer)
        if ps is None:
            return []
        return [self.block(p, b) for p, b in sorted(ps.requests)]

    def requesters(self, piece: int, begin: int) -> tuple[P, ...]:
        part = self._partials.get(piece)
        blk = begin // self.block_size
        if part is None or not 0 <= blk < len(part.requesters):
            return ()
        return tuple(part.requesters[blk])

    @property
    def in_endgame(self) -> bool:
        """Every block we still miss (of pieces some peer has) is requested or received."""
        if self._seeds:
            for band in self._bands:
                if band.flat:
                    return False
        else:
            for band in self._bands:
                if len(band.flat) > len(band.buckets[0]):
                    return False
        avail, seeds, prio = self._avail, self._seeds, self._prio
        return not any(prio[p] and avail[p] + seeds for p in self._open)

    # ------------------------------------------------------------- our pieces
    def set_have(self, piece: int) -> tuple[P, ...]:
        """We have ``piece`` (resume data, recheck). Same as :meth:`piece_passed`."""
        return self.piece_passed(piece)

    def piece_passed(self, piece: int) -> tuple[P, ...]:
        """``piece`` verified. Returns the peers that sent its blocks (trust points)."""
        self._check_piece(piece)
        state = self._state[piece]
        if state == _HAVE:
            return ()
        contributors = self._drop_partial(piece) if state == _PARTIAL else ()
        if state == _FRESH:
            self._remove_fresh(piece)
        self._state[piece] = _HAVE
        self._num_have += 1
        self._set_wanted(piece, False)
        return contributors

    def piece_failed(self, piece: int) -> tuple[P, ...]:
        """``piece`` failed its hash check: every block is reset and it can be picked again.

        Returns the peers that sent its blocks (each contributed to a bad piece).
        """
        self._check_piece(piece)
        if self._state[piece] != _PARTIAL:
            return ()
        contributors = self._drop_partial(piece)
        self._make_fresh(piece)
        return contributors

    def _drop_partial(self, piece: int) -> tuple[P, ...]:
        part = self._partials.pop(piece)
        self._open.pop(piece, None)
        for blk, reqs in enumerate(part.requesters):
            for peer in reqs:
                self._peers[peer].requests.discard((piece, blk))
        return tuple(dict.fromkeys(s for s in part.senders if s is not None))

    def _make_fresh(self, piece: int) -> None:
        """A piece that is not had and not in progress goes back to its band (or skipped)."""
        if self._prio[piece]:
            self._state[piece] = _FRESH
            self._add_fresh(piece)
        else:
            self._state[piece] = _SKIPPED

    # ------------------------------------------------------------- priorities
    def set_piece_priorities(self, priorities: Sequence[int]) -> None:
        """Set every piece's priority (0 = never request, 1..7, higher first)."""
        if len(priorities) != self.num_pieces:
            raise LocalProtocolError(f"{len(priorities)} priorities for {self.num_pieces} pieces")
        for piece, prio in enumerate(priorities):
            self.set_priority(piece, prio)

    def set_file_priorities(self, files: Sequence[FileEntry], priorities: Sequence[int]) -> None:
        """Piece priorities from file priorities (pad files never make a piece wanted)."""
        if len(files) != len(priorities):
            raise LocalProtocolError(f"{len(priorities)} priorities for {len(files)} files")
        pairs = zip(files, priorities, strict=True)
        spans = ((f.offset, f.length, 0 if f.pad else p) for f, p in pairs)
        self.set_piece_priorities(piece_priorities(self.piece_length, self.num_pieces, spans))

    def set_priority(self, piece: int, prio: int) -> None:
        self._check_piece(piece)
        _check_priority(prio)
        old = self._prio[piece]
        if old == prio:
            return
        state = self._state[piece]
        if state == _FRESH:
            self._remove_fresh(piece)
        self._prio[piece] = prio
        if state in (_FRESH, _SKIPPED):
            self._make_fresh(piece)
        # a piece in progress keeps what is in and its outstanding requests; with
        # priority 0 it gets no new ones
        if state != _HAVE:
            self._set_wanted(piece, prio > 0)

    def _set_wanted(self, piece: int, wanted: bool) -> None:
        if bool(self._wanted[piece]) == wanted:
            return
        self._wanted[piece] = wanted
        delta = 1 if wanted else -1
        self._wanted_missing += delta
        for ps in self._peers.values():
            if not ps.seed and ps.have[piece]:
                ps.useful += delta

    # ------------------------------------------------------- fresh structures
    def _add_fresh(self, piece: int) -> None:
        band = self._bands[self._prio[piece]]
        a = self._avail[piece]
        buckets = band.buckets
        while len(buckets) <= a:
            buckets.append([])
        bucket = buckets[a]
        self._bpos[piece] = len(bucket)
        bucket.append(piece)
        self._fpos[piece] = len(band.flat)
        band.flat.append(piece)

    def _remove_fresh(self, piece: int) -> None:
        band = self._bands[self._prio[piece]]
        bucket = band.buckets[self._avail[piece]]
        pos = self._bpos[piece]
        last = bucket.pop()
        if last != piece:
            bucket[pos] = last
            self._bpos[last] = pos
        flat = band.flat
        pos = self._fpos[piece]
        last = flat.pop()
        if last != piece:
            flat[pos] = last
            self._fpos[last] = pos

    def _inc(self, piece: int) -> None:
        a = self._avail[piece]
        self._avail[piece] = a + 1
        if self._state[piece] == _FRESH:
            buckets = self._bands[self._prio[piece]].buckets
            bucket = buckets[a]
            pos = self._bpos[piece]
            last = bucket.pop()
            if last != piece:
                bucket[pos] = last
                self._bpos[last] = pos
            if len(buckets) == a + 1:
                buckets.append([])
            bucket = buckets[a + 1]
            self._bpos[piece] = len(bucket)
            bucket.append(piece)

    def _dec(self, piece: int) -> None:
        a = self._avail[piece]
        self._avail[piece] = a - 1
        if self._state[piece] == _FRESH:
            buckets = self._bands[self._prio[piece]].buckets
            bucket = buckets[a]
            pos = self._bpos[piece]
            last = bucket.pop()
            if last != piece:
                bucket[pos] = last
                self._bpos[last] = pos
            bucket = buckets[a - 1]
            self._bpos[piece] = len(bucket)
            bucket.append(piece)

    # ------------------------------------------------------------------ peers
    def peer_bitfield(self, peer: P, bitfield: bytes) -> None:
        """``peer`` sent its BEP 3 bitfield (replaces whatever we knew of it).

        Raises RemoteProtocolError for a wrong length or spare bits set.
        """
        n = self.num_pieces
        if len(bitfield) != (n + 7) // 8:
            raise RemoteProtocolError(
                f"bitfield of {len(bitfield)} bytes for {n} pieces (want {(n + 7) // 8})"
            )
        value = int.from_bytes(bitfield, "big")
        spare = len(bitfield) * 8 - n
        if value & ((1 << spare) - 1):
            raise RemoteProtocolError("bitfield has spare bits set")
        count = value.bit_count()
        if count == n:
            self.peer_have_all(peer)
            return
        self._remove_peer_pieces(peer)
        text = format(value >> spare, f"0{n}b") if n else ""
        have = bytearray(text.encode().translate(_BITS))
        ps = self._peers.get(peer)
        if ps is None:
            ps = self._peers[peer] = _Peer(have, count, False)
        else:
            ps.have, ps.count, ps.seed = have, count, False
        inc = self._inc
        for piece in itertools.compress(range(n), have):
            inc(piece)
        ps.useful = (int.from_bytes(have, "big") & int.from_bytes(self._wanted, "big")).bit_count()

    def peer_have_all(self, peer: P) -> None:
        """``peer`` is a seed (full bitfield, or BEP 6 HAVE ALL): O(1)."""
        self._remove_peer_pieces(peer)
        ps = self._peers.get(peer)
        if ps is None:
            ps = self._peers[peer] = _Peer(self._all, self.num_pieces, True)
        else:
            ps.have, ps.count, ps.seed, ps.useful = self._all, self.num_pieces, True, 0
        self._seeds += 1

    def peer_have_none(self, peer: P) -> None:
        """``peer`` has nothing yet (BEP 6 HAVE NONE, or no bitfield sent)."""
        self._remove_peer_pieces(peer)
        ps = self._peers.get(peer)
        if ps is None:
            self._peers[peer] = _Peer(bytearray(self.num_pieces), 0, False)
        else:
            ps.have, ps.count, ps.seed, ps.useful = bytearray(self.num_pieces), 0, False, 0

    def peer_have(self, peer: P, piece: int) -> None:
        """``peer`` announced HAVE ``piece``: O(1). RemoteProtocolError if out of range."""
        if not 0 <= piece < self.num_pieces:
            raise RemoteProtocolError(f"HAVE {piece} out of range ({self.num_pieces} pieces)")
        ps = self._peers.get(peer)
        if ps is None:
            ps = self._peers[peer] = _Peer(bytearray(self.num_pieces), 0, False)
        if ps.seed or ps.have[piece]:
            return
        ps.have[piece] = 1
        ps.count += 1
        if self._wanted[piece]:
            ps.useful += 1
        self._inc(piece)

    def peer_gone(self, peer: P) -> list[BlockRequest]:
        """``peer`` disconnected: drop its pieces from availability, release its requests.

        Returns the requests it held (now free for other peers).
        """
        released = self._requests_as_blocks(peer)
        self.remove_peer(peer)
        return released

    def remove_peer(self, peer: P) -> int:
        """:meth:`peer_gone` for the engine: how many requests were released (no request
        objects are made: a fast peer can hold hundreds)."""
        if peer not in self._peers:
            return 0
        released = self.release_requests(peer)
        self._remove_peer_pieces(peer)
        del self._peers[peer]
        return released

    def _remove_peer_pieces(self, peer: P) -> None:
        ps = self._peers.get(peer)
        if ps is None:
            return
        if ps.seed:
            self._seeds -= 1
        else:
            dec = self._dec
            for piece in itertools.compress(range(self.num_pieces), ps.have):
                dec(piece)
        ps.have, ps.count, ps.seed, ps.useful = bytearray(self.num_pieces), 0, False, 0

    # --------------------------------------------------------------- releases
    def peer_choked(self, peer: P) -> list[BlockRequest]:
        """``peer`` choked us (without the fast extension every request is void).

        Returns the released requests.
        """
        out = self._requests_as_blocks(peer)
        self.release_requests(peer)
        return out

    def release_requests(self, peer: P) -> int:
        """:meth:`peer_choked` for the engine: how many requests were released."""
        ps = self._peers.get(peer)
        if ps is None or not ps.requests:
            return 0
        held = sorted(ps.requests)  # lowest pieces reopen first, as they were taken
        release = self._release
        for piece, blk in held:
            release(peer, ps, piece, blk)
        return len(held)

    def _requests_as_blocks(self, peer: P) -> list[BlockRequest]:
        ps = self._peers.get(peer)
        if ps is None:
            return []
        return [self.block(p, b) for p, b in sorted(ps.requests)]

    def request_released(self, peer: P, piece: int, begin: int) -> bool:
        """A request to ``peer`` was rejected or timed out. False if it held no such request."""
        ps = self._peers.get(peer)
        if ps is None or begin % self.block_size:
            return False
        blk = begin // self.block_size
        if (piece, blk) not in ps.requests:
            return False
        self._release(peer, ps, piece, blk)
        return True

    def _release(self, peer: P, ps: _Peer, piece: int, blk: int) -> None:
        ps.requests.discard((piece, blk))
        part = self._partials[piece]
        reqs = part.requesters[blk]
        reqs.remove(peer)
        left = part.by_peer[peer] - 1
        if left:
            part.by_peer[peer] = left
        else:
            del part.by_peer[peer]
        if not reqs and not part.received[blk]:
            part.n_free += 1
            if part.n_free == 1:
                self._open[piece] = None
            if part.n_free == len(part.received):
                # nothing requested, nothing received: a fresh piece again
                del self._partials[piece]
                del self._open[piece]
                self._make_fresh(piece)

    # ------------------------------------------------------------------ blocks
    def block_received(self, peer: P, piece: int, begin: int, length: int) -> BlockReceived[P]:
        """A PIECE message arrived from ``peer``.

        Late blocks (whose request was released) and unasked blocks of a piece we want are
        accepted; duplicates, blocks of pieces we have or skip, and blocks that do not match
        our block grid are not.
        """
        if not 0 <= piece < self.num_pieces or begin % self.block_size:
            return _REFUSED
        size = self._last_size if piece == self.num_pieces - 1 else self.piece_length
        if not 0 <= begin < size or length != min(self.block_size, size - begin):
            return _REFUSED
        cancel: list[P] = []
        got = self._receive(peer, self._peers.get(peer), piece, begin // self.block_size, cancel)
        if not got:
            return _REFUSED
        if not cancel:
            return _ACCEPTED_COMPLETE if got == 2 else _ACCEPTED
        return BlockReceived(accepted=True, cancel=tuple(cancel), piece_complete=got == 2)

    def blocks_received(
        self, peer: P, blocks: Sequence[tuple[int, int, Sized]]
    ) -> BlocksReceived[P]:
        """The PIECE messages of one receive from ``peer``, as ``(piece, begin, data)`` (only
        ``len(data)`` is read): exactly :meth:`block_received` for each block in order, with
        the answers gathered (see :class:`BlocksReceived`). The usual block -- the one
        outstanding request for it, answered by its peer -- costs no call and no object."""
        n = len(blocks)
        accepted = bytearray(n)
        complete: list[int] = []
        cancels: list[tuple[P, int, int, int]] = []
        ps = self._peers.get(peer)
        requests = ps.requests if ps is not None else None
        bs, last, plen, last_size = (
            self.block_size,
            self.num_pieces - 1,
            self.piece_length,
            self._last_size,
        )
        state, partials = self._state, self._partials
        for i, (piece, begin, data) in enumerate(blocks):
            length = len(data)
            if not 0 <= piece <= last or begin % bs:
                continue
            size = last_size if piece == last else plen
            if not 0 <= begin < size or length != min(bs, size - begin):
                continue
            blk = begin // bs
            if state[piece] == _PARTIAL and requests is not None:
                part = partials[piece]
                reqs = part.requesters[blk]
                if len(reqs) == 1 and reqs[0] == peer and not part.received[blk]:
                    # the usual case: one request, answered by its peer
                    received = part.received
                    received[blk] = 1
                    part.senders[blk] = peer
                    part.n_received += 1
                    requests.discard((piece, blk))
                    by_peer = part.by_peer
                    left = by_peer[peer] - 1
                    if left:
                        by_peer[peer] = left
                    else:
                        del by_peer[peer]
                    reqs.clear()
                    accepted[i] = 1
                    if part.n_received == len(received):
                        complete.append(piece)
                    continue
            cancel: list[P] = []
            got = self._receive(peer, ps, piece, blk, cancel)
            if got:
                accepted[i] = 1
                if got == 2:
                    complete.append(piece)
                for other in cancel:
                    cancels.append((other, piece, begin, length))
        return BlocksReceived(accepted, complete, cancels)

    def _receive(self, peer: P, ps: _Peer | None, piece: int, blk: int, cancel: list[P]) -> int:
        """Record block ``blk`` of ``piece`` (on our grid) from ``peer``: 0 refused, 1
        accepted, 2 accepted and the piece is complete; the other peers asked for the block
        are appended to ``cancel``."""
        state = self._state[piece]
        if state == _HAVE or (state != _PARTIAL and not self._prio[piece]):
            if ps is not None and (piece, blk) in ps.requests:
                self._release(peer, ps, piece, blk)
            return 0
        if state != _PARTIAL:  # _FRESH: late block of a piece that went back to fresh
            self._start(piece)
        part = self._partials[piece]
        if part.received[blk]:
            if ps is not None and (piece, blk) in ps.requests:
                self._release(peer, ps, piece, blk)
            return 0
        reqs = part.requesters[blk]
        if not reqs:
            part.n_free -= 1
            if not part.n_free:
                self._open.pop(piece, None)
        part.received[blk] = 1
        part.senders[blk] = peer
        part.n_received += 1
        for other in reqs:
            self._peers[other].requests.discard((piece, blk))
            left = part.by_peer[other] - 1
            if left:
                part.by_peer[other] = left
            else:
                del part.by_peer[other]
            if other != peer:
                cancel.append(other)
        reqs.clear()
        return 2 if part.n_received == len(part.received) else 1

    def _start(self, piece: int) -> _Partial[P]:
        """Move a fresh piece into progress."""
        self._remove_fresh(piece)
        self._state[piece] = _PARTIAL
        part: _Partial[P] = _Partial(self._nblocks(piece))
        self._partials[piece] = part
        self._open[piece] = None
        return part

    # ------------------------------------------------------------------- pick
    def pick(self, peer: P, n: int) -> list[BlockRequest]:
        """Up to ``n`` new requests for ``peer``; they are recorded as outstanding."""
        return [
            BlockRequest(piece=p, begin=b, length=size) for p, b, size in self.pick_blocks(peer, n)
        ]

    def pick_blocks(self, peer: P, n: int) -> list[tuple[int, int, int]]:
        """:meth:`pick` as plain ``(piece, begin, length)`` tuples (the wire REQUEST's
        fields), for the engine's hot path: no object per block."""
        ps = self._peers.get(peer)
        if ps is None or n <= 0 or not ps.count:
            return []
        if not ps.seed and not ps.useful:
            return []
        have, prio = ps.have, self._prio
        picked: list[tuple[int, int]] = []

        # in-progress pieces this peer can serve, grouped by priority; its own first
        partial_by_level: dict[int, list[int]] = {}
        if self._open:
            own: list[int] = []
            other: list[int] = []
            parts = self._partials
            for piece in self._open:
                if have[piece] and prio[piece]:
                    (own if peer in parts[piece].by_peer else other).append(piece)
            for piece in own + other:
                partial_by_level.setdefault(prio[piece], []).append(piece)

        for level in range(MAX_PRIORITY, 0, -1):
            pieces = partial_by_level.get(level)
            if pieces:
                for piece in pieces:
                    self._take_free(peer, ps, piece, self._partials[piece], n, picked)
                    if len(picked) >= n:
                        break
            if len(picked) < n and self._bands[level].flat:
                for piece in self._choose_fresh(ps, level, n - len(picked)):
                    part = self._start(piece)
                    self._take_free(peer, ps, piece, part, n, picked)
                    if len(picked) >= n:
                        break
            if len(picked) >= n:
                break

        if len(picked) < n and self.in_endgame:
            self._take_endgame(peer, ps, n, picked)
        return self._as_blocks(picked)

    def pick_run(self, peer: P, max_pieces: int) -> list[tuple[int, int, int]]:
        """For a peer that fetches whole pieces (a web seed, BEP 19): every block of a run
        of up to ``max_pieces`` adjacent fresh pieces it has, all of one priority level
        (the highest it can serve), as ``(piece, begin, length)``. The run starts at the
        piece :meth:`pick_blocks` would choose first (random, then rarest) and grows
        forward, then backward, while its neighbours are fresh. When no fresh piece is left,
        up to one piece's worth of what :meth:`pick_blocks` gives (unrequested blocks of
        pieces in progress, then endgame duplicates)."""
        ps = self._peers.get(peer)
        if ps is None or max_pieces <= 0 or not ps.count:
            return []
        first: list[int] = []
        for level in range(MAX_PRIORITY, 0, -1):
            if self._bands[level].flat:
                first = self._choose_fresh(ps, level, 1)[:1]
                if first:
                    break
        if not first:
            return self.pick_blocks(peer, self._blocks_per_piece)
        have, state, prio = ps.have, self._state, self._prio
        level = prio[first[0]]
        lo = hi = first[0]

        n = self.num_pieces

        def fresh(i: int) -> bool:
            return 0 <= i < n and state[i] == _FRESH and prio[i] == level and have[i] == 1

        while hi - lo + 1 < max_pieces and fresh(hi + 1):
            hi += 1
        while hi - lo + 1 < max_pieces and fresh(lo - 1):
            lo -= 1
        picked: list[tuple[int, int]] = []
        for piece in range(lo, hi + 1):
            part = self._start(piece)
            self._take_free(peer, ps, piece, part, len(picked) + part.n_free, picked)
        return self._as_blocks(picked)

    def pick_blocks_in(self, peer: P, n: int, pieces: Iterable[int]) -> list[tuple[int, int, int]]:
        """Like :meth:`pick_blocks`, but only from ``pieces``, in the order given (BEP 6:
        the allowed-fast pieces of a peer that chokes us, or the pieces it suggested). Pieces
        the peer lacks, we have or do not want, and out-of-range ones are skipped."""
        ps = self._peers.get(peer)
        if ps is None or n <= 0 or not ps.count:
            return []
        picked: list[tuple[int, int]] = []
        state, prio, num = self._state, self._prio, self.num_pieces
        for piece in pieces:
            if len(picked) >= n:
                break
            if not 0 <= piece < num or not ps.have[piece] or not prio[piece]:
                continue
            if state[piece] == _FRESH:
                self._take_free(peer, ps, piece, self._start(piece), n, picked)
            elif state[piece] == _PARTIAL and piece in self._open:
                self._take_free(peer, ps, piece, self._partials[piece], n, picked)
        return self._as_blocks(picked)

    def _as_blocks(self, picked: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
        """``(piece, block number)`` pairs as ``(piece, begin, length)``."""
        bs, plen, last, last_size = (
            self.block_size,
            self.piece_length,
            self.num_pieces - 1,
            self._last_size,
        )
        return [
            (p, b * bs, min(bs, (plen if p != last else last_size) - b * bs)) for p, b in picked
        ]

    def _take_free(
        self,
        peer: P,
        ps: _Peer,
        piece: int,
        part: _Partial[P],
        n: int,
        picked: list[tuple[int, int]],
    ) -> None:
        received, requesters = part.received, part.requesters
        want = min(n - len(picked), part.n_free)
        taken = 0
        for blk in range(len(received)):
            if taken >= want:
                break
            if received[blk] or requesters[blk]:
                continue
            requesters[blk].append(peer)
            ps.requests.add((piece, blk))
            picked.append((piece, blk))
            taken += 1
        if taken:
            part.n_free -= taken
            part.by_peer[peer] = part.by_peer.get(peer, 0) + taken
            if not part.n_free:
                del self._open[piece]

    def _choose_fresh(self, ps: _Peer, level: int, need: int) -> list[int]:
        """Fresh pieces of priority ``level`` that the peer has, enough for ``need`` blocks."""
        band = self._bands[level]
        have = ps.have
        rng = self._rng
        rarest = self._num_have >= self.random_first
        budget = len(have) if ps.seed else ps.count + 16
        chosen: list[int] = []
        got = 0
        nblocks = self._nblocks
        checks = 0
        lists = band.buckets if rarest else [band.flat]
        start = 1 if rarest and not ps.seed else 0  # bucket 0: only seeds have those
        for bucket in itertools.islice(lists, start, None):
            size = len(bucket)
            if not size:
                continue
            r = rng.randrange(size)
            for k in itertools.chain(range(r, size), range(r)):
                piece = bucket[k]
                if have[piece]:
                    chosen.append(piece)
                    got += nblocks(piece)
                    if got >= need:
                        return chosen
                checks += 1
                if checks > budget:
                    return self._choose_sparse(ps, level, need, rarest)
        return chosen

    def _choose_sparse(self, ps: _Peer, level: int, need: int, rarest: bool) -> list[int]:
        """Same choice as :meth:`_choose_fresh`, walking the peer's bitfield instead."""
        have, state, prio, avail = ps.have, self._state, self._prio, self._avail
        rnd = self._rng.random
        found: list[tuple[int, float, int]] = []
        i = have.find(1)
        while i >= 0:
            if state[i] == _FRESH and prio[i] == level:
                found.append((avail[i] if rarest else 0, rnd(), i))
            i = have.find(1, i + 1)
        found.sort()
        chosen: list[int] = []
        got = 0
        for _, _, i in found:
            chosen.append(i)
            got += self._nblocks(i)
            if got >= need:
                break
        return chosen

    def _take_endgame(self, peer: P, ps: _Peer, n: int, picked: list[tuple[int, int]]) -> None:
        """Duplicate outstanding blocks, fewest requesters first, from a random piece on.

        The order is that of one pass over the pieces per requester count (count 1 across
        all of them, then count 2, ...; block order within a piece), cut off as soon as
        enough are taken. One pass makes it: blocks with one requester are taken as they
        come, those with more are noted by count and taken after the pass. A piece where
        the peer already holds every missing block (``by_peer`` counts them all, as a
        received block has no requester) has nothing for it and is not read: late in an
        endgame many pieces are such, and the peer asks again after each block it gets.
        """
        have, prio = ps.have, self._prio
        pieces = [(p, part) for p, part in self._partials.items() if have[p] and prio[p]]
        if not pieces:
            return
        r = self._rng.randrange(len(pieces))
        cap = self.endgame_requesters
        if cap < 2:  # no duplicates at all
            return
        pieces = pieces[r:] + pieces[:r]
        need = n - len(picked)
        requests = ps.requests
        later: list[list[tuple[int, _Partial[P], int]]] = [[] for _ in range(cap)]  # by count
        for piece, part in pieces:
            by_peer, requesters = part.by_peer, part.requesters
            if by_peer.get(peer, 0) == len(requesters) - part.n_received:
                continue
            taken = 0
            for blk, reqs in enumerate(requesters):
                count = len(reqs)
                if count == 1:
                    if reqs[0] != peer:
                        reqs.append(peer)
                        requests.add((piece, blk))
                        picked.append((piece, blk))
                        taken += 1
                        if taken == need:
                            break
                elif 1 < count < cap and peer not in reqs:
                    later[count].append((piece, part, blk))
            if taken:
                by_peer[peer] = by_peer.get(peer, 0) + taken
                need -= taken
                if not need:
                    return
        for noted in later[2:]:
            for piece, part, blk in noted:
                part.requesters[blk].append(peer)
                part.by_peer[peer] = part.by_peer.get(peer, 0) + 1
                requests.add((piece, blk))
                picked.append((piece, blk))
                need -= 1
                if not need:
                    return
        if requests:  # busy
            return
        # An idle peer takes one block past the cap (the one with the fewest requesters), as
        # libtorrent's end game does: when every requester of the last blocks is slow, a fast
        # peer (the seed, say) would otherwise sit idle while the download waits on them.
        best: tuple[int, int, _Partial[P], int] | None = None
        for piece, part in pieces:
            for blk, reqs in enumerate(part.requesters):
                if reqs and peer not in reqs and (best is None or len(reqs) < best[0]):
                    best = (len(reqs), piece, part, blk)
        if best is not None:
            _, piece, part, blk = best
            part.requesters[blk].append(peer)
            part.by_peer[peer] = part.by_peer.get(peer, 0) + 1
            requests.add((piece, blk))
            picked.append((piece, blk))

    # -------------------------------------------------------------- checking
    def check_consistency(self) -> None:
        """Assert every internal invariant (O(pieces x peers); for tests)."""
        n = self.num_pieces
        avail = [0] * n
        seeds = 0
        for ps in self._peers.values():
            if ps.seed:
                seeds += 1
                assert ps.have is self._all
                continue
            assert ps.count == sum(ps.have)
            for i in itertools.compress(range(n), ps.have):
                avail[i] += 1
            useful = sum(1 for i in range(n) if ps.have[i] and self._wanted[i])
            assert ps.useful == useful, (ps.useful, useful)
        assert avail == self._avail, "availability"
        assert seeds == self._seeds
        fresh = set()
        for level, band in enumerate(self._bands):
            assert sorted(band.flat) == sorted(itertools.chain(*band.buckets))
            for pos, piece in enumerate(band.flat):
                assert self._fpos[piece] == pos and self._prio[piece] == level
                fresh.add(piece)
            for a, bucket in enumerate(band.buckets):
                for pos, piece in enumerate(bucket):
                    assert self._bpos[piece] == pos and self._avail[piece] == a
        have = 0
        for i in range(n):
            state = self._state[i]
            assert (state == _FRESH) == (i in fresh)
            assert (state == _PARTIAL) == (i in self._partials)
            if state == _FRESH:
                assert self._prio[i] > 0
            if state == _SKIPPED:
                assert self._prio[i] == 0
            have += state == _HAVE
            assert self._wanted[i] == (state != _HAVE and self._prio[i] > 0)
        assert have == self._num_have
        assert self._wanted_missing == sum(self._wanted)
        outstanding: set[tuple[P, int, int]] = set()
        for piece, part in self._partials.items():
            free = 0
            by_peer: dict[P, int] = {}
            for blk, reqs in enumerate(part.requesters):
                assert len(set(reqs)) == len(reqs)
                if part.received[blk]:
                    assert not reqs and part.senders[blk] is not None
                elif not reqs:
                    free += 1
                for peer in reqs:
                    by_peer[peer] = by_peer.get(peer, 0) + 1
                    outstanding.add((peer, piece, blk))
            assert free == part.n_free
            assert part.n_received == sum(part.received)
            assert by_peer == part.by_peer
            assert (piece in self._open) == (free > 0)
            assert free < len(part.received), "an untouched piece should be fresh"
        held = {(peer, p, b) for peer, ps in self._peers.items() for p, b in ps.requests}
        assert held == outstanding
