"""The napster-index JSON API, both directions (pure): hostile bodies, round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.discovery.base import SearchHit
from torrentkit.discovery.napster import protocol
from torrentkit.discovery.napster.index import (
    IndexRequestError,
    MatchKind,
    SearchQuery,
    SearchResult,
    SharedFile,
)
from torrentkit.discovery.napster.protocol import IndexResponseError
from torrentkit.ids import InfoHash, PeerAddr

HEX = "ab" * 20
TOKEN = "0123456789abcdef0123456789abcdef"


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def good_file(**over: object) -> dict[str, object]:
    f: dict[str, object] = {"name": "a.mp3", "size": 3, "info_hash": HEX, "private": False}
    f.update(over)
    return f


def test_publish_parses() -> None:
    token, files, remove, replace = protocol.parse_publish(
        body({"session": TOKEN, "files": [good_file()], "remove": ["cd" * 20], "replace": True}),
        max_files=10,
    )
    assert token == TOKEN and replace
    assert files == [SharedFile(name="a.mp3", size=3, info_hash=InfoHash(bytes.fromhex(HEX)))]
    assert remove == [InfoHash(b"\xcd" * 20)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "body is not JSON"),
        (b"{", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not JSON"),
        (b"[]", "must be a JSON object"),
        (b'"x"', "must be a JSON object"),
        (body({"files": []}), "session: missing"),
        (body({"session": "x" * 65, "files": []}), "session: missing or malformed"),
        (body({"session": "../../etc", "files": []}), "session: missing or malformed"),
        (body({"session": TOKEN, "files": {}}), "files: must be a list"),
        (body({"session": TOKEN, "files": [], "replace": 1}), "replace: must be true or false"),
        (body({"session": TOKEN, "files": [], "extra": 1}), "body: unknown field 'extra'"),
        (body({"session": TOKEN, "files": [7]}), r"files\[0\]: must be an object"),
        (body({"session": TOKEN, "files": [good_file(privat=True)]}), "unknown field 'privat'"),
        (
            body({"session": TOKEN, "files": [{"name": "a", "size": 1, "info_hash": HEX}]}),
            r"files\[0\].private: required",
        ),
        (body({"session": TOKEN, "files": [good_file(private="no")]}), "private: required"),
        (body({"session": TOKEN, "files": [good_file(name=5)]}), "name: must be a string"),
        (body({"session": TOKEN, "files": [good_file(size=True)]}), "size: must be an integer"),
        (body({"session": TOKEN, "files": [good_file(size=1.5)]}), "size: must be an integer"),
        (body({"session": TOKEN, "files": [good_file(size=-1)]}), "size: must be an integer"),
        (body({"session": TOKEN, "files": [good_file(size=2**63)]}), "size: must be an integer"),
        (b'{"session": "%s", "files": [{"size": 1e999}]}' % TOKEN.encode(), "name"),
        (body({"session": TOKEN, "files": [good_file(info_hash="ab" * 19)]}), "40 hex"),
        (body({"session": TOKEN, "files": [good_file(info_hash=" " + "a" * 39)]}), "40 hex"),
        (body({"session": TOKEN, "files": [good_file(info_hash="é" * 40)]}), "40 hex"),
        (body({"session": TOKEN, "files": [], "remove": ["zz"]}), r"remove\[0\]: must be 40 hex"),
        (body({"session": TOKEN, "files": [good_file()] * 11}), "too many files in one request"),
    ],
)
def test_hostile_publish_bodies_get_one_line_400s(raw: bytes, message: str) -> None:
    with pytest.raises(IndexRequestError, match=message) as info:
        protocol.parse_publish(raw, max_files=10)
    assert info.value.status in (400, 413)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_huge_integers_and_numbers_are_refused() -> None:
    digits = b'{"port": ' + b"9" * 100_000 + b"}"
    with pytest.raises(IndexRequestError, match="not JSON"):
        protocol.parse_join(digits)
    for port in (0, 65536, 6881.0, "6881", None, True):
        with pytest.raises(IndexRequestError, match="port: must be an integer 1-65535"):
            protocol.parse_join(body({"port": port}))
    assert protocol.parse_join(body({"port": 6881})) == 6881


def test_search_parses_and_refuses() -> None:
    q = protocol.parse_search(
        [
            ("q", "Pink  Floyd"),
            ("match", "regex"),
            ("case_sensitive", "1"),
            ("ext", ".MP3"),
            ("min_size", "10"),
            ("max_size", "20"),
            ("limit", "5"),
            ("info_hash", HEX),
        ]
    )
    assert q == SearchQuery(
        text="Pink  Floyd",
        match=MatchKind.REGEX,
        case_sensitive=True,
        ext="mp3",
        min_size=10,
        max_size=20,
        limit=5,
        info_hash=InfoHash(bytes.fromhex(HEX)),
    )
    for params, message in [
        ([("q", "a"), ("q", "b")], "given twice"),
        ([("q", "a"), ("min-size", "1")], "unknown search parameter 'min-size'"),
        ([("q", "a"), ("match", "fuzzy")], "match: must be word, substring or regex"),
        ([("q", "a"), ("case_sensitive", "yes")], "case_sensitive: must be 0 or 1"),
        ([("min_size", "-1")], "min_size: must be an integer"),
        ([("min_size", "1e3")], "min_size: must be an integer"),
        ([("min_size", "٣")], "min_size: must be an integer"),  # a non-ASCII digit
        ([("max_size", "9" * 5000)], "max_size: must be an integer"),
        ([("limit", "0"), ("q", "a")], "limit: must be at least 1"),
        ([("info_hash", "xyz")], "info_hash: must be 40 hex"),
        ([("ext", "m p3")], "ext:"),
        ([], "empty query"),
        ([("q", "")], "empty query"),
    ]:
        with pytest.raises(IndexRequestError, match=message):
            protocol.parse_search(params)


_queries = st.builds(
    SearchQuery,
    text=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30),
    match=st.sampled_from(MatchKind),
    case_sensitive=st.booleans(),
    min_size=st.none() | st.integers(0, 10),
    max_size=st.none() | st.integers(10, 2**63 - 1),
    ext=st.none() | st.from_regex(r"[0-9a-z]{1,16}", fullmatch=True),
    info_hash=st.none() | st.binary(min_size=20, max_size=20).map(InfoHash),
    limit=st.none() | st.integers(1, 500),
)


@given(_queries)
def test_search_params_round_trip(query: SearchQuery) -> None:
    assert protocol.parse_search(protocol.search_params(query).items()) == query


def test_search_reply_round_trip_and_escaping() -> None:
    hit = SearchHit(
        name="Fête <b>\u202e.mp3",
        size=5,
        info_hash=InfoHash(b"\x01" * 20),
        peers=(PeerAddr("127.0.0.1", 1), PeerAddr("::1", 2)),
    )
    raw = protocol.search_reply(SearchResult(hits=(hit,), truncated=True), took_ms=1.23456)
    assert raw.isascii() and b"\\u202e" in raw  # every non-ASCII character escaped
    result, took = protocol.parse_search_reply(raw)
    assert result == SearchResult(hits=(hit,), truncated=True) and took == 1.235
    assert b'"[::1]:2"' in raw


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"hits": {}, "truncated": false, "took_ms": 1}',
        b'{"hits": [], "truncated": 0, "took_ms": 1}',
        b'{"hits": [], "truncated": false}',
        b'{"hits": [1], "truncated": false, "took_ms": 1}',
        b'{"hits": [{"name": "a\\u001b[2J", "size": 1, "info_hash": "%s", "peers": []}],'
        b' "truncated": false, "took_ms": 1}' % HEX.encode(),
        b'{"hits": [{"name": "a", "size": -1, "info_hash": "%s", "peers": []}],'
        b' "truncated": false, "took_ms": 1}' % HEX.encode(),
        b'{"hits": [{"name": "a", "size": 1, "info_hash": "%s", "peers": ["x"]}],'
        b' "truncated": false, "took_ms": 1}' % HEX.encode(),
        b'{"hits": [{"name": "a", "size": 1, "info_hash": "%s", "peers": [5]}],'
        b' "truncated": false, "took_ms": 1}' % HEX.encode(),
        b'{"hits": [{"name": "a", "size": 1, "info_hash": "x", "peers": []}],'
        b' "truncated": false, "took_ms": 1}',
    ],
)
def test_malformed_search_replies_are_refused(raw: bytes) -> None:
    with pytest.raises(IndexResponseError):
        protocol.parse_search_reply(raw)


def test_other_replies() -> None:
    assert protocol.parse_join_reply(
        b'{"session": "%s", "peer": "127.0.0.1:6881", "ttl": 120}' % TOKEN.encode()
    ) == (TOKEN, PeerAddr("127.0.0.1", 6881), 120.0)
    for raw in [
        b'{"session": "a b", "peer": "127.0.0.1:6881", "ttl": 120}',
        b'{"session": "ab", "peer": "nowhere", "ttl": 120}',
        b'{"session": "ab", "peer": "127.0.0.1:1", "ttl": -1}',
        b'{"session": "ab", "peer": "127.0.0.1:1", "ttl": true}',
    ]:
        with pytest.raises(IndexResponseError):
            protocol.parse_join_reply(raw)
    assert protocol.parse_publish_reply(b'{"added":1,"removed":0,"total":1,"ttl":9}') == (
        1,
        0,
        1,
        9.0,
    )
    assert protocol.parse_error(b'{"error": "a\\nb"}') == "a b"
    assert protocol.parse_error(b"<html>") is None
    assert protocol.error_body("x" * 1000).count(b"x") == 300
