"""The Napster index core (pure; time is passed in as ``now``)."""

from __future__ import annotations

import hashlib
import itertools
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit.discovery.napster.index import (
    IndexConfig,
    IndexRequestError,
    MatchKind,
    NapsterIndex,
    RateLimiter,
    SearchQuery,
    SharedFile,
    name_ext,
    name_words,
)
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import InfoHash, PeerAddr

LOOP = "127.0.0.1"
WORD, SUBSTRING, REGEX = MatchKind.WORD, MatchKind.SUBSTRING, MatchKind.REGEX


def ih(n: int | str) -> InfoHash:
    return InfoHash(hashlib.sha1(str(n).encode()).digest())


def sf(
    name: str, size: int = 1000, n: int | str | None = None, private: bool = False
) -> SharedFile:
    return SharedFile(name=name, size=size, info_hash=ih(name if n is None else n), private=private)


def new_index(**config: object) -> NapsterIndex:
    counter = itertools.count()
    return NapsterIndex(
        IndexConfig(**config),  # type: ignore[arg-type]
        token_factory=lambda: f"t{next(counter)}",
    )


def names(index: NapsterIndex, now: float = 1.0, **query: object) -> list[str]:
    result = index.search(SearchQuery(**query), now=now)  # type: ignore[arg-type]
    return [h.name for h in result.hits]


LIBRARY = [
    "Pink Floyd - Echoes.flac",
    "Pink_Floyd-Time.MP3",
    "echoes of the past.mp3",
    "Beatles - Help!.mp3",
    "debian-12.5.0-amd64-netinst.iso",
    "Fête de la musique.ogg",
]


@pytest.fixture
def library() -> NapsterIndex:
    index = new_index()
    s = index.join(ip=LOOP, port=6881, now=0)
    index.publish(s.token, [sf(n, size=(i + 1) * 1000) for i, n in enumerate(LIBRARY)], now=0)
    return index


def test_words_and_extension() -> None:
    assert name_words("Pink_Floyd-Echoes.MP3") == ["pink", "floyd", "echoes", "mp3"]
    assert name_words("Fête 2024 (live)") == ["fête", "2024", "live"]
    assert name_ext("a.Tar.GZ") == "gz"
    assert name_ext("README") == ""
    assert name_ext("weird.ext with space") == ""


def test_whole_word_search_needs_every_word_as_a_whole_word(library: NapsterIndex) -> None:
    assert names(library, text="echoes") == [LIBRARY[0], LIBRARY[2]]
    assert names(library, text="ECHOES floyd") == [LIBRARY[0]]
    assert names(library, text="echo") == []  # not a whole word
    assert names(library, text="floyd time") == [LIBRARY[1]]  # "_" and "-" separate words
    assert names(library, text="fête") == [LIBRARY[5]]
    assert names(library, text="mp3") == [LIBRARY[1], LIBRARY[2], LIBRARY[3]]
    with pytest.raises(IndexRequestError, match="no words"):
        names(library, text="!!! ---")


def test_substring_search(library: NapsterIndex) -> None:
    assert names(library, text="echo", match=SUBSTRING) == [LIBRARY[0], LIBRARY[2]]
    assert names(library, text="OYD - ", match=SUBSTRING) == [LIBRARY[0]]
    assert names(library, text="Echo", match=SUBSTRING, case_sensitive=True) == [LIBRARY[0]]
    assert names(library, text="FÊTE", match=SUBSTRING) == [LIBRARY[5]]
    # Regex metacharacters are literal in a substring search.
    assert names(library, text="help!", match=SUBSTRING) == [LIBRARY[3]]
    assert names(library, text=".*", match=SUBSTRING) == []


