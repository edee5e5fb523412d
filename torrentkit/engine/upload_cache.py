"""Upload cache: whole pieces recently read for uploads, least recently used out (pure).

Peers ask for a piece block by block, and often several peers want the same piece at once
(it is rare, or we just announced it), so the engine reads whole pieces and keeps the most
recently used ones here, up to ``max_bytes``. On a miss the engine reads the piece from disk
(in a thread) and :meth:`UploadCache.put` s it. The newest piece always stays, even alone
past the limit, so a piece larger than the whole cache is still read only once per run of
requests. Putting a piece that is already cached replaces it (two uploads that missed at once
both read it; the bytes count stays exact).
"""

from __future__ import annotations

from collections import OrderedDict

from torrentkit.errors import LocalProtocolError


class UploadCache:
    """An LRU of whole pieces, bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise LocalProtocolError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._pieces: OrderedDict[int, bytes | bytearray] = OrderedDict()  # oldest use first
        self._bytes = 0

    def get(self, index: int) -> bytes | bytearray | None:
        """The cached piece ``index`` (now the most recently used), or None."""
        piece = self._pieces.get(index)
        if piece is not None:
            self._pieces.move_to_end(index)
        return piece

    def put(self, index: int, data: bytes | bytearray) -> None:
        """Cache piece ``index`` as the most recently used, evicting the least recently used
        past ``max_bytes`` (but never the piece just put)."""
        old = self._pieces.pop(index, None)
        if old is not None:
            self._bytes -= len(old)
        self._pieces[index] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes and len(self._pieces) > 1:
            _, evicted = self._pieces.popitem(last=False)
            self._bytes -= len(evicted)

    def discard(self, index: int) -> None:
        """Drop piece ``index`` if cached."""
        old = self._pieces.pop(index, None)
        if old is not None:
            self._bytes -= len(old)

    def __contains__(self, index: object) -> bool:
        """Cached? (Does not count as a use.)"""
        return index in self._pieces

    def __len__(self) -> int:
        return len(self._pieces)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def cached_indices(self) -> list[int]:
        """Cached pieces, least recently used first (BEP 6 suggest-piece candidates)."""
        return list(self._pieces)
