"""Upload cache: an LRU of whole pieces bounded by bytes, keeping at least the newest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.engine.upload_cache import UploadCache
from torrentkit.errors import LocalProtocolError


def piece(n: int, size: int = 10) -> bytes:
    return bytes([n]) * size


def test_a_miss_then_a_hit() -> None:
    cache = UploadCache(100)
    assert cache.get(3) is None and 3 not in cache
    cache.put(3, piece(3))
    assert 3 in cache
    assert cache.get(3) == piece(3)
    assert cache.bytes_used == 10 and len(cache) == 1


def test_the_least_recently_used_piece_leaves_first() -> None:
    cache = UploadCache(30)
    for i in (0, 1, 2):
        cache.put(i, piece(i))
    assert cache.get(0) == piece(0)  # 0 is now the most recently used; 1 the least
    cache.put(3, piece(3))
    assert cache.cached_indices() == [2, 0, 3]
    assert cache.bytes_used == 30


def test_contains_is_not_a_use() -> None:
    cache = UploadCache(20)
    cache.put(0, piece(0))
    cache.put(1, piece(1))
    assert 0 in cache
    cache.put(2, piece(2))
    assert cache.cached_indices() == [1, 2]


def test_a_piece_larger_than_the_cache_stays_alone() -> None:
    cache = UploadCache(15)
    cache.put(0, piece(0))
    cache.put(1, piece(1, 40))
    assert cache.cached_indices() == [1]
    assert cache.bytes_used == 40
    cache.put(2, piece(2))  # and leaves when the next piece comes
    assert cache.cached_indices() == [2]


def test_putting_a_cached_piece_again_counts_its_bytes_once() -> None:
    """Two uploads that missed at once both read the piece and both put it."""
    cache = UploadCache(100)
    cache.put(5, piece(5))
    cache.put(6, piece(6))
    cache.put(5, piece(5))
    assert cache.bytes_used == 20
    assert cache.cached_indices() == [6, 5]


def test_discard() -> None:
    cache = UploadCache(100)
    cache.put(1, piece(1))
    cache.discard(1)
    cache.discard(2)
    assert len(cache) == 0 and cache.bytes_used == 0


def test_a_negative_size_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        UploadCache(-1)


@given(
    limit=st.integers(0, 100),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 9), st.integers(1, 40)), max_size=60),
)
def test_bounded_and_exact(limit: int, ops: list[tuple[bool, int, int]]) -> None:
    """Invariant: bytes_used is the sum of the cached pieces, and stays within the limit
    unless one piece alone is larger; the piece just put is always cached."""
    cache = UploadCache(limit)
    for is_put, index, size in ops:
        if is_put:
            cache.put(index, piece(index, size))
            assert index in cache
            assert cache.cached_indices()[-1] == index
        else:
            got = cache.get(index)
            assert got is None or got[:1] == bytes([index])
        used = sum(len(cache.get(i) or b"") for i in cache.cached_indices())
        assert cache.bytes_used == used
        assert used <= limit or len(cache) == 1