def test_regex_search(library: NapsterIndex) -> None:
    assert names(library, text=r"^pink.*\.(flac|mp3)$", match=REGEX) == LIBRARY[:2]
    assert names(library, text=r"\d+\.\d+\.\d+", match=REGEX) == [LIBRARY[4]]
    assert names(library, text=r"^Echoes", match=REGEX, case_sensitive=True) == []
    assert names(library, text=r"^echoes", match=REGEX) == [LIBRARY[2]]
    assert names(library, text=r"f\x{ea}te", match=REGEX) == [LIBRARY[5]]
    # A match never spans two names: the newline between them is out of reach.
    assert names(library, text=r"flac\s+pink", match=REGEX) == []
    assert names(library, text=r"flac[^x]*pink", match=REGEX) == []
    assert names(library, text=r"(?s)flac.pink", match=REGEX) == []


def test_attribute_filters(library: NapsterIndex) -> None:
    assert names(library, ext="mp3") == [LIBRARY[1], LIBRARY[2], LIBRARY[3]]
    assert names(library, ext="mp3", min_size=3000) == [LIBRARY[2], LIBRARY[3]]
    assert names(library, min_size=2000, max_size=3000) == [LIBRARY[1], LIBRARY[2]]
    assert names(library, text="pink", max_size=1000) == [LIBRARY[0]]
    assert names(library, text="e", match=SUBSTRING, ext="iso") == [LIBRARY[4]]
    assert names(library, info_hash=ih(LIBRARY[3])) == [LIBRARY[3]]
    assert names(library, text="pink", info_hash=ih(LIBRARY[3])) == []
    assert names(library, ext="flac", text=r"^Pink", match=REGEX) == [LIBRARY[0]]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "empty query"),
        ({"min_size": 5, "max_size": 4}, "min_size is larger"),
        ({"ext": ".mp3"}, "ext:"),
        ({"ext": "x" * 17}, "ext:"),
        ({"text": "a\nb"}, "control characters"),
        ({"min_size": -1}, "min_size"),
        ({"limit": 0}, "limit"),
        ({"text": "x", "match": "word"}, "match"),
    ],
)
def test_malformed_queries_are_refused(query: dict[str, object], message: str) -> None:
    with pytest.raises(IndexRequestError, match=message) as info:
        SearchQuery(**query)  # type: ignore[arg-type]
    assert info.value.status == 400


def test_one_hit_per_file_with_every_peer_that_shares_it() -> None:
    index = new_index(max_peers_per_hit=2)
    tokens = [index.join(ip=f"10.0.0.{n}", port=6881, now=0).token for n in range(4)]
    for token in tokens[:3]:
        index.publish(token, [sf("Shared.mp3", n=1)], now=0)
    # Same info-hash, another name: its own hit (names are what a peer claims).
    index.publish(tokens[3], [sf("Renamed.mp3", n=1)], now=0)
    hits = index.search(SearchQuery(ext="mp3"), now=1).hits
    assert [(h.name, h.peers) for h in hits] == [
        ("Shared.mp3", (PeerAddr("10.0.0.0", 6881), PeerAddr("10.0.0.1", 6881))),  # capped at 2
        ("Renamed.mp3", (PeerAddr("10.0.0.3", 6881),)),
    ]
    assert index.stats().info_hashes == 1


def test_limit_and_truncation() -> None:
    index = new_index(max_limit=5, default_limit=3)
    s = index.join(ip=LOOP, port=1, now=0)
    index.publish(s.token, [sf(f"song {n}.mp3") for n in range(10)], now=0)
    result = index.search(SearchQuery(text="song"), now=1)
    assert [h.name for h in result.hits] == ["song 0.mp3", "song 1.mp3", "song 2.mp3"]
    assert result.truncated
    assert len(index.search(SearchQuery(text="song", limit=100), now=1).hits) == 5
    assert not index.search(SearchQuery(text="9", limit=5), now=1).truncated


