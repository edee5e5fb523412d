"""Where each piece's bytes live among a torrent's files (pure: no disk, no trio).

A v1 torrent's payload is its files laid end to end in ``info.files`` order; piece ``i`` is
bytes ``[i * piece_length, i * piece_length + piece_size(i))`` of that payload. This module
turns payload ranges into per-file spans and back:

- :meth:`Layout.spans` / :meth:`Layout.piece_spans`: a payload range (or piece, begin,
  length) as a list of :class:`Span` (file index, offset in that file, length), in payload
  order. Zero-length files own no bytes and never appear in a span.
- :meth:`Layout.file_pieces`: the pieces a file touches (empty for a zero-length file).
- :meth:`Layout.piece_files`: the files a piece touches.

Pad files (BEP 47) take part in the mapping like any other file: their spans carry
``pad=True``. What storage does with them is storage's rule (see storage.py): their bytes
are zeros and they are never created on disk.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from torrentkit.errors import LocalProtocolError
from torrentkit.metainfo import Info


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """``length`` bytes of file ``file_index`` starting at ``offset`` within that file."""

    file_index: int
    offset: int
    length: int
    pad: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """The piece <-> file mapping of one torrent. Build it with :meth:`from_info`."""

    info: Info
    # Payload start offsets and file indices of the files that own bytes (length > 0),
    # in payload order; parallel tuples so bisect can search ``_starts``.
    _starts: tuple[int, ...] = field(repr=False)
    _indices: tuple[int, ...] = field(repr=False)

    @classmethod
    def from_info(cls, info: Info) -> Layout:
        owned = [(f.offset, i) for i, f in enumerate(info.files) if f.length > 0]
        return cls(
            info=info,
            _starts=tuple(o for o, _ in owned),
            _indices=tuple(i for _, i in owned),
        )

    @property
    def total_length(self) -> int:
        return self.info.total_length

    @property
    def num_pieces(self) -> int:
        return self.info.num_pieces

    def spans(self, offset: int, length: int) -> list[Span]:
        """The file spans covering payload bytes ``[offset, offset + length)``."""
        total = self.info.total_length
        if offset < 0 or length < 0 or offset + length > total:
            raise LocalProtocolError(
                f"payload range [{offset}, {offset + length}) is outside [0, {total})"
            )
        out: list[Span] = []
        if length == 0:
            return out
        files = self.info.files
        k = bisect.bisect_right(self._starts, offset) - 1
        end = offset + length
        pos = offset
        while pos < end:
            f = files[self._indices[k]]
            in_file = pos - f.offset
            n = min(f.length - in_file, end - pos)
            out.append(Span(file_index=self._indices[k], offset=in_file, length=n, pad=f.pad))
            pos += n
            k += 1
        return out

    def piece_spans(self, piece: int, begin: int = 0, length: int | None = None) -> list[Span]:
        """The file spans of ``length`` bytes at ``begin`` in ``piece`` (default: all of it)."""
        size = self.piece_size(piece)
        if length is None:
            length = size - begin
        if begin < 0 or length < 0 or begin + length > size:
            raise LocalProtocolError(
                f"piece {piece}: range [{begin}, {begin + length}) is outside its {size} bytes"
            )
        return self.spans(piece * self.info.piece_length + begin, length)

    def piece_size(self, piece: int) -> int:
        if not 0 <= piece < self.info.num_pieces:
            raise LocalProtocolError(
                f"piece {piece} does not exist (the torrent has {self.info.num_pieces})"
            )
        return self.info.piece_size(piece)

    def file_pieces(self, file_index: int) -> range:
        """The pieces holding any byte of file ``file_index`` (empty when it has no bytes)."""
        f = self.info.files[file_index]
        if f.length == 0:
            return range(0)
        plen = self.info.piece_length
        return range(f.offset // plen, (f.offset + f.length - 1) // plen + 1)

    def piece_files(self, piece: int) -> list[int]:
        """Indices of the files holding bytes of ``piece``, in payload order."""
        return [s.file_index for s in self.piece_spans(piece)]
