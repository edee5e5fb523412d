"""Piece <-> file mapping, with exact numbers (piece length 10 keeps them readable)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.engine.helpers_storage import build, build_single
from torrentkit.engine.layout import Layout, Span
from torrentkit.errors import LocalProtocolError


def S(file_index: int, offset: int, length: int, pad: bool = False) -> Span:
    return Span(file_index=file_index, offset=offset, length=length, pad=pad)


@pytest.fixture
def multi() -> Layout:
    # payload: a[0:7] | b (empty) | c[0:15] | d[0:3]  -> 25 bytes, pieces of 10, 10, 5
    info, _ = build(
        [("a", b"A" * 7), ("b", b""), ("c", b"C" * 15), ("d", b"D" * 3)], piece_length=10
    )
    return Layout.from_info(info)


def test_pieces_spanning_files(multi: Layout) -> None:
    assert multi.num_pieces == 3
    assert multi.piece_spans(0) == [S(0, 0, 7), S(2, 0, 3)]
    assert multi.piece_spans(1) == [S(2, 3, 10)]
    assert multi.piece_spans(2) == [S(2, 13, 2), S(3, 0, 3)]


def test_last_piece_is_short(multi: Layout) -> None:
    assert multi.piece_size(2) == 5
    assert multi.piece_spans(2, 1, 4) == [S(2, 14, 1), S(3, 0, 3)]
    with pytest.raises(LocalProtocolError, match="outside its 5 bytes"):
        multi.piece_spans(2, 0, 6)


def test_blocks_inside_pieces(multi: Layout) -> None:
    assert multi.piece_spans(0, 6, 2) == [S(0, 6, 1), S(2, 0, 1)]
    assert multi.piece_spans(1, 5, 5) == [S(2, 8, 5)]
    assert multi.piece_spans(0, 3, 0) == []


def test_zero_length_file_touches_no_piece(multi: Layout) -> None:
    assert multi.file_pieces(0) == range(0, 1)
    assert multi.file_pieces(1) == range(0)
    assert multi.file_pieces(2) == range(0, 3)
    assert multi.file_pieces(3) == range(2, 3)
    assert multi.piece_files(0) == [0, 2]
    assert multi.piece_files(2) == [2, 3]


def test_zero_length_files_at_both_ends_and_in_a_row() -> None:
    info, _ = build(
        [("z1", b""), ("a", b"x" * 10), ("z2", b""), ("z3", b""), ("b", b"y" * 10), ("z4", b"")],
        piece_length=10,
    )
    layout = Layout.from_info(info)
    assert layout.piece_spans(0) == [S(1, 0, 10)]
    assert layout.piece_spans(1) == [S(4, 0, 10)]
    assert layout.spans(5, 10) == [S(1, 5, 5), S(4, 0, 5)]
    assert [layout.file_pieces(i) for i in range(6)] == [
        range(0), range(0, 1), range(0), range(0), range(1, 2), range(0)
    ]  # fmt: skip


def test_pad_files_are_mapped_and_flagged() -> None:
    # a: 6 bytes, pad: 4 bytes (aligns b to a piece boundary), b: 12 bytes -> 22 bytes
    info, payload = build([("a", b"a" * 6), ("pad", 4), ("b", b"b" * 12)], piece_length=10)
    layout = Layout.from_info(info)
    assert info.files[1].pad and info.files[1].path == ("album", ".pad", "1")
    assert payload[6:10] == bytes(4)
    assert layout.piece_spans(0) == [S(0, 0, 6), S(1, 0, 4, pad=True)]
    assert layout.piece_spans(1) == [S(2, 0, 10)]
    assert layout.piece_spans(2) == [S(2, 10, 2)]
    assert layout.file_pieces(1) == range(0, 1)
    assert layout.file_pieces(2) == range(1, 3)


def test_single_file() -> None:
    layout = Layout.from_info(build_single(b"m" * 35, piece_length=16))
    assert layout.num_pieces == 3
    assert layout.piece_spans(2) == [S(0, 32, 3)]
    assert layout.file_pieces(0) == range(0, 3)


def test_out_of_range_is_our_bug(multi: Layout) -> None:
    for call in (
        lambda: multi.piece_spans(3),
        lambda: multi.piece_spans(-1),
        lambda: multi.piece_spans(0, -1, 2),
        lambda: multi.piece_spans(0, 9, 2),
        lambda: multi.spans(20, 6),
    ):
        with pytest.raises(LocalProtocolError):
            call()


@given(
    lengths=st.lists(st.integers(0, 50), min_size=1, max_size=8).filter(lambda ls: sum(ls) > 0),
    piece_length=st.integers(1, 40),
)
def test_spans_cover_every_file_exactly_once(lengths: list[int], piece_length: int) -> None:
    """Invariant: walking all pieces yields each file's bytes once, in order, contiguous;
    and file_pieces names exactly the pieces whose spans mention the file."""
    info, _ = build([(f"f{i}", b"x" * n) for i, n in enumerate(lengths)], piece_length)
    layout = Layout.from_info(info)
    next_offset = [0] * len(lengths)
    touched: dict[int, set[int]] = {i: set() for i in range(len(lengths))}
    for p in range(layout.num_pieces):
        spans = layout.piece_spans(p)
        assert sum(s.length for s in spans) == layout.piece_size(p)
        for s in spans:
            assert s.length > 0
            assert s.offset == next_offset[s.file_index]
            next_offset[s.file_index] += s.length
            touched[s.file_index].add(p)
    assert next_offset == lengths
    for i in range(len(lengths)):
        assert set(layout.file_pieces(i)) == touched[i]