def test_entries_expire_without_refresh() -> None:
    index = new_index(ttl=10)
    a = index.join(ip=LOOP, port=1, now=0)
    b = index.join(ip=LOOP, port=2, now=0)
    index.publish(a.token, [sf("a.mp3")], now=0)
    index.publish(b.token, [sf("b.mp3")], now=5)  # publish refreshes: b lives until 15
    assert names(index, now=9.9, ext="mp3") == ["a.mp3", "b.mp3"]
    # Gone from search the moment the TTL passes, even before expire() runs.
    assert names(index, now=10, ext="mp3") == ["b.mp3"]
    assert index.refresh(b.token, now=12) == 22
    assert index.expire(now=12) == 1
    assert index.stats().sessions == 1
    with pytest.raises(IndexRequestError, match="join again") as info:
        index.refresh(a.token, now=12)
    assert info.value.status == 404
    assert names(index, now=21.9, ext="mp3") == ["b.mp3"]
    assert names(index, now=22, ext="mp3") == []
    # A late heartbeat does not revive a session.
    with pytest.raises(IndexRequestError):
        index.refresh(b.token, now=22)
    assert index.stats().entries == 0


def test_leave_drops_the_session_and_its_entries(library: NapsterIndex) -> None:
    assert library.leave("t0", now=1) == len(LIBRARY)
    assert names(library, ext="mp3") == []
    assert library.stats().entries == 0
    with pytest.raises(IndexRequestError):
        library.leave("t0", now=1)


def test_a_new_join_from_the_same_address_replaces_the_old_session() -> None:
    index = new_index()
    old = index.join(ip=LOOP, port=1, now=0)
    index.publish(old.token, [sf("old.mp3")], now=0)
    new = index.join(ip=LOOP, port=1, now=1)
    assert new.peer == PeerAddr(LOOP, 1) and new.token != old.token
    assert names(index, ext="mp3") == []
    with pytest.raises(IndexRequestError):
        index.publish(old.token, [sf("x.mp3")], now=1)


def test_republish_refreshes_renames_replaces_and_removes() -> None:
    index = new_index()
    s = index.join(ip=LOOP, port=1, now=0).token
    r = index.publish(s, [sf("a.mp3", n=1), sf("b.mp3", n=2)], now=0)
    assert (r.added, r.removed, r.total) == (2, 0, 2)
    r = index.publish(s, [sf("a.mp3", n=1)], now=1)  # unchanged: only refreshed
    assert (r.added, r.total) == (0, 2)
    assert index.stats().text_bytes == len(b"a.mp3\nb.mp3\n")
    r = index.publish(s, [sf("A renamed.mp3", n=1)], now=1)
    assert (r.added, r.total) == (1, 2)
    assert names(index, ext="mp3") == ["b.mp3", "A renamed.mp3"]
    r = index.publish(s, [], remove=[ih(2), ih(99)], now=1)
    assert (r.removed, r.total) == (1, 1)
    r = index.publish(s, [sf("c.mp3", n=3)], replace=True, now=1)
    assert (r.added, r.removed, r.total) == (1, 1, 1)
    assert names(index, ext="mp3") == ["c.mp3"]


def test_private_torrents_are_refused_and_nothing_is_applied() -> None:
    index = new_index()
    s = index.join(ip=LOOP, port=1, now=0).token
    with pytest.raises(IndexRequestError, match=r"files\[1\]: private torrents") as info:
        index.publish(s, [sf("public.mp3"), sf("private.mp3", private=True)], now=0)
    assert info.value.status == 403
    assert index.stats().entries == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 10_000, "longer than 1024 bytes"),
        ("é" * 513, "longer than 1024 bytes"),  # 1,026 bytes of UTF-8
        ("", "empty file name"),
        ("two\nlines.mp3", "control characters"),
        ("bell\x07.mp3", "control characters"),
        ("c1\x9b[2J.mp3", "control characters"),
        ("lone \ud800 surrogate", "lone surrogate"),
    ],
)
def test_bad_names_are_refused(name: str, message: str) -> None:
    index = new_index()
    s = index.join(ip=LOOP, port=1, now=0).token
    with pytest.raises(IndexRequestError, match=message) as info:
        index.publish(s, [sf("fine.mp3"), SharedFile(name=name, size=1, info_hash=ih(2))], now=0)
    assert info.value.status == 400 and str(info.value).startswith("files[1]: ")
    assert index.stats().entries == 0
    index.publish(s, [sf("x" * 1024)], now=0)  # exactly at the cap is fine


