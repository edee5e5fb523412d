"""The dashboard's key parser, fed bytes as a terminal in cbreak mode sends them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.ui.live import Key, KeyParser, KeyPress, apply_key

CASES: list[tuple[bytes, list[KeyPress]]] = [
    (b"q", [Key.QUIT]),
    (b"Q", [Key.QUIT]),
    (b"\x1b[C", [Key.RIGHT]),
    (b"\x1b[D", [Key.LEFT]),
    (b"\x1bOC", [Key.RIGHT]),  # application cursor mode
    (b"\x1bOD", [Key.LEFT]),
    (b"1", [0]),
    (b"9", [8]),
    (b"0", []),
    (b"l\th", [Key.RIGHT, Key.RIGHT, Key.LEFT]),
    (b"\x1b[C\x1b[C3\x1b[Dq", [Key.RIGHT, Key.RIGHT, 2, Key.LEFT, Key.QUIT]),
    # unknown sequences are skipped whole: their bytes are not read as keys
    (b"\x1b[1;5C", []),  # ctrl+right
    (b"\x1b[15~2", [1]),  # F5, then "2"
    (b"\x1b[A\x1b[B", []),  # up, down
    (b"\x1bOP", []),  # F1
    (b"\x1bq", [Key.QUIT]),  # a lone ESC, then q
    (b"x y\n", []),
]


def feed_whole(data: bytes) -> list[KeyPress]:
    return KeyParser().feed(data)


def feed_bytewise(data: bytes) -> list[KeyPress]:
    parser = KeyParser()
    out: list[KeyPress] = []
    for i in range(len(data)):
        out += parser.feed(data[i : i + 1])
    return out


@pytest.mark.parametrize(("data", "keys"), CASES)
def test_keys_whole_and_one_byte_at_a_time(data: bytes, keys: list[KeyPress]) -> None:
    assert feed_whole(data) == keys
    assert feed_bytewise(data) == keys


@pytest.mark.parametrize(("data", "keys"), CASES)
def test_keys_with_trailing_data(data: bytes, keys: list[KeyPress]) -> None:
    parser = KeyParser()
    assert parser.feed(data + b"\x1b[") == keys  # an unfinished sequence waits...
    assert parser.feed(b"D5") == [Key.LEFT, 4]  # ...for the rest


def test_an_unfinished_sequence_is_not_buffered_forever() -> None:
    parser = KeyParser()
    assert parser.feed(b"\x1b[" + b"1;" * 50) == []
    assert parser.feed(b"q") == [Key.QUIT]


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_any_bytes_give_keys_never_an_error(chunks: list[bytes]) -> None:
    parser = KeyParser()
    for chunk in chunks:
        for key in parser.feed(chunk):
            assert isinstance(key, Key) or 0 <= key <= 8
    assert len(parser._pending) <= KeyParser.MAX_SEQUENCE


def test_apply_key_wraps_and_ignores_missing_digits() -> None:
    assert apply_key(0, 3, Key.RIGHT) == 1
    assert apply_key(2, 3, Key.RIGHT) == 0
    assert apply_key(0, 3, Key.LEFT) == 2
    assert apply_key(0, 3, 2) == 2
    assert apply_key(1, 3, 5) == 1  # there is no node 6
    assert apply_key(5, 3, Key.QUIT) == 2  # clamped when the list shrank
    assert apply_key(0, 0, Key.RIGHT) == 0
