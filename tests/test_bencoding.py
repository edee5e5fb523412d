"""Strict, bounded bencode: exact bytes, every bad input of docs/limits.md, spans, limits.

Fuzz invariant (stated once, tested below): any byte string either decodes to a value or
raises BencodeError; nothing else (no RecursionError, no ValueError, no MemoryError).
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit import bencoding
from torrentkit.bencoding import (
    DATAGRAM_LIMITS,
    Limits,
    Raw,
    decode,
    decode_prefix,
    decode_with_spans,
    encode,
)
from torrentkit.errors import BencodeError, RemoteProtocolError
from torrentkit.ids import InfoHash

# ----------------------------------------------------------------------------- exact bytes

EXACT: list[tuple[Any, bytes]] = [
    # BEP 3's own examples
    (b"spam", b"4:spam"),
    (3, b"i3e"),
    (-3, b"i-3e"),
    (0, b"i0e"),
    ([b"spam", b"eggs"], b"l4:spam4:eggse"),
    ({b"cow": b"moo", b"spam": b"eggs"}, b"d3:cow3:moo4:spam4:eggse"),
    ({b"spam": [b"a", b"b"]}, b"d4:spaml1:a1:bee"),
    # edges
    (b"", b"0:"),
    ([], b"le"),
    ({}, b"de"),
    (2**63 - 1, b"i9223372036854775807e"),
    (-(2**63), b"i-9223372036854775808e"),
    (b"\x00\xff:e", b"4:\x00\xff:e"),
    ([[[]], {}], b"llleedee"),
    ({b"": b""}, b"d0:0:e"),
]


@pytest.mark.parametrize(("value", "data"), EXACT)
def test_exact_bytes_both_ways(value: Any, data: bytes) -> None:
    assert encode(value) == data
    assert decode(data) == value


def test_keys_are_sorted_as_raw_bytes() -> None:
    # Sorted by the raw bytes, not by text: "Z" (0x5a) < "a" (0x61) < "é" (0xc3 0xa9).
    assert encode({"é": 1, "a": 2, "Z": 3, b"b": 4}) == b"d1:Zi3e1:ai2e1:bi4e2:\xc3\xa9i1ee"


def test_text_is_utf8_and_tuples_are_lists() -> None:
    assert encode("été") == b"5:\xc3\xa9t\xc3\xa9"
    assert encode((1, "a")) == b"li1e1:ae"


def test_subclasses_encode_as_their_base_type() -> None:
    # bencode.py looks types up exactly; an InfoHash (a bytes subclass) must still encode.
    ih = InfoHash(bytes(range(20)))
    assert encode({"info_hash": ih}) == b"d9:info_hash20:" + bytes(range(20)) + b"e"
    assert encode(bytearray(b"ab")) == b"2:ab"


def test_raw_is_embedded_verbatim_even_when_not_canonical() -> None:
    # Raw is how a torrent keeps its info dict byte for byte (e.g. with unsorted keys).
    unsorted = b"d1:bi1e1:ai2ee"
    assert encode({"info": Raw(unsorted)}) == b"d4:info" + unsorted + b"e"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, TypeError),
        (1.5, TypeError),
        (None, TypeError),
        ({1: 2}, TypeError),
        ([{"a": [False]}], TypeError),
        (2**63, ValueError),
        (-(2**63) - 1, ValueError),
        ({"k": 1, b"k": 2}, ValueError),  # would be a duplicate key on the wire
    ],
)
def test_encode_refuses_what_decode_would_refuse(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode(value)


def test_unsorted_keys_decode() -> None:
    # Real torrents exist with unsorted info dicts; they must load (and hash as they stand).
    assert decode(b"d1:bi1e1:ai2ee") == {b"a": 2, b"b": 1}


# ----------------------------------------------------------------------------- bad input

LIMITS_DOC_BAD = [
    pytest.param(b"l" * 100_000, id="l*100000"),
    pytest.param(b"d" * 100_000, id="d*100000"),
    pytest.param(b"l", id="truncated-l"),
    pytest.param(b"5:ab", id="truncated-5:ab"),
    pytest.param(b"i12", id="truncated-i12"),
    pytest.param(b"i03e", id="i03e"),
    pytest.param(b"i-0e", id="i-0e"),
    pytest.param(b"05:hello", id="05:hello"),
    pytest.param(b"i" + b"9" * 10_000 + b"e", id="10000-digit-int"),
    pytest.param(b"i-" + b"1" * 10_000 + b"e", id="10000-digit-negative-int"),
]

MORE_BAD = [
    b"",
    b"e",
    b"x",
    b"ie",
    b"i-e",
    b"i+5e",
    b"i 5e",
    b"i5 e",
    b"i1_0e",  # int() would take these three; bencode does not
    b"i1.5e",
    b"i00e",
    b"i9223372036854775808e",  # 2^63
    b"i-9223372036854775809e",
    b"-1:a",
    b"1:",
    b"99999999999:a",  # an 11-digit length prefix
    b"4294967296:a",  # a 4 GiB claim on a 1-byte input: no allocation
    b"d",
    b"di1ei2ee",  # integer key
    b"dlei1ee",  # list key
    b"d1:ae",  # key without value
    b"d1:ai1e1:ai2ee",  # duplicate key
    b"l1:ae1:b",  # trailing data
    b"i1ei2e",
    b"lee",
    b"de1",
    b"4:spa",
    b"l" * 101 + b"e" * 101,  # one past the depth limit
]


@pytest.mark.parametrize("data", LIMITS_DOC_BAD)
def test_hardening_bad_input_is_a_bencode_error(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(data)


@pytest.mark.parametrize("data", MORE_BAD, ids=repr)
def test_more_bad_input_is_a_bencode_error(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(data)


def test_bencode_error_is_a_remote_protocol_error() -> None:
    # So a driver catches one type for anything a peer or a file got wrong.
    assert issubclass(BencodeError, RemoteProtocolError)


@pytest.mark.parametrize(
    "data",
    [b"l" * 100_000, b"d1:a" * 100_000, b"i" + b"9" * 10_000 + b"e", b"4294967296:a"],
    ids=["l*100000", "d1:a*100000", "10000-digit-int", "4GiB-claim"],
)
def test_hostile_input_costs_little_memory(data: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(BencodeError):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"peak {peak} bytes"


def test_errors_say_where_the_bad_value_is() -> None:
    data = b"d4:infod5:filesld6:lengthi1eed6:lengthi9223372036854775808eeeee"
    with pytest.raises(BencodeError, match=r"out of range .* in info\.files\[1\]\.length$"):
        decode(data)
    with pytest.raises(BencodeError, match=r"malformed integer at offset 0$"):
        decode(b"i03e")
    with pytest.raises(BencodeError, match=r"in \[2\]$"):
        decode(b"li1ei2ei-0ee")


# ----------------------------------------------------------------------------- spans


def test_spans_are_the_raw_bytes_of_each_top_level_value() -> None:
    info = b"d1:bi1e1:ai2ee"  # unsorted: must come back exactly as written
    data = b"d8:announce3:url4:info" + info + b"5:zlistli1eli2eeee"
    value, spans = decode_with_spans(data)
    assert value[b"announce"] == b"url"
    assert {k: data[s:e] for k, (s, e) in spans.items()} == {
        b"announce": b"3:url",
        b"info": info,
        b"zlist": b"li1eli2eee",
    }


def test_spans_of_a_non_dict_are_empty() -> None:
    assert decode_with_spans(b"li1ee") == ([1], {})


def test_decode_prefix_stops_at_the_end_of_the_value() -> None:
    # BEP 9 ut_metadata: a bencoded header followed by raw piece bytes.
    data = b"d8:msg_typei1e5:piecei0eeRAW BYTES"
    value, end = decode_prefix(data)
    assert value == {b"msg_type": 1, b"piece": 0}
    assert data[end:] == b"RAW BYTES"


def test_decode_rejects_trailing_data_but_prefix_allows_it() -> None:
    with pytest.raises(BencodeError, match="trailing"):
        decode(b"i1eX")
    assert decode_prefix(b"i1eX") == (1, 3)


# ----------------------------------------------------------------------------- limits


def nested(depth: int) -> bytes:
    return b"l" * depth + b"e" * depth


def test_depth_limit_is_exact() -> None:
    limits = Limits(max_depth=5)
    assert decode(nested(5), limits) == [[[[[]]]]]
    with pytest.raises(BencodeError, match="deeper than 5"):
        decode(nested(6), limits)


def test_token_limit_is_exact() -> None:
    # Every value and every closing 'e' is a token: "l" + 3 ints + "e" is 5.
    data = b"li1ei2ei3ee"
    assert decode(data, Limits(max_tokens=5)) == [1, 2, 3]
    with pytest.raises(BencodeError, match="more than 4 tokens"):
        decode(data, Limits(max_tokens=4))


def test_size_limit() -> None:
    assert decode(b"4:spam", Limits(max_size=6)) == b"spam"
    with pytest.raises(BencodeError, match="exceeds"):
        decode(b"4:spam", Limits(max_size=5))


def test_datagram_limits() -> None:
    assert DATAGRAM_LIMITS.max_size == 1500 and DATAGRAM_LIMITS.max_depth == 10
    assert decode(nested(10), DATAGRAM_LIMITS) is not None
    for bad in (nested(11), b"l" + b"i1e" * 500 + b"e", b"1500:" + b"x" * 1500):
        with pytest.raises(BencodeError):
            decode(bad, DATAGRAM_LIMITS)


def test_torrent_limits_allow_a_big_real_torrent_shape() -> None:
    # 10,000 files, each a dict with a path list: well inside the torrent limits.
    files = [{"length": i, "path": ["dir", f"f{i}"]} for i in range(10_000)]
    data = encode({"files": files})
    assert len(decode(data, bencoding.TORRENT_LIMITS)[b"files"]) == 10_000


# ----------------------------------------------------------------------------- properties

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
values = st.recursive(
    int64 | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.binary(max_size=10), children, max_size=6)
    ),
    max_leaves=40,
)


@given(values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data  # canonical: one encoding per value


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_value_or_bencode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except BencodeError:
        return
    assert decode(encode(value)) == value


# Bytes built from bencode's own tokens reach far deeper into the grammar than random bytes.
tokens = st.lists(
    st.sampled_from(
        [b"i", b"e", b"l", b"d", b"0", b"1", b"9", b"-", b":", b"1:a", b"2:ab", b"i0e", b"i-1e",
         b"3:", b"x", b"00", b"le", b"de"]
    ),
    max_size=60,
).map(b"".join)  # fmt: skip


@settings(max_examples=500)
@given(tokens)
def test_token_soup_gives_a_value_or_bencode_error(data: bytes) -> None:
    try:
        value = decode(data, Limits(max_depth=8, max_tokens=40))
    except BencodeError:
        return
    assert decode(encode(value)) == value


@given(values, st.binary(min_size=1, max_size=20))
def test_prefix_and_spans_agree_with_decode(value: Any, tail: bytes) -> None:
    data = encode(value)
    assert decode_prefix(data + tail) == (value, len(data))
    if isinstance(value, dict):
        _, spans = decode_with_spans(data)
        assert {k: decode(data[s:e]) for k, (s, e) in spans.items()} == value