def test_caps_per_peer_in_total_and_per_address() -> None:
    index = new_index(max_entries_per_peer=3, max_entries=5, max_sessions_per_ip=2, max_sessions=3)
    a = index.join(ip="10.0.0.1", port=1, now=0).token
    with pytest.raises(IndexRequestError, match="too many files for one peer: 4") as info:
        index.publish(a, [sf(f"{n}.mp3") for n in range(4)], now=0)
    assert info.value.status == 413 and index.stats().entries == 0
    index.publish(a, [sf(f"{n}.mp3") for n in range(3)], now=0)
    # Replacing within the cap is fine: the cap counts what the peer holds afterwards.
    index.publish(a, [sf(f"{n}.mp3") for n in range(3, 6)], replace=True, now=0)
    b = index.join(ip="10.0.0.1", port=2, now=0).token
    with pytest.raises(IndexRequestError, match=r"too many sessions from 10\.0\.0\.1") as info:
        index.join(ip="10.0.0.1", port=3, now=0)
    assert info.value.status == 429
    with pytest.raises(IndexRequestError, match="index is full") as info:
        index.publish(b, [sf(f"b{n}.mp3") for n in range(3)], now=0)
    assert info.value.status == 503 and index.stats().entries == 3
    index.publish(b, [sf(f"b{n}.mp3") for n in range(2)], now=0)
    index.join(ip="10.0.0.2", port=1, now=0)
    with pytest.raises(IndexRequestError, match="no room") as info:
        index.join(ip="10.0.0.3", port=1, now=0)
    assert info.value.status == 503
    # Expired sessions free their room.
    index.expire(now=1000)
    index.join(ip="10.0.0.3", port=1, now=1000)


def test_bad_ports_and_config() -> None:
    index = new_index()
    for port in (0, 65536, -1):
        with pytest.raises(IndexRequestError, match="port"):
            index.join(ip=LOOP, port=port, now=0)
    with pytest.raises(LocalProtocolError):
        IndexConfig(ttl=0)
    with pytest.raises(LocalProtocolError):
        IndexConfig(default_limit=600)
    with pytest.raises(LocalProtocolError):
        SharedFile(name="x", size=-1, info_hash=ih(1))


def test_regex_errors_are_400_with_one_line() -> None:
    index = new_index()
    for pattern, message in [
        ("(a+", "bad regular expression: missing \\)"),
        (r"(a)\1", "bad regular expression: invalid escape"),
        ("(?=x)", "bad regular expression"),
        ("a" * 257, "longer than 256 characters"),
        ("a{1001}", "bad regular expression: invalid repetition size"),
    ]:
        with pytest.raises(IndexRequestError, match=message) as info:
            index.search(SearchQuery(text=pattern, match=REGEX), now=0)
        assert info.value.status == 400 and "\n" not in str(info.value)
    with pytest.raises(IndexRequestError, match="longer than 256"):
        index.search(SearchQuery(text="a" * 257, match=SUBSTRING), now=0)
    with pytest.raises(IndexRequestError, match="longer than 256"):
        index.search(SearchQuery(text="a " * 129), now=0)
    with pytest.raises(IndexRequestError, match="more than 16 words"):
        index.search(SearchQuery(text=" ".join(f"w{n}" for n in range(17))), now=0)


def test_regex_bombs_stay_fast() -> None:
    index = new_index(max_entries_per_peer=2000)
    s = index.join(ip=LOOP, port=1, now=0).token
    index.publish(s, [sf("a" * 1000 + f"!{n}") for n in range(2000)], now=0)
    for pattern in ["(a+)+$", "(a|aa)+b", "(a*)*b", "^(a|a?)+$", "(.*a){20}"]:
        started = time.perf_counter()
        index.search(SearchQuery(text=pattern, match=REGEX), now=1, clock=time.perf_counter)
        assert time.perf_counter() - started < 1.0, pattern


def test_the_time_budget_stops_a_slow_scan() -> None:
    # A clock that jumps a whole second at each look: the budget (0.1 s) is spent at once.
    ticks = itertools.count()
    index = new_index()
    s = index.join(ip=LOOP, port=1, now=0).token
    index.publish(s, [sf(f"song {n}.mp3") for n in range(10)], now=0)
    query = SearchQuery(text="song", match=SUBSTRING)
    result = index.search(query, now=1, clock=lambda: float(next(ticks)))
    assert result.hits == () and result.truncated
    assert len(index.search(query, now=1).hits) == 10


def test_the_scan_cap_bounds_work_when_filters_reject_everything() -> None:
    index = new_index(max_scan=50, max_entries_per_peer=200)
    s = index.join(ip=LOOP, port=1, now=0).token
    index.publish(s, [sf(f"song {n}.mp3", size=10) for n in range(200)], now=0)
    for query in [
        SearchQuery(text="song", match=SUBSTRING, min_size=11),
        SearchQuery(text="song", min_size=11),
        SearchQuery(min_size=11),
    ]:
        result = index.search(query, now=1)
        assert result.hits == () and result.truncated


def test_dead_lines_are_squeezed_out() -> None:
    index = new_index(max_entries_per_peer=10_000)
    a = index.join(ip=LOOP, port=1, now=0).token
    b = index.join(ip=LOOP, port=2, now=0).token
    index.publish(a, [sf(f"a{n}.bin") for n in range(6000)], now=0)
    index.publish(b, [sf("keep me.bin")], now=0)
    before = index.stats().text_bytes
    assert index.leave(a, now=1) == 6000
    assert index.stats().text_bytes == len(b"keep me.bin\n") < before
    assert names(index, text="me", match=SUBSTRING) == ["keep me.bin"]
    assert names(index, text="^a", match=REGEX) == []


def test_rate_limiter() -> None:
    limiter = RateLimiter(rate=2, burst=3, max_keys=2)
    assert [limiter.take("a", now=0) for _ in range(4)] == [0, 0, 0, 0.5]
    assert limiter.take("a", now=0.5) == 0  # one token back after 0.5 s
    assert limiter.take("b", now=0.5) == 0
    # Full: a new key is refused until a tracked bucket has refilled and is forgotten.
    assert limiter.take("c", now=0.5) > 0
    assert limiter.take("c", now=10) == 0 and len(limiter) == 1
    unlimited = RateLimiter(rate=0, burst=1)
    assert all(unlimited.take("a", now=0) == 0 for _ in range(1000))
    with pytest.raises(LocalProtocolError):
        RateLimiter(rate=-1, burst=1)


# --------------------------------------------------------------------------------------------
# Every kind of search agrees with a plain Python oracle, through publishes and removals.

_ALPHABET = "ab xyéÉ.-_1"
_names = st.text(alphabet=_ALPHABET, min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    files=st.lists(_names, min_size=1, max_size=30),
    removed=st.sets(st.integers(0, 29)),
    needle=st.text(alphabet=_ALPHABET, min_size=1, max_size=4),
    case_sensitive=st.booleans(),
)
def test_search_agrees_with_an_oracle(
    files: list[str], removed: set[int], needle: str, case_sensitive: bool
) -> None:
    index = new_index()
    s = index.join(ip=LOOP, port=1, now=0).token
    shared = [sf(name, n=i) for i, name in enumerate(files)]
    index.publish(s, shared, now=0)
    index.publish(s, [], remove=[ih(i) for i in removed], now=0)
    live = [f.name for i, f in enumerate(shared) if i not in removed]

    def run(kind: MatchKind, text: str) -> list[str]:
        query = SearchQuery(text=text, match=kind, case_sensitive=case_sensitive, limit=500)
        return sorted(h.name for h in index.search(query, now=1).hits)

    fold = (lambda t: t) if case_sensitive else str.lower
    assert run(SUBSTRING, needle) == sorted(n for n in live if fold(needle) in fold(n))
    pattern = "^" + re.escape(needle).replace("\\ ", " ") + ".*[ab]$"
    flags = 0 if case_sensitive else re.IGNORECASE
    assert run(REGEX, pattern) == sorted(n for n in live if re.search(pattern, n, flags))
    words = set(name_words(needle))
    if words:
        assert run(WORD, needle) == sorted(n for n in live if words <= set(name_words(n)))
